import { fetchPublicKey } from '../auth/index.ts';
import { closeTokenizerPool } from '../tokenizer-pool.ts';
import { tsworkerVersion, type ResolvedConfig } from '../config.ts';
import { basePath } from '../proxy/index.ts';
import { ReadinessSequence } from '../readiness/sequence.ts';
import type { ResolvedWorker } from '../worker.ts';
import type { RequestLifecycle } from '../lifecycle/channel.ts';
import type { IntervalCounters, RequestRecord } from '../metrics/accounting.ts';
import type { ReadinessState } from '../readiness/state.ts';
import { DEFAULT_SESSION_GC_INTERVAL_MS, type SessionManager } from '../sessions/manager.ts';
import { createWorkerApp, type WorkerDeps, type WorkerParts } from './app.ts';
import { startListeners, type Listeners } from './listeners.ts';
import { drain, type DrainOptions, type DrainOutcome } from './shutdown.ts';
import { errorMessage } from '../internal/values.ts';

export interface RunningWorker {
  /** Base URL of the main listener, e.g. http://127.0.0.1:3000 (https:// when USE_SSL). */
  readonly url: string;
  readonly port: number;
  /** Base URL of the plain-HTTP listener that serves only POST /session/end. */
  readonly httpUrl: string;
  readonly httpPort: number;
  readonly worker: ResolvedWorker;
  /** Loading, benchmark, errors and drain: `phase`, `onChange`, and `errored()` to report a failure. */
  readonly readiness: ReadinessState;
  /** Every step of every request, as it happens: `subscribe` to observe them. */
  readonly lifecycle: RequestLifecycle;
  readonly sessions: SessionManager;
  /** The URL the autoscaler is told to route clients to. */
  publicUrl(): string;
  /** The worker's counters and queues right now: for diagnostics and tests. */
  inspect(): WorkerInspection;
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

/** A point-in-time view of a running worker's accounting and queues. */
export interface WorkerInspection {
  /** Workload by what happened to it, since start-up. */
  readonly totals: Readonly<IntervalCounters>;
  /** Requests admitted and not ended, and open sessions (`num_requests_working`). */
  readonly working: number;
  /** Sum of in-flight workloads, sessions included (`cur_load`). */
  readonly currentLoad: number;
  /** Workload that counts toward the estimated wait. */
  readonly queuedWorkload: number;
  /** `num_requests_recieved`. */
  readonly receivedCount: number;
  /** Finished and rejected requests not yet reported to /delete_requests/, oldest first. */
  readonly pendingDeletes: readonly Readonly<RequestRecord>[];
  /** HTTP requests the pipeline is handling, from arrival to the last byte. */
  readonly requestsInProgress: number;
  /** The FIFO of handlers without `allowParallel`. */
  readonly fifo: { readonly busy: boolean; readonly waiting: number };
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
  const { listener, parts } = createWorkerApp(worker, config, deps);

  // HTTPS when USE_SSL, plus the plain /session/end listener; a bad TLS pair throws here.
  const listeners = await startListeners(config, parts, listener);
  const { url, port, httpUrl, httpPort } = listeners;
  parts.setBoundPort(port);
  logListening(parts, listeners);
  parts.sessions.startGc(deps.sessionGcIntervalMs ?? DEFAULT_SESSION_GC_INTERVAL_MS);

  const stopKeyFetch = new AbortController();
  const publicKeyLoaded = loadPublicKey(parts, stopKeyFetch.signal);
  parts.reporter?.start();
  const readinessSequence = createReadinessSequence(parts, publicKeyLoaded);
  readinessSequence.start();

  let closing: Promise<void> | undefined;
  const stopAccepting = (): void => listeners.stopAccepting();
  // Idempotent: a drain ends with close(), and the caller may close again.
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      stopKeyFetch.abort();
      parts.sessions.stopGc();
      await readinessSequence.stop();
      await parts.reporter?.stop();
      await listeners.close();
      await parts.dispatcher.close();
      await closeTokenizerPool();
    })());
  const drainable = { ...parts, stopAccepting, close };
  return {
    url,
    port,
    httpUrl,
    httpPort,
    worker,
    readiness: parts.readiness,
    lifecycle: parts.lifecycle,
    sessions: parts.sessions,
    publicUrl: parts.publicUrl,
    inspect: () => inspect(parts),
    publicKeyLoaded,
    readinessSequence,
    stopAccepting,
    drain: (options = {}) =>
      drain(drainable, {
        gracePeriodMs: config.terminationGracePeriodSeconds * 1000,
        ...options,
      }),
    close,
  };
}

function inspect(parts: WorkerParts): WorkerInspection {
  const { accounting } = parts;
  return {
    totals: accounting.totals,
    working: accounting.workingCount,
    currentLoad: accounting.currentLoad(),
    queuedWorkload: accounting.queuedWorkload,
    receivedCount: accounting.receivedCount,
    pendingDeletes: accounting.peekDeletes(),
    requestsInProgress: parts.inFlight.size,
    fifo: { busy: parts.fifo.busy, waiting: parts.fifo.waiting },
  };
}

function logListening(parts: WorkerParts, listeners: Listeners): void {
  parts.logger.child({ component: 'server' }).info(
    {
      url: listeners.url,
      httpUrl: listeners.httpUrl,
      // The URL the autoscaler is told to route clients to: PUBLIC_IPADDR and VAST_TCP_PORT_<port>.
      ...(parts.reporter === undefined ? {} : { publicUrl: parts.publicUrl() }),
      worker: parts.worker.name,
      modelServer: parts.modelServerUrl,
      version: tsworkerVersion(),
    },
    'worker listening',
  );
}

/** Log watcher, benchmark and healthcheck, from the config and the worker's definition. */
function createReadinessSequence(
  parts: WorkerParts,
  publicKeyLoaded: Promise<boolean>,
): ReadinessSequence {
  const { config, worker } = parts;
  return new ReadinessSequence({
    worker,
    readiness: parts.readiness,
    dispatcher: parts.dispatcher,
    modelServerUrl: parts.modelServerUrl,
    modelBasePath: basePath(parts.modelServerUrl),
    modelLog: config.modelLog ?? worker.modelLog,
    benchmarkCacheFile: config.benchmarkCacheFile,
    timings: config.timings,
    mode: config.readiness,
    healthcheckFailures: config.healthcheckFailures,
    assumedThroughput: parts.assumedThroughput,
    publicKeyLoaded: parts.verifier === undefined ? undefined : publicKeyLoaded,
    logger: parts.logger,
  });
}

async function loadPublicKey(parts: WorkerParts, signal: AbortSignal): Promise<boolean> {
  const verifier = parts.verifier;
  // UNSECURED never needs the key, so a failed fetch must not error the worker (§12.5).
  if (verifier === undefined) return true;
  const log = parts.logger.child({ component: 'auth' });
  try {
    const key = await fetchPublicKey({
      reportAddrs: parts.config.reportAddrs,
      signal,
      onAttemptFailed: (info: { addr: string; attempt: number; error: string }) =>
        log.warn(info, 'public key fetch failed'),
    });
    verifier.setPublicKey(key);
    log.info('public key loaded');
    return true;
  } catch (error) {
    if (signal.aborted) return false;
    const message = errorMessage(error);
    log.error({ err: error }, 'public key fetch gave up');
    parts.readiness.errored(message);
    return false;
  }
}
