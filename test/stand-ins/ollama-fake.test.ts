/**
 * The Ollama fake's fidelity to model-servers.md §6 and §10: NDJSON framing, the final `done` line,
 * `stream: false`, native and OpenAI error shapes, no /health, the image's log lines, the knobs,
 * and a client that leaves mid-stream.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FAKES } from '../../src/stand-ins/fakes/index.ts';
import {
  OLLAMA_FAKE_DEFAULT_NUM_PREDICT,
  OLLAMA_FAKE_VERSION,
  startOllamaFake,
} from '../../src/stand-ins/fakes/ollama.ts';
import type { OllamaFakeOptions, OllamaFakeServer } from '../../src/stand-ins/fakes/ollama.ts';
import { get, post, postStreaming } from '../helpers/request.ts';
import { waitFor } from '../helpers/wait-for.ts';

const MODEL = 'qwen3:32b';
const FAST = { tokensPerSecondPerSequence: 50_000, tokensPerSecond: 50_000 };

let dir: string;
const servers: { close(): Promise<void> }[] = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'ollama-fake-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

let logCount = 0;
async function start(options: OllamaFakeOptions = {}): Promise<OllamaFakeServer & { log: string }> {
  const logFile = join(dir, `ollama-${logCount++}.log`);
  const server = await startOllamaFake({ logFile, batching: FAST, ...options });
  servers.push(server);
  return Object.assign(server, { log: logFile });
}

const readLog = (file: string): string => {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
};

const ndjson = (text: string): Record<string, unknown>[] => {
  expect(text.endsWith('\n')).toBe(true);
  return text
    .slice(0, -1)
    .split('\n')
    .map((line) => JSON.parse(line) as Record<string, unknown>);
};

const control = (server: { url: string }, command: unknown) =>
  post(`${server.url}/_control`, command).then((r) => expect(r.status).toBe(200));

describe('native /api/generate and /api/chat', () => {
  it('streams /api/generate as NDJSON, one object per token, ending in a done line with counts and context', async () => {
    const server = await start();
    const response = await post(`${server.url}/api/generate`, {
      model: MODEL,
      prompt: 'Why is the sky blue?',
      options: { num_predict: 5, temperature: 0.2 },
    });
    expect(response.status).toBe(200);
    expect(response.headers['content-type']).toBe('application/x-ndjson');
    const lines = ndjson(response.text);
    expect(lines).toHaveLength(6);
    for (const line of lines.slice(0, 5)) {
      expect(Object.keys(line)).toEqual(['model', 'created_at', 'response', 'done']);
      expect(line).toMatchObject({ model: MODEL, done: false });
      expect(new Date(String(line['created_at'])).toISOString()).toBe(line['created_at']);
    }
    const last = lines[5] ?? {};
    expect(last).toMatchObject({
      model: MODEL,
      response: '',
      done: true,
      done_reason: 'length',
      prompt_eval_count: expect.any(Number) as number,
      eval_count: 5,
    });
    for (const field of [
      'total_duration',
      'load_duration',
      'prompt_eval_duration',
      'eval_duration',
    ]) {
      expect(Number.isInteger(last[field])).toBe(true);
    }
    expect(last['prompt_eval_count']).toBeGreaterThan(0);
    const context = last['context'] as number[];
    expect(context).toHaveLength((last['prompt_eval_count'] as number) + 5);
  });

  it('keeps the exact bytes of each answer it wrote', async () => {
    const server = await start();
    const response = await post(`${server.url}/api/generate`, {
      model: MODEL,
      prompt: 'x',
      options: { num_predict: 3 },
    });
    expect(server.sentAnswers.at(-1)).toEqual({ path: '/api/generate', body: response.text });
  });

  it('streams /api/chat with message objects and no context on the done line', async () => {
    const server = await start();
    const response = await post(`${server.url}/api/chat`, {
      model: MODEL,
      messages: [{ role: 'user', content: 'Hello there' }],
      options: { num_predict: 3 },
    });
    expect(response.headers['content-type']).toBe('application/x-ndjson');
    const lines = ndjson(response.text);
    expect(lines).toHaveLength(4);
    for (const line of lines.slice(0, 3)) {
      expect(line).toMatchObject({
        model: MODEL,
        message: { role: 'assistant', content: expect.any(String) as string },
        done: false,
      });
    }
    const last = lines[3] ?? {};
    expect(last).toMatchObject({
      message: { role: 'assistant', content: '' },
      done: true,
      done_reason: 'length',
      eval_count: 3,
    });
    expect(last).not.toHaveProperty('context');
  });

  it('answers stream:false with one JSON object holding the whole text and the final fields', async () => {
    const server = await start();
    const body = { model: MODEL, prompt: 'Tell me a story', options: { num_predict: 7 } };
    const streamed = ndjson((await post(`${server.url}/api/generate`, body)).text);
    const single = await post(`${server.url}/api/generate`, { ...body, stream: false });
    expect(single.status).toBe(200);
    expect(single.headers['content-type']).toBe('application/json; charset=utf-8');
    const whole = single.json() as Record<string, unknown>;
    expect(whole).toMatchObject({ done: true, done_reason: 'length', eval_count: 7 });
    expect(whole['response']).toBe(streamed.map((l) => l['response']).join(''));

    const chat = await post(`${server.url}/api/chat`, {
      model: MODEL,
      messages: [{ role: 'user', content: 'hi' }],
      stream: false,
      options: { num_predict: 2 },
    });
    expect(chat.json()).toMatchObject({
      message: { role: 'assistant', content: expect.stringMatching(/\S/) as string },
      done: true,
      eval_count: 2,
    });
  });

  it('generates the documented default when num_predict is absent or -1, and says it stopped', async () => {
    const server = await start();
    for (const options of [{}, { num_predict: -1 }]) {
      const response = await post(`${server.url}/api/generate`, {
        model: MODEL,
        prompt: 'x',
        stream: false,
        options,
      });
      expect(response.json()).toMatchObject({
        eval_count: OLLAMA_FAKE_DEFAULT_NUM_PREDICT,
        done_reason: 'stop',
      });
    }
  });

  it('only loads the model for an empty prompt, answering done_reason "load"', async () => {
    const server = await start();
    const response = await post(`${server.url}/api/generate`, { model: MODEL });
    expect(response.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(response.json()).toMatchObject({ model: MODEL, done: true, done_reason: 'load' });
    const ps = (await get(`${server.url}/api/ps`)).json() as { models: { name: string }[] };
    expect(ps.models.map((m) => m.name)).toEqual([MODEL]);
  });

  it('matches model names as Ollama does: case-insensitive, :latest when no tag', async () => {
    const server = await start({ model: 'llama3.2' });
    const response = await post(`${server.url}/api/generate`, {
      model: 'Llama3.2:latest',
      prompt: 'x',
      stream: false,
      options: { num_predict: 1 },
    });
    expect(response.status).toBe(200);
    expect(response.json()).toMatchObject({ model: 'Llama3.2:latest', eval_count: 1 });
  });
});

describe('native errors', () => {
  it('answers an unknown model with 404 and Ollama\'s "try pulling it first" text', async () => {
    const server = await start();
    const response = await post(`${server.url}/api/chat`, {
      model: 'mistral:7b',
      messages: [{ role: 'user', content: 'hi' }],
    });
    expect(response.status).toBe(404);
    expect(response.json()).toEqual({
      error: 'model "mistral:7b" not found, try pulling it first',
    });
  });

  it('answers bad bodies and fields with 400 {"error"} in Go json wording', async () => {
    const server = await start();
    const cases: [unknown, string][] = [
      ['hello', "invalid character 'h' looking for beginning of value"],
      ['', 'missing request body'],
      [[1, 2], 'json: cannot unmarshal array into Go value of type api.GenerateRequest'],
      [
        { model: MODEL, prompt: 42 },
        'json: cannot unmarshal number into Go struct field GenerateRequest.prompt of type string',
      ],
      [
        { model: MODEL, prompt: 'x', stream: 'yes' },
        'json: cannot unmarshal string into Go struct field GenerateRequest.stream of type bool',
      ],
      [{ prompt: 'x' }, 'model is required'],
    ];
    for (const [body, error] of cases) {
      const response = await post(`${server.url}/api/generate`, body);
      expect(response.status, JSON.stringify(body)).toBe(400);
      expect(response.headers['content-type']).toBe('application/json; charset=utf-8');
      expect(response.json()).toEqual({ error });
    }
    const chat = await post(`${server.url}/api/chat`, { model: MODEL, messages: 'hi' });
    expect(chat.status).toBe(400);
    expect(chat.json()).toEqual({
      error:
        'json: cannot unmarshal string into Go struct field ChatRequest.messages of type []api.Message',
    });
  });

  it('fails a wrongly typed option with the scheduler error and only logs an unknown one', async () => {
    const server = await start();
    const bad = await post(`${server.url}/api/generate`, {
      model: MODEL,
      prompt: 'x',
      options: { num_predict: 'ten' },
    });
    expect(bad.status).toBe(500);
    expect(bad.json()).toEqual({ error: 'option "num_predict" must be of type integer' });
    const unknown = await post(`${server.url}/api/generate`, {
      model: MODEL,
      prompt: 'x',
      stream: false,
      options: { num_predict: 1, flux_capacitor: 1 },
    });
    expect(unknown.status).toBe(200);
    expect(readLog(server.log)).toContain('msg="invalid option provided" option=flux_capacitor');
  });

  it('refuses work beyond its queue with 503 "server busy" and counts it as overloaded', async () => {
    const server = await start({
      batching: { tokensPerSecondPerSequence: 20, maxRunning: 1, maxWaiting: 0 },
    });
    const first = postStreaming(`${server.url}/api/generate`, {
      model: MODEL,
      prompt: 'x',
      options: { num_predict: 1000 },
    });
    expect((await first.headers).status).toBe(200);
    const second = await post(`${server.url}/api/generate`, { model: MODEL, prompt: 'y' });
    expect(second.status).toBe(503);
    expect(second.json()).toEqual({
      error: 'server busy, please try again.  maximum pending requests exceeded',
    });
    first.disconnect();
    const stats = (await get(`${server.url}/_stats`)).json();
    expect(stats).toMatchObject({ overloaded: 1 });
  });
});

describe('OpenAI-compatible /v1 routes', () => {
  it('streams /v1/chat/completions as SSE ending in [DONE]', async () => {
    const server = await start();
    const response = await post(`${server.url}/v1/chat/completions`, {
      model: MODEL,
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 4,
      stream: true,
    });
    expect(response.status).toBe(200);
    expect(response.headers['content-type']).toMatch(/^text\/event-stream/);
    const events = response.text.split('\n\n').filter((e) => e !== '');
    expect(events.at(-1)).toBe('data: [DONE]');
    for (const event of events.slice(0, -1)) {
      expect(event.startsWith('data: ')).toBe(true);
      expect(JSON.parse(event.slice(6))).toMatchObject({
        object: 'chat.completion.chunk',
        model: MODEL,
      });
    }
  });

  it('answers /v1/completions with choices and usage, generating the fake default without max_tokens', async () => {
    const server = await start();
    const response = await post(`${server.url}/v1/completions`, { model: MODEL, prompt: 'hi' });
    expect(response.status).toBe(200);
    expect(response.json()).toMatchObject({
      object: 'text_completion',
      model: MODEL,
      choices: [{ index: 0, text: expect.any(String) as string }],
      usage: { completion_tokens: OLLAMA_FAKE_DEFAULT_NUM_PREDICT },
    });
  });

  it('lists the pulled model on /v1/models, and none before the pull completes', async () => {
    const server = await start();
    expect((await get(`${server.url}/v1/models`)).json()).toMatchObject({
      object: 'list',
      data: [{ id: MODEL, object: 'model', owned_by: 'library' }],
    });
    const pulling = await start({ loadDelayMs: 60_000 });
    expect((await get(`${pulling.url}/v1/models`)).json()).toEqual({ object: 'list', data: [] });
    const early = await post(`${pulling.url}/v1/chat/completions`, {
      model: MODEL,
      messages: [{ role: 'user', content: 'hi' }],
    });
    expect(early.status).toBe(404);
  });

  it("answers /v1 errors in Ollama's OpenAI shape, with a string-or-null code", async () => {
    const server = await start();
    const unknown = await post(`${server.url}/v1/chat/completions`, {
      model: 'mistral:7b',
      messages: [{ role: 'user', content: 'hi' }],
    });
    expect(unknown.status).toBe(404);
    expect(unknown.json()).toEqual({
      error: {
        message: 'model "mistral:7b" not found, try pulling it first',
        type: 'not_found_error',
        param: null,
        code: null,
      },
    });
    const bad = await post(`${server.url}/v1/completions`, {
      model: MODEL,
      prompt: 'x',
      max_tokens: -3,
    });
    expect(bad.status).toBe(400);
    expect(bad.json()).toMatchObject({ error: { type: 'invalid_request_error', code: null } });

    await control(server, {
      error: { status: 500, message: 'llama runner process has terminated' },
    });
    const injected = await post(`${server.url}/v1/completions`, { model: MODEL, prompt: 'x' });
    expect(injected.status).toBe(500);
    expect(injected.json()).toEqual({
      error: {
        message: 'llama runner process has terminated',
        type: 'api_error',
        param: null,
        code: null,
      },
    });
  });
});

describe('routes, load behaviour and logs', () => {
  it("answers / and /api/version, has no /health, and answers unknown routes with gin's 404", async () => {
    const server = await start();
    const root = await get(`${server.url}/`);
    expect([root.status, root.text]).toEqual([200, 'Ollama is running']);
    const head = await request(`${server.url}/`, { method: 'HEAD' });
    expect(head.statusCode).toBe(200);
    await head.body.dump();
    const version = await get(`${server.url}/api/version`);
    expect(version.json()).toEqual({ version: OLLAMA_FAKE_VERSION });
    for (const path of ['/health', '/v1/health', '/api/nothing']) {
      const missing = await get(`${server.url}${path}`);
      expect([missing.status, missing.text]).toEqual([404, '404 page not found']);
    }
    const wrongMethod = await get(`${server.url}/api/generate`);
    expect(wrongMethod.status).toBe(404);
  });

  it('serves at once while the image still pulls the model, then lists it once the pull completes', async () => {
    const server = await start({ loadDelayMs: 60_000 });
    expect((await get(`${server.url}/`)).status).toBe(200);
    expect((await get(`${server.url}/api/tags`)).json()).toEqual({ models: [] });
    const early = await post(`${server.url}/api/generate`, { model: MODEL, prompt: 'x' });
    expect(early.status).toBe(404);
    expect(readLog(server.log)).not.toContain('Model pull complete');

    const loaded = await start();
    const tags = (await get(`${loaded.url}/api/tags`)).json() as { models: { name: string }[] };
    expect(tags.models.map((m) => m.name)).toEqual([MODEL]);
  });

  it('logs the Listening line, then "Ollama server is ready", then "Model pull complete: <model>"', async () => {
    const server = await start({ model: 'llama3.2:3b' });
    const log = await waitFor(() => {
      const text = readLog(server.log);
      return text.includes('Model pull complete') && text;
    });
    const listening = log.indexOf(
      `msg="Listening on 127.0.0.1:${server.port} (version ${OLLAMA_FAKE_VERSION})"`,
    );
    const ready = log.indexOf('\nOllama server is ready\n');
    const pulled = log.indexOf('\nModel pull complete: llama3.2:3b\n');
    expect(listening).toBeGreaterThan(0);
    expect(ready).toBeGreaterThan(listening);
    expect(pulled).toBeGreaterThan(ready);
    expect(log).toMatch(/^time=\S+ level=INFO source=\S+ msg="Listening on /m);
    expect(log).not.toContain('Failed to pull model');
  });

  it('logs "Failed to pull model: <model>" and never the pull-complete line when the pull fails', async () => {
    const server = await start({ failLoad: true });
    const log = await waitFor(() => {
      const text = readLog(server.log);
      return text.includes('Failed to pull model') && text;
    });
    expect(log).toContain(`\nFailed to pull model: ${MODEL}\n`);
    expect(log).not.toContain('Model pull complete');
    expect((await get(`${server.url}/api/tags`)).json()).toEqual({ models: [] });
  });

  it('is registered as the ollama fake and tells the worker its model', async () => {
    const starter = FAKES['ollama'];
    expect(starter).toBeDefined();
    const server = await starter!({ logFile: join(dir, 'registered.log') });
    servers.push(server);
    expect(server.workerEnv).toEqual({ OLLAMA_MODEL: MODEL });
    expect((await get(`${server.url}/`)).text).toBe('Ollama is running');
  });
});

describe('knobs and client aborts', () => {
  it('answers an injected error in the native {"error"} shape with its status, until cleared', async () => {
    const server = await start();
    await control(server, { error: { status: 500 } });
    const failed = await post(`${server.url}/api/generate`, { model: MODEL, prompt: 'x' });
    expect(failed.status).toBe(500);
    expect(failed.json()).toEqual({ error: expect.any(String) as string });
    await control(server, { error: { status: 429, message: 'slow down' } });
    const chat = await post(`${server.url}/api/chat`, { model: MODEL, messages: [] });
    expect([chat.status, chat.json()]).toEqual([429, { error: 'slow down' }]);
    await control(server, { error: null });
    const ok = await post(`${server.url}/api/generate`, {
      model: MODEL,
      prompt: 'x',
      stream: false,
      options: { num_predict: 1 },
    });
    expect(ok.status).toBe(200);
  });

  it('answers /api/version with 503 while unhealthy, and appends the fatal lines on demand', async () => {
    const server = await start();
    await control(server, { healthy: false });
    expect((await get(`${server.url}/api/version`)).status).toBe(503);
    await control(server, { healthy: true });
    expect((await get(`${server.url}/api/version`)).status).toBe(200);
    await control(server, { fatal: true });
    expect(readLog(server.log)).toContain(`Failed to pull model: ${MODEL}`);
  });

  it('holds generations before their first line until released', async () => {
    const server = await start();
    await control(server, { hold: true });
    const held = postStreaming(`${server.url}/api/generate`, {
      model: MODEL,
      prompt: 'x',
      options: { num_predict: 2 },
    });
    await waitFor(async () => {
      const stats = (await get(`${server.url}/_stats`)).json() as { inFlight: number };
      return stats.inFlight === 1;
    });
    expect(held.chunks).toEqual([]);
    await control(server, { hold: false });
    const lines = ndjson(await held.done);
    expect(lines.at(-1)).toMatchObject({ done: true, eval_count: 2 });
  });

  it('refuses connections after a crash', async () => {
    const server = await start();
    await control(server, { crash: true });
    await expect(get(`${server.url}/`)).rejects.toThrow();
  });

  it('cancels the generation when the client leaves mid-stream, counts it aborted and frees the slot', async () => {
    const server = await start({
      batching: { tokensPerSecondPerSequence: 200, maxRunning: 1, maxWaiting: 0 },
    });
    const aborted = once(server, 'aborted');
    const call = postStreaming(`${server.url}/api/generate`, {
      model: MODEL,
      prompt: 'x',
      options: { num_predict: 100_000 },
    });
    await waitFor(() => call.chunks.length > 0);
    call.disconnect();
    const [event] = (await aborted) as [{ path: string }];
    expect(event.path).toBe('/api/generate');
    expect(server.stats).toMatchObject({ aborted: 1, inFlight: 0 });
    // With one slot and no queue, a second request only runs if the first was cancelled.
    const next = await post(`${server.url}/api/generate`, {
      model: MODEL,
      prompt: 'y',
      stream: false,
      options: { num_predict: 1 },
    });
    expect(next.status).toBe(200);
  });
});

describe('as a program', () => {
  it('runs from the environment and prints where it listens', async () => {
    const script = fileURLToPath(new URL('../../src/stand-ins/fakes/ollama.ts', import.meta.url));
    const logFile = join(dir, 'program.log');
    const child = spawn(process.execPath, ['--import', 'tsx', script], {
      env: { ...process.env, MODEL_PORT: '0', MODEL_LOG: logFile, OLLAMA_MODEL: 'phi4:14b' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      child.stdout.setEncoding('utf8');
      let out = '';
      const [line] = await new Promise<[string]>((resolve, reject) => {
        child.stdout.on('data', (chunk: string) => {
          out += chunk;
          const newline = out.indexOf('\n');
          if (newline !== -1) resolve([out.slice(0, newline)]);
        });
        child.once('exit', (code) => reject(new Error(`exited with ${String(code)}`)));
      });
      const message = JSON.parse(line) as { event: string; url: string };
      expect(message.event).toBe('listening');
      expect((await get(`${message.url}/`)).text).toBe('Ollama is running');
      await waitFor(() => readLog(logFile).includes('Model pull complete: phi4:14b'));
    } finally {
      child.kill('SIGTERM');
      await once(child, 'exit');
    }
  });
});
