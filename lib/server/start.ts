import { fetchPublicKey } from '../auth/index.ts';
import { closeTokenizerPool } from '../tokenizer-pool.ts';
import { tsworkerVersion, type ResolvedConfig } from '../config.ts';
import { basePath } from '../proxy/index.ts';
import { ReadinessSequence } from '../readiness/sequence.ts';
import type { ResolvedWorker } from '../worker.ts';
import { DEFAULT_SESSION_GC_INTERVAL_MS, startSessionGc } from './session-routes.ts';
import { createWorkerApp, type WorkerDeps, type WorkerRuntime } from './app.ts';
import { startListeners, type Listeners } from './listeners.ts';
import { drain, type DrainOptions, type DrainOutcome } from './shutdown.ts';

export interface RunningWorker {
  /** Base URL of the main listener, e.g. http://127.0.0.1:3000 (https:// when USE_SSL). */
  readonly url: string;
  readonly port: number;
  /** Base URL of the plain-HTTP listener that serves only POST /session/end. */
  readonly httpUrl: string;
  readonly httpPort: number;
  readonly runtime: WorkerRuntime;
  /** Resolves true once the public key is loaded, false if the fetch gave up; true at once when UNSECURED. */
  readonly publicKeyLoaded: Promise<boolean>;
  /** The readiness sequence (log watcher, benchmark, healthcheck). */
  readonly readinessSequence: ReadinessSequence;
  /** Stops accepting connections on both listeners; requests in progress finish. */
  stopAccepting(): void;
  /**
   * Graceful drain (lib/server/shutdown.ts), then `close()`. The grace period defaults to
   * TERMINATION_GRACE_PERIOD_SECONDS.
   */
  drain(options?: Partial<DrainOptions>): Promise<DrainOutcome>;
  /** Stops listening, closes connections and timers. Does not drain: see `drain`. */
  close(): Promise<void>;
}

/**
 * Runs a worker: listens, fetches the public key, starts readiness and reporting. Everything it starts,
 * `close()` stops.
 */
export async function startWorker(
  worker: ResolvedWorker,
  config: ResolvedConfig,
  deps: WorkerDeps = {},
): Promise<RunningWorker> {
  const { listener, runtime } = createWorkerApp(worker, config, deps);

  // HTTPS when USE_SSL, plus the plain /session/end listener; a bad TLS pair throws here.
  const listeners = await startListeners(runtime, listener);
  const { url, port, httpUrl, httpPort } = listeners;
  runtime.setBoundPort(port);
  logListening(runtime, listeners);
  const stopSessionGc = startSessionGc(
    runtime,
    deps.sessionGcIntervalMs ?? DEFAULT_SESSION_GC_INTERVAL_MS,
  );

  const stopKeyFetch = new AbortController();
  const publicKeyLoaded = loadPublicKey(runtime, stopKeyFetch.signal);
  runtime.reporter?.start();
  const readinessSequence = createReadinessSequence(runtime, publicKeyLoaded);
  readinessSequence.start();

  let closing: Promise<void> | undefined;
  const running: RunningWorker = {
    url,
    port,
    httpUrl,
    httpPort,
    runtime,
    publicKeyLoaded,
    readinessSequence,
    stopAccepting: () => listeners.stopAccepting(),
    drain: (options = {}) =>
      drain(running, {
        gracePeriodMs: config.terminationGracePeriodSeconds * 1000,
        ...options,
      }),
    // Idempotent: a drain ends with close(), and the caller may close again.
    close: () =>
      (closing ??= (async () => {
        stopKeyFetch.abort();
        stopSessionGc();
        await readinessSequence.stop();
        await runtime.reporter?.stop();
        await listeners.close();
        await runtime.dispatcher.close();
        await closeTokenizerPool();
      })()),
  };
  return running;
}

function logListening(runtime: WorkerRuntime, listeners: Listeners): void {
  runtime.logger.child({ component: 'server' }).info(
    {
      url: listeners.url,
      httpUrl: listeners.httpUrl,
      // The URL the autoscaler is told to route clients to: PUBLIC_IPADDR and VAST_TCP_PORT_<port>.
      ...(runtime.reporter === undefined ? {} : { publicUrl: runtime.publicUrl() }),
      worker: runtime.worker.name,
      modelServer: runtime.modelServerUrl,
      version: tsworkerVersion(),
    },
    'worker listening',
  );
}

/** Log watcher, benchmark and healthcheck, from the config and the worker's definition. */
function createReadinessSequence(
  runtime: WorkerRuntime,
  publicKeyLoaded: Promise<boolean>,
): ReadinessSequence {
  const { config, worker } = runtime;
  return new ReadinessSequence({
    worker,
    readiness: runtime.readiness,
    dispatcher: runtime.dispatcher,
    modelServerUrl: runtime.modelServerUrl,
    modelBasePath: basePath(runtime.modelServerUrl),
    modelLog: config.modelLog ?? worker.modelLog,
    benchmarkCacheFile: config.benchmarkCacheFile,
    timings: config.timings,
    mode: config.readiness,
    healthcheckFailures: config.healthcheckFailures,
    assumedThroughput: runtime.assumedThroughput,
    publicKeyLoaded: runtime.verifier === undefined ? undefined : publicKeyLoaded,
    logger: runtime.logger,
  });
}

async function loadPublicKey(runtime: WorkerRuntime, signal: AbortSignal): Promise<boolean> {
  const verifier = runtime.verifier;
  // UNSECURED never needs the key, so a failed fetch must not error the worker (§12.5).
  if (verifier === undefined) return true;
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
    return true;
  } catch (error) {
    if (signal.aborted) return false;
    const message = error instanceof Error ? error.message : String(error);
    log.error({ err: error }, 'public key fetch gave up');
    runtime.readiness.errored(message);
    return false;
  }
}
