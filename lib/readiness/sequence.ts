import { setTimeout as delay } from 'node:timers/promises';
import { Pool, type Dispatcher } from 'undici';
import type { Timings } from '../config.ts';
import type { ResolvedBenchmark, ResolvedHandler } from '../handler.ts';
import type { Logger } from '../log.ts';
import { LogAction, type ResolvedWorker } from '../worker.ts';
import { runBenchmark } from './benchmark.ts';
import { HealthcheckLoop } from './healthcheck.ts';
import { watchModelLog, type LogMatch, type LogWatcher } from './log-watcher.ts';
import type { ReadinessState } from './state.ts';

/** Longest error message sent to the autoscaler: the pattern plus the log line, cut here. */
const MAX_ERROR_LENGTH = 1000;

export interface ReadinessSequenceOptions {
  readonly worker: ResolvedWorker;
  readonly readiness: ReadinessState;
  readonly dispatcher: Dispatcher;
  readonly modelServerUrl: string;
  readonly modelBasePath: string;
  readonly modelLog: string | undefined;
  readonly benchmarkCacheFile: string;
  readonly timings: Timings;
  readonly assumedThroughput: number;
  /** Resolves when the public key is loaded; undefined in UNSECURED mode. */
  readonly publicKeyLoaded: Promise<boolean> | undefined;
  readonly logger: Logger;
}

function withTimeout<T>(
  promise: Promise<T>,
  ms: number,
  message: string,
  signal: AbortSignal,
): Promise<T> {
  return Promise.race([
    promise,
    delay(ms, undefined, { signal, ref: false }).then(() => {
      throw new Error(message);
    }),
  ]);
}

/**
 * The readiness sequence (protocol §6.3, §6.4): when the model is loaded — a log line, a lifecycle
 * hook, or at once when neither is configured — benchmark it, wait for its first healthy check (or
 * the configured wait), wait for the public key in secured mode, then mark the worker ready.
 * The log is read on its own: an error line printed during a long benchmark is acted on at once.
 */
export class ReadinessSequence {
  readonly #options: ReadinessSequenceOptions;
  readonly #log: Logger;
  readonly #stopping = new AbortController();
  readonly healthcheck: HealthcheckLoop | undefined;
  /** A pool of its own when the health route lives on another server (an absolute URL). */
  readonly #healthDispatcher: Dispatcher | undefined;
  #watcher: LogWatcher | undefined;
  #running: Promise<void> | undefined;
  #rerun = false;

  constructor(options: ReadinessSequenceOptions) {
    this.#options = options;
    this.#log = options.logger.child({ component: 'readiness' });
    const path = options.worker.modelHealthcheckPath;
    const absolute = path !== undefined && /^https?:\/\//i.test(path) ? new URL(path) : undefined;
    this.#healthDispatcher =
      absolute === undefined ? undefined : new Pool(absolute.origin, { connections: 1 });
    this.healthcheck =
      path === undefined
        ? undefined
        : new HealthcheckLoop({
            dispatcher: this.#healthDispatcher ?? options.dispatcher,
            path:
              absolute === undefined
                ? options.modelBasePath + path
                : absolute.pathname + absolute.search,
            intervalMs: options.timings.healthcheckInterval * 1000,
            timeoutMs: options.timings.healthcheckTimeout * 1000,
            readiness: options.readiness,
            logger: options.logger,
          });
  }

  /** Starts watching for the model: the lifecycle hook, the model log, or neither (ready at once). */
  start(): void {
    const { worker, modelLog } = this.#options;
    if (worker.lifecycle !== undefined) {
      const lifecycle = worker.lifecycle;
      this.#log.info('waiting for the lifecycle hook');
      lifecycle.start().then(
        () => this.modelLoaded(),
        (error: unknown) => this.#fail(`Lifecycle startup failed: ${describe(error)}`),
      );
    } else if (modelLog !== undefined) {
      this.#log.info({ modelLog }, 'watching the model log');
      this.#watcher = watchModelLog({
        path: modelLog,
        actions: worker.logActions,
        onMatch: (match) => this.#onLogMatch(match),
        onEvent: (event) =>
          this.#log.info({ event: event.kind, detail: event.detail }, 'model log'),
      });
    } else {
      this.#log.warn(
        'neither MODEL_LOG nor a lifecycle hook is set: treating the model as loaded now',
      );
      this.modelLoaded();
    }
  }

  /**
   * The model is (again) loaded. Runs the sequence; a load signal that arrives while it runs makes it
   * run once more afterwards, never twice at the same time.
   */
  modelLoaded(): void {
    if (this.#running !== undefined) {
      this.#rerun = true;
      return;
    }
    this.#running = this.#run().finally(() => {
      this.#running = undefined;
      if (this.#rerun && !this.#stopping.signal.aborted) {
        this.#rerun = false;
        this.modelLoaded();
      }
    });
  }

  /** Complete model-log lines read so far. */
  get logLinesRead(): number {
    return this.#watcher?.linesRead ?? 0;
  }

  /** Resolves when no sequence is running (tests and shutdown). */
  async settled(): Promise<void> {
    while (this.#running !== undefined) await this.#running;
  }

  async stop(): Promise<void> {
    this.#stopping.abort();
    this.healthcheck?.stop();
    await this.#healthDispatcher?.close();
    await this.#watcher?.stop();
    await this.#running?.catch(() => undefined);
  }

  #onLogMatch(match: LogMatch): void {
    switch (match.action) {
      case LogAction.ModelLoaded:
        this.#log.info({ line: match.line }, 'model loaded (log)');
        this.modelLoaded();
        break;
      case LogAction.ModelError:
        this.#fail(`${match.pattern}: ${match.line}`.slice(0, MAX_ERROR_LENGTH));
        break;
      case LogAction.Info:
        this.#log.info({ line: match.line }, 'model log');
        break;
    }
  }

  #fail(message: string): void {
    this.#log.error({ error: message }, 'worker errored');
    this.#options.readiness.errored(message);
  }

  async #run(): Promise<void> {
    const { readiness, timings, worker } = this.#options;
    if (readiness.phase === 'errored') return;
    // An error (a log line, a failed healthcheck) ends the run: benchmarking a broken model is pointless.
    const runAbort = new AbortController();
    const unsubscribe = readiness.onChange((next) => {
      if (next.phase === 'errored') runAbort.abort(new Error(next.errorMessage));
    });
    const signal = AbortSignal.any([this.#stopping.signal, runAbort.signal]);
    try {
      readiness.modelLoaded();
      readiness.benchmarking();
      const maxPerf = await this.#measure(signal);
      this.healthcheck?.enable();
      if (this.healthcheck !== undefined) {
        const seconds = timings.healthcheckReadyTimeout;
        await withTimeout(
          this.healthcheck.firstHealthy,
          seconds * 1000,
          `Timed out waiting for healthcheck after benchmark (waited ${seconds}s)`,
          signal,
        );
      } else if (timings.noHealthcheckWait > 0) {
        await delay(timings.noHealthcheckWait * 1000, undefined, { signal });
      }
      const keyLoaded = this.#options.publicKeyLoaded;
      if (keyLoaded !== undefined) {
        const seconds = timings.pubkeyWait;
        const ok = await withTimeout(
          keyLoaded,
          seconds * 1000,
          `Timed out waiting for pubkey fetch (waited ${seconds}s)`,
          signal,
        );
        if (!ok) throw new Error('Cannot mark model as loaded: pubkey fetch failed');
      }
      readiness.ready(maxPerf);
      this.#log.info(
        { worker: worker.name, maxPerf, loadtime: readiness.loadtime },
        'worker ready',
      );
    } catch (error) {
      if (signal.aborted) return;
      this.#fail(`Benchmark failed with error: ${describe(error)}`);
    } finally {
      unsubscribe();
    }
  }

  async #measure(signal: AbortSignal): Promise<number> {
    const handler = this.#options.worker.benchmarkHandler;
    if (handler?.benchmark === undefined) {
      this.#log.warn(
        { assumedThroughput: this.#options.assumedThroughput },
        'no handler carries a benchmark: reporting the assumed throughput as max_perf',
      );
      return this.#options.assumedThroughput;
    }
    return runBenchmark({
      handler: handler as ResolvedHandler & { readonly benchmark: ResolvedBenchmark },
      dispatcher: this.#options.dispatcher,
      modelBasePath: this.#options.modelBasePath,
      modelServerUrl: this.#options.modelServerUrl,
      cacheFile: this.#options.benchmarkCacheFile,
      logger: this.#options.logger,
      signal,
    });
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
