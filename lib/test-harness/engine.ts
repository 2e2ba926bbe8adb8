/**
 * The load engine: sends requests on an open-loop schedule (a rate) or from N closed-loop users,
 * through a target (the autoscaler's /route/ or one URL), re-routes on 408/429/5xx and connection
 * errors with capped exponential backoff, and times each request: first byte, first token (first
 * `data:` or JSONL line of a stream), end; tokens and bytes. It keeps no bodies unless a `verify`
 * or `tokens` hook needs them, so it can push thousands of requests a second from one core.
 *
 * One `LoadRunner` owns a run's state and its cleanup; `attempt.ts` sends one attempt and
 * `loops.ts` holds the open and closed loops.
 */
import { setMaxListeners } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, type Dispatcher } from 'undici';
import type { Random } from './arrivals.ts';
import { attemptOnce, Cancelled, type Attempt, type AttemptEnvironment } from './attempt.ts';
import type {
  ErrorCause,
  LoadOptions,
  LoadResult,
  LoadRun,
  PlannedRequest,
  Progress,
  RequestResult,
} from './load-types.ts';
import { ClosedLoop, OpenLoop, type LoopHost, type LoopStrategy } from './loops.ts';
import { RecentWindow } from './stats.ts';
import type { RouteContext } from './targets.ts';

/** What a request's attempts decided, before it becomes a record. */
interface Outcome {
  readonly last: Attempt;
  readonly attempts: number;
  readonly routeMs: number;
}

/** One run: its settings, counters, abort signals and own dispatcher. */
class LoadRunner implements LoopHost {
  readonly stopSignal: AbortSignal;
  readonly #options: LoadOptions;
  readonly #random: Random;
  readonly #retries: number;
  readonly #baseMs: number;
  readonly #capMs: number;
  readonly #timeoutMs: number;
  readonly #ownDispatcher: Agent | undefined;
  readonly #env: AttemptEnvironment;
  readonly #stopController = new AbortController();
  readonly #abortController = new AbortController();
  #phase: Progress['phase'];
  #measuredStart = 0;
  readonly #live = { routing: 0, waiting: 0, receiving: 0, backoff: 0 };
  #started = 0;
  #succeeded = 0;
  #failed = 0;
  #warmupDone = 0;
  #warmupFailed = 0;
  readonly #errors: Record<ErrorCause, number> = {
    routing: 0,
    worker: 0,
    connection: 0,
    timeout: 0,
    verify: 0,
  };
  readonly #retried: Record<string, number> = {};
  readonly #recent = new RecentWindow();
  readonly #workers = new Set<string>();
  readonly #records: RequestResult[] = [];

  constructor(options: LoadOptions) {
    this.#options = options;
    this.#random = options.random ?? Math.random;
    this.#retries = options.retry?.retries ?? 3;
    this.#baseMs = options.retry?.baseMs ?? 250;
    this.#capMs = options.retry?.capMs ?? 5000;
    this.#timeoutMs = options.timeoutMs ?? 0;
    this.#phase = (options.warmup ?? 0) > 0 ? 'warmup' : 'running';
    this.#ownDispatcher =
      options.dispatcher === undefined
        ? new Agent({
            keepAliveTimeout: 30_000,
            ...(options.ca === undefined ? {} : { connect: { ca: options.ca } }),
          })
        : undefined;
    this.#env = {
      target: options.target,
      dispatcher: options.dispatcher ?? (this.#ownDispatcher as Dispatcher),
      live: this.#live,
      now: () => this.now(),
      timeoutMs: this.#timeoutMs,
      onWorker: (url) => this.#workers.add(url),
    };
    this.stopSignal = this.#stopController.signal;
    // Every request in flight listens on these; hundreds of listeners are expected, not a leak.
    setMaxListeners(0, this.#stopController.signal, this.#abortController.signal);
  }

  now(): number {
    return performance.now();
  }

  plan(index: number): PlannedRequest {
    return this.#options.plan(index);
  }

  onStarted(): void {
    this.#started++;
  }

  onDraining(): void {
    this.#phase = 'draining';
  }

  stop(): void {
    this.#stopController.abort();
  }

  abort(): void {
    this.#stopController.abort();
    this.#abortController.abort(new Cancelled('cancelled'));
  }

  async run(): Promise<LoadResult> {
    try {
      await this.#warmUp();
      const { schedule, count } = this.#options;
      // The first payload is made before the clock starts: a lazy start-up (a tokenizer) is not lag.
      const first = schedule.kind === 'open' && count > 0 ? this.plan(0) : undefined;
      this.#phase = 'running';
      this.#measuredStart = this.now();
      const startedAt = Date.now();
      const loop = this.#measuredLoop(first);
      await loop.run(this.#measuredStart);
      return this.#result(loop, startedAt, this.now() - this.#measuredStart);
    } finally {
      await this.#ownDispatcher?.close();
    }
  }

  progress(): Progress {
    return {
      phase: this.#phase,
      elapsedMs: this.#phase === 'warmup' ? 0 : this.now() - this.#measuredStart,
      total: this.#options.count,
      started: this.#started,
      ...this.#live,
      succeeded: this.#succeeded,
      failed: this.#failed,
      errors: { ...this.#errors },
      recent: this.#recent.distribution(),
      workers: this.#workers.size,
      warmupDone: this.#warmupDone,
    };
  }

  /** Warm-up requests go through a closed loop, whatever the schedule. */
  async #warmUp(): Promise<void> {
    const warmup = this.#options.warmup ?? 0;
    if (warmup <= 0) return;
    const { schedule } = this.#options;
    const users =
      schedule.kind === 'closed'
        ? schedule.concurrency
        : Math.max(1, Math.min(8, Math.ceil(schedule.rate)));
    await new ClosedLoop(this, warmup, users, 0, false).run();
  }

  #measuredLoop(first: PlannedRequest | undefined): LoopStrategy {
    const { schedule, count } = this.#options;
    if (schedule.kind === 'open') return new OpenLoop(this, schedule, count, this.#random, first);
    if (!(schedule.concurrency >= 1)) throw new RangeError('concurrency must be >= 1');
    return new ClosedLoop(this, count, schedule.concurrency, schedule.rampSeconds ?? 0, true);
  }

  #result(loop: LoopStrategy, startedAt: number, durationMs: number): LoadResult {
    this.#phase = 'done';
    const records = this.#records.sort((a, b) => a.index - b.index);
    return {
      records,
      startedAt,
      durationMs,
      sendSpanMs: loop.sendSpanMs(records),
      maxLagMs: loop.maxLagMs,
      warmup: { sent: this.#warmupDone, failed: this.#warmupFailed },
      retried: this.#retried,
      stopped: this.#stopController.signal.aborted && records.length < this.#options.count,
    };
  }

  async execute(index: number, planned: PlannedRequest, measured: boolean): Promise<RequestResult> {
    const t0 = this.now();
    const outcome = await this.#sendWithRetries(index, planned, measured, t0);
    const { last } = outcome;
    const record: RequestResult = {
      index,
      route: planned.route,
      ok: last.cause === undefined,
      status: last.status,
      cause: last.cause,
      detail: last.detail,
      sample: last.sample,
      startMs: t0 - this.#measuredStart,
      routeMs: outcome.routeMs,
      ttfbMs: last.ttfbMs,
      ttftMs: last.ttftMs,
      totalMs: this.now() - t0,
      streamed: last.streamed,
      tokens: last.tokens,
      bytes: last.bytes,
      attempts: outcome.attempts,
      workerUrl: last.workerUrl,
    };
    this.#count(record, measured);
    return record;
  }

  async #sendWithRetries(
    index: number,
    planned: PlannedRequest,
    measured: boolean,
    t0: number,
  ): Promise<Outcome> {
    const signal = this.#requestSignal();
    const context: RouteContext = {
      route: planned.route,
      payloadJson: JSON.stringify(planned.payload) ?? 'null',
      cost: planned.cost ?? 100,
      index,
      attempt: 0,
      dispatcher: this.#env.dispatcher,
      signal,
      requestIdx: undefined,
    };
    const timing = { routeMs: 0 };
    for (let attempts = 1; ; attempts++) {
      const last = await attemptOnce(this.#env, planned, context, t0, measured, timing);
      const done = last.cause === undefined || !last.retryable || attempts > this.#retries;
      if (done || signal.aborted || !(await this.#backOff(last, attempts, signal))) {
        return { last, attempts, routeMs: timing.routeMs };
      }
      (context as { attempt: number }).attempt = attempts;
    }
  }

  /** Counts the retry and waits before the next attempt; false when the wait was cut short. */
  async #backOff(last: Attempt, attempts: number, signal: AbortSignal): Promise<boolean> {
    const key = `${String(last.cause)} ${String(last.detail)}`;
    this.#retried[key] = (this.#retried[key] ?? 0) + 1;
    this.#live.backoff++;
    try {
      await sleep(this.#backoffMs(attempts - 1, last.hintMs), undefined, { signal });
      return true;
    } catch {
      // The deadline passed or the run was aborted during the backoff: keep this outcome.
      return false;
    } finally {
      this.#live.backoff--;
    }
  }

  #backoffMs(attempt: number, hintMs: number | undefined): number {
    const exp = Math.min(this.#capMs, this.#baseMs * 2 ** attempt);
    const jittered = exp * (0.5 + this.#random() / 2);
    return hintMs === undefined ? jittered : Math.max(jittered, Math.min(this.#capMs, hintMs));
  }

  #requestSignal(): AbortSignal {
    const abortSignal = this.#abortController.signal;
    if (this.#timeoutMs <= 0) return abortSignal;
    return AbortSignal.any([abortSignal, AbortSignal.timeout(this.#timeoutMs)]);
  }

  #count(record: RequestResult, measured: boolean): void {
    if (!measured) {
      this.#warmupDone++;
      if (!record.ok) this.#warmupFailed++;
      return;
    }
    if (record.cause === undefined) {
      this.#succeeded++;
      this.#recent.push(record.totalMs);
    } else {
      this.#failed++;
      this.#errors[record.cause]++;
    }
    this.#records.push(record);
    this.#options.onRecord?.(record);
  }
}

/** Starts a run; `result` resolves when every request has ended. */
export function startLoad(options: LoadOptions): LoadRun {
  if (!Number.isInteger(options.count) || options.count < 0) {
    throw new RangeError(`count must be a whole number >= 0, got ${options.count}`);
  }
  const runner = new LoadRunner(options);
  return {
    result: runner.run(),
    stop: () => runner.stop(),
    abort: () => runner.abort(),
    progress: () => runner.progress(),
  };
}

/** Runs to the end and returns the result. */
export function runLoad(options: LoadOptions): Promise<LoadResult> {
  return startLoad(options).result;
}
