import { DEFAULT_WORKLOAD, type ResolvedHandler } from '../handler.ts';
import type { Logger } from '../log.ts';
import { MAX_COST } from './validate.ts';

/**
 * Step 3 of protocol §1.3, hardened as the newest reference does (§13.3): a workload function that
 * throws or returns a non-finite or negative number logs a warning and counts as the default 100;
 * one above MAX_COST counts as MAX_COST.
 */
export function measureWorkload(
  handler: ResolvedHandler,
  payload: unknown,
  logger: Logger,
): number {
  if (!handler.hasCustomWorkload) return DEFAULT_WORKLOAD;
  let workload: unknown;
  try {
    workload = handler.workload(payload);
  } catch (error) {
    logger.warn(
      { route: handler.route, err: error },
      'workload function threw; using the default workload',
    );
    return DEFAULT_WORKLOAD;
  }
  if (typeof workload !== 'number' || !Number.isFinite(workload) || workload < 0) {
    logger.warn(
      { route: handler.route, workload: String(workload) },
      'workload function returned an invalid number; using the default workload',
    );
    return DEFAULT_WORKLOAD;
  }
  if (workload > MAX_COST) {
    // The payload's numbers are the client's: never let one request report unbounded load.
    logger.warn({ route: handler.route, workload }, `workload capped at ${MAX_COST}`);
    return MAX_COST;
  }
  return workload;
}
