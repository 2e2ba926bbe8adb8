import { DEFAULT_WORKLOAD, type ResolvedHandler } from '../handler.ts';
import type { Logger } from '../log.ts';
import { MAX_COST } from './validate.ts';

/**
 * Step 3 of protocol §1.3, hardened as the newest reference does (§13.3): a workload function that
 * throws (or whose promise rejects) or returns a non-finite or negative number logs a warning and
 * counts as the default 100; one above MAX_COST counts as MAX_COST.
 *
 * A workload function may return a promise (`countTokensAsync` counts large prompts on a worker
 * thread). Only then is the result a promise: a plain number is checked and returned at once, so
 * the common path costs no await. Callers write
 * `const measured = measureWorkload(...); const workload = typeof measured === 'number' ? measured : await measured;`
 */
export function measureWorkload(
  handler: ResolvedHandler,
  payload: unknown,
  logger: Logger,
): number | Promise<number> {
  if (!handler.hasCustomWorkload) return DEFAULT_WORKLOAD;
  let workload: unknown;
  try {
    workload = handler.workload(payload);
  } catch (error) {
    return threw(handler, logger, error);
  }
  if (isPromiseLike(workload)) {
    return Promise.resolve(workload).then(
      (value) => checked(handler, logger, value),
      (error: unknown) => threw(handler, logger, error),
    );
  }
  return checked(handler, logger, workload);
}

function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}

function threw(handler: ResolvedHandler, logger: Logger, error: unknown): number {
  logger.warn(
    { route: handler.route, err: error },
    'workload function threw; using the default workload',
  );
  return DEFAULT_WORKLOAD;
}

function checked(handler: ResolvedHandler, logger: Logger, workload: unknown): number {
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
