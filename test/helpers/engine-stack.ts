/**
 * An engine's fake, the local autoscaler and a worker, on 127.0.0.1 with ephemeral ports, in this
 * process: the stack every engine worker's tests run against.
 */
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type WorkerFactory } from '../../lib/index.ts';
import {
  loadConfig,
  resolveWorker,
  silentLogger,
  startWorker,
  type ResolvedWorker,
  type RunningWorker,
  type WorkerDeps,
} from '../../lib/entry-server.ts';
import type { FakeServer, FakeServerOptions } from '../../src/stand-ins/fakes/common.ts';
import {
  startLocalAutoscaler,
  type LocalAutoscaler,
  type WorkerStatusBody,
} from '../../src/stand-ins/local-autoscaler.ts';
import { post, type JsonResponse } from './request.ts';
import { testPrivateKey } from './stack.ts';

export interface EngineStackOptions {
  /** The worker folder's default export (a factory or a definition). */
  readonly worker: WorkerFactory | ResolvedWorker;
  /** Starts the engine's fake; it is given `logFile` (the worker's MODEL_LOG). */
  readonly startFake: (options: FakeServerOptions) => Promise<FakeServer>;
  /** Further fake options (load delay, failLoad). */
  readonly fake?: Omit<FakeServerOptions, 'logFile'>;
  /** The worker's environment, on top of the stack's (e.g. MODEL_NAME). */
  readonly env?: Readonly<Record<string, string>>;
  /** Resolve only once the worker has reported itself loaded (benchmark done). @default true */
  readonly waitReady?: boolean;
  readonly deps?: Omit<WorkerDeps, 'logger'>;
}

export interface EngineStack {
  readonly fake: FakeServer;
  readonly autoscaler: LocalAutoscaler;
  readonly worker: RunningWorker;
  /** The model log the fake writes and the worker tails. */
  readonly modelLog: string;
  /** Signs auth_data for `route` (cost as given) and POSTs `{auth_data, payload}` to the worker. */
  call(route: string, payload: unknown, cost?: number): Promise<JsonResponse>;
  /** The `{auth_data, payload}` body `call` sends, for streaming helpers. */
  signedBody(route: string, payload: unknown, cost?: number): Record<string, unknown>;
  /** Resolves with the first /worker_status/ report that matches. */
  waitForReport(predicate: (body: WorkerStatusBody) => boolean): Promise<WorkerStatusBody>;
  close(): Promise<void>;
}

export async function startEngineStack(options: EngineStackOptions): Promise<EngineStack> {
  const id = randomUUID();
  const modelLog = join(tmpdir(), `tsworker-engine-${id}.log`);
  const benchmarkCache = join(tmpdir(), `tsworker-bench-${id}`);
  // start_server.sh starts the worker with an empty log, before the engine writes to it.
  writeFileSync(modelLog, '');
  const fake = await options.startFake({ ...options.fake, logFile: modelLog });
  const autoscaler = await startLocalAutoscaler({ privateKey: testPrivateKey() });
  const env: Record<string, string> = {
    WORKER_PORT: '0',
    WORKER_HOST: '127.0.0.1',
    REPORT_ADDR: autoscaler.url,
    CONTAINER_ID: '7',
    PUBLIC_IPADDR: '127.0.0.1',
    MODEL_SERVER_URL: fake.url,
    MODEL_LOG: modelLog,
    BENCHMARK_CACHE: benchmarkCache,
    HEALTHCHECK_INTERVAL_SECONDS: '0.2',
    REPORT_TICK_SECONDS: '0.1',
    ...fake.workerEnv,
    ...options.env,
  };
  const config = loadConfig(env);
  const definition = resolveWorker(options.worker, env);
  const worker: RunningWorker = await startWorker(definition, config, {
    ...options.deps,
    logger: silentLogger(),
  });
  autoscaler.register(worker.url);
  const stack: EngineStack = {
    fake,
    autoscaler,
    worker,
    modelLog,
    signedBody: (route, payload, cost = 100) => ({
      auth_data: autoscaler.issueAuthData({ endpoint: route, cost }),
      payload,
    }),
    call: (route, payload, cost) =>
      post(`${worker.url}${route}`, stack.signedBody(route, payload, cost)),
    waitForReport: (predicate) => autoscaler.waitForReport(predicate, 20_000),
    async close() {
      await worker.close();
      await Promise.all([
        fake.close(),
        autoscaler.close(),
        rm(benchmarkCache, { force: true }),
        rm(modelLog, { force: true }),
      ]);
    },
  };
  if (options.waitReady ?? true) {
    try {
      await stack.waitForReport((report) => report.loadtime > 0 && report.max_perf > 0);
      await worker.readinessSequence.settled();
    } catch (error) {
      await stack.close();
      throw error;
    }
  }
  return stack;
}
