import { overloaded, type WorkerError } from '../errors.ts';
import type { ResolvedHandler } from '../handler.ts';
import { estimatedWaitSeconds, exceedsQueueLimit } from '../queue/index.ts';
import type { RejectionReason } from '../lifecycle/record.ts';

/**
 * What admission reads of the worker's readiness (`ReadinessState` has it); named here so the
 * pipeline does not depend on `lib/readiness/`, whose benchmark runs handlers' workload functions.
 */
export interface ReadinessView {
  /** A graceful drain has begun: new requests get 503. */
  readonly draining: boolean;
  /** The benchmark's throughput in workload per second; 0 until it has run. */
  readonly maxPerf: number;
}

/** What admission reads of the load (`Accounting` has it). */
export interface LoadView {
  /** Workload of admitted requests not yet ended, sessions excluded. */
  readonly queuedWorkload: number;
}

/** A capacity refusal (admission, the session cap): the answer, and how it is counted as rejected. */
export interface CountedRefusal {
  readonly failure: WorkerError;
  readonly reason: RejectionReason;
}

/** Workload per second used for estimates: the benchmark's result once there is one. */
export function currentThroughput(readiness: ReadinessView, assumedThroughput: number): number {
  return readiness.maxPerf > 0 ? readiness.maxPerf : assumedThroughput;
}

/**
 * Step 7 of protocol §1.3: 429 with an honest Retry-After when the estimated wait (queued plus
 * running workload over throughput) is above the handler's max_queue_time. As in the reference,
 * the new request's own workload is not counted. Returns the refusal, counted as overloaded.
 */
export function admissionRefusal(
  handler: ResolvedHandler,
  load: LoadView,
  readiness: ReadinessView,
  assumedThroughput: number,
): CountedRefusal | undefined {
  if (handler.maxQueueTime === null) return undefined;
  const wait = estimatedWaitSeconds(
    load.queuedWorkload,
    currentThroughput(readiness, assumedThroughput),
  );
  if (!exceedsQueueLimit(wait, handler.maxQueueTime)) return undefined;
  return { failure: overloaded(wait, handler.maxQueueTime), reason: 'overloaded' };
}
