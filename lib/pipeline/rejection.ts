import type { WorkerError } from '../errors.ts';

/** Errors thrown as refusals; tagged, not wrapped, so every error handler answers them as they are. */
const refusals = new WeakSet<WorkerError>();

/**
 * Tags a refusal (drain, signature, admission, session cap): the request's outcome is "rejected"
 * rather than "invalid" or "error". One that counts workload was published on the lifecycle
 * channel before it was thrown.
 */
export function refusal(failure: WorkerError): WorkerError {
  refusals.add(failure);
  return failure;
}

export function isRefusal(error: unknown): boolean {
  return typeof error === 'object' && error !== null && refusals.has(error as WorkerError);
}
