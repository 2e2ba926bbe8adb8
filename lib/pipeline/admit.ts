import { overloaded } from '../errors.ts';
import type { ResolvedHandler } from '../handler.ts';
import type { RequestLifecycle } from '../lifecycle/record.ts';
import { estimatedWaitSeconds, exceedsQueueLimit } from '../queue/index.ts';
import { Rejection } from './rejection.ts';

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

/** Workload per second used for estimates: the benchmark's result once there is one. */
export function currentThroughput(readiness: ReadinessView, assumedThroughput: number): number {
  return readiness.maxPerf > 0 ? readiness.maxPerf : assumedThroughput;
}

/**
 * Step 7 of protocol §1.3: 429 with an honest Retry-After when the estimated wait (queued plus
 * running workload over throughput) is above the handler's max_queue_time. As in the reference,
 * the new request's own workload is not counted. The refusal is a `Rejection`, counted as overloaded.
 */
export function admit(
  handler: ResolvedHandler,
  accounting: RequestLifecycle,
  readiness: ReadinessView,
  assumedThroughput: number,
): void {
  if (handler.maxQueueTime === null) return;
  const wait = estimatedWaitSeconds(
    accounting.queuedWorkload,
    currentThroughput(readiness, assumedThroughput),
  );
  if (exceedsQueueLimit(wait, handler.maxQueueTime))
    throw new Rejection(overloaded(wait, handler.maxQueueTime), 'overloaded');
}
