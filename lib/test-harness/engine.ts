/**
 * The load engine: sends requests on an open-loop schedule (a rate) or from N closed-loop users,
 * through a target (the autoscaler's /route/ or one URL), re-routes on 408/429/5xx and connection
 * errors with capped exponential backoff, and times each request: first byte, first token (first
 * `data:` or JSONL line of a stream), end; tokens and bytes. It keeps no bodies unless a `verify`
 * or `tokens` hook needs them, so it can push thousands of requests a second from one core.
 */
import { setMaxListeners } from 'node:events';
import { StringDecoder } from 'node:string_decoder';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, type Dispatcher } from 'undici';
import { arrivalOffsets, userStartOffsets, type ArrivalKind, type Random } from './arrivals.ts';
import { RecentWindow, type Distribution } from './stats.ts';
import {
  errorCode,
  isRetryableStatus,
  RoutingError,
  type RouteContext,
  type Target,
} from './targets.ts';

/** What a `verify` hook sees of one successful (2xx) answer. */
export interface Answer<P = unknown> {
  readonly route: string;
  readonly payload: P;
  readonly status: number;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  /** The whole body as text. */
  readonly text: string;
  /** The body parsed as JSON; undefined for streams and bodies that are not JSON. */
  readonly json: unknown;
  /** For streams: each event (`data:` line or JSONL line), parsed as JSON or kept as text. */
  readonly events: readonly unknown[] | undefined;
}

/** Returns a description of what is wrong, or nothing when the answer is right. May throw. */
export type Verify<P = unknown> = (answer: Answer<P>) => string | undefined | void;

/** Tokens in one stream event, or in a whole JSON body (`kind: 'body'`). */
export type CountTokens = (value: unknown, kind: 'event' | 'body') => number;

/** One request to send. */
export interface PlannedRequest {
  readonly route: string;
  readonly payload: unknown;
  /** Sent to /route/ as `cost`. @default 100 */
  readonly cost?: number;
  readonly verify?: Verify;
  /** Without it, each stream event counts as one token and JSON bodies count none. */
  readonly tokens?: CountTokens;
}

export type ErrorCause = 'routing' | 'worker' | 'connection' | 'timeout' | 'verify';

export interface RequestRecord {
  readonly index: number;
  readonly route: string;
  readonly ok: boolean;
  /** The worker's status; 0 when no worker answered. */
  readonly status: number;
  readonly cause: ErrorCause | undefined;
  /** The error group: "status 401", "500", "ECONNREFUSED", the verify message... */
  readonly detail: string | undefined;
  /** The start of the failed answer's body, for the summary. */
  readonly sample: string | undefined;
  /** Milliseconds from the run's start to this request's start. */
  readonly startMs: number;
  /** Milliseconds spent in /route/ calls. */
  readonly routeMs: number;
  /** From the request's start (routing included) to the answer's headers. */
  readonly ttfbMs: number | undefined;
  /** From the request's start to the first stream event. */
  readonly ttftMs: number | undefined;
  readonly totalMs: number;
  readonly streamed: boolean;
  readonly tokens: number;
  readonly bytes: number;
  readonly attempts: number;
  readonly workerUrl: string | undefined;
}

export interface OpenSchedule {
  readonly kind: 'open';
  /** Requests per second once ramped up. */
  readonly rate: number;
  /** @default 'poisson' */
  readonly arrivals?: ArrivalKind;
  readonly rampSeconds?: number;
}

export interface ClosedSchedule {
  readonly kind: 'closed';
  readonly concurrency: number;
  /** Users start evenly over this many seconds. */
  readonly rampSeconds?: number;
}

export interface RetryPolicy {
  /** Re-routes after the first attempt. @default 3 */
  readonly retries?: number;
  /** First backoff; doubles per attempt. @default 250 */
  readonly baseMs?: number;
  /** @default 5000 */
  readonly capMs?: number;
}

export interface LoadOptions {
  readonly target: Target;
  /** The request with this index (0-based; warm-up requests use their own indexes from 0). */
  readonly plan: (index: number) => PlannedRequest;
  /** Measured requests. */
  readonly count: number;
  readonly schedule: OpenSchedule | ClosedSchedule;
  /** Requests sent and finished before the measured ones; not counted. @default 0 */
  readonly warmup?: number;
  readonly retry?: RetryPolicy;
  /** Deadline of one request, routing and retries included; 0 for none. @default 0 */
  readonly timeoutMs?: number;
  /** @default an undici Agent made (and closed) for this run */
  readonly dispatcher?: Dispatcher;
  /** Extra CA certificates (PEM) for TLS workers, e.g. Vast's root CA. */
  readonly ca?: string;
  /** @default Math.random */
  readonly random?: Random;
  /** Called with each measured request as it ends. */
  readonly onRecord?: (record: RequestRecord) => void;
}

export interface Progress {
  readonly phase: 'warmup' | 'running' | 'draining' | 'done';
  /** Since the measured requests began (0 during warm-up). */
  readonly elapsedMs: number;
  readonly total: number;
  readonly started: number;
  /** In flight, by state. */
  readonly routing: number;
  readonly waiting: number;
  readonly receiving: number;
  readonly backoff: number;
  readonly succeeded: number;
  readonly failed: number;
  readonly errors: Readonly<Record<ErrorCause, number>>;
  /** The latest (up to 2048) successful requests' latency. */
  readonly recent: Distribution | undefined;
  readonly workers: number;
  readonly warmupDone: number;
}

export interface LoadResult {
  /** Measured requests, by index. */
  readonly records: readonly RequestRecord[];
  /** Epoch milliseconds when the measured requests began. */
  readonly startedAt: number;
  /** From the first measured start to the last end. */
  readonly durationMs: number;
  /** From the first measured start to the last. */
  readonly sendSpanMs: number;
  /** Open loop: the worst delay between a scheduled and an actual start (the client's own lag). */
  readonly maxLagMs: number;
  readonly warmup: { readonly sent: number; readonly failed: number };
  /** Attempts that were retried, by "cause detail". */
  readonly retried: Readonly<Record<string, number>>;
  /** True when `stop()` ended the run before every request was sent. */
  readonly stopped: boolean;
}

export interface LoadRun {
  progress(): Progress;
  readonly result: Promise<LoadResult>;
  /** Sends no more requests; those in flight finish. */
  stop(): void;
  /** Also cancels the requests in flight. */
  abort(): void;
}

const WORKER_HEADERS = { 'content-type': 'application/json', accept: '*/*' } as const;
const SAMPLE_CHARS = 300;

function isStreamingType(contentType: string | string[] | undefined): boolean {
  const type = (Array.isArray(contentType) ? contentType[0] : contentType)?.toLowerCase() ?? '';
  return (
    type.startsWith('text/event-stream') ||
    type.includes('ndjson') ||
    type.includes('jsonl') ||
    type.includes('json-seq')
  );
}

function parseMaybe(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

/** The event text of one stream line: SSE `data:` lines and JSONL lines; null for anything else. */
function eventOf(rawLine: string): string | null {
  const line = rawLine.endsWith('\r') ? rawLine.slice(0, -1) : rawLine;
  if (line === '') return null;
  if (line.startsWith('data:')) {
    const data = line.slice(5).trimStart();
    return data === '[DONE]' || data === '' ? null : data;
  }
  // Other SSE fields and comments are not events.
  if (line.startsWith(':') || /^(event|id|retry):/.test(line)) return null;
  return line;
}

class Cancelled extends Error {}

/** Starts a run; `result` resolves when every request has ended. */
export function startLoad(options: LoadOptions): LoadRun {
  if (!Number.isInteger(options.count) || options.count < 0) {
    throw new RangeError(`count must be a whole number >= 0, got ${options.count}`);
  }
  const now = () => performance.now();
  const random = options.random ?? Math.random;
  const retries = options.retry?.retries ?? 3;
  const baseMs = options.retry?.baseMs ?? 250;
  const capMs = options.retry?.capMs ?? 5000;
  const timeoutMs = options.timeoutMs ?? 0;
  const warmup = options.warmup ?? 0;
  const ownDispatcher =
    options.dispatcher === undefined
      ? new Agent({
          keepAliveTimeout: 30_000,
          ...(options.ca === undefined ? {} : { connect: { ca: options.ca } }),
        })
      : undefined;
  const dispatcher = options.dispatcher ?? (ownDispatcher as Dispatcher);

  const stopController = new AbortController();
  const abortController = new AbortController();
  // Every request in flight listens on these; hundreds of listeners are expected, not a leak.
  setMaxListeners(0, stopController.signal, abortController.signal);
  let phase: Progress['phase'] = warmup > 0 ? 'warmup' : 'running';
  let measuredStart = 0;
  const live = { routing: 0, waiting: 0, receiving: 0, backoff: 0 };
  let started = 0;
  let succeeded = 0;
  let failed = 0;
  let warmupDone = 0;
  let warmupFailed = 0;
  const errors: Record<ErrorCause, number> = {
    routing: 0,
    worker: 0,
    connection: 0,
    timeout: 0,
    verify: 0,
  };
  const retried: Record<string, number> = {};
  const recent = new RecentWindow();
  const workers = new Set<string>();
  const records: RequestRecord[] = [];

  function backoffMs(attempt: number, hintMs: number | undefined): number {
    const exp = Math.min(capMs, baseMs * 2 ** attempt);
    const jittered = exp * (0.5 + random() / 2);
    return hintMs === undefined ? jittered : Math.max(jittered, Math.min(capMs, hintMs));
  }

  function requestSignal(): AbortSignal {
    if (timeoutMs <= 0) return abortController.signal;
    return AbortSignal.any([abortController.signal, AbortSignal.timeout(timeoutMs)]);
  }

  /** One attempt's outcome; the fields of the request's record that an attempt decides. */
  interface Attempt {
    status: number;
    cause: ErrorCause | undefined;
    detail: string | undefined;
    sample: string | undefined;
    retryable: boolean;
    hintMs: number | undefined;
    ttfbMs: number | undefined;
    ttftMs: number | undefined;
    streamed: boolean;
    tokens: number;
    bytes: number;
    workerUrl: string | undefined;
  }

  async function attemptOnce(
    planned: PlannedRequest,
    context: RouteContext,
    t0: number,
    measured: boolean,
    timing: { routeMs: number },
  ): Promise<Attempt> {
    const signal = context.signal;
    const attempt: Attempt = {
      status: 0,
      cause: undefined,
      detail: undefined,
      sample: undefined,
      retryable: false,
      hintMs: undefined,
      ttfbMs: undefined,
      ttftMs: undefined,
      streamed: false,
      tokens: 0,
      bytes: 0,
      workerUrl: undefined,
    };
    const fail = (cause: ErrorCause, detail: string, retryable = false): Attempt => {
      attempt.cause = cause;
      attempt.detail = detail;
      attempt.retryable = retryable;
      return attempt;
    };

    live.routing++;
    const routeStart = now();
    let destination;
    try {
      destination = await options.target.resolve(context);
    } catch (error) {
      if (error instanceof RoutingError && (error.reason === 'not-ready' || !signal.aborted)) {
        attempt.sample = error.message.slice(0, SAMPLE_CHARS);
        attempt.hintMs = error.retryAfterMs;
        return fail('routing', error.detail, error.retryable);
      }
      if (signal.aborted) return fail(...abortedCause(signal));
      return fail('routing', error instanceof Error ? error.message : String(error));
    } finally {
      live.routing--;
      timing.routeMs += now() - routeStart;
    }

    attempt.workerUrl = destination.workerUrl;
    let state: 'waiting' | 'receiving' = 'waiting';
    live.waiting++;
    try {
      const response = await dispatcher.request({
        origin: destination.origin,
        path: destination.path,
        method: 'POST',
        headers: WORKER_HEADERS,
        body: destination.body,
        signal,
      });
      attempt.ttfbMs = now() - t0;
      attempt.status = response.statusCode;
      if (measured) workers.add(destination.workerUrl);
      live.waiting--;
      live.receiving++;
      state = 'receiving';
      const ok = attempt.status >= 200 && attempt.status < 300;
      const streamed = ok && isStreamingType(response.headers['content-type']);
      attempt.streamed = streamed;
      const keepBody = planned.verify !== undefined || planned.tokens !== undefined;
      const collect = keepBody || !ok;
      const body = response.body as AsyncIterable<Buffer>;
      let text = '';
      let events: unknown[] | undefined;
      if (streamed) {
        if (planned.verify !== undefined) events = [];
        const decoder = new StringDecoder('utf8');
        let carry = '';
        const onLine = (line: string): void => {
          const event = eventOf(line);
          if (event === null) return;
          attempt.ttftMs ??= now() - t0;
          if (!keepBody) {
            attempt.tokens++;
            return;
          }
          const value = parseMaybe(event);
          events?.push(value);
          attempt.tokens += planned.tokens === undefined ? 1 : planned.tokens(value, 'event');
        };
        for await (const chunk of body) {
          attempt.bytes += chunk.length;
          const part = decoder.write(chunk);
          if (collect) text += part;
          carry += part;
          let from = 0;
          let newline: number;
          while ((newline = carry.indexOf('\n', from)) !== -1) {
            onLine(carry.slice(from, newline));
            from = newline + 1;
          }
          if (from > 0) carry = carry.slice(from);
        }
        const rest = decoder.end();
        if (collect) text += rest;
        carry += rest;
        if (carry !== '') onLine(carry);
      } else if (collect) {
        const chunks: Buffer[] = [];
        for await (const chunk of body) {
          attempt.bytes += chunk.length;
          chunks.push(chunk);
        }
        text = Buffer.concat(chunks).toString('utf8');
      } else {
        for await (const chunk of body) attempt.bytes += chunk.length;
      }

      if (!ok) {
        attempt.sample = text.slice(0, SAMPLE_CHARS);
        const after = Number(response.headers['retry-after']);
        if (Number.isFinite(after) && after >= 0) attempt.hintMs = after * 1000;
        return fail('worker', String(attempt.status), isRetryableStatus(attempt.status));
      }
      let json: unknown;
      if (!streamed && keepBody) {
        const parsed = parseMaybe(text);
        json = parsed === text ? undefined : parsed;
        if (planned.tokens !== undefined && json !== undefined) {
          attempt.tokens = planned.tokens(json, 'body');
        }
      }
      if (planned.verify !== undefined) {
        let problem: string | undefined | void;
        try {
          problem = planned.verify({
            route: planned.route,
            payload: planned.payload,
            status: attempt.status,
            headers: response.headers,
            text,
            json,
            events,
          });
        } catch (error) {
          problem = error instanceof Error ? error.message : String(error);
        }
        if (typeof problem === 'string') {
          attempt.sample = text.slice(0, SAMPLE_CHARS);
          return fail('verify', problem);
        }
      }
      return attempt;
    } catch (error) {
      if (signal.aborted) return fail(...abortedCause(signal));
      const code = errorCode(error) ?? (error instanceof Error ? error.message : String(error));
      return fail('connection', code, true);
    } finally {
      live[state]--;
    }
  }

  async function execute(
    index: number,
    planned: PlannedRequest,
    measured: boolean,
  ): Promise<RequestRecord> {
    const t0 = now();
    const signal = requestSignal();
    const context: RouteContext = {
      route: planned.route,
      payloadJson: JSON.stringify(planned.payload) ?? 'null',
      cost: planned.cost ?? 100,
      index,
      attempt: 0,
      dispatcher,
      signal,
      requestIdx: undefined,
    };
    const timing = { routeMs: 0 };
    let attempts = 0;
    let outcome: Attempt;
    for (;;) {
      outcome = await attemptOnce(planned, context, t0, measured, timing);
      attempts++;
      if (outcome.cause === undefined || !outcome.retryable || attempts > retries || signal.aborted)
        break;
      const key = `${outcome.cause} ${String(outcome.detail)}`;
      retried[key] = (retried[key] ?? 0) + 1;
      live.backoff++;
      try {
        await sleep(backoffMs(attempts - 1, outcome.hintMs), undefined, { signal });
      } catch {
        // The deadline passed or the run was aborted during the backoff: keep this outcome.
        break;
      } finally {
        live.backoff--;
      }
      (context as { attempt: number }).attempt = attempts;
    }
    const record: RequestRecord = {
      index,
      route: planned.route,
      ok: outcome.cause === undefined,
      status: outcome.status,
      cause: outcome.cause,
      detail: outcome.detail,
      sample: outcome.sample,
      startMs: t0 - measuredStart,
      routeMs: timing.routeMs,
      ttfbMs: outcome.ttfbMs,
      ttftMs: outcome.ttftMs,
      totalMs: now() - t0,
      streamed: outcome.streamed,
      tokens: outcome.tokens,
      bytes: outcome.bytes,
      attempts,
      workerUrl: outcome.workerUrl,
    };
    if (measured) {
      if (outcome.cause === undefined) {
        succeeded++;
        recent.push(record.totalMs);
      } else {
        failed++;
        errors[outcome.cause]++;
      }
      records.push(record);
      options.onRecord?.(record);
    } else {
      warmupDone++;
      if (!record.ok) warmupFailed++;
    }
    return record;
  }

  function abortedCause(signal: AbortSignal): [ErrorCause, string, boolean] {
    const reason: unknown = signal.reason;
    if (reason instanceof Cancelled) return ['connection', 'cancelled', false];
    if (reason instanceof Error && reason.name === 'TimeoutError') {
      return ['timeout', `no answer within ${timeoutMs / 1000} s`, false];
    }
    return ['connection', 'aborted', false];
  }

  async function closedLoop(
    count: number,
    users: number,
    rampSeconds: number,
    measured: boolean,
  ): Promise<void> {
    let next = 0;
    const user = async (startOffset: number): Promise<void> => {
      if (startOffset > 0) {
        try {
          await sleep(startOffset, undefined, { signal: stopController.signal });
        } catch {
          return;
        }
      }
      while (!stopController.signal.aborted) {
        const index = next++;
        if (index >= count) return;
        if (measured) started++;
        await execute(index, options.plan(index), measured);
      }
    };
    await Promise.all(userStartOffsets(Math.max(1, Math.min(users, count)), rampSeconds).map(user));
  }

  let maxLagMs = 0;
  let lastSendMs = 0;

  async function openLoop(
    schedule: OpenSchedule,
    first: PlannedRequest | undefined,
  ): Promise<void> {
    const offsets = arrivalOffsets({
      rate: schedule.rate,
      kind: schedule.arrivals ?? 'poisson',
      rampSeconds: schedule.rampSeconds ?? 0,
      random,
    });
    const inFlight = new Set<Promise<RequestRecord>>();
    for (let index = 0; index < options.count; index++) {
      const offset = offsets.next().value;
      // Planned before its time comes, so making the payload does not delay the start.
      const planned = index === 0 && first !== undefined ? first : options.plan(index);
      const wait = measuredStart + offset - now();
      if (wait > 1) {
        try {
          await sleep(wait, undefined, { signal: stopController.signal });
        } catch {
          break;
        }
      }
      if (stopController.signal.aborted) break;
      const sentAt = now();
      maxLagMs = Math.max(maxLagMs, sentAt - measuredStart - offset);
      lastSendMs = sentAt - measuredStart;
      started++;
      const pending = execute(index, planned, true);
      inFlight.add(pending);
      void pending.finally(() => inFlight.delete(pending));
    }
    if (inFlight.size > 0) phase = 'draining';
    await Promise.all(inFlight);
  }

  async function run(): Promise<LoadResult> {
    try {
      if (warmup > 0) {
        const users =
          options.schedule.kind === 'closed'
            ? options.schedule.concurrency
            : Math.max(1, Math.min(8, Math.ceil(options.schedule.rate)));
        await closedLoop(warmup, users, 0, false);
      }
      // The first payload is made before the clock starts: a lazy start-up (a tokenizer) is not lag.
      const first =
        options.schedule.kind === 'open' && options.count > 0 ? options.plan(0) : undefined;
      phase = 'running';
      measuredStart = now();
      const startedAt = Date.now();
      if (options.schedule.kind === 'open') {
        await openLoop(options.schedule, first);
      } else {
        if (!(options.schedule.concurrency >= 1)) throw new RangeError('concurrency must be >= 1');
        await closedLoop(
          options.count,
          options.schedule.concurrency,
          options.schedule.rampSeconds ?? 0,
          true,
        );
      }
      const endMs = now() - measuredStart;
      phase = 'done';
      records.sort((a, b) => a.index - b.index);
      if (options.schedule.kind === 'closed') {
        lastSendMs = records.reduce((latest, record) => Math.max(latest, record.startMs), 0);
      }
      return {
        records,
        startedAt,
        durationMs: endMs,
        sendSpanMs: lastSendMs,
        maxLagMs,
        warmup: { sent: warmupDone, failed: warmupFailed },
        retried,
        stopped: stopController.signal.aborted && records.length < options.count,
      };
    } finally {
      await ownDispatcher?.close();
    }
  }

  const result = run();
  return {
    result,
    stop: () => stopController.abort(),
    abort: () => {
      stopController.abort();
      abortController.abort(new Cancelled('cancelled'));
    },
    progress: () => ({
      phase,
      elapsedMs: phase === 'warmup' ? 0 : now() - measuredStart,
      total: options.count,
      started,
      ...live,
      succeeded,
      failed,
      errors: { ...errors },
      recent: recent.distribution(),
      workers: workers.size,
      warmupDone,
    }),
  };
}

/** Runs to the end and returns the result. */
export function runLoad(options: LoadOptions): Promise<LoadResult> {
  return startLoad(options).result;
}
