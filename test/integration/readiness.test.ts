import { appendFileSync, mkdtempSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { defineHandler, defineWorker } from '../../lib/index.ts';
import type { ReadinessPhase } from '../../lib/readiness/state.ts';
import { InputData } from '../../workers/hello_world/data_types.ts';
import helloWorld from '../../workers/hello_world/server.ts';
import { startStack, type StackOptions, type TestStack } from '../helpers/stack.ts';
import { waitFor } from '../helpers/wait-for.ts';

const FAST_TIMINGS = {
  REPORT_TICK_SECONDS: '0.05',
  REPORT_IDLE_SECONDS: '0.5',
  REPORT_RETRY_DELAY_SECONDS: '0',
  HEALTHCHECK_INTERVAL_SECONDS: '0.05',
};

let stack: TestStack | undefined;
afterEach(async () => {
  await stack?.close();
  stack = undefined;
});

function logDir(): string {
  return mkdtempSync(join(tmpdir(), 'tsworker-readiness-'));
}

async function stackWithLog(options: StackOptions & { logFile?: string } = {}): Promise<TestStack> {
  const logFile = options.logFile ?? join(logDir(), 'model.log');
  writeFileSync(logFile, '');
  return startStack({
    ...options,
    model: { logFile, ...options.model },
    env: { MODEL_LOG: logFile, ...FAST_TIMINGS, ...options.env },
  });
}

/**
 * The model logs to a file of its own, so the watched log holds only what the test writes: the load
 * line goes in after start-up, and no race with the public key decides when the sequence starts.
 */
async function stackLoadedByTest(model: StackOptions['model']) {
  const watched = join(logDir(), 'model.log');
  writeFileSync(watched, '');
  stack = await stackWithLog({
    logFile: watched,
    model: { ...model, logFile: join(logDir(), 'own.log') },
  });
  const seen = phases(stack);
  appendFileSync(watched, 'INFO  server has started\n');
  return { watched, seen };
}

function phases(target: TestStack): ReadinessPhase[] {
  const seen: ReadinessPhase[] = [];
  target.worker.readiness.onChange((next) => seen.push(next.phase));
  return seen;
}

describe('readiness from the model log', () => {
  it('benchmarks once "server has started" is logged, then reports loaded with max_perf > 0', async () => {
    stack = await stackWithLog();
    const report = await stack.autoscaler.waitForReport((r) => r.loadtime > 0);
    expect(report.max_perf).toBeGreaterThan(0);
    expect(report.error_msg).toBe('');
    expect(report.url).toBe(stack.worker.url);
    expect(stack.worker.readiness.phase).toBe('ready');
    // Every benchmark response was read to its end: warm-up plus 3 rounds of 10.
    await waitFor(() => stack?.model.stats.completed === 31, {
      label: '31 benchmark requests completed',
    });
    expect(stack.model.stats.aborted).toBe(0);
  });

  it('acts at once on an error line printed during a long benchmark', async () => {
    // The model holds every benchmark request: the benchmark is still running when the error comes.
    const { watched } = await stackLoadedByTest({ hold: { at: 'headers' } });
    await waitFor(() => stack?.worker.readiness.phase === 'benchmarking', {
      label: 'benchmarking',
    });
    await stack!.model.waitForHeld(1);
    appendFileSync(watched, 'Traceback: Exception: corrupted model file at shard 3\n');
    const report = await stack!.autoscaler.waitForReport((r) => r.error_msg !== '');
    expect(report.error_msg).toBe(
      'Exception: corrupted model file: Traceback: Exception: corrupted model file at shard 3',
    );
    expect(report.loadtime).toBe(0);
    // The benchmark was still running when the error was reported.
    expect(stack!.model.stats.completed).toBeLessThan(31);
    await stack!.worker.readinessSequence.settled();
    expect(stack!.worker.readiness.phase).toBe('errored');
  });

  it('holds a half-written load line until its newline arrives', async () => {
    const logFile = join(logDir(), 'model.log');
    const worker = defineWorker({
      name: 'partial',
      modelServerUrl: 'http://127.0.0.1:5001',
      handlers: [defineHandler({ route: '/generate', payload: InputData })],
      logActions: { onLoad: ['weights ready'] },
    });
    stack = await stackWithLog({ logFile, worker });
    writeFileSync(logFile, 'INFO booting\nINFO weights re', { flag: 'a' });
    // Every complete line is read (the model writes its own lines here too), the partial one is held.
    const completeLines = readFileSync(logFile, 'utf8').split('\n').length - 1;
    await waitFor(() => stack?.worker.readinessSequence.logLinesRead === completeLines, {
      label: 'caught up',
    });
    expect(stack.worker.readiness.phase).toBe('starting');
    writeFileSync(logFile, 'ady\n', { flag: 'a' });
    await waitFor(() => stack?.worker.readiness.phase === 'ready', {
      label: 'ready after the newline',
    });
  });

  it('survives a rotation by rename and reads the new log from its start', async () => {
    const logFile = join(logDir(), 'model.log');
    const worker = defineWorker({
      name: 'rotation',
      modelServerUrl: 'http://127.0.0.1:5001',
      handlers: [defineHandler({ route: '/generate', payload: InputData })],
      logActions: { onLoad: ['model loaded'] },
    });
    stack = await stackWithLog({ logFile, worker });
    writeFileSync(logFile, 'old line\n', { flag: 'a' });
    renameSync(logFile, `${logFile}.old`);
    writeFileSync(logFile, 'INFO model loaded\n');
    await waitFor(() => stack?.worker.readiness.phase === 'ready', {
      label: 'ready after rotation',
    });
  });

  it('re-runs readiness once, not once per line, when load lines repeat during a run', async () => {
    // The model holds the first benchmark until both repeated load lines have been read.
    const { watched, seen } = await stackLoadedByTest({ hold: { at: 'headers' } });
    await waitFor(() => stack?.worker.readiness.phase === 'benchmarking', {
      label: 'benchmarking',
    });
    await stack!.model.waitForHeld(1);
    appendFileSync(
      watched,
      'INFO  server has started (again)\nINFO  server has started (and again)\n',
    );
    await waitFor(() => stack?.worker.readinessSequence.logLinesRead === 3, {
      label: 'repeated load lines read',
    });
    stack!.model.release();
    await waitFor(() => seen.filter((p) => p === 'ready').length === 2, {
      label: 'two ready transitions',
    });
    await stack!.worker.readinessSequence.settled();
    expect(seen.filter((p) => p === 'benchmarking')).toHaveLength(2);
  });

  it('marks the worker errored when the healthcheck fails after it has passed', async () => {
    stack = await stackWithLog();
    await stack.autoscaler.waitForReport((r) => r.loadtime > 0);
    stack.model.configure({ healthy: false });
    const report = await stack.autoscaler.waitForReport((r) => r.error_msg !== '');
    expect(report.error_msg).toBe('Healthcheck failed with status: 503');
  });

  it('reports an error and never "loaded" when the benchmark gets no successful response', async () => {
    stack = await stackWithLog({ model: { failure: { kind: 'status', status: 500 } } });
    const report = await stack.autoscaler.waitForReport((r) => r.error_msg !== '');
    expect(report.error_msg).toMatch(
      /^Benchmark failed with error: No successful responses from benchmark/,
    );
    expect(report.max_perf).toBe(0);
    expect(report.loadtime).toBe(0);
  });

  it('reports an error when the model cannot be reached during the benchmark', async () => {
    stack = await stackWithLog({ model: { failure: { kind: 'reset' } } });
    const report = await stack.autoscaler.waitForReport((r) => r.error_msg !== '');
    expect(report.error_msg).toMatch(
      /^Benchmark failed with error: model request failed during the benchmark/,
    );
    expect(report.loadtime).toBe(0);
  });
});

describe('readiness from a lifecycle hook', () => {
  it('replaces the log watcher: ready once start() resolves', async () => {
    let loaded!: () => void;
    const started = new Promise<void>((resolve) => (loaded = resolve));
    const worker = defineWorker({
      name: 'lifecycle',
      modelServerUrl: 'http://127.0.0.1:5001',
      handlers: [defineHandler({ route: '/generate', payload: InputData })],
      lifecycle: { start: () => started },
    });
    stack = await startStack({ worker, env: FAST_TIMINGS });
    expect(stack.worker.readiness.phase).toBe('starting');
    loaded();
    const report = await stack.autoscaler.waitForReport((r) => r.loadtime > 0);
    expect(report.error_msg).toBe('');
  });

  it('reports "Lifecycle startup failed" when start() rejects', async () => {
    const worker = defineWorker({
      name: 'lifecycle-fails',
      modelServerUrl: 'http://127.0.0.1:5001',
      handlers: [defineHandler({ route: '/generate', payload: InputData })],
      lifecycle: { start: () => Promise.reject(new Error('CUDA out of memory')) },
    });
    stack = await startStack({ worker, env: FAST_TIMINGS });
    const report = await stack.autoscaler.waitForReport((r) => r.error_msg !== '');
    expect(report.error_msg).toBe('Lifecycle startup failed: CUDA out of memory');
  });
});

describe('hello_world', () => {
  it('benchmarks /generate, its only benchmark handler', () => {
    expect(helloWorld.benchmarkHandler?.route).toBe('/generate');
  });
});
