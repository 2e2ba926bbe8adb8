import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ConfigError,
  loadConfig,
  resolveWorker,
  silentLogger,
  startWorker,
  type RunningWorker,
} from '../../lib/entry-server.ts';
import { type LoadSummary } from '../../lib/entry-load-test.ts';
import type { RecordEvent } from '../../lib/lifecycle/channel.ts';
import { testLoadCommand } from '../../src/commands/test-load.ts';
import {
  startLocalAutoscaler,
  type LocalAutoscaler,
} from '../../src/stand-ins/local-autoscaler.ts';
import nullWorker from '../../workers/null/server.ts';
import { post, postStreaming, type JsonResponse } from '../helpers/request.ts';
import { testPrivateKey } from '../helpers/stack.ts';
import { waitFor } from '../helpers/wait-for.ts';

const BIN = fileURLToPath(new URL('../../bin/tsworker.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'tsworker-null-'));

interface NullStack {
  readonly autoscaler: LocalAutoscaler;
  readonly worker: RunningWorker;
  /** Signs auth_data (with this request_idx, when given) and POSTs `/reserve`. */
  body(payload: unknown, requestIdx?: number): Record<string, unknown>;
  reserve(payload: unknown, requestIdx?: number): Promise<JsonResponse>;
  /** Every accounting event so far, in order. */
  readonly events: RecordEvent[];
  close(): Promise<void>;
}

let stacks = 0;
/** The local autoscaler and the null worker (no model server at all), ready and reported. */
async function startNullStack(env: Record<string, string> = {}): Promise<NullStack> {
  const autoscaler = await startLocalAutoscaler({ privateKey: testPrivateKey() });
  const config = loadConfig({
    WORKER_PORT: '0',
    WORKER_HOST: '127.0.0.1',
    REPORT_ADDR: autoscaler.url,
    CONTAINER_ID: '9',
    PUBLIC_IPADDR: '127.0.0.1',
    BENCHMARK_CACHE: join(dir, `bench-${++stacks}`),
    REPORT_TICK_SECONDS: '0.1',
    NO_HEALTHCHECK_WAIT_SECONDS: '0',
  });
  const worker = await startWorker(resolveWorker(nullWorker, env), config, {
    logger: silentLogger(),
  });
  autoscaler.register(worker.url);
  const events: RecordEvent[] = [];
  worker.lifecycle.subscribe((event) => {
    if (event.kind !== 'finished') events.push(event);
  });
  await autoscaler.waitForReport((report) => report.max_perf > 0, 20_000);
  await worker.readinessSequence.settled();
  const body = (payload: unknown, requestIdx?: number) => ({
    auth_data: autoscaler.issueAuthData({
      endpoint: 'null',
      cost: 100,
      ...(requestIdx === undefined ? {} : { request_idx: requestIdx }),
    }),
    payload,
  });
  return {
    autoscaler,
    worker,
    events,
    body,
    reserve: (payload, requestIdx) => post(`${worker.url}/reserve`, body(payload, requestIdx)),
    async close() {
      await worker.close();
      await autoscaler.close();
    },
  };
}

/** The first event of this kind for the request with this request_idx. */
function eventFor(stack: NullStack, kind: RecordEvent['kind'], requestIdx: number) {
  return stack.events.find((e) => e.kind === kind && e.record.requestIdx === requestIdx);
}

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('null worker', () => {
  let stack: NullStack;
  let capped: NullStack;
  beforeAll(async () => {
    [stack, capped] = await Promise.all([
      startNullStack(),
      startNullStack({ MAX_RESERVATION_SECONDS: '0.2' }),
    ]);
  });
  afterAll(() => Promise.all([stack.close(), capped.close()]));

  it('benchmarks without holding the worker and reports max_perf above 0', () => {
    // With the default cap of an hour, a benchmark that held the worker would never become ready.
    expect(stack.worker.readiness.maxPerf).toBeGreaterThan(0);
    const report = stack.autoscaler.records.workerStatus.find((r) => r.body.max_perf > 0);
    expect(report?.body.error_msg).toBe('');
  });

  it('holds the worker for the requested duration, then answers how long it held', async () => {
    const response = await stack.reserve({ duration: 0.05 }, 101);
    expect(response.status).toBe(200);
    expect(response.json()).toEqual({
      result: {
        released: 'duration_elapsed',
        requested: 0.05,
        duration: 0.05,
        capped: false,
        held_seconds: expect.any(Number),
      },
    });
    // The hold is the request's work: it was queued, worked on and served with workload 100.
    expect(eventFor(stack, 'succeeded', 101)?.record.workload).toBe(100);
  });

  it('accepts the payload wrapped as {"input": {...}} like the bare body', async () => {
    // On the capped worker: an envelope that was not unwrapped would hold for the cap, not 0.01 s.
    const response = await capped.reserve({ input: { duration: 0.01 } });
    expect(response.status).toBe(200);
    expect(response.json()).toMatchObject({ result: { requested: 0.01, duration: 0.01 } });
  });

  it('caps a reservation at MAX_RESERVATION_SECONDS, and holds for the cap when no duration is given', async () => {
    const long = await capped.reserve({ duration: 3600 });
    expect(long.status).toBe(200);
    expect(long.json()).toMatchObject({
      result: { released: 'duration_elapsed', requested: 3600, duration: 0.2, capped: true },
    });
    const open = await capped.reserve({});
    expect(open.status).toBe(200);
    expect(open.json()).toMatchObject({
      result: { requested: null, duration: 0.2, capped: false },
    });
  });

  it('releases the worker as soon as the client leaves, so the reservation queued behind it starts', async () => {
    const first = postStreaming(`${stack.worker.url}/reserve`, stack.body({ duration: 3600 }, 201));
    await waitFor(() => eventFor(stack, 'work-started', 201), { label: 'first reservation held' });
    const second = stack.reserve({ duration: 0.01 }, 202);
    // The second is admitted and waits in the FIFO behind the hour-long first.
    await waitFor(() => eventFor(stack, 'admitted', 202), { label: 'second reservation queued' });
    expect(eventFor(stack, 'work-started', 202)).toBeUndefined();

    first.disconnect();
    const response = await second;
    expect(response.status).toBe(200);
    expect(response.json()).toMatchObject({ result: { released: 'duration_elapsed' } });
    const kinds = stack.events
      .filter((e) => e.record.requestIdx === 201 || e.record.requestIdx === 202)
      .map((e) => `${e.record.requestIdx} ${e.kind}`);
    // The first was cancelled (never served), and only then did the second get the worker.
    expect(kinds).not.toContain('201 succeeded');
    expect(kinds.indexOf('201 cancelled')).toBeGreaterThanOrEqual(0);
    expect(kinds.indexOf('202 work-started')).toBeGreaterThan(kinds.indexOf('201 cancelled'));
  });

  it('answers 422 naming "duration" when it is not a positive number', async () => {
    for (const duration of [0, -1, '10']) {
      const response = await stack.reserve({ duration });
      expect(response.status, JSON.stringify(duration)).toBe(422);
      expect(response.json()).toEqual({ payload: { duration: expect.any(String) } });
    }
  });

  it('passes its test_load --verify through the local autoscaler', async () => {
    const json = join(dir, 'summary.json');
    let output = '';
    const sink = new Writable({
      write(chunk: Buffer | string, _encoding, callback) {
        output += chunk.toString();
        callback();
      },
    });
    const code = await testLoadCommand(
      [
        ...['--worker', 'null', '-n', '5', '-rps', '100', '-k', 'local', '-e', 'null'],
        ...['--autoscaler', stack.autoscaler.url, '--verify', '-q', '--json', json],
      ],
      { stdout: sink, stderr: sink, handleSignals: false },
    );
    expect(code, output).toBe(0);
    const summary = JSON.parse(readFileSync(json, 'utf8')) as LoadSummary;
    expect(summary.worker).toBe('null');
    expect(summary.requests).toMatchObject({ sent: 5, succeeded: 5, failed: 0 });
  });
});

describe('null worker configuration', () => {
  it('rejects a MAX_RESERVATION_SECONDS that is not a positive number of seconds', () => {
    for (const value of ['abc', '0', '-5', '1e12']) {
      expect(() => nullWorker.create({ MAX_RESERVATION_SECONDS: value })).toThrow(ConfigError);
      expect(() => nullWorker.create({ MAX_RESERVATION_SECONDS: value })).toThrow(
        /MAX_RESERVATION_SECONDS/,
      );
    }
  });

  it('stops `tsworker start null` with a message naming MAX_RESERVATION_SECONDS', async () => {
    const child = spawn(process.execPath, [BIN, 'start', 'null'], {
      env: {
        PATH: process.env['PATH'] ?? '/usr/bin:/bin',
        UNSECURED: 'true',
        WORKER_PORT: '0',
        WORKER_HOST: '127.0.0.1',
        MAX_RESERVATION_SECONDS: 'forever',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.stdout.resume();
    const [code] = (await once(child, 'exit')) as [number | null];
    expect(code).toBe(1);
    expect(stderr).toContain(
      'MAX_RESERVATION_SECONDS: must be a number of seconds (got "forever")',
    );
  });
});
