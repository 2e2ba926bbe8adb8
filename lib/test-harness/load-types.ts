/** The load engine's public types: what a run is given, what it reports and what it returns. */
import type { ArrivalKind, Random } from './arrivals.ts';
import type { Distribution } from './stats.ts';
import type { Dispatcher } from 'undici';
import type { Target } from './targets.ts';

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

export interface RequestResult {
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
  readonly onRecord?: (record: RequestResult) => void;
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
  readonly records: readonly RequestResult[];
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
