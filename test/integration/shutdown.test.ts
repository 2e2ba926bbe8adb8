import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { defineWorker } from '../../lib/index.ts';
import {
  startExampleModelServer,
  type ExampleModelServer,
} from '../../src/stand-ins/example-model-server.ts';
import {
  startLocalAutoscaler,
  type LocalAutoscaler,
} from '../../src/stand-ins/local-autoscaler.ts';
import helloWorld from '../../workers/hello_world/server.ts';
import { startCallbackServer } from '../helpers/callback-server.ts';
import { get, post, postStreaming } from '../helpers/request.ts';
import { startStack, testPrivateKey } from '../helpers/stack.ts';
import { waitFor } from '../helpers/wait-for.ts';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

interface SpawnedWorker {
  readonly child: ChildProcess;
  readonly url: string;
  /** Every JSON log line so far. */
  readonly lines: Record<string, unknown>[];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** `tsworker start hello_world` as its own process; resolves once its 'worker listening' line names the URL. */
async function spawnWorker(env: Record<string, string>): Promise<SpawnedWorker> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'start', 'hello_world'], {
    cwd: REPO_ROOT,
    env: { ...process.env, LOG_LEVEL: 'info', WORKER_PORT: '0', WORKER_HOST: '127.0.0.1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = once(child, 'exit').then(([code, signal]) => ({
    code: code as number | null,
    signal: signal as NodeJS.Signals | null,
  }));
  const lines: Record<string, unknown>[] = [];
  let stderr = '';
  let partial = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => (stderr += chunk));
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    partial += chunk;
    let newline: number;
    while ((newline = partial.indexOf('\n')) !== -1) {
      const text = partial.slice(0, newline);
      partial = partial.slice(newline + 1);
      try {
        lines.push(JSON.parse(text) as Record<string, unknown>);
      } catch {
        // Not a log line.
      }
    }
  });
  const listening = await waitFor(
    () => {
      if (child.exitCode !== null) throw new Error(`worker exited: ${stderr}`);
      return lines.find((line) => line['message'] === 'worker listening');
    },
    { label: 'worker listening line', timeoutMs: 20_000 },
  ).catch((error: unknown) => {
    child.kill('SIGKILL');
    throw new Error(`${String(error)}\nstderr:\n${stderr}`);
  });
  return { child, url: String(listening['url']), lines, exited };
}

describe('graceful drain of a spawned worker on SIGTERM', () => {
  let model: ExampleModelServer;
  let autoscaler: LocalAutoscaler;
  let dir: string;
  let worker: SpawnedWorker | undefined;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tsworker-shutdown-'));
    model = await startExampleModelServer();
    autoscaler = await startLocalAutoscaler({ privateKey: testPrivateKey() });
  });
  afterEach(async () => {
    if (
      worker !== undefined &&
      worker.child.exitCode === null &&
      worker.child.signalCode === null
    ) {
      worker.child.kill('SIGKILL');
      await worker.exited;
    }
    worker = undefined;
    model.configure({ tokenDelayMs: 0, failure: { kind: 'none' }, hold: null });
  });
  afterAll(async () => {
    await Promise.all([model.close(), autoscaler.close()]);
    rmSync(dir, { recursive: true, force: true });
  });

  async function startReadyWorker(env: Record<string, string> = {}): Promise<SpawnedWorker> {
    const spawned = await spawnWorker({
      UNSECURED: 'true',
      REPORT_ADDR: autoscaler.url,
      CONTAINER_ID: '9',
      PUBLIC_IPADDR: '127.0.0.1',
      MODEL_SERVER_URL: model.url,
      BENCHMARK_CACHE: join(dir, `bench-${Math.random().toString(36).slice(2)}`),
      NO_HEALTHCHECK_WAIT_SECONDS: '0',
      ...env,
    });
    worker = spawned;
    await waitFor(async () => (await get(`${spawned.url}/health/ready`)).status === 200, {
      label: 'worker ready',
      timeoutMs: 20_000,
    });
    return spawned;
  }

  /** UNSECURED accepts any auth_data; a request_idx makes the request show up in /delete_requests/. */
  const streamBody = (requestIdx: number, tokens: number) => ({
    auth_data: { request_idx: requestIdx, reqnum: requestIdx, cost: tokens },
    payload: { prompt: 'drain me gently', max_response_tokens: tokens },
  });

  it('lets a stream in flight finish, answers new requests 503, sends the final reports and exits 0', async () => {
    const spawned = await startReadyWorker();
    // The stream stays in flight (after its first token) until the drain has been checked.
    model.configure({ hold: { at: 'tokens', afterTokens: 1 } });
    const call = postStreaming(`${spawned.url}/generate_stream`, streamBody(4242, 40));
    await waitFor(() => call.chunks.length > 0, { label: 'first chunk' });
    const signalledAt = Date.now();

    spawned.child.kill('SIGTERM');
    await waitFor(async () => (await get(`${spawned.url}/health/ready`)).status === 503, {
      label: 'readiness 503',
    });
    const refused = await post(`${spawned.url}/generate`, streamBody(4243, 2));
    expect(refused.status).toBe(503);
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(refused.json()).toMatchObject({ code: 'TSW_ERR_DRAINING' });

    model.release();
    const body = await call.done;
    expect(body).toContain('"done":true,"tokens":40');
    expect(await spawned.exited).toEqual({ code: 0, signal: null });

    const finalStatus = autoscaler.records.workerStatus.filter(
      (record) => record.at >= signalledAt && record.status === 200,
    );
    expect(finalStatus.length).toBeGreaterThan(0);
    expect(finalStatus.at(-1)?.body).toMatchObject({ id: 9, cur_load: 0, num_requests_working: 0 });
    const deletes = autoscaler.records.deleteRequests.flatMap((record) => record.body.requests);
    expect(deletes).toContainEqual(
      expect.objectContaining({ request_idx: 4242, success: true, status: 'Success' }),
    );
    expect(spawned.lines.find((line) => line['message'] === 'drained')).toMatchObject({
      component: 'shutdown',
      completed: 1,
      aborted: 0,
    });
  });

  it('aborts what is left when the grace period runs out, counts it as cancelled and still exits 0', async () => {
    const spawned = await startReadyWorker({ TERMINATION_GRACE_PERIOD_SECONDS: '0.2' });
    model.configure({ hold: { at: 'tokens', afterTokens: 1 } });
    const call = postStreaming(`${spawned.url}/generate_stream`, streamBody(5151, 2000));
    await waitFor(() => call.chunks.length > 0, { label: 'first chunk' });

    spawned.child.kill('SIGTERM');
    await expect(call.done).rejects.toThrow();
    expect(await spawned.exited).toEqual({ code: 0, signal: null });
    const deletes = autoscaler.records.deleteRequests.flatMap((record) => record.body.requests);
    expect(deletes).toContainEqual(
      expect.objectContaining({ request_idx: 5151, success: true, status: 'Cancelled' }),
    );
  });

  it('exits at once on a second signal, with 128 + the signal number', async () => {
    const spawned = await startReadyWorker();
    model.configure({ hold: { at: 'tokens', afterTokens: 1 } });
    const call = postStreaming(`${spawned.url}/generate_stream`, streamBody(6161, 2000));
    await waitFor(() => call.chunks.length > 0, { label: 'first chunk' });

    spawned.child.kill('SIGTERM');
    await waitFor(
      () => spawned.lines.some((line) => line['message']?.toString().startsWith('draining')),
      {
        label: 'drain started',
      },
    );
    spawned.child.kill('SIGTERM');
    expect(await spawned.exited).toEqual({ code: 143, signal: null });
    await expect(call.done).rejects.toThrow();
    // Logged just before process.exit: log lines are batched, and the exit must flush the batch.
    await waitFor(
      () => spawned.lines.find((line) => line['message']?.toString().startsWith('second signal')),
      { label: 'the line logged right before the exit' },
    );
  });
});

describe('drain() in process', () => {
  it('answers a request still waiting for the model 503 "shut down" when the grace period ends', async () => {
    const stack = await startStack();
    try {
      stack.model.configure({ failure: { kind: 'hang-headers' } });
      const arrived = once(stack.model, 'request');
      const call = postStreaming(`${stack.worker.url}/generate`, {
        auth_data: stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 10 }),
        payload: { prompt: 'never answered', max_response_tokens: 2 },
      });
      await arrived;
      // The drain's final report resets the interval counters, so watch the events instead.
      const cancelled: number[] = [];
      stack.worker.lifecycle.subscribe((event) => {
        if (event.kind === 'cancelled') cancelled.push(event.record.workload);
      });
      const outcome = await stack.worker.drain({ gracePeriodMs: 50 });
      expect(outcome).toMatchObject({ completed: 0, aborted: 1 });
      expect((await call.headers).status).toBe(503);
      expect(JSON.parse(await call.done)).toMatchObject({
        code: 'TSW_ERR_DRAINING',
        error: 'worker shut down before the request finished',
      });
      expect(cancelled).toHaveLength(1);
    } finally {
      await stack.close();
    }
  });

  it('closes open sessions with their on_close callbacks, then runs the shutdown hook and lifecycle stop', async () => {
    const order: string[] = [];
    const callbacks = await startCallbackServer();
    const stack = await startStack({
      worker: defineWorker({
        name: 'hooks',
        modelServerUrl: helloWorld.modelServerUrl,
        handlers: helloWorld.handlers,
        lifecycle: {
          start: () => Promise.resolve(),
          stop: () => {
            order.push('lifecycle stop');
            return Promise.resolve();
          },
        },
        shutdown: () => {
          order.push('shutdown hook');
        },
      }),
    });
    try {
      const created = await post(`${stack.worker.url}/session/create`, {
        auth_data: stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 100 }),
        payload: { on_close_route: `${callbacks.url}/bye` },
      });
      const sessionId = (created.json() as { session_id: string }).session_id;
      const next = callbacks.next().then((callback) => {
        order.push('on_close');
        return callback;
      });
      const outcome = await stack.worker.drain({ gracePeriodMs: 1000 });
      expect(outcome.sessionsClosed).toBe(1);
      expect((await next).body).toEqual({ session_id: sessionId });
      expect(order).toEqual(['on_close', 'shutdown hook', 'lifecycle stop']);
      expect(stack.worker.sessions.size).toBe(0);
      // The session-level record went out in the final /delete_requests/.
      const deletes = stack.autoscaler.records.deleteRequests.flatMap(
        (record) => record.body.requests,
      );
      expect(deletes).toContainEqual(expect.objectContaining({ status: 'Success', success: true }));
      await expect(get(`${stack.worker.url}/health/live`)).rejects.toThrow();
    } finally {
      await stack.close();
      await callbacks.close();
    }
  });
});
