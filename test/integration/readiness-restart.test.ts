import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { defineHandler, defineWorker } from '../../lib/index.ts';
import { createLogger, type Logger } from '../../lib/entry-server.ts';
import type { ResolvedWorker } from '../../lib/worker.ts';
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

const LOAD_LINE = 'server has started';
const FATAL_LINE = 'Traceback: Exception: corrupted model file at shard 3';

/** hello_world's log actions and healthcheck without its benchmark: ready in milliseconds. */
const light: ResolvedWorker = defineWorker({
  name: 'light',
  modelServerUrl: helloWorld.modelServerUrl,
  handlers: [defineHandler({ route: '/generate', payload: InputData })],
  logActions: { onLoad: [LOAD_LINE], onError: ['Exception: corrupted model file'] },
  modelHealthcheckPath: '/healthcheck',
});

type Line = { level: string; component?: string; message: string } & Record<string, unknown>;

/** A JSON logger writing into memory, one parsed object per line. */
function capture(): { logger: Logger; lines: Line[] } {
  const lines: Line[] = [];
  let partial = '';
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      partial += chunk.toString('utf8');
      let newline: number;
      while ((newline = partial.indexOf('\n')) !== -1) {
        lines.push(JSON.parse(partial.slice(0, newline)) as Line);
        partial = partial.slice(newline + 1);
      }
      done();
    },
  });
  return { logger: createLogger({ level: 'debug', pretty: false, destination }), lines };
}

let stack: TestStack | undefined;
afterEach(async () => {
  await stack?.close();
  stack = undefined;
});

interface Restarted {
  stack: TestStack;
  /** The worker's MODEL_LOG: empty, as start_server.sh leaves it. */
  modelLog: string;
}

/**
 * A worker (re)started while its model keeps running: the model's lines, load line included, went
 * to the log that start_server.sh then moved to MODEL_LOG.old; MODEL_LOG itself is empty.
 */
async function restartedStack(options: StackOptions = {}): Promise<Restarted> {
  const modelLog = join(mkdtempSync(join(tmpdir(), 'tsworker-restart-')), 'model.log');
  writeFileSync(modelLog, '');
  stack = await startStack({
    worker: light,
    ...options,
    model: { logFile: `${modelLog}.old`, ...options.model },
    env: { MODEL_LOG: modelLog, ...FAST_TIMINGS, ...options.env },
  });
  return { stack, modelLog };
}

/** A model that logs its load line into the worker's MODEL_LOG, as on a first start. */
async function freshStack(options: StackOptions = {}): Promise<TestStack> {
  const modelLog = join(mkdtempSync(join(tmpdir(), 'tsworker-fresh-')), 'model.log');
  writeFileSync(modelLog, '');
  stack = await startStack({
    worker: light,
    ...options,
    model: { logFile: modelLog, ...options.model },
    env: { MODEL_LOG: modelLog, ...FAST_TIMINGS, ...options.env },
  });
  return stack;
}

const ready = (target: TestStack) => () => target.worker.readiness.phase === 'ready';

describe('READINESS=logs: a worker restarted while its model keeps running', () => {
  it('starts the readiness sequence once the model passes its healthcheck after the grace period, warning which pattern and file it waited for', async () => {
    const { logger, lines } = capture();
    const { stack, modelLog } = await restartedStack({
      logger,
      env: { READINESS_GRACE_SECONDS: '0.1' },
    });
    const report = await stack.autoscaler.waitForReport((r) => r.loadtime > 0);
    expect(report.error_msg).toBe('');
    const warning = lines.find((line) => line.level === 'warn' && line.component === 'readiness');
    expect(warning?.message).toContain(`"${LOAD_LINE}"`);
    expect(warning?.message).toContain(modelLog);
    expect(warning?.message).toContain(`${stack.model.url}/healthcheck`);
    expect(warning?.message).toContain('starting the readiness sequence');
    expect(warning).toMatchObject({ loadPatterns: [LOAD_LINE], modelLog });
  });

  it('waits for the grace period without probing the healthcheck, saying every interval which pattern and file it waits for', async () => {
    const { logger, lines } = capture();
    const { stack, modelLog } = await restartedStack({
      logger,
      env: { READINESS_GRACE_SECONDS: '3600', READINESS_LOG_INTERVAL_SECONDS: '0.05' },
    });
    const waitingLines = () => lines.filter((line) => line.message.startsWith('still waiting'));
    await waitFor(() => waitingLines().length >= 3, { label: 'three waiting lines' });
    for (const line of waitingLines()) {
      expect(line).toMatchObject({ level: 'info', component: 'readiness', modelLog });
      expect(line.message).toContain(`a line containing "${LOAD_LINE}" in ${modelLog}`);
    }
    expect(stack.worker.readiness.phase).toBe('starting');
    expect(stack.model.stats.healthchecks).toBe(0);

    // The load line ends the wait, and the waiting lines stop.
    writeFileSync(modelLog, `INFO ${LOAD_LINE} on port 1\n`, { flag: 'a' });
    await waitFor(ready(stack), { label: 'ready after the load line' });
    const after = waitingLines().length;
    const checks = stack.model.stats.healthchecks;
    await waitFor(() => stack.model.stats.healthchecks >= checks + 5, { label: '5 more checks' });
    expect(waitingLines()).toHaveLength(after);
  });

  it('says so when MODEL_LOG does not exist yet', async () => {
    const { logger, lines } = capture();
    const missing = join(mkdtempSync(join(tmpdir(), 'tsworker-restart-')), 'absent.log');
    await restartedStack({
      logger,
      env: {
        MODEL_LOG: missing,
        READINESS_GRACE_SECONDS: '3600',
        READINESS_LOG_INTERVAL_SECONDS: '0.05',
      },
    });
    const line = await waitFor(() => lines.find((l) => l.message.startsWith('still waiting')), {
      label: 'a waiting line',
    });
    expect(line.message).toContain(`in ${missing} (the file does not exist yet)`);
  });

  it('keeps probing while the healthcheck fails, and counts only a pass', async () => {
    const { stack } = await restartedStack({
      model: { healthy: false },
      env: { READINESS_GRACE_SECONDS: '0' },
    });
    await waitFor(() => stack.model.stats.healthchecks >= 3, { label: 'three failed checks' });
    expect(stack.worker.readiness.phase).toBe('starting');
    stack.model.configure({ healthy: true });
    await waitFor(ready(stack), { label: 'ready once healthy' });
  });
});

describe('READINESS=health', () => {
  it('marks the model loaded at its first passing healthcheck, with no load line at all', async () => {
    const { stack } = await restartedStack({ env: { READINESS: 'health' } });
    const report = await stack.autoscaler.waitForReport((r) => r.loadtime > 0);
    expect(report.error_msg).toBe('');
  });

  it('ignores load lines: the healthcheck decides', async () => {
    const stack = await freshStack({ model: { healthy: false }, env: { READINESS: 'health' } });
    // The model's own log holds the load line; it has been read, and checks have failed since.
    await waitFor(() => stack.worker.readinessSequence.logLinesRead >= 6, { label: 'log read' });
    const checks = stack.model.stats.healthchecks;
    await waitFor(() => stack.model.stats.healthchecks >= checks + 3, { label: '3 more checks' });
    expect(stack.worker.readiness.phase).toBe('starting');
    stack.model.configure({ healthy: true });
    await waitFor(ready(stack), { label: 'ready once healthy' });
  });

  it('still errors the worker on an error line in the model log', async () => {
    const stack = await freshStack({ model: { healthy: false }, env: { READINESS: 'health' } });
    stack.model.writeLog(FATAL_LINE);
    const report = await stack.autoscaler.waitForReport((r) => r.error_msg !== '');
    expect(report.error_msg).toBe(`Exception: corrupted model file: ${FATAL_LINE}`);
  });

  it('gives up after READINESS_TIMEOUT with the reference message', async () => {
    const { stack } = await restartedStack({
      model: { healthy: false },
      env: { READINESS: 'healthcheck', READINESS_TIMEOUT: '0.2' },
    });
    const report = await stack.autoscaler.waitForReport((r) => r.error_msg !== '');
    expect(report.error_msg).toBe(
      'Healthcheck readiness failed: Timed out waiting for healthcheck readiness (0.2s)',
    );
    expect(report.loadtime).toBe(0);
  });

  it('errors a worker that has no healthcheck, naming what is missing', async () => {
    const noHealthcheck = defineWorker({
      name: 'no-healthcheck',
      modelServerUrl: helloWorld.modelServerUrl,
      handlers: [defineHandler({ route: '/generate', payload: InputData })],
      logActions: { onLoad: [LOAD_LINE] },
    });
    const { stack } = await restartedStack({
      worker: noHealthcheck,
      env: { READINESS: 'health' },
    });
    const report = await stack.autoscaler.waitForReport((r) => r.error_msg !== '');
    expect(report.error_msg).toBe(
      'Healthcheck readiness failed: READINESS=health needs a model healthcheck, and worker "no-healthcheck" has no modelHealthcheckPath',
    );
  });
});

describe('READINESS=health with a lifecycle hook', () => {
  it('is refused, as in the reference: the hook says when the model is loaded', async () => {
    const withHook = defineWorker({
      name: 'hooked',
      modelServerUrl: helloWorld.modelServerUrl,
      handlers: [defineHandler({ route: '/generate', payload: InputData })],
      modelHealthcheckPath: '/healthcheck',
      lifecycle: { start: () => Promise.resolve() },
    });
    stack = await startStack({ worker: withHook, env: { ...FAST_TIMINGS, READINESS: 'health' } });
    const report = await stack.autoscaler.waitForReport((r) => r.error_msg !== '');
    expect(report.error_msg).toBe(
      'READINESS=health cannot be used with a lifecycle hook, which says itself when the model is loaded',
    );
    expect(report.loadtime).toBe(0);
  });
});

describe('READINESS=both', () => {
  it('starts the sequence at a load line while the healthcheck still fails', async () => {
    const stack = await freshStack({ model: { healthy: false }, env: { READINESS: 'both' } });
    // The sequence runs (no benchmark here) and then waits for the healthcheck to pass.
    await waitFor(() => stack.worker.readiness.phase === 'benchmarking', {
      label: 'sequence started',
    });
    stack.model.configure({ healthy: true });
    await waitFor(ready(stack), { label: 'ready once healthy' });
  });

  it('starts the sequence at a passing healthcheck when no load line comes', async () => {
    const { stack } = await restartedStack({ env: { READINESS: 'both' } });
    const report = await stack.autoscaler.waitForReport((r) => r.loadtime > 0);
    expect(report.error_msg).toBe('');
  });

  it('gives up after READINESS_TIMEOUT when neither comes', async () => {
    const { stack, modelLog } = await restartedStack({
      model: { healthy: false },
      env: { READINESS: 'both', READINESS_TIMEOUT: '0.2' },
    });
    const report = await stack.autoscaler.waitForReport((r) => r.error_msg !== '');
    expect(report.error_msg).toBe(
      `Timed out waiting for the model: no load line in ${modelLog} and no passing healthcheck (waited 0.2s)`,
    );
  });
});

type TraceEntry = 'pass' | 'fail' | 'errored' | 'cleared';

/**
 * Makes the model answer its next healthchecks as `script` says (true = 200), then 200, and records
 * those answers and the worker's error transitions in one ordered trace. Checks never overlap, so
 * the worker has acted on one answer before the next check reaches the model.
 */
function scriptHealth(target: TestStack, script: readonly boolean[]): TraceEntry[] {
  const trace: TraceEntry[] = [];
  let next = 0;
  target.model.configure({ healthy: script[0] ?? true });
  target.model.on('healthcheck', ({ status }) => {
    trace.push(status === 200 ? 'pass' : 'fail');
    next += 1;
    target.model.configure({ healthy: script[next] ?? true });
  });
  target.worker.readiness.onChange((now, before) => {
    if (now.phase === 'errored' && before.phase !== 'errored') trace.push('errored');
    if (now.phase !== 'errored' && before.phase === 'errored') trace.push('cleared');
  });
  return trace;
}

describe('healthcheck failures (HEALTHCHECK_FAILURES, default 3)', () => {
  it('errors a ready worker only after 3 failures in a row, and clears it after 3 passes in a row', async () => {
    const stack = await freshStack();
    await waitFor(ready(stack), { label: 'ready' });
    const [F, P] = [false, true];
    const trace = scriptHealth(stack, [F, F, P, F, F, P, F, F, F, P, P, F, P, P, P]);
    await waitFor(() => trace.includes('cleared'), { label: 'error cleared' });
    expect(trace.slice(0, trace.indexOf('cleared') + 1)).toEqual([
      ...['fail', 'fail', 'pass', 'fail', 'fail', 'pass', 'fail', 'fail', 'fail', 'errored'],
      ...['pass', 'pass', 'fail', 'pass', 'pass', 'pass', 'cleared'],
    ]);
    expect(stack.worker.readiness.phase).toBe('ready');
  });

  it('follows HEALTHCHECK_FAILURES', async () => {
    const stack = await freshStack({ env: { HEALTHCHECK_FAILURES: '1' } });
    await waitFor(ready(stack), { label: 'ready' });
    const trace = scriptHealth(stack, [false]);
    await waitFor(() => trace.includes('cleared'), { label: 'error cleared' });
    expect(trace.slice(0, 4)).toEqual(['fail', 'errored', 'pass', 'cleared']);
  });

  it('sends an empty error_msg in the next report once the error has cleared', async () => {
    const stack = await freshStack();
    await waitFor(ready(stack), { label: 'ready' });
    scriptHealth(stack, [false, false, false]);
    let errorSeen = false;
    const report = await stack.autoscaler.waitForReport((r) => {
      if (r.error_msg === 'Healthcheck failed with status: 503') errorSeen = true;
      return errorSeen && r.error_msg === '';
    });
    expect(report.loadtime).toBeGreaterThan(0);
    expect(report.max_perf).toBeGreaterThan(0);
  });

  it('keeps an error from a fatal log line however healthy the model is', async () => {
    const stack = await freshStack();
    await waitFor(ready(stack), { label: 'ready' });
    stack.model.writeLog(FATAL_LINE);
    await stack.autoscaler.waitForReport((r) => r.error_msg !== '');
    const checks = stack.model.stats.healthchecks;
    await waitFor(() => stack.model.stats.healthchecks >= checks + 6, { label: '6 passes' });
    expect(stack.worker.readiness.phase).toBe('errored');
    expect(stack.worker.readiness.errorMessage).toBe(
      `Exception: corrupted model file: ${FATAL_LINE}`,
    );
  });

  it('lets a fatal log line replace a healthcheck error, so that recovery does not clear it', async () => {
    const stack = await freshStack();
    await waitFor(ready(stack), { label: 'ready' });
    const readiness = stack.worker.readiness;
    stack.model.configure({ healthy: false });
    await waitFor(() => readiness.errorSource === 'healthcheck', { label: 'healthcheck error' });
    stack.model.writeLog(FATAL_LINE);
    await waitFor(() => readiness.errorSource === 'fatal', { label: 'fatal error' });
    stack.model.configure({ healthy: true });
    const checks = stack.model.stats.healthchecks;
    await waitFor(() => stack.model.stats.healthchecks >= checks + 6, { label: '6 passes' });
    expect(readiness.phase).toBe('errored');
    expect(readiness.errorMessage).toBe(`Exception: corrupted model file: ${FATAL_LINE}`);
  });
});
