import { overloaded } from '../errors.ts';
import type { ResolvedHandler } from '../handler.ts';
import type { Accounting } from '../metrics/accounting.ts';
import { estimatedWaitSeconds, exceedsQueueLimit } from '../queue/index.ts';
import type { ReadinessState } from '../readiness/state.ts';

/** Workload per second used for estimates: the benchmark's result once there is one. */
export function currentThroughput(readiness: ReadinessState, assumedThroughput: number): number {
  return readiness.maxPerf > 0 ? readiness.maxPerf : assumedThroughput;
}

/**
 * Step 7 of protocol §1.3: 429 with an honest Retry-After when the estimated wait (queued plus
 * running workload over throughput) is above the handler's max_queue_time. As in the reference,
 * the new request's own workload is not counted.
 */
export function admit(
  handler: ResolvedHandler,
  accounting: Accounting,
  readiness: ReadinessState,
  assumedThroughput: number,
): void {
  if (handler.maxQueueTime === null) return;
  const wait = estimatedWaitSeconds(
    accounting.queuedWorkload,
    currentThroughput(readiness, assumedThroughput),
  );
  if (exceedsQueueLimit(wait, handler.maxQueueTime)) throw overloaded(wait, handler.maxQueueTime);
}
