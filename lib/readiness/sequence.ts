import { setTimeout as sleep } from 'node:timers/promises';
import { Pool, type Dispatcher } from 'undici';
import type { ReadinessMode, Timings } from '../config.ts';
import type { ResolvedBenchmark, ResolvedHandler } from '../handler.ts';
import { runAfter, runEvery, withTimeout } from '../internal/timers.ts';
import { errorMessage } from '../internal/values.ts';
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
  /** What tells the worker the model is loaded (`READINESS`). @default 'logs' */
  readonly mode?: ReadinessMode;
  /** Failed (or passed) healthchecks in a row that error (or clear) the worker. @default 3 */
  readonly healthcheckFailures?: number;
}

/**
 * The readiness sequence (protocol §6.3, §6.4): when the model is loaded — a log line, a lifecycle
 * hook, or at once when neither is configured — benchmark it, wait for its first healthy check (or
 * the configured wait), wait for the public key in secured mode, then mark the worker ready.
 * The log is read on its own: an error line printed during a long benchmark is acted on at once.
 *
 * What says "loaded" follows `mode` (READINESS):
 * - `logs`: a load line in the model log. A worker restarted while its model kept running finds
 *   no load line (it is in MODEL_LOG.old), so after `readinessGrace` seconds without one the
 *   healthcheck is probed too, and a pass counts, with a warning.
 * - `health`: the first passing healthcheck, probed from the start, as the newest reference's
 *   `readiness="healthcheck"` (load lines are only logged; error lines still error the worker).
 * - `both`: whichever comes first, a load line or a passing healthcheck.
 * `health` and `both` give up after `readinessTimeout` seconds. While it waits, the sequence logs
 * every `readinessLogInterval` seconds what it waits for.
 */
export class ReadinessSequence {
  readonly #options: ReadinessSequenceOptions;
  readonly #log: Logger;
  readonly #stopping = new AbortController();
  readonly healthcheck: HealthcheckLoop | undefined;
  /** A pool of its own when the health route lives on another server (an absolute URL). */
  readonly #healthDispatcher: Dispatcher | undefined;
  readonly #mode: ReadinessMode;
  /** The model healthcheck's URL, for log lines. */
  readonly #healthcheckUrl: string | undefined;
  readonly #loadPatterns: readonly string[];
  #watcher: LogWatcher | undefined;
  #logFileOpen = false;
  #running: Promise<void> | undefined;
  #rerun = false;
  /** Aborted once the model is first reported loaded (or the worker errors or stops). */
  #waiting: AbortController | undefined;

  constructor(options: ReadinessSequenceOptions) {
    this.#options = options;
    this.#log = options.logger.child({ component: 'readiness' });
    this.#mode = options.mode ?? 'logs';
    this.#loadPatterns = options.worker.logActions
      .filter(([action]) => action === LogAction.ModelLoaded)
      .map(([, pattern]) => pattern);
    const path = options.worker.modelHealthcheckPath;
    const absolute = path !== undefined && /^https?:\/\//i.test(path) ? new URL(path) : undefined;
    this.#healthcheckUrl =
      path === undefined ? undefined : (absolute?.href ?? options.modelServerUrl + path);
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
            failuresToError: options.healthcheckFailures ?? 3,
          });
  }

  /**
   * Starts watching for the model: the lifecycle hook, the model log and/or the healthcheck
   * (`mode`), or neither (ready at once).
   */
  start(): void {
    const { worker, modelLog } = this.#options;
    const mode = this.#mode;
    if (worker.lifecycle !== undefined && mode !== 'logs') {
      // As the reference: the two would race to say "loaded", so the combination is refused.
      this.#fail(
        `READINESS=${mode} cannot be used with a lifecycle hook, which says itself when the model is loaded`,
      );
    } else if (mode !== 'logs' && this.healthcheck === undefined) {
      this.#fail(
        `Healthcheck readiness failed: READINESS=${mode} needs a model healthcheck, and worker "${worker.name}" has no modelHealthcheckPath`,
      );
    } else if (worker.lifecycle !== undefined) {
      const lifecycle = worker.lifecycle;
      this.#log.info('waiting for the lifecycle hook');
      lifecycle.start().then(
        () => this.modelLoaded(),
        (error: unknown) => this.#fail(`Lifecycle startup failed: ${errorMessage(error)}`),
      );
    } else if (modelLog === undefined && mode === 'logs') {
      this.#log.warn(
        'neither MODEL_LOG nor a lifecycle hook is set: treating the model as loaded now',
      );
      this.modelLoaded();
    } else {
      if (modelLog !== undefined) {
        this.#log.info(
          { modelLog, readiness: mode, loadPatterns: this.#loadPatterns },
          'watching the model log',
        );
        this.#watcher = watchModelLog({
          path: modelLog,
          actions: worker.logActions,
          onMatch: (match) => this.#onLogMatch(match),
          onEvent: (event) => {
            if (event.kind === 'opened') this.#logFileOpen = true;
            else if (event.kind === 'waiting') this.#logFileOpen = false;
            this.#log.info({ event: event.kind, detail: event.detail }, 'model log');
          },
        });
      }
      this.#waitForModel();
    }
  }

  /**
   * Until the model is first reported loaded: the periodic "still waiting" line, the healthcheck
   * as a readiness signal (`health`, `both`, or `logs` after the grace period) and the timeout.
   */
  #waitForModel(): void {
    const waiting = new AbortController();
    this.#waiting = waiting;
    // An error ends the wait: the healthcheck must not then mark a broken model loaded.
    const unsubscribe = this.#options.readiness.onChange((next) => {
      if (next.phase === 'errored') waiting.abort();
    });
    waiting.signal.addEventListener('abort', unsubscribe, { once: true });
    this.#logWhileWaiting(waiting.signal);
    const healthcheck = this.healthcheck;
    if (healthcheck === undefined) return;
    if (this.#mode === 'logs') this.#probeAfterGrace(healthcheck, waiting.signal);
    else this.#probeUntilTimeout(healthcheck, waiting.signal);
  }

  /** Every `readinessLogInterval` seconds, what the sequence is still waiting for. */
  #logWhileWaiting(waiting: AbortSignal): void {
    const mode = this.#mode;
    const startedAt = Date.now();
    runEvery(this.#options.timings.readinessLogInterval * 1000, waiting, () => {
      const waited = Math.round((Date.now() - startedAt) / 100) / 10;
      this.#log.info(
        {
          readiness: mode,
          waitedSeconds: waited,
          loadPatterns: mode === 'health' ? undefined : this.#loadPatterns,
          modelLog: mode === 'health' ? undefined : this.#options.modelLog,
          healthcheck: this.#healthcheckUrl,
        },
        `still waiting for the model after ${waited}s: ${this.#waitingFor()}`,
      );
    });
  }

  /**
   * READINESS=logs: without a load line after `readinessGrace` seconds, probe the healthcheck; a
   * pass counts as loaded (a worker restarted while its model kept running finds no load line).
   */
  #probeAfterGrace(healthcheck: HealthcheckLoop, waiting: AbortSignal): void {
    const url = this.#healthcheckUrl ?? '';
    const grace = this.#options.timings.readinessGrace;
    runAfter(grace * 1000, waiting, () => {
      this.#log.info(
        { healthcheck: url, graceSeconds: grace },
        `no load line after ${grace}s: probing the model's healthcheck ${url}; if it passes, the model counts as loaded`,
      );
      healthcheck.enable();
    });
    void healthcheck.firstHealthy.then(() => {
      if (waiting.aborted) return;
      const modelLog = this.#options.modelLog ?? '';
      this.#log.warn(
        { loadPatterns: this.#loadPatterns, modelLog, healthcheck: url, graceSeconds: grace },
        `no load line (${this.#describePatterns()}) in ${modelLog} after ${grace}s, but the model ` +
          `passes its healthcheck ${url}: treating the model as loaded and starting the readiness ` +
          `sequence. Was the worker restarted while the model kept running? Its load line would ` +
          `then be in ${modelLog}.old`,
      );
      this.modelLoaded();
    });
  }

  /**
   * READINESS=health or both: probe the healthcheck from the start; its first pass counts as
   * loaded, and the worker errors after `readinessTimeout` seconds without one (nor a load line).
   */
  #probeUntilTimeout(healthcheck: HealthcheckLoop, waiting: AbortSignal): void {
    const mode = this.#mode;
    const url = this.#healthcheckUrl ?? '';
    healthcheck.enable();
    void healthcheck.firstHealthy.then(() => {
      if (waiting.aborted) return;
      this.#log.info({ healthcheck: url, readiness: mode }, 'model loaded (healthcheck passed)');
      this.modelLoaded();
    });
    const seconds = this.#options.timings.readinessTimeout;
    runAfter(seconds * 1000, waiting, () => {
      const modelLog = this.#options.modelLog;
      this.#fail(
        mode === 'both' && modelLog !== undefined
          ? `Timed out waiting for the model: no load line in ${modelLog} and no passing healthcheck (waited ${seconds}s)`
          : `Healthcheck readiness failed: Timed out waiting for healthcheck readiness (${seconds}s)`,
      );
    });
  }

  /** What the sequence waits for, in words, for the periodic line. */
  #waitingFor(): string {
    const { modelLog, timings } = this.#options;
    const url = this.#healthcheckUrl;
    const parts: string[] = [];
    if (this.#mode !== 'health' && modelLog !== undefined) {
      const missing = this.#logFileOpen ? '' : ' (the file does not exist yet)';
      parts.push(`a line containing ${this.#describePatterns()} in ${modelLog}${missing}`);
    }
    if (url !== undefined) {
      parts.push(
        this.#mode === 'logs'
          ? `a passing healthcheck at ${url} (probed once no load line came for ${timings.readinessGrace}s)`
          : `a passing healthcheck at ${url}`,
      );
    }
    return parts.join(', or ');
  }

  #describePatterns(): string {
    if (this.#loadPatterns.length === 0) return 'an onLoad pattern, but the worker has none';
    return this.#loadPatterns.map((pattern) => JSON.stringify(pattern)).join(' or ');
  }

  /**
   * The model is (again) loaded. Runs the sequence; a load signal that arrives while it runs makes it
   * run once more afterwards, never twice at the same time.
   */
  modelLoaded(): void {
    this.#waiting?.abort();
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
    this.#waiting?.abort();
    this.healthcheck?.stop();
    await this.#healthDispatcher?.close();
    await this.#watcher?.stop();
    await this.#running?.catch(() => undefined);
  }

  #onLogMatch(match: LogMatch): void {
    switch (match.action) {
      case LogAction.ModelLoaded:
        if (this.#mode === 'health') {
          this.#log.info(
            { line: match.line },
            'load line logged (READINESS=health: the healthcheck decides)',
          );
          break;
        }
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
        // Rejects on abort, which ends the run before the worker is marked ready.
        await sleep(timings.noHealthcheckWait * 1000, undefined, { signal });
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
      this.#fail(`Benchmark failed with error: ${errorMessage(error)}`);
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
