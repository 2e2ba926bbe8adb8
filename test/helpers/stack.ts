import { generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  loadConfig,
  silentLogger,
  startWorker,
  type Logger,
  type ResolvedWorker,
  type RunningWorker,
  type WorkerDeps,
} from '../../lib/entry-server.ts';
import {
  startExampleModelServer,
  type ExampleModelServer,
  type ExampleModelServerOptions,
} from '../../src/stand-ins/example-model-server.ts';
import {
  startLocalAutoscaler,
  type LocalAutoscaler,
} from '../../src/stand-ins/local-autoscaler.ts';
import helloWorld from '../../workers/hello_world/server.ts';

let sharedKey: KeyObject | undefined;
/** One RSA key per test process: generating one costs ~100 ms. */
export function testPrivateKey(): KeyObject {
  sharedKey ??= generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  return sharedKey;
}

export interface TestStack {
  readonly model: ExampleModelServer;
  readonly autoscaler: LocalAutoscaler;
  readonly worker: RunningWorker;
  /** Closes the worker, then the stand-ins. */
  close(): Promise<void>;
}

export interface StackOptions {
  /** Extra environment for the worker's configuration. */
  env?: Record<string, string>;
  worker?: ResolvedWorker;
  model?: ExampleModelServerOptions;
  authMode?: 'current' | 'legacy';
  logger?: Logger;
  /** Further worker dependencies, e.g. a short `sessionGcIntervalMs`. */
  deps?: Omit<WorkerDeps, 'logger'>;
}

/**
 * The example model server, the local autoscaler and a worker (hello_world by default), all on
 * 127.0.0.1 with ephemeral ports, in this process. The worker is secured and has its public key.
 */
export async function startStack(options: StackOptions = {}): Promise<TestStack> {
  const model = await startExampleModelServer({ ...options.model });
  const benchmarkCache = join(tmpdir(), `tsworker-bench-${randomUUID()}`);
  const autoscaler = await startLocalAutoscaler({
    privateKey: testPrivateKey(),
    authMode: options.authMode ?? 'current',
  });
  const config = loadConfig({
    WORKER_PORT: '0',
    WORKER_HOST: '127.0.0.1',
    REPORT_ADDR: autoscaler.url,
    CONTAINER_ID: '7',
    PUBLIC_IPADDR: '127.0.0.1',
    MODEL_SERVER_URL: model.url,
    AUTH_MODE: options.authMode ?? 'current',
    BENCHMARK_CACHE: benchmarkCache,
    NO_HEALTHCHECK_WAIT_SECONDS: '0',
    ...options.env,
  });
  const worker = await startWorker(options.worker ?? helloWorld, config, {
    ...options.deps,
    logger: options.logger ?? silentLogger(),
  });
  autoscaler.register(worker.url);
  await worker.publicKeyLoaded;
  // Let the start-up benchmark finish, so its traffic never mixes with a test's.
  await worker.readinessSequence.settled();
  return {
    model,
    autoscaler,
    worker,
    async close() {
      await worker.close();
      await Promise.all([model.close(), autoscaler.close(), rm(benchmarkCache, { force: true })]);
    },
  };
}
