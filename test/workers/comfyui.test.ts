/**
 * The ComfyUI worker (workers/comfyui) against the ComfyUI fake (the API wrapper and ComfyUI), on
 * loopback: readiness through the lifecycle hook (both probes, or the wrapper's BACKENDS_READY
 * line), fatal lines, the benchmark, the workload of each request, the SSE stream passed through
 * byte for byte and unbuffered, the wrapper's errors passed through, a client that leaves,
 * test_load --verify and a request routed by the local autoscaler.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { comfyuiWorkload, ComfyUIRequest } from '../../lib/entry-presets.ts';
import { ConfigError, resolveWorker } from '../../lib/entry-server.ts';
import { type LoadSummary } from '../../lib/entry-load-test.ts';
import type { RecordEvent } from '../../lib/lifecycle/channel.ts';
import { testLoadCommand } from '../../src/commands/test-load.ts';
import { startComfyUIFake } from '../../src/stand-ins/fakes/comfyui.ts';
import type { ComfyUIFake, ComfyUIFakeOptions } from '../../src/stand-ins/fakes/comfyui.ts';
import type { FakeServerOptions } from '../../src/stand-ins/fakes/common.ts';
import comfyui from '../../workers/comfyui/server.ts';
import { startEngineStack, type EngineStack } from '../helpers/engine-stack.ts';
import { get, post, postStreaming } from '../helpers/request.ts';
import { waitFor } from '../helpers/wait-for.ts';

// A 512² × 20-step job takes the fake 10 ms.
const FAST: ComfyUIFakeOptions = { msPerStep: 0.5, backendPollMs: 5 };
const FAST_READINESS = { COMFYUI_READY_POLL_SECONDS: '0.02' };

const dir = mkdtempSync(join(tmpdir(), 'tsworker-comfyui-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface ComfyStack extends EngineStack {
  readonly fake: ComfyUIFake;
  /** Bodies the wrapper received, in order. */
  readonly received: unknown[];
}

async function startComfyStack(
  options: {
    fake?: ComfyUIFakeOptions;
    env?: Record<string, string>;
    waitReady?: boolean;
    /** Runs on the fake before the worker starts. */
    prepare?: (fake: ComfyUIFake) => void;
  } = {},
): Promise<ComfyStack> {
  const received: unknown[] = [];
  const stack = await startEngineStack({
    worker: comfyui,
    startFake: async (o: FakeServerOptions) => {
      const fake = await startComfyUIFake({ ...o, ...FAST, ...options.fake });
      fake.on('request', ({ body }) => received.push(body));
      options.prepare?.(fake);
      return fake;
    },
    env: { ...FAST_READINESS, ...options.env },
    ...(options.waitReady === undefined ? {} : { waitReady: options.waitReady }),
  });
  return Object.assign(stack, { fake: stack.fake as ComfyUIFake, received });
}

const text2image = (modifications: Record<string, unknown> = {}, extra: object = {}) => ({
  input: {
    modifier: 'Text2Image',
    modifications: { prompt: 'a lighthouse at dusk', ...modifications },
    ...extra,
  },
});

const SAVE_WORKFLOW = {
  '3': { class_type: 'KSampler', inputs: { steps: 2, seed: 1 } },
  '9': { class_type: 'SaveImage', inputs: { filename_prefix: 'custom', images: ['8', 0] } },
};

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

describe('comfyui worker against the wrapper fake', () => {
  let stack: ComfyStack;
  const events: RecordEvent[] = [];

  beforeAll(async () => {
    // MAX_QUEUE_SIZE 1: the worker sends one job at a time, other clients can fill the wrapper.
    stack = await startComfyStack({ fake: { maxQueueSize: 1 } });
    stack.worker.lifecycle.subscribe((event) => {
      if (event.kind !== 'finished') events.push(event);
    });
  });
  afterAll(() => stack.close());

  const succeededWorkloads = () =>
    events.filter((e) => e.kind === 'succeeded').map((e) => e.record.workload);

  it('benchmarks serially with the Text2Image sample and reports max_perf in its unit', () => {
    const readiness = stack.worker.readiness;
    expect(readiness.phase).toBe('ready');
    expect(readiness.maxPerf).toBeGreaterThan(0);
    // Warm-up plus the runs, every one the reference's sample, wrapped as the wrapper needs it.
    expect(stack.received.length).toBeGreaterThanOrEqual(2);
    for (const body of stack.received) {
      expect(body).toMatchObject({
        input: {
          request_id: expect.stringMatching(/^test-/) as unknown,
          modifier: 'Text2Image',
          modifications: { width: 512, height: 512, steps: 20 },
        },
      });
      // One such job is the unit of max_perf: 100.
      expect(comfyuiWorkload(ComfyUIRequest.parse(body))).toBe(100);
    }
  });

  it('counts 100 scaled by pixels × steps, 100 for a workflow_json, bare or wrapped in input', async () => {
    const big = await stack.call(
      '/generate/sync',
      text2image({ width: 1024, height: 1024, steps: 40 }),
    );
    expect(big.status).toBe(200);
    const stepsOnly = await stack.call('/generate/sync', text2image({ steps: 10 }).input);
    expect(stepsOnly.status).toBe(200);
    const noSize = await stack.call('/generate/sync', text2image());
    expect(noSize.status).toBe(200);
    const workflow = await stack.call('/generate/sync', {
      input: { workflow_json: SAVE_WORKFLOW },
    });
    expect(workflow.status).toBe(200);
    expect(succeededWorkloads().slice(-4)).toEqual([800, 50, 100, 100]);
    // The bare request reached the wrapper in its envelope.
    expect(stack.received.at(-3)).toEqual({
      input: {
        modifier: 'Text2Image',
        modifications: { prompt: 'a lighthouse at dusk', steps: 10 },
      },
    });
  });

  it('answers 422 naming the field when neither modifier nor workflow_json is given', async () => {
    const before = stack.fake.stats.received;
    const neither = await stack.call('/generate/sync', { input: { request_id: 'x' } });
    expect(neither.status).toBe(422);
    expect(neither.json()).toEqual({
      payload: {
        workflow_json:
          'missing parameter: give workflow_json, or modifier (e.g. "Text2Image") with modifications',
      },
    });
    const typed = await stack.call('/generate/sync', text2image({ steps: 'many' }));
    expect(typed.status).toBe(422);
    expect(typed.text).toContain('modifications.steps');
    expect(stack.fake.stats.received).toBe(before);
  });

  it('returns the wrapper Result with its output list from /generate/sync', async () => {
    const answer = await stack.call('/generate/sync', text2image({}, { request_id: 'sync-1' }));
    expect(answer.status).toBe(200);
    expect(answer.headers['content-type']).toBe('application/json');
    expect(answer.json()).toMatchObject({
      id: 'sync-1',
      status: 'completed',
      output: [{ node_id: '9', output_type: 'images', type: 'output' }],
    });
  });

  it('streams /generate/stream byte-identical to what the wrapper wrote', async () => {
    const call = postStreaming(
      `${stack.worker.url}/generate/stream`,
      stack.signedBody('/generate/stream', text2image({ steps: 6 }, { request_id: 'bytes' })),
    );
    const proxied = await call.done;
    const { headers } = await call.headers;
    expect(headers['content-type']).toBe('text/event-stream; charset=utf-8');
    expect(proxied).toBe(stack.fake.streamTranscript('bytes'));
    expect(proxied).toContain('"message": "Progress: ');
    expect(proxied).toMatch(
      /data: \{"request_id": "bytes", "status": "final_result", "result": \{/,
    );
  });

  it('streams progress unbuffered: events arrive while the job is still held', async () => {
    stack.fake.control({ hold: true });
    try {
      const completed = stack.fake.stats.completed;
      const call = postStreaming(
        `${stack.worker.url}/generate/stream`,
        stack.signedBody('/generate/stream', text2image({}, { request_id: 'live' })),
      );
      await waitFor(() => call.chunks.join('').includes('"status": "processing"'), {
        label: 'the processing event',
      });
      // The job has not finished: the wrapper is still answering it.
      expect(stack.fake.stats.inFlight).toBe(1);
      expect(stack.fake.stats.completed).toBe(completed);
      expect(call.chunks.join('')).not.toContain('final_result');
      stack.fake.control({ hold: false });
      expect(await call.done).toContain('"status": "final_result"');
    } finally {
      stack.fake.control({ hold: false });
    }
  });

  it('aborts the wrapper request when the client leaves mid-job', async () => {
    stack.fake.control({ hold: true });
    try {
      const aborted = stack.fake.stats.aborted;
      const call = postStreaming(
        `${stack.worker.url}/generate/sync`,
        stack.signedBody('/generate/sync', text2image({}, { request_id: 'leaver' })),
      );
      await waitFor(() => stack.fake.stats.inFlight === 1, { label: 'job at the wrapper' });
      call.disconnect();
      await waitFor(() => stack.fake.stats.aborted === aborted + 1, {
        label: 'wrapper request aborted',
      });
      // The wrapper cancelled the job (its cancel-on-disconnect).
      const result = await get(`${stack.fake.url}/result/leaver`);
      expect(result.status).toBe(499);
      expect(result.json()).toMatchObject({ status: 'cancelled' });
      await waitFor(() => events.some((e) => e.kind === 'cancelled'), {
        label: 'counted cancelled',
      });
    } finally {
      stack.fake.control({ hold: false });
    }
  });

  it('passes a failed Result through with its 500 and body', async () => {
    const invalid = await stack.call('/generate/sync', {
      input: { request_id: 'bad', workflow_json: { '1': { inputs: {} } } },
    });
    expect(invalid.status).toBe(500);
    const body = invalid.json() as Record<string, unknown>;
    expect(body).toMatchObject({
      id: 'bad',
      status: 'failed',
      message: 'Generation failed: ComfyUI node errors: {}',
    });
    // The same Result the wrapper keeps for the job.
    expect((await get(`${stack.fake.url}/result/bad`)).json()).toEqual(body);

    stack.fake.control({ error: { status: 500, message: 'CUDA out of memory' } });
    try {
      const oom = await stack.call('/generate/sync', text2image());
      expect(oom.status).toBe(500);
      expect(oom.json()).toMatchObject({
        status: 'failed',
        message: 'Generation failed: CUDA out of memory',
      });
    } finally {
      stack.fake.control({ error: null });
    }
  });

  it('passes the wrapper 503 queue-full answer through with Retry-After and its body', async () => {
    stack.fake.control({ hold: true });
    const direct = [
      postStreaming(`${stack.fake.url}/generate/sync`, text2image()),
      postStreaming(`${stack.fake.url}/generate/sync`, text2image()),
    ];
    try {
      await waitFor(async () => {
        const info = (await get(`${stack.fake.url}/queue-info`)).json() as {
          generation_queue_size: number;
        };
        return info.generation_queue_size === 1;
      });
      const full = await stack.call('/generate/sync', text2image({}, { request_id: 'full' }));
      expect(full.status).toBe(503);
      expect(full.headers['retry-after']).toBe('5');
      expect(full.json()).toEqual({
        id: 'full',
        message: 'Worker at capacity (1 in flight); retry shortly',
        status: 'failed',
        comfyui_response: {},
        output: [],
        timings: {},
      });
    } finally {
      stack.fake.control({ hold: false });
      await Promise.all(direct.map((call) => call.done));
    }
  });

  it('passes test_load --verify on /generate/sync and /generate/stream', async () => {
    for (const route of ['/generate/sync', '/generate/stream']) {
      const json = join(dir, `summary-${route.replaceAll('/', '_')}.json`);
      const out = sink();
      const err = sink();
      const code = await testLoadCommand(
        [
          ...['--worker', 'comfyui', '-n', '10', '-rps', '100', '--route', route],
          ...['-k', 'local', '-e', 'comfyui', '--autoscaler', stack.autoscaler.url],
          ...['--verify', '--json', json, '-q'],
        ],
        { stdout: out.stream, stderr: err.stream, handleSignals: false },
      );
      expect(code, err.text()).toBe(0);
      const summary = JSON.parse(readFileSync(json, 'utf8')) as LoadSummary;
      expect(summary.requests).toMatchObject({ sent: 10, succeeded: 10, failed: 0 });
      expect(summary.errors.byCause.verify).toBe(0);
    }
  });

  it('serves a request routed by the local autoscaler end to end', async () => {
    const route = await post(`${stack.autoscaler.url}/route/`, {
      endpoint: 'comfyui',
      api_key: 'local',
      cost: 100,
    });
    expect(route.status).toBe(200);
    const authData = route.json() as { url: string };
    expect(authData.url).toBe(stack.worker.url);
    const answer = await post(`${authData.url}/generate/sync`, {
      auth_data: authData,
      payload: text2image({ width: 512, height: 512, steps: 20 }),
    });
    expect(answer.status).toBe(200);
    expect(answer.json()).toMatchObject({
      status: 'completed',
      output: [{ output_type: 'images' }],
    });
  });
});

describe('comfyui worker readiness', () => {
  it('becomes ready once ComfyUI /system_stats and the wrapper /health both answer', async () => {
    // No log: only the probes can make it ready.
    const stack = await startComfyStack({
      fake: { comfyuiAutoStart: false },
      env: { MODEL_LOG: '' },
      waitReady: false,
    });
    try {
      await waitFor(() => stack.fake.stats.healthchecks >= 2, { label: 'the hook probed /health' });
      expect(stack.worker.readiness.phase).toBe('starting');
      await stack.fake.comfyui.start();
      const report = await stack.waitForReport((r) => r.loadtime > 0 && r.max_perf > 0);
      expect(report.error_msg).toBe('');
      expect(stack.fake.comfyui.stats.systemStats).toBeGreaterThan(0);
    } finally {
      await stack.close();
    }
  });

  it('becomes loaded from the wrapper BACKENDS_READY line even while /health still fails', async () => {
    const stack = await startComfyStack({
      prepare: (fake) => fake.control({ healthy: false }),
      waitReady: false,
    });
    try {
      // Loaded from the log: the benchmark runs although the probe of /health cannot pass.
      await waitFor(() => stack.received.length > 0, { label: 'benchmark requests' });
      expect(readFileSync(stack.modelLog, 'utf8')).toContain('BACKENDS_READY: 1 backend(s)');
      expect(stack.worker.readiness.phase).not.toBe('ready');
      stack.fake.control({ healthy: true });
      const report = await stack.waitForReport((r) => r.loadtime > 0 && r.max_perf > 0);
      expect(report.error_msg).toBe('');
    } finally {
      await stack.close();
    }
  });

  it('turns errored on BACKENDS_READY_TIMEOUT without taking it for a load line', async () => {
    const stack = await startComfyStack({ fake: { failLoad: true }, waitReady: false });
    try {
      const report = await stack.waitForReport((r) => r.error_msg !== '');
      expect(report.error_msg).toContain(
        'BACKENDS_READY_TIMEOUT: ERROR:main:BACKENDS_READY_TIMEOUT: not all of 1 backend(s) reachable',
      );
      expect(stack.worker.readiness.phase).toBe('errored');
      // Never benchmarked: the line that contains BACKENDS_READY was not read as a load.
      expect(stack.received).toEqual([]);
    } finally {
      await stack.close();
    }
  });

  it('turns errored when the wrapper latches BACKEND_UNRECOVERABLE after readiness', async () => {
    const stack = await startComfyStack();
    try {
      stack.fake.control({ fatal: true });
      expect(readFileSync(stack.modelLog, 'utf8')).toContain('BACKEND_UNRECOVERABLE: GPU on');
      // The latch turns the wrapper's /health 503, which the healthcheck acts on.
      const report = await stack.waitForReport((r) => r.error_msg !== '');
      expect(report.error_msg).toContain('Healthcheck failed with status: 503');
    } finally {
      await stack.close();
    }
  });

  it('reports what each probe saw when ComfyUI never comes up in time', async () => {
    const stack = await startComfyStack({
      fake: { comfyuiAutoStart: false },
      env: { MODEL_LOG: '', COMFYUI_READY_TIMEOUT_SECONDS: '0.1' },
      waitReady: false,
    });
    try {
      const report = await stack.waitForReport((r) => r.error_msg !== '');
      expect(report.error_msg).toMatch(
        /^Lifecycle startup failed: ComfyUI not ready after 0\.1s: ComfyUI http:\/\/127\.0\.0\.1:\d+\/system_stats: ECONNREFUSED; wrapper http:\/\/127\.0\.0\.1:\d+\/health: status 503$/,
      );
    } finally {
      await stack.close();
    }
  });

  it('benchmarks with BENCHMARK_TEST_* sizes, or the BENCHMARK_JSON_PATH workflow', async () => {
    const sized = await startComfyStack({
      env: { BENCHMARK_TEST_WIDTH: '256', BENCHMARK_TEST_HEIGHT: '128', BENCHMARK_TEST_STEPS: '5' },
    });
    try {
      expect(sized.received[0]).toMatchObject({
        input: { modifications: { width: 256, height: 128, steps: 5 } },
      });
    } finally {
      await sized.close();
    }
    const file = join(dir, 'benchmark.json');
    writeFileSync(file, JSON.stringify(SAVE_WORKFLOW));
    const custom = await startComfyStack({ env: { BENCHMARK_JSON_PATH: file } });
    try {
      expect(custom.received[0]).toEqual({
        input: {
          workflow_json: SAVE_WORKFLOW,
          request_id: expect.stringMatching(/^test-/) as unknown,
        },
      });
      expect(custom.worker.readiness.maxPerf).toBeGreaterThan(0);
    } finally {
      await custom.close();
    }
  });
});

describe('comfyui worker configuration', () => {
  it('takes its defaults from the reference and validates its overrides at start-up', () => {
    const worker = resolveWorker(comfyui, {});
    expect(worker.name).toBe('comfyui');
    expect(worker.modelServerUrl).toBe('http://127.0.0.1:18288');
    expect(worker.modelLog).toBe('/var/log/portal/api-wrapper.log');
    expect(worker.modelHealthcheckPath).toBe('/health');
    expect(worker.lifecycle).toBeDefined();
    expect(worker.handlers.map((h) => h.route)).toEqual(['/generate/sync', '/generate/stream']);
    expect(worker.handlers.map((h) => h.benchmark !== undefined)).toEqual([true, false]);
    expect(worker.handlers.every((h) => !h.allowParallel && h.maxQueueTime === 10)).toBe(true);
    expect(worker.benchmarkHandler?.benchmark).toMatchObject({ runs: 3, concurrency: 1 });

    let error: unknown;
    try {
      resolveWorker(comfyui, {
        COMFYUI_URL: 'localhost:18188',
        BENCHMARK_TEST_STEPS: '0',
        BENCHMARK_JSON_PATH: join(dir, 'missing.json'),
      });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const message = String((error as Error).message);
    for (const variable of ['COMFYUI_URL', 'BENCHMARK_TEST_STEPS', 'BENCHMARK_JSON_PATH']) {
      expect(message).toContain(variable);
    }
  });
});
