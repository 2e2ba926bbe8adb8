/**
 * The TGI worker (workers/tgi) against the TGI fake, on loopback: readiness from TGI's JSON
 * `Connected` line, the fatal line, the benchmark, the workload, byte-identical unbuffered streams,
 * TGI's errors passed through, a client that leaves, test_load --verify and the autoscaler's /route/.
 */
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LogAction } from '../../lib/index.ts';
import { TGI_LOG_ACTIONS } from '../../lib/entry-presets.ts';
import { ConfigError, resolveWorker } from '../../lib/entry-server.ts';
import { type LoadSummary } from '../../lib/entry-load-test.ts';
import type { RecordEvent } from '../../lib/lifecycle/channel.ts';
import { testLoadCommand } from '../../src/commands/test-load.ts';
import type { FakeServerOptions } from '../../src/stand-ins/fakes/common.ts';
import { startTgiFake } from '../../src/stand-ins/fakes/tgi.ts';
import tgi from '../../workers/tgi/server.ts';
import { startEngineStack, type EngineStack } from '../helpers/engine-stack.ts';
import { post, postStreaming } from '../helpers/request.ts';
import { waitFor } from '../helpers/wait-for.ts';

// Fast enough for a quick benchmark; slow enough that an 8000-token answer is still streaming
// long after its first token.
const BATCHING = { tokensPerSecondPerSequence: 2_000, tokensPerSecond: 20_000 };
const startFake = (options: FakeServerOptions) => startTgiFake({ ...options, batching: BATCHING });

const dir = mkdtempSync(join(tmpdir(), 'tsworker-tgi-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const payload = (maxNewTokens: number, extra: Record<string, unknown> = {}) => ({
  inputs: 'What is Deep Learning?',
  parameters: { max_new_tokens: maxNewTokens, ...extra },
});

function sink(): { stream: Writable; text: () => string } {
  let text = '';
  const stream = new Writable({
    write(chunk: Buffer | string, _encoding, callback) {
      text += chunk.toString();
      callback();
    },
  });
  return { stream, text: () => text };
}

describe('tgi worker against the TGI fake', () => {
  let stack: EngineStack;
  const events: RecordEvent[] = [];

  beforeAll(async () => {
    stack = await startEngineStack({ worker: tgi, startFake });
    stack.worker.lifecycle.subscribe((event) => {
      if (event.kind !== 'finished') events.push(event);
    });
  });
  afterAll(() => stack.close());

  const direct = (route: string, body: unknown) => post(`${stack.fake.url}${route}`, body);

  it('becomes ready from the JSON Connected line and benchmarks max_perf in tokens per second', () => {
    const lines = readFileSync(stack.modelLog, 'utf8').trimEnd().split('\n');
    expect(lines.at(-1)).toContain(
      '"message":"Connected","target":"text_generation_router::server"',
    );
    const readiness = stack.worker.readiness;
    expect(readiness.phase).toBe('ready');
    // Workload is max_new_tokens: the fake cannot give more tokens per second than its budget.
    expect(readiness.maxPerf).toBeGreaterThan(0);
    expect(readiness.maxPerf).toBeLessThan(BATCHING.tokensPerSecond * 1.5);
    // The benchmark's requests are the reference's: /generate, 128 new tokens, no full text.
    expect(stack.fake.stats.received).toBeGreaterThanOrEqual(30);
  });

  it('counts parameters.max_new_tokens as the workload, bare or wrapped in input', async () => {
    const bare = await stack.call('/generate', payload(37));
    expect(bare.status).toBe(200);
    const wrapped = await stack.call('/generate', { input: payload(41) });
    expect(wrapped.status).toBe(200);
    const workloads = events.filter((e) => e.kind === 'succeeded').map((e) => e.record.workload);
    expect(workloads).toContain(37);
    expect(workloads).toContain(41);
  });

  it('answers 422 naming max_new_tokens when it is absent, without calling the model', async () => {
    const before = stack.fake.stats.received;
    const missing = await stack.call('/generate', { inputs: 'Hi', parameters: { details: true } });
    expect(missing.status).toBe(422);
    expect(missing.json()).toEqual({
      payload: { 'parameters.max_new_tokens': 'missing parameter' },
    });
    const noParameters = await stack.call('/generate_stream', { inputs: 'Hi' });
    expect(noParameters.status).toBe(422);
    expect(noParameters.text).toContain('parameters.max_new_tokens');
    const typed = await stack.call('/generate', payload(0));
    expect(typed.status).toBe(422);
    expect(typed.text).toContain('parameters.max_new_tokens');
    expect(stack.fake.stats.received).toBe(before);
  });

  it('passes /generate through unchanged, TGI headers included', async () => {
    const body = payload(12, { details: true });
    const [proxied, model] = await Promise.all([
      stack.call('/generate', body),
      direct('/generate', body),
    ]);
    expect(proxied.status).toBe(200);
    expect(proxied.text).toBe(model.text);
    expect(proxied.headers['x-generated-tokens']).toBe('12');
    expect(proxied.headers['x-prompt-tokens']).toBe(model.headers['x-prompt-tokens']);
  });

  it('streams /generate_stream byte-identical to a direct call: data: without space, no [DONE]', async () => {
    const body = payload(25, { details: true });
    const call = postStreaming(
      `${stack.worker.url}/generate_stream`,
      stack.signedBody('/generate_stream', body),
    );
    const proxied = await call.done;
    const model = await direct('/generate_stream', body);
    expect((await call.headers).headers['content-type']).toBe('text/event-stream');
    expect(proxied).toBe(model.text);
    expect(proxied.startsWith('data:{"index":1,')).toBe(true);
    expect(proxied).not.toContain('[DONE]');
  });

  it('streams unbuffered and aborts the model request when the client leaves mid-stream', async () => {
    const aborted = stack.fake.stats.aborted;
    const completed = stack.fake.stats.completed;
    const call = postStreaming(
      `${stack.worker.url}/generate_stream`,
      stack.signedBody('/generate_stream', payload(8000)),
    );
    await waitFor(() => call.chunks.join('').includes('"index":1,'), { label: 'first token' });
    // 8000 tokens take the fake seconds: the first token came while the model was still generating.
    expect(stack.fake.stats.inFlight).toBe(1);
    expect(stack.fake.stats.completed).toBe(completed);
    call.disconnect();
    await waitFor(() => stack.fake.stats.aborted === aborted + 1, {
      label: 'model request aborted',
    });
    await waitFor(() => events.some((e) => e.kind === 'cancelled'), { label: 'counted cancelled' });
  });

  it('passes TGI errors through with their status and body (422, 424, 429)', async () => {
    const invalid = payload(5, { temperature: 0 });
    const [proxied422, model422] = await Promise.all([
      stack.call('/generate', invalid),
      direct('/generate', invalid),
    ]);
    expect(proxied422.status).toBe(422);
    expect(proxied422.json()).toEqual({
      error: 'Input validation error: `temperature` must be strictly positive',
      error_type: 'validation',
    });
    expect(proxied422.text).toBe(model422.text);

    try {
      for (const status of [424, 429]) {
        stack.fake.control({ error: { status } });
        const proxied = await stack.call('/generate', payload(5));
        const model = await direct('/generate', payload(5));
        expect(proxied.status).toBe(status);
        expect(proxied.text).toBe(model.text);
        expect(proxied.json()).toMatchObject({
          error_type: status === 424 ? 'generation' : 'overloaded',
        });
        // In a stream TGI answers 200 and reports the error as one event; it arrives as sent.
        const streamed = await stack.call('/generate_stream', payload(5));
        expect(streamed.status).toBe(200);
        expect(streamed.text).toBe(`data:${model.text}\n\n`);
      }
    } finally {
      stack.fake.control({ error: null });
    }
  });

  it('passes test_load --verify on /generate and /generate_stream', async () => {
    for (const route of ['/generate', '/generate_stream']) {
      const json = join(dir, `summary-${route.slice(1)}.json`);
      const out = sink();
      const err = sink();
      const code = await testLoadCommand(
        [
          ...['--worker', 'tgi', '-n', '12', '-rps', '200', '--route', route],
          ...['-k', 'local', '-e', 'tgi', '--autoscaler', stack.autoscaler.url],
          ...['--verify', '--json', json, '-q'],
        ],
        { stdout: out.stream, stderr: err.stream, handleSignals: false },
      );
      expect(code, err.text()).toBe(0);
      const summary = JSON.parse(readFileSync(json, 'utf8')) as LoadSummary;
      expect(summary.requests).toMatchObject({ sent: 12, succeeded: 12, failed: 0 });
      expect(summary.errors.byCause.verify).toBe(0);
    }
  });

  it('serves a request routed by the local autoscaler end to end', async () => {
    const route = await post(`${stack.autoscaler.url}/route/`, {
      endpoint: 'tgi',
      api_key: 'local',
      cost: 16,
    });
    expect(route.status).toBe(200);
    const authData = route.json() as { url: string };
    expect(authData.url).toBe(stack.worker.url);
    const answer = await post(`${authData.url}/generate`, {
      auth_data: authData,
      payload: payload(16),
    });
    expect(answer.status).toBe(200);
    expect(answer.json()).toEqual({ generated_text: expect.any(String) });
    expect(answer.headers['x-generated-tokens']).toBe('16');
  });
});

describe('tgi worker readiness and configuration', () => {
  it('takes the older router target as loaded too, and never the text-format line', async () => {
    const textLine =
      '2026-01-08T10:00:00.000000Z  INFO text_generation_router::server: router/src/server.rs:2302: Connected';
    expect(TGI_LOG_ACTIONS.onLoad.some((pattern) => textLine.includes(pattern))).toBe(false);

    // The worker reads its own log: only the line we write there can make it ready.
    const log = join(dir, 'older-router.log');
    writeFileSync(log, `${textLine}\n`);
    const stack = await startEngineStack({
      worker: tgi,
      startFake,
      env: { MODEL_LOG: log },
      waitReady: false,
    });
    try {
      appendFileSync(
        log,
        '{"timestamp":"2024-03-09T05:08:19.961164Z","level":"INFO","message":"Connected","target":"text_generation_router","filename":"router/src/main.rs","line_number":329}\n',
      );
      const report = await stack.waitForReport((r) => r.loadtime > 0 && r.max_perf > 0);
      expect(report.error_msg).toBe('');
    } finally {
      await stack.close();
    }
  });

  it('turns errored on the launcher fatal line Error: ShardCannotStart', async () => {
    const stack = await startEngineStack({
      worker: tgi,
      startFake,
      fake: { failLoad: true },
      waitReady: false,
    });
    try {
      const report = await stack.waitForReport((r) => r.error_msg !== '');
      expect(report.error_msg).toContain('Error: ShardCannotStart');
      expect(stack.worker.readiness.phase).toBe('errored');
    } finally {
      await stack.close();
    }
  });

  it('takes its defaults from the reference and validates its overrides at start-up', () => {
    const worker = resolveWorker(tgi, {});
    expect(worker.name).toBe('tgi');
    expect(worker.modelServerUrl).toBe('http://127.0.0.1:5001');
    expect(worker.modelLog).toBe('/workspace/infer.log');
    expect(worker.modelHealthcheckPath).toBe('/health');
    expect(worker.handlers.map((h) => h.route)).toEqual(['/generate', '/generate_stream']);
    expect(worker.handlers.map((h) => h.benchmark !== undefined)).toEqual([true, false]);
    expect(worker.handlers.every((h) => h.allowParallel && h.maxQueueTime === 600)).toBe(true);

    const custom = resolveWorker(tgi, {
      BENCHMARK_ROUTE: '/generate_stream',
      OPENAI_ROUTES: '/v1/chat/completions',
      MODEL_LOAD_LOG_MSG: 'Connected',
      MODEL_HEALTH_ENDPOINT: '/ping',
    });
    expect(custom.handlers.map((h) => h.route)).toEqual([
      '/generate',
      '/generate_stream',
      '/v1/chat/completions',
    ]);
    expect(custom.handlers.map((h) => h.benchmark !== undefined)).toEqual([false, true, false]);
    const onLoad = custom.logActions.filter(([action]) => action === LogAction.ModelLoaded);
    expect(onLoad.map(([, pattern]) => pattern)).toEqual(['Connected']);
    expect(custom.modelHealthcheckPath).toBe('/ping');

    let error: unknown;
    try {
      resolveWorker(tgi, { BENCHMARK_ROUTE: '/v1/completions', OPENAI_ROUTES: '/v1/embeddings' });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect(String((error as Error).message)).toContain('BENCHMARK_ROUTE');
    expect(String((error as Error).message)).toContain('OPENAI_ROUTES');
  });
});
