import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fetchPublicKey } from '../auth/index.ts';
import type { ResolvedConfig } from '../config.ts';
import { warmTokenizer } from '../tokenizer.ts';
import type { ResolvedWorker } from '../worker.ts';
import { createWorkerApp, type WorkerDeps, type WorkerRuntime } from './app.ts';

export interface RunningWorker {
  /** Base URL of the main listener, e.g. http://127.0.0.1:3000. */
  readonly url: string;
  readonly port: number;
  readonly runtime: WorkerRuntime;
  /** Resolves once the public key is loaded (secured mode), or at once when UNSECURED. */
  readonly publicKeyLoaded: Promise<void>;
  /** Stops listening, closes connections and timers. Does not drain: see the shutdown module. */
  close(): Promise<void>;
}

function listen(server: Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

/**
 * Runs a worker: listens, fetches the public key, warms the tokenizer. Everything it starts,
 * `close()` stops.
 */
export async function startWorker(
  worker: ResolvedWorker,
  config: ResolvedConfig,
  deps: WorkerDeps = {},
): Promise<RunningWorker> {
  const { listener, runtime } = createWorkerApp(worker, config, deps);
  const log = runtime.logger.child({ component: 'server' });
  warmTokenizer();

  const server = createServer({ keepAliveTimeout: 65_000, requestTimeout: 0 }, listener);
  const port = await listen(server, config.workerPort, config.workerHost);
  const host = config.workerHost === '0.0.0.0' ? '127.0.0.1' : config.workerHost;
  const url = `http://${host}:${port}`;
  log.info({ url, worker: worker.name, modelServer: runtime.modelServerUrl }, 'worker listening');

  const stopKeyFetch = new AbortController();
  const publicKeyLoaded = loadPublicKey(runtime, stopKeyFetch.signal);

  return {
    url,
    port,
    runtime,
    publicKeyLoaded,
    async close() {
      stopKeyFetch.abort();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await runtime.dispatcher.close();
    },
  };
}

async function loadPublicKey(runtime: WorkerRuntime, signal: AbortSignal): Promise<void> {
  const verifier = runtime.verifier;
  // UNSECURED never needs the key, so a failed fetch must not error the worker (§12.5).
  if (verifier === undefined) return;
  const log = runtime.logger.child({ component: 'auth' });
  try {
    const key = await fetchPublicKey({
      reportAddrs: runtime.config.reportAddrs,
      signal,
      onAttemptFailed: (info: { addr: string; attempt: number; error: string }) =>
        log.warn(info, 'public key fetch failed'),
    });
    verifier.setPublicKey(key);
    log.info('public key loaded');
  } catch (error) {
    if (signal.aborted) return;
    const message = error instanceof Error ? error.message : String(error);
    log.error({ err: error }, 'public key fetch gave up');
    runtime.readiness.errored(message);
  }
}
