/**
 * The ollama worker against the Ollama fake, on loopback: readiness from the image's pull lines, the
 * failure line, the benchmark, the workload of each request, NDJSON streams passed through byte for
 * byte and unbuffered, errors passed through, a client that leaves, test_load --verify, a request
 * routed by the local autoscaler, and the worker's own settings (OLLAMA_HOST, MODEL_NAME).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ollamaLoadTest, type WorkerFactory } from '../../lib/index.ts';
import { ollamaHostUrl } from '../../lib/entry-presets.ts';
import { ConfigError, resolveWorker } from '../../lib/entry-server.ts';
import { type LoadSummary } from '../../lib/entry-load-test.ts';
import { testLoadCommand } from '../../src/commands/test-load.ts';
import type { FakeServerOptions } from '../../src/stand-ins/fakes/common.ts';
import { OllamaFakeServer, startOllamaFake } from '../../src/stand-ins/fakes/ollama.ts';
import ollamaServer from '../../workers/ollama/server.ts';
import { startEngineStack, type EngineStack } from '../helpers/engine-stack.ts';
import { post, postStreaming } from '../helpers/request.ts';
import { waitFor } from '../helpers/wait-for.ts';

const worker = ollamaServer as WorkerFactory;
const MODEL = 'qwen3:32b';

/** Fast enough for a quick benchmark, slow enough that a 20000-token stream is still running. */
const BATCHING = {
  tokensPerSecondPerSequence: 4_000,
  tokensPerSecond: 400_000,
  prefillMsPerToken: 0,
  maxRunning: 16,
};

const startFake = (options: FakeServerOptions): Promise<OllamaFakeServer> =>
  startOllamaFake({ ...options, batching: BATCHING });

const ollamaFake = (stack: EngineStack): OllamaFakeServer => {
  if (!(stack.fake instanceof OllamaFakeServer)) throw new Error('not the Ollama fake');
  return stack.fake;
};

const control = (stack: EngineStack, command: unknown) =>
  post(`${stack.fake.url}/_control`, command).then((r) => expect(r.status).toBe(200));

/** Timestamps and measured durations differ between two answers; everything else must not. */
const normalise = (text: string): string =>
  text
    .replace(/"created_at":"[^"]*"/g, '"created_at":"-"')
    .replace(/"(\w+_duration)":\d+/g, '"$1":0');

const chat = (extra: Record<string, unknown> = {}) => ({
  messages: [{ role: 'user', content: 'Say hello' }],
  ...extra,
});

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'ollama-worker-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let jsonFiles = 0;
async function testLoad(...argv: string[]): Promise<{ code: number; summary: LoadSummary }> {
  const discard = () =>
    new Writable({
      write: (_chunk, _encoding, callback) => callback(),
    });
  const json = join(dir, `summary-${++jsonFiles}.json`);
  const code = await testLoadCommand([...argv, '-q', '--json', json], {
    stdout: discard(),
    stderr: discard(),
    handleSignals: false,
  });
  return { code, summary: JSON.parse(readFileSync(json, 'utf8')) as LoadSummary };
}

describe('the ollama worker', () => {
  let stack: EngineStack;
  let fake: OllamaFakeServer;

  beforeAll(async () => {
    // The fake tells the worker OLLAMA_MODEL (as the image does); MODEL_NAME stays unset.
    stack = await startEngineStack({ worker, startFake });
    fake = ollamaFake(stack);
  });
  afterAll(() => stack.close());
  afterEach(() => control(stack, { hold: false, error: null }));

  it('becomes ready from "Model pull complete:", health-checks /api/version and reports a positive max_perf', async () => {
    const report = await stack.waitForReport((r) => r.loadtime > 0 && r.max_perf > 0);
    expect(readFileSync(stack.modelLog, 'utf8')).toContain(`Model pull complete: ${MODEL}`);
    expect(report.error_msg).toBe('');
    // The fake counts GET /api/version as its health route; Ollama has no /health.
    expect(fake.stats.healthchecks).toBeGreaterThan(0);
    // The benchmark: /api/generate, not streamed, num_predict 500, the model from OLLAMA_MODEL.
    const benchmark = fake.sentAnswers.find((a) => a.path === '/api/generate');
    expect(JSON.parse(benchmark?.body ?? '{}')).toMatchObject({
      model: MODEL,
      done: true,
      eval_count: 500,
    });
  });

  it.each([
    ['/api/generate', { prompt: 'Hi', options: { num_predict: 37 } }, 37],
    ['/api/generate', { input: { prompt: 'Hi', options: { num_predict: 11 } } }, 11],
    ['/api/generate', { prompt: 'Hi', options: { num_predict: 12.9, temperature: 0 } }, 12],
    ['/api/chat', chat({ options: { num_predict: 23 } }), 23],
    ['/api/generate', { prompt: 'Hi' }, 500],
    ['/api/generate', { prompt: 'Hi', options: { num_predict: -1 } }, 500],
    ['/api/chat', chat({ stream: false }), 500],
    ['/v1/completions', { prompt: 'Hi', max_tokens: 19 }, 19],
    ['/v1/chat/completions', chat({ max_completion_tokens: 29 }), 29],
    ['/v1/chat/completions', chat(), 500],
  ] as const)('counts the workload of %s %j as %i', async (route, payload, expected) => {
    await control(stack, { hold: true });
    const call = stack.call(route, payload);
    await stack.waitForReport((r) => r.cur_load === expected);
    await control(stack, { hold: false });
    const response = await call;
    expect(response.status).toBe(200);
  });

  it('passes an NDJSON stream through byte for byte, as Ollama wrote it', async () => {
    const payload = { prompt: 'Why is the sky blue?', options: { num_predict: 6 } };
    const call = postStreaming(
      `${stack.worker.url}/api/generate`,
      stack.signedBody('/api/generate', payload),
    );
    const { status, headers } = await call.headers;
    const text = await call.done;
    expect(status).toBe(200);
    expect(headers['content-type']).toBe('application/x-ndjson');
    expect(text).toBe(fake.sentAnswers.at(-1)?.body);
    const lines = text.trimEnd().split('\n');
    expect(lines).toHaveLength(7);
    expect(JSON.parse(lines[6] ?? '')).toMatchObject({ done: true, eval_count: 6 });
    // And the same bytes as a direct call (the worker filled in the model), but for the clock.
    const direct = await post(`${fake.url}/api/generate`, { ...payload, model: MODEL });
    expect(normalise(text)).toBe(normalise(direct.text));
  });

  it('delivers the first line before Ollama has finished, and a client that leaves aborts the model request', async () => {
    const aborted = fake.stats.aborted;
    const completed = fake.stats.completed;
    const call = postStreaming(
      `${stack.worker.url}/api/chat`,
      stack.signedBody('/api/chat', chat({ options: { num_predict: 20_000 } })),
    );
    await waitFor(() => call.chunks.join('').includes('"done":false'), { label: 'first line' });
    expect(fake.stats.completed).toBe(completed);
    expect(fake.engine.running).toBe(1);
    call.disconnect();
    await waitFor(() => fake.stats.aborted === aborted + 1, { label: 'model request aborted' });
    expect(fake.engine.running).toBe(0);
  });

  it("passes Ollama's errors through with their status and body, native and OpenAI", async () => {
    const cases: [string, Record<string, unknown>, number][] = [
      ['/api/generate', { model: 'mistral:7b', prompt: 'Hi' }, 404],
      // An option the worker does not read reaches Ollama, which refuses it.
      ['/api/chat', chat({ model: MODEL, options: { top_k: 'ten' } }), 500],
      ['/v1/chat/completions', chat({ model: 'mistral:7b' }), 404],
    ];
    for (const [route, payload, status] of cases) {
      const viaWorker = await stack.call(route, payload);
      const direct = await post(`${fake.url}${route}`, payload);
      expect([route, direct.status]).toEqual([route, status]);
      expect([viaWorker.status, viaWorker.text]).toEqual([status, direct.text]);
      expect(viaWorker.headers['content-type']).toBe(direct.headers['content-type']);
    }
    // num_predict is the workload: the worker checks its type itself.
    const badLimit = await stack.call('/api/generate', {
      prompt: 'Hi',
      options: { num_predict: 'x' },
    });
    expect(badLimit.status).toBe(422);
    expect(badLimit.json()).toEqual({
      payload: { 'options.num_predict': 'Invalid input: expected number, received string' },
    });

    await control(stack, { error: { status: 503 } });
    const injected = await stack.call('/api/generate', { prompt: 'Hi' });
    const injectedDirect = await post(`${fake.url}/api/generate`, { model: MODEL, prompt: 'Hi' });
    expect(injectedDirect.status).toBe(503);
    expect([injected.status, injected.text]).toEqual([503, injectedDirect.text]);
  });

  it('passes test_load --verify on the native and the OpenAI routes', async () => {
    for (const route of ['/api/generate', '/api/chat', '/v1/completions', '/v1/chat/completions']) {
      const { code, summary } = await testLoad(
        ...['--worker', 'ollama', '-n', '12', '-rps', '200', '--route', route, '--verify'],
        ...['-k', 'local', '-e', 'ollama', '--autoscaler', stack.autoscaler.url],
      );
      expect([route, code]).toEqual([route, 0]);
      expect(summary.requests).toMatchObject({ sent: 12, succeeded: 12, failed: 0 });
    }
  });

  it("serves a request routed by the local autoscaler's /route/", async () => {
    const routed = await post(`${stack.autoscaler.url}/route/`, {
      endpoint: 'ollama',
      api_key: 'local',
      cost: 16,
    });
    const auth = routed.json() as { url: string };
    expect(auth.url).toBe(stack.worker.url);
    const response = await post(`${auth.url}/api/chat`, {
      auth_data: auth,
      payload: chat({ stream: false, options: { num_predict: 16 } }),
    });
    expect(response.status).toBe(200);
    expect(response.json()).toMatchObject({
      model: MODEL,
      message: { role: 'assistant' },
      done: true,
      eval_count: 16,
    });
  });
});

describe('the ollama worker with a model that fails to pull', () => {
  it('turns errored on the pull failure and reports it', async () => {
    const stack = await startEngineStack({
      worker,
      startFake,
      fake: { failLoad: true },
      waitReady: false,
    });
    try {
      const report = await stack.waitForReport((r) => r.error_msg !== '');
      // `ollama pull` prints its own error first, then the image's line.
      expect(report.error_msg).toBe(
        'Error: pull model manifest:: Error: pull model manifest: file does not exist',
      );
      expect(report.loadtime).toBe(0);
    } finally {
      await stack.close();
    }
  });

  it('turns errored on the image\'s "Failed to pull model:" line alone', async () => {
    const stack = await startEngineStack({
      worker,
      startFake,
      fake: { loadDelayMs: 60_000 },
      waitReady: false,
    });
    try {
      await control(stack, { logLine: `Failed to pull model: ${MODEL}` });
      const report = await stack.waitForReport((r) => r.error_msg !== '');
      expect(report.error_msg).toBe(`Failed to pull model:: Failed to pull model: ${MODEL}`);
    } finally {
      await stack.close();
    }
  });
});

describe("the ollama worker's settings", () => {
  const errorOf = (env: Record<string, string>): ConfigError => {
    try {
      resolveWorker(worker, env);
    } catch (error) {
      if (error instanceof ConfigError) return error;
      throw error;
    }
    throw new Error('expected a ConfigError');
  };

  it('stops start-up without a model id, naming MODEL_NAME and OLLAMA_MODEL', () => {
    const error = errorOf({});
    expect(error.problems).toEqual([
      expect.stringMatching(/^MODEL_NAME: required \(or OLLAMA_MODEL\)/),
    ]);
  });

  it('prefers MODEL_NAME to OLLAMA_MODEL and serves the native and default OpenAI routes', () => {
    const resolved = resolveWorker(worker, { MODEL_NAME: 'a:1b', OLLAMA_MODEL: 'b:2b' });
    expect(resolved.handlers.map((h) => h.route)).toEqual([
      '/api/generate',
      '/api/chat',
      '/v1/completions',
      '/v1/chat/completions',
    ]);
    expect(resolved.benchmarkHandler?.route).toBe('/api/generate');
    expect(resolved.benchmarkHandler?.benchmark).toMatchObject({ runs: 3, concurrency: 10 });
    expect(resolved.modelHealthcheckPath).toBe('/api/version');
    expect(resolved.modelLog).toBe('/var/log/portal/ollama.log');
    expect(resolved.modelServerUrl).toBe('http://127.0.0.1:11434');
    const sample = resolved.benchmarkHandler?.benchmark?.sample() as Record<string, unknown>;
    expect(sample).toMatchObject({ model: 'a:1b', stream: false, options: { num_predict: 500 } });
    expect(String(sample['prompt']).split(' ')).toHaveLength(250);
  });

  it('reads OLLAMA_HOST as Ollama does', () => {
    expect(ollamaHostUrl('127.0.0.1:18000')).toBe('http://127.0.0.1:18000');
    expect(ollamaHostUrl('0.0.0.0')).toBe('http://127.0.0.1:11434');
    expect(ollamaHostUrl(':11500')).toBe('http://127.0.0.1:11500');
    expect(ollamaHostUrl('https://ollama.internal')).toBe('https://ollama.internal');
    expect(ollamaHostUrl('http://[::1]:9000/ollama/')).toBe('http://[::1]:9000/ollama');
    expect(ollamaHostUrl('[::]:11434')).toBe('http://127.0.0.1:11434');
    expect(ollamaHostUrl('ftp://x')).toBeUndefined();
    const resolved = resolveWorker(worker, { OLLAMA_MODEL: 'm', OLLAMA_HOST: '0.0.0.0:18000' });
    expect(resolved.modelServerUrl).toBe('http://127.0.0.1:18000');
  });

  it('names every bad variable at once', () => {
    const error = errorOf({
      OLLAMA_MODEL: 'm',
      OLLAMA_HOST: 'ftp://x',
      BENCHMARK_ROUTE: '/api/embed',
      OPENAI_ROUTES: '/v1/chat/completions,/v1/nope',
    });
    expect(error.problems.map((p) => p.split(':')[0])).toEqual([
      'BENCHMARK_ROUTE',
      'OPENAI_ROUTES',
      'OLLAMA_HOST',
    ]);
  });

  it('serves /v1/embeddings when OPENAI_ROUTES names it, and can benchmark an OpenAI route', () => {
    const resolved = resolveWorker(worker, {
      OLLAMA_MODEL: 'm',
      OPENAI_ROUTES: '/v1/chat/completions,/v1/embeddings',
      BENCHMARK_ROUTE: '/v1/chat/completions',
    });
    expect(resolved.handlers.map((h) => h.route)).toEqual([
      '/api/generate',
      '/api/chat',
      '/v1/chat/completions',
      '/v1/embeddings',
    ]);
    expect(resolved.benchmarkHandler?.route).toBe('/v1/chat/completions');
  });
});

describe("test_load's --verify for Ollama", () => {
  const routes = ollamaLoadTest().routes;
  const verify = (route: string, answer: { payload: unknown; text: string; type: string }) => {
    const lines = answer.text
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as unknown);
    const streamed = answer.type === 'application/x-ndjson';
    return routes[route]?.verify?.({
      route,
      payload: answer.payload,
      status: 200,
      headers: { 'content-type': answer.type },
      text: answer.text,
      json: streamed ? undefined : lines[0],
      events: streamed ? lines : undefined,
    });
  };
  const metrics = {
    total_duration: 1,
    load_duration: 1,
    prompt_eval_count: 3,
    prompt_eval_duration: 1,
    eval_count: 2,
    eval_duration: 1,
  };
  const token = (text: string) => ({
    model: MODEL,
    created_at: 'now',
    response: text,
    done: false,
  });
  const last = {
    model: MODEL,
    response: '',
    done: true,
    done_reason: 'length',
    context: [1],
    ...metrics,
  };
  const ndjson = (...objects: unknown[]) => objects.map((o) => `${JSON.stringify(o)}\n`).join('');
  const payload = { prompt: 'x', options: { num_predict: 2 } };

  it('accepts a stream that ends in a done: true line with the metrics', () => {
    const text = ndjson(token('a'), token(' b'), last);
    expect(
      verify('/api/generate', { payload, text, type: 'application/x-ndjson' }),
    ).toBeUndefined();
  });

  it('rejects a stream without its final line, a final line without metrics, and SSE framing', () => {
    const cut = ndjson(token('a'), token(' b'));
    expect(verify('/api/generate', { payload, text: cut, type: 'application/x-ndjson' })).toBe(
      'the last line does not say done: true',
    );
    const noCount: Record<string, unknown> = { ...last };
    delete noCount['eval_count'];
    const bare = ndjson(token('a'), noCount);
    expect(verify('/api/generate', { payload, text: bare, type: 'application/x-ndjson' })).toBe(
      'the last line has no eval_count',
    );
    const sse = ndjson(token('a'), last);
    expect(verify('/api/generate', { payload, text: sse, type: 'text/event-stream' })).toMatch(
      /application\/x-ndjson/,
    );
  });

  it('rejects an answer with more tokens than num_predict allowed', () => {
    const text = ndjson({ ...last, response: 'a b c', eval_count: 3 });
    const single = { ...payload, stream: false };
    expect(verify('/api/generate', { payload: single, text, type: 'application/json' })).toBe(
      'asked for at most 2 tokens, eval_count says 3',
    );
  });
});
