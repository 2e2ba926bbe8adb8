/**
 * The OpenAI-compatible fakes' fidelity to model-servers.md §3 (vLLM), §4 (SGLang), §5 (llama.cpp)
 * and §10: SSE framing with `data: ` and `[DONE]`, usage only when asked, each engine's error shape
 * with an integer code, the model check, each engine's load behaviour and log lines, the knobs,
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
  DEFAULT_COMPLETION_TOKENS,
  EMBEDDING_DIMENSION,
  startOpenAIFake,
} from '../../src/stand-ins/fakes/openai.ts';
import type {
  OpenAIFakeOptions,
  OpenAIFakeServer,
  OpenAIVariant,
} from '../../src/stand-ins/fakes/openai.ts';
import { generatedText } from '../../src/stand-ins/fakes/common.ts';
import { get, post, postStreaming } from '../helpers/request.ts';
import { waitFor } from '../helpers/wait-for.ts';

const FAST = { tokensPerSecondPerSequence: 50_000, tokensPerSecond: 500_000, prefillMsPerToken: 0 };
/** Slow enough that a 200-token stream is still running when a test looks at it. */
const SLOW = { tokensPerSecondPerSequence: 20, tokensPerSecond: 200, prefillMsPerToken: 0 };
const VARIANTS: readonly OpenAIVariant[] = ['vllm', 'sglang', 'llama'];

const LOAD_LINE: Record<OpenAIVariant, string> = {
  vllm: 'INFO:     Application startup complete.',
  sglang: 'The server is fired up and ready to roll!',
  llama: 'model loaded',
};

let dir: string;
const servers: OpenAIFakeServer[] = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'openai-fake-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

let logCount = 0;
async function start(
  variant: OpenAIVariant,
  options: Partial<OpenAIFakeOptions> = {},
): Promise<OpenAIFakeServer & { log: string }> {
  const logFile = join(dir, `${variant}-${logCount++}.log`);
  const server = await startOpenAIFake({ variant, logFile, batching: FAST, ...options });
  servers.push(server);
  if (!options.loadDelayMs && !options.failLoad) await waitFor(() => server.loaded);
  return Object.assign(server, { log: logFile });
}

const readLog = (file: string): string => {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
};

const control = (server: OpenAIFakeServer, command: unknown) =>
  post(`${server.url}/_control`, command).then((r) => expect(r.status).toBe(200));

const stats = async (server: OpenAIFakeServer) =>
  (await get(`${server.url}/_stats`)).json() as Record<string, number>;

/** Splits an OpenAI stream into its events: every block `data: <json>`, the last `data: [DONE]`. */
function events(text: string): Record<string, unknown>[] {
  expect(text.endsWith('data: [DONE]\n\n')).toBe(true);
  const blocks = text.slice(0, -'data: [DONE]\n\n'.length).split('\n\n');
  expect(blocks.pop()).toBe('');
  return blocks.map((block) => {
    expect(block.startsWith('data: {')).toBe(true);
    return JSON.parse(block.slice('data: '.length)) as Record<string, unknown>;
  });
}

type Choice = Record<string, unknown> & { delta?: Record<string, unknown> };
const choices = (event: Record<string, unknown>) => event['choices'] as Choice[];

async function refused(url: string): Promise<boolean> {
  try {
    await request(`${url}/health`);
    return false;
  } catch (error) {
    return (error as { code?: string }).code === 'ECONNREFUSED';
  }
}

describe.each(VARIANTS)('the %s fake', (variant) => {
  it('answers a completion with the OpenAI shape and exactly max_tokens words', async () => {
    const server = await start(variant);
    const response = await post(`${server.url}/v1/completions`, {
      model: 'Qwen/Qwen3-8B',
      prompt: 'Hello there, model',
      max_tokens: 7,
      temperature: 0.7,
      top_p: 0.9,
      seed: 3,
      some_engine_extension: { anything: true },
    });
    expect(response.status).toBe(200);
    const body = response.json() as Record<string, unknown>;
    expect(body).toMatchObject({
      object: 'text_completion',
      model: 'Qwen/Qwen3-8B',
      choices: [{ index: 0, text: generatedText(7), finish_reason: 'length', logprobs: null }],
      usage: { prompt_tokens: 5, completion_tokens: 7, total_tokens: 12 },
    });
    expect(body['id']).toMatch(/^cmpl-/);
    expect(Number.isInteger(body['created'])).toBe(true);
    expect(generatedText(7).split(' ')).toHaveLength(7);
  });

  it('answers a chat completion with an assistant message, limited by max_completion_tokens', async () => {
    const server = await start(variant);
    const response = await post(`${server.url}/v1/chat/completions`, {
      messages: [{ role: 'user', content: 'Hi' }],
      max_completion_tokens: 4,
    });
    expect(response.status).toBe(200);
    expect(response.json()).toMatchObject({
      object: 'chat.completion',
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: generatedText(4) },
          finish_reason: 'length',
        },
      ],
      usage: { completion_tokens: 4 },
    });
  });

  it('generates the documented default when the request names no limit', async () => {
    const server = await start(variant);
    const response = await post(`${server.url}/v1/completions`, { prompt: 'Hi' });
    expect(response.json()).toMatchObject({
      usage: { completion_tokens: DEFAULT_COMPLETION_TOKENS },
    });
  });

  it('streams one data: event per token, ends with [DONE], and sends usage only when asked', async () => {
    const server = await start(variant);
    const plain = await post(`${server.url}/v1/completions`, {
      prompt: 'Hi',
      max_tokens: 5,
      stream: true,
    });
    expect(plain.status).toBe(200);
    expect(plain.headers['content-type']).toMatch(/^text\/event-stream/);
    const plainEvents = events(plain.text);
    expect(plainEvents).toHaveLength(5);
    expect(plainEvents.map((e) => choices(e)[0]?.['text']).join('')).toBe(generatedText(5));
    expect(plainEvents.every((e) => !('usage' in e))).toBe(true);
    expect(choices(plainEvents[4] ?? {})[0]?.['finish_reason']).toBe('length');

    const withUsage = await post(`${server.url}/v1/completions`, {
      prompt: 'Hi',
      max_tokens: 5,
      stream: true,
      stream_options: { include_usage: true },
    });
    const usageEvents = events(withUsage.text);
    expect(usageEvents).toHaveLength(6);
    expect(usageEvents[5]).toMatchObject({
      choices: [],
      usage: { prompt_tokens: 1, completion_tokens: 5, total_tokens: 6 },
    });
    expect(server.sentAnswers.at(-1)?.body).toBe(withUsage.text);
  });

  it('opens a chat stream with the assistant role, then one delta per token', async () => {
    const server = await start(variant);
    const response = await post(`${server.url}/v1/chat/completions`, {
      messages: [{ role: 'user', content: 'Hi' }],
      max_tokens: 3,
      stream: true,
    });
    const chunks = events(response.text);
    expect(chunks).toHaveLength(4);
    expect(chunks.every((c) => c['object'] === 'chat.completion.chunk')).toBe(true);
    expect(choices(chunks[0] ?? {})[0]?.delta).toEqual({ role: 'assistant', content: '' });
    const text = chunks.slice(1).map((c) => choices(c)[0]?.delta?.['content']);
    expect(text.join('')).toBe(generatedText(3));
  });

  it('answers embeddings with one fixed-size vector per input', async () => {
    const server = await start(variant);
    const response = await post(`${server.url}/v1/embeddings`, { input: ['one', 'two words'] });
    expect(response.status).toBe(200);
    const body = response.json() as { object: string; data: { embedding: number[] }[] };
    expect(body.object).toBe('list');
    expect(body.data.map((d) => d.embedding.length)).toEqual([
      EMBEDDING_DIMENSION,
      EMBEDDING_DIMENSION,
    ]);
    const single = await post(`${server.url}/v1/embeddings`, { input: 'one' });
    expect((single.json() as typeof body).data[0]?.embedding).toEqual(body.data[0]?.embedding);
  });

  it('lists its served model', async () => {
    const server = await start(variant, { modelName: 'org/some-model' });
    const response = await get(`${server.url}/v1/models`);
    expect(response.json()).toMatchObject({
      object: 'list',
      data: [{ id: 'org/some-model', object: 'model' }],
    });
  });

  it('writes its fatal lines instead of the load line when loading fails', async () => {
    const server = await start(variant, { failLoad: true });
    const fatal = await waitFor(() => {
      const log = readLog(server.log);
      return log.includes(fatalMarker(variant)) && log;
    });
    expect(fatal).not.toContain(LOAD_LINE[variant]);
  });

  it('appends its fatal lines when told to, and answers an injected error in its shape', async () => {
    const server = await start(variant);
    await control(server, { fatal: true });
    expect(readLog(server.log)).toContain(fatalMarker(variant));
    await control(server, { error: { status: 500, message: 'boom' } });
    const response = await post(`${server.url}/v1/completions`, { prompt: 'Hi', max_tokens: 2 });
    expect(response.status).toBe(500);
    expect(response.json()).toEqual(errorBody(variant, 500, 'boom', 'server_error'));
    await control(server, { error: null });
    expect((await post(`${server.url}/v1/completions`, { prompt: 'Hi' })).status).toBe(200);
  });

  it('closes its port when told to crash', async () => {
    const server = await start(variant);
    await control(server, { crash: true });
    await waitFor(() => refused(server.url), { label: 'refused connection after crash' });
  });

  it('holds generations before their first token while the hold knob is on', async () => {
    const server = await start(variant);
    await control(server, { hold: true });
    const calls = [1, 2, 3].map(() =>
      post(`${server.url}/v1/completions`, { prompt: 'Hi', max_tokens: 2 }),
    );
    await waitFor(async () => (await stats(server))['inFlight'] === 3, { label: '3 in flight' });
    expect(server.engine.running + server.engine.waiting).toBe(0);
    expect((await stats(server))['completed']).toBe(0);
    await control(server, { hold: false });
    const answers = await Promise.all(calls);
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200]);
    expect((await stats(server))['completed']).toBe(3);
  });

  it('cancels the generation when the client leaves mid-stream, and counts it aborted', async () => {
    const server = await start(variant, { batching: SLOW });
    const call = postStreaming(`${server.url}/v1/completions`, {
      prompt: 'Hi',
      max_tokens: 200,
      stream: true,
    });
    await waitFor(() => call.chunks.join('').includes('data: {'), { label: 'first event' });
    expect(server.engine.running).toBe(1);
    call.disconnect();
    await waitFor(async () => (await stats(server))['aborted'] === 1, { label: 'aborted' });
    expect(server.engine.running).toBe(0);
    expect((await stats(server))['completed']).toBe(0);
  });

  it('is registered under its worker name', async () => {
    const names = variant === 'vllm' ? ['vllm', 'openai'] : [variant];
    for (const name of names) {
      const startFake = FAKES[name];
      expect(startFake).toBeDefined();
      const server = (await startFake?.({ logFile: join(dir, `registry-${name}.log`) })) as
        OpenAIFakeServer | undefined;
      if (server === undefined) continue;
      servers.push(server);
      expect(server.variant).toBe(variant);
    }
  });
});

function fatalMarker(variant: OpenAIVariant): string {
  switch (variant) {
    case 'vllm':
      return 'RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}';
    case 'sglang':
      return 'RuntimeError: Not enough memory. Please try to increase --mem-fraction-static.';
    case 'llama':
      return 'main: exiting due to model loading error';
  }
}

const VLLM_TYPES = {
  invalid_request: 'BadRequestError',
  not_found: 'NotFoundError',
  server_error: 'InternalServerError',
} as const;
const LLAMA_TYPES = {
  invalid_request: 'invalid_request_error',
  not_found: 'not_found_error',
  server_error: 'server_error',
} as const;

function errorBody(
  variant: OpenAIVariant,
  code: number,
  message: string,
  kind: keyof typeof VLLM_TYPES,
): unknown {
  switch (variant) {
    case 'vllm':
      return { error: { message, type: VLLM_TYPES[kind], param: null, code } };
    case 'sglang':
      return { object: 'error', message, type: VLLM_TYPES[kind], param: null, code };
    case 'llama':
      return { error: { code, message, type: LLAMA_TYPES[kind] } };
  }
}

describe('error shapes', () => {
  it.each(VARIANTS)('%s answers a bad max_tokens with 400 in its error shape', async (variant) => {
    const server = await start(variant);
    const response = await post(`${server.url}/v1/completions`, { prompt: 'Hi', max_tokens: 0 });
    expect(response.status).toBe(400);
    expect(response.json()).toEqual(
      errorBody(variant, 400, 'max_tokens must be a positive integer, got 0', 'invalid_request'),
    );
  });

  it.each(VARIANTS)(
    '%s rejects stream_options without stream and a non-JSON body',
    async (variant) => {
      const server = await start(variant);
      const options = await post(`${server.url}/v1/completions`, {
        prompt: 'Hi',
        stream_options: { include_usage: true },
      });
      expect(options.status).toBe(400);
      const notJson = await post(`${server.url}/v1/chat/completions`, '{"messages": [');
      expect(notJson.status).toBe(400);
      const code = (b: unknown) => b as { error?: { code: unknown }; code?: unknown };
      const codes = [options, notJson].map((r) => {
        const body = code(r.json());
        return body.error?.code ?? body.code;
      });
      expect(codes).toEqual([400, 400]);
    },
  );

  it.each([
    ['vllm', 404],
    ['sglang', 404],
    ['llama', 200],
  ] as const)('%s answers a request for another model with %i', async (variant, status) => {
    const server = await start(variant);
    const response = await post(`${server.url}/v1/completions`, {
      model: 'someone/else',
      prompt: 'Hi',
      max_tokens: 2,
    });
    expect(response.status).toBe(status);
    if (status === 404) {
      expect(response.json()).toEqual(
        errorBody(variant, 404, 'The model `someone/else` does not exist.', 'not_found'),
      );
    } else {
      // llama.cpp ignores the field and echoes it.
      expect(response.json()).toMatchObject({ model: 'someone/else' });
    }
  });

  it("answers an unknown path with FastAPI 404 (vLLM, SGLang) or llama.cpp's File Not Found", async () => {
    const vllm = await start('vllm');
    const sglang = await start('sglang');
    const llama = await start('llama');
    for (const server of [vllm, sglang]) {
      const response = await post(`${server.url}/v2/nothing`, {});
      expect([response.status, response.text]).toEqual([404, '{"detail":"Not Found"}']);
    }
    const response = await get(`${llama.url}/nothing`);
    expect(response.status).toBe(404);
    expect(response.text).toBe(
      '{"error":{"message":"File Not Found","type":"not_found_error","code":404}}',
    );
  });
});

describe('health and load behaviour', () => {
  it('vLLM refuses connections while loading and logs its startup lines only once it serves', async () => {
    const server = await start('vllm', { loadDelayMs: 60_000 });
    expect(await refused(server.url)).toBe(true);
    const log = readLog(server.log);
    expect(log).toContain('Starting to load model Qwen/Qwen3-8B');
    expect(log).not.toContain('Application startup complete.');
  });

  it('vLLM answers /health 200 with an empty body, and 503 when unhealthy', async () => {
    const server = await start('vllm');
    const healthy = await get(`${server.url}/health`);
    expect([healthy.status, healthy.text]).toEqual([200, '']);
    await control(server, { healthy: false });
    expect((await get(`${server.url}/health`)).status).toBe(503);
  });

  it('llama.cpp answers 503 Loading model on every path while loading', async () => {
    const server = await start('llama', { loadDelayMs: 60_000 });
    const loading = '{"error":{"message":"Loading model","type":"unavailable_error","code":503}}';
    for (const path of ['/health', '/v1/health', '/v1/models', '/anything']) {
      const response = await get(`${server.url}${path}`);
      expect([path, response.status, response.text]).toEqual([path, 503, loading]);
    }
    const completion = await post(`${server.url}/v1/completions`, { prompt: 'Hi' });
    expect([completion.status, completion.text]).toEqual([503, loading]);
    expect(readLog(server.log)).not.toContain('model loaded');
  });

  it('llama.cpp answers /health and /v1/health with {"status":"ok"} and streams with X-Accel-Buffering: no', async () => {
    const server = await start('llama');
    for (const path of ['/health', '/v1/health']) {
      const response = await get(`${server.url}${path}`);
      expect([response.status, response.text]).toEqual([200, '{"status":"ok"}']);
    }
    const stream = await post(`${server.url}/v1/completions`, {
      prompt: 'Hi',
      max_tokens: 1,
      stream: true,
    });
    expect(stream.headers['x-accel-buffering']).toBe('no');
  });

  it('llama.cpp logs "model loaded" before "listening on", and nothing says "listening on" while it loads', async () => {
    const loading = await start('llama', { loadDelayMs: 60_000 });
    expect((await get(`${loading.url}/health`)).status).toBe(503);
    expect(readLog(loading.log)).not.toContain('listening on');
    const ready = await start('llama');
    const log = readLog(ready.log);
    expect(log.indexOf('model loaded')).toBeGreaterThan(-1);
    expect(log.indexOf('listening on')).toBeGreaterThan(log.indexOf('model loaded'));
  });

  it('SGLang serves at once, answers /health 503 while warming up, then 200 after the ready line', async () => {
    const warming = await start('sglang', { loadDelayMs: 60_000 });
    expect((await get(`${warming.url}/health`)).status).toBe(503);
    expect(readLog(warming.log)).toContain('Uvicorn running on');
    expect(readLog(warming.log)).not.toContain(LOAD_LINE.sglang);
    const ready = await start('sglang');
    expect(readLog(ready.log)).toContain(LOAD_LINE.sglang);
    const health = await get(`${ready.url}/health`);
    expect([health.status, health.text]).toEqual([200, '']);
  });

  it.each(VARIANTS)(
    '%s writes its load line only when the port already serves requests',
    async (variant) => {
      const server = await start(variant, { loadDelayMs: 150 });
      await waitFor(() => readLog(server.log).includes(LOAD_LINE[variant]), {
        label: 'load line',
      });
      const response = await post(`${server.url}/v1/completions`, {
        prompt: 'Hi',
        max_tokens: 1,
      });
      expect(response.status).toBe(200);
      expect((await get(`${server.url}/health`)).status).toBe(200);
    },
  );
});

describe('throughput model', () => {
  it('llama.cpp decodes as many sequences as it has slots and queues the rest without refusing', async () => {
    const server = await start('llama', { batching: { ...SLOW, maxRunning: 2 } });
    const calls = [1, 2, 3, 4].map(() =>
      postStreaming(`${server.url}/v1/completions`, {
        prompt: 'Hi',
        max_tokens: 200,
        stream: true,
      }),
    );
    await waitFor(() => server.engine.running === 2 && server.engine.waiting === 2, {
      label: '2 running, 2 waiting',
    });
    const first = await Promise.all(calls.map((c) => c.headers));
    expect(first.map((h) => h.status)).toEqual([200, 200, 200, 200]);
    expect((await stats(server))['overloaded']).toBe(0);
    for (const call of calls) call.disconnect();
    await waitFor(async () => (await stats(server))['aborted'] === 4, { label: 'all aborted' });
    expect(server.engine.running + server.engine.waiting).toBe(0);
  });

  it('vLLM runs concurrent requests in one batch', async () => {
    const server = await start('vllm', { batching: SLOW });
    const calls = [1, 2, 3].map(() =>
      postStreaming(`${server.url}/v1/completions`, {
        prompt: 'Hi',
        max_tokens: 200,
        stream: true,
      }),
    );
    await waitFor(() => server.engine.running === 3, { label: '3 running' });
    expect(server.engine.waiting).toBe(0);
    for (const call of calls) call.disconnect();
    await waitFor(async () => (await stats(server))['aborted'] === 3, { label: 'all aborted' });
  });
});

describe('as a program', () => {
  it('starts from the environment and prints where it listens', async () => {
    const script = fileURLToPath(new URL('../../src/stand-ins/fakes/openai.ts', import.meta.url));
    const child = spawn(process.execPath, ['--import', 'tsx', script], {
      env: { ...process.env, VARIANT: 'llama', MODEL_PORT: '0', MODEL_NAME: 'org/tiny' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      out += chunk;
    });
    try {
      const url = await waitFor(
        () => {
          const line = out.split('\n').find((l) => l.includes('"listening"'));
          return line === undefined ? undefined : (JSON.parse(line) as { url: string }).url;
        },
        { label: 'listening line', timeoutMs: 20_000 },
      );
      const models = await get(`${url}/v1/models`);
      expect(models.json()).toMatchObject({ data: [{ id: 'org/tiny', owned_by: 'llamacpp' }] });
    } finally {
      child.kill('SIGTERM');
      await once(child, 'exit');
    }
  });
});
