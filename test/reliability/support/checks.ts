/** Checks several scenarios share: the reports the autoscaler got, and the worker's gauges. */
import type { Verdict } from './scenario.ts';
import type { Stack } from './stack.ts';
import { pollOrGiveUp } from './timing.ts';

/** How long in-flight work may take to drain from the reports after the traffic stopped. */
const SETTLE_MS = 20_000;

/**
 * The worker's reports are consistent: every /worker_status/ and /delete_requests/ post matched the
 * contract, every number was finite, non-negative and below 2^53, every request_idx a safe
 * integer; and once the traffic has stopped, in-flight work is back to 0 in /metrics and in a
 * report sent after `since` (epoch ms).
 */
export async function checkReportsConsistent(
  stack: Stack,
  verdict: Verdict,
  since: number,
): Promise<void> {
  const settled = await pollOrGiveUp(
    async () => {
      const metrics = await stack.worker.metrics();
      const summary = await stack.autoscaler.summary();
      const last = summary.workerStatus.last;
      const idle =
        metrics.get('tsworker_inflight_requests') === 0 &&
        metrics.get('tsworker_queued_requests') === 0 &&
        summary.workerStatus.lastAt > since &&
        last?.['num_requests_working'] === 0 &&
        last['cur_load'] === 0 &&
        Array.isArray(last['working_request_idxs']) &&
        last['working_request_idxs'].length === 0;
      return idle ? { metrics, summary } : false;
    },
    { timeoutMs: SETTLE_MS, intervalMs: 200 },
  );
  const summary = await stack.autoscaler.summary();
  const status = summary.workerStatus;
  verdict.check(
    settled !== undefined,
    `in-flight not back to 0 within ${SETTLE_MS / 1000} s (last report: ` +
      `working=${String(status.last?.['num_requests_working'])} cur_load=${String(status.last?.['cur_load'])})`,
  );
  verdict.check(
    status.violationCount === 0,
    `${status.violationCount} reported numbers out of range: ${status.violations.join(', ')}`,
  );
  verdict.check(
    status.nonconforming === 0 && summary.nonconformingDeletes === 0,
    `reports off contract: ${[...status.problems, ...summary.deleteProblems].slice(0, 3).join('; ')}`,
  );
  verdict.check(
    summary.invalidIdx === 0,
    `${summary.invalidIdx} request_idx values reported that are not safe integers: ` +
      summary.invalidIdxSample.map(String).join(', '),
  );
  verdict.figure(
    `reports ${status.violationCount === 0 && status.nonconforming === 0 ? 'consistent' : 'INCONSISTENT'}` +
      ` (max cur_load ${String(status.maxima['cur_load'] ?? 0)})`,
    'reportsConsistent',
    status.violationCount === 0 && status.nonconforming === 0 && summary.invalidIdx === 0,
  );
}

/** The worker process is alive and answers /health/live. */
export async function checkAlive(stack: Stack, verdict: Verdict): Promise<boolean> {
  let live = false;
  if (stack.worker.process.alive) {
    try {
      const response = await fetch(`${stack.worker.url}/health/live`, {
        signal: AbortSignal.timeout(5_000),
      });
      live = response.status === 200;
    } catch {
      live = false;
    }
  }
  verdict.check(
    live,
    stack.worker.process.alive
      ? 'the worker does not answer /health/live'
      : `the worker died: ${stack.worker.process.output().slice(-600)}`,
  );
  return live;
}
