/**
 * Admission by estimated wait (protocol §5): queued plus running workload divided by the measured
 * throughput. Before a benchmark exists the worker's assumed throughput stands in for it, instead
 * of the reference's 1e-5 divisor that rejects everything (§12.11).
 */
export function estimatedWaitSeconds(pendingWorkload: number, throughput: number): number {
  if (pendingWorkload <= 0) return 0;
  return pendingWorkload / throughput;
}

/** True when the request must be turned away: the wait is strictly above the handler's limit. */
export function exceedsQueueLimit(waitSeconds: number, maxQueueTime: number | null): boolean {
  return maxQueueTime !== null && waitSeconds > maxQueueTime;
}
