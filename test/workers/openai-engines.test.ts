/**
 * The vllm, sglang and llama workers (and the openai alias) against their engine's fake, on
 * loopback: readiness from the engine's own log lines, the fatal lines, the benchmark, the workload
 * of each request, streams passed through byte for byte and unbuffered, errors passed through, a
 * client that leaves, test_load --verify, and a request routed by the local autoscaler.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type WorkerFactory } from '../../lib/index.ts';
import { resolveWorker } from '../../lib/entry-server.ts';
import { type LoadSummary } from '../../lib/entry-load-test.ts';
import { testLoadCommand } from '../../src/commands/test-load.ts';
import type { FakeServerOptions } from '../../src/stand-ins/fakes/common.ts';
import { OpenAIFakeServer, startOpenAIFake } from '../../src/stand-ins/fakes/openai.ts';
import type { OpenAIVariant } from '../../src/stand-ins/fakes/openai.ts';
import llamaWorker from '../../workers/llama/server.ts';
import openaiAlias from '../../workers/openai/server.ts';
import sglangWorker from '../../workers/sglang/server.ts';
import vllmWorker from '../../workers/vllm/server.ts';
import { startEngineStack, type EngineStack } from '../helpers/engine-stack.ts';
import { post, postStreaming } from '../helpers/request.ts';
import { waitFor } from '../helpers/wait-for.ts';

interface Engine {
  readonly name: OpenAIVariant;
  readonly worker: WorkerFactory;
  readonly loadLine: string;
  /** The onError pattern the fake's fatal lines trip first. */
  readonly fatalPattern: string;
}

const ENGINES: readonly Engine[] = [
  {
    name: 'vllm',
    worker: vllmWorker as WorkerFactory,
    loadLine: 'INFO:     Application startup complete.',
    fatalPattern: 'Traceback (most recent call last):',
  },
  {
    name: 'sglang',
    worker: sglangWorker as WorkerFactory,
    loadLine: 'The server is fired up and ready to roll!',
    fatalPattern: 'Traceback (most recent call last):',
  },
  {
    name: 'llama',
    worker: llamaWorker as WorkerFactory,
    loadLine: 'srv    load_model: model loaded',
    fatalPattern: 'error loading model',
  },
];

/** Fast enough for a quick benchmark, slow enough that a 20000-token stream is still running. */
const BATCHING = {
  tokensPerSecondPerSequence: 4_000,
  tokensPerSecond: 400_000,
  prefillMsPerToken: 0,
  maxRunning: 64,
};

const startFake =
  (variant: OpenAIVariant) =>
  (options: FakeServerOptions): Promise<OpenAIFakeServer> =>
    startOpenAIFake({ ...options, variant, batching: BATCHING });

const openaiFake = (stack: EngineStack): OpenAIFakeServer => {
  if (!(stack.fake instanceof OpenAIFakeServer)) throw new Error('not the OpenAI fake');
  return stack.fake;
};

const control = (stack: EngineStack, command: unknown) =>
  post(`${stack.fake.url}/_control`, command).then((r) => expect(r.status).toBe(200));

/** Ids and timestamps differ between two answers; everything else must not. */
const normalise = (text: string): string =>
  text.replace(/"id":"[^"]*"/g, '"id":"-"').replace(/"created":\d+/g, '"created":0');

const chat = (extra: Record<string, unknown> = {}) => ({
  messages: [{ role: 'user', content: 'Say hello' }],
  ...extra,
});

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'openai-engines-'));
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

describe.each(ENGINES)('the $name worker', ({ name, worker, loadLine }) => {
  let stack: EngineStack;
  let fake: OpenAIFakeServer;

  beforeAll(async () => {
    stack = await startEngineStack({ worker, startFake: startFake(name) });
    fake = openaiFake(stack);
  });
  afterAll(() => stack.close());
  afterEach(() => control(stack, { hold: false, error: null }));

  it(`becomes ready from ${name}'s load line and reports a positive max_perf`, async () => {
    const report = await stack.waitForReport((r) => r.loadtime > 0 && r.max_perf > 0);
    expect(readFileSync(stack.modelLog, 'utf8')).toContain(loadLine);
    expect(report.max_perf).toBeGreaterThan(0);
    expect(report.error_msg).toBe('');
    // The benchmark sent the reference's requests: 500 tokens each, to completions.
    expect(fake.sentAnswers.some((a) => a.body.includes('"completion_tokens":500'))).toBe(true);
  });

  it.each([
    ['/v1/completions', { prompt: 'Hi', max_tokens: 37 }, 37],
    ['/v1/completions', { input: { prompt: 'Hi', max_tokens: 11 } }, 11],
    ['/v1/chat/completions', chat({ max_completion_tokens: 23 }), 23],
    ['/v1/chat/completions', chat({ max_tokens: 19 }), 19],
    ['/v1/chat/completions', chat(), 500],
    ['/v1/completions', { prompt: 'Hi' }, 500],
  ] as const)('counts the workload of %s %j as %i', async (route, payload, expected) => {
    await control(stack, { hold: true });
    const body = stack.signedBody(route, payload);
    const { request_idx: requestIdx } = body['auth_data'] as { request_idx: number };
    const call = post(`${stack.worker.url}${route}`, body);
    // The report that lists this request as working carries its workload.
    await stack.waitForReport(
      (r) => r.working_request_idxs.includes(requestIdx) && r.cur_load === expected,
    );
    await control(stack, { hold: false });
    const response = await call;
    expect(response.status).toBe(200);
    if (expected !== 500) {
      expect(response.json()).toMatchObject({ usage: { completion_tokens: expected } });
    }
  });

  it('passes a stream through byte for byte, as the engine wrote it', async () => {
    const payload = chat({ max_tokens: 6, stream: true, stream_options: { include_usage: true } });
    const call = postStreaming(
      `${stack.worker.url}/v1/chat/completions`,
      stack.signedBody('/v1/chat/completions', payload),
    );
    const { status, headers } = await call.headers;
    const text = await call.done;
    expect(status).toBe(200);
    expect(headers['content-type']).toMatch(/^text\/event-stream/);
    expect(text).toBe(fake.sentAnswers.at(-1)?.body);
    expect(text.endsWith('data: [DONE]\n\n')).toBe(true);
    // And the same bytes as a direct call, but for the id and the timestamp.
    const direct = await post(`${fake.url}/v1/chat/completions`, payload);
    expect(normalise(text)).toBe(normalise(direct.text));
  });

  it('delivers the first event before the engine has finished, and a client that leaves aborts the model request', async () => {
    const aborted = fake.stats.aborted;
    const completed = fake.stats.completed;
    const call = postStreaming(
      `${stack.worker.url}/v1/completions`,
      stack.signedBody('/v1/completions', { prompt: 'Hi', max_tokens: 20_000, stream: true }),
    );
    await waitFor(() => call.chunks.join('').includes('data: {'), { label: 'first event' });
    expect(fake.stats.completed).toBe(completed);
    expect(fake.engine.running).toBe(1);
    call.disconnect();
    await waitFor(() => fake.stats.aborted === aborted + 1, { label: 'model request aborted' });
    expect(fake.engine.running).toBe(0);
  });

  it("passes the engine's errors through with their status and body", async () => {
    const badRequest = { prompt: 'Hi', max_tokens: 0 };
    const viaWorker = await stack.call('/v1/completions', badRequest);
    const direct = await post(`${fake.url}/v1/completions`, badRequest);
    expect(direct.status).toBe(400);
    expect([viaWorker.status, viaWorker.text]).toEqual([400, direct.text]);

    await control(stack, { error: { status: 500, message: 'engine exploded' } });
    const injected = await stack.call('/v1/chat/completions', chat({ max_tokens: 2 }));
    const injectedDirect = await post(`${fake.url}/v1/chat/completions`, chat({ max_tokens: 2 }));
    expect(injectedDirect.status).toBe(500);
    expect([injected.status, injected.text]).toEqual([500, injectedDirect.text]);
  });

  it('passes test_load --verify on completions and chat', async () => {
    for (const route of ['/v1/completions', '/v1/chat/completions']) {
      const { code, summary } = await testLoad(
        ...['--worker', name, '-n', '12', '-rps', '200', '--route', route, '--verify'],
        ...['-k', 'local', '-e', name, '--autoscaler', stack.autoscaler.url],
      );
      expect([route, code]).toEqual([route, 0]);
      expect(summary.requests).toMatchObject({ sent: 12, succeeded: 12, failed: 0 });
    }
  });

  it("serves a request routed by the local autoscaler's /route/", async () => {
    const routed = await post(`${stack.autoscaler.url}/route/`, {
      endpoint: name,
      api_key: 'local',
      cost: 16,
    });
    const auth = routed.json() as { url: string };
    expect(auth.url).toBe(stack.worker.url);
    const response = await post(`${auth.url}/v1/completions`, {
      auth_data: auth,
      payload: { prompt: 'Routed here', max_tokens: 16 },
    });
    expect(response.status).toBe(200);
    expect(response.json()).toMatchObject({
      object: 'text_completion',
      model: 'Qwen/Qwen3-8B',
      usage: { completion_tokens: 16 },
    });
  });
});

describe.each(ENGINES)(
  'the $name worker with a model that fails',
  ({ name, worker, fatalPattern }) => {
    it("turns errored on the engine's fatal lines and reports it", async () => {
      const stack = await startEngineStack({
        worker,
        startFake: startFake(name),
        fake: { failLoad: true },
        waitReady: false,
      });
      try {
        const report = await stack.waitForReport((r) => r.error_msg !== '');
        expect(report.error_msg.startsWith(`${fatalPattern}: `)).toBe(true);
        expect(report.loadtime).toBe(0);
      } finally {
        await stack.close();
      }
    });
  },
);

describe('the openai worker', () => {
  it('is the vllm worker under its old name', () => {
    const env = { MODEL_NAME: 'org/model' };
    const alias = resolveWorker(openaiAlias as WorkerFactory, env);
    const vllm = resolveWorker(vllmWorker as WorkerFactory, env);
    expect(alias.name).toBe('vllm');
    expect(alias.logActions).toEqual(vllm.logActions);
    expect(alias.handlers.map((h) => h.route)).toEqual(vllm.handlers.map((h) => h.route));
  });
});
