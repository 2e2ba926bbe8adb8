import type { ServerResponse } from 'node:http';
import { errorHeaders, internalError, WorkerError } from '../errors.ts';

/** Any thrown value as the error the client sees: a WorkerError as it is, anything else a masked 500. */
export function toWorkerError(error: unknown): WorkerError {
  return error instanceof WorkerError ? error : internalError(error);
}

/**
 * The one place a pipeline error becomes a response: JSON body, status, extra headers, and
 * `x-worker-error-source` saying whether the worker or the model caused it.
 */
export function sendError(response: ServerResponse, error: WorkerError, requestId: string): void {
  const body = JSON.stringify(error.body);
  response.writeHead(error.status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    ...errorHeaders(error, requestId),
  });
  response.end(body);
}

export function sendJson(
  response: ServerResponse,
  status: number,
  value: unknown,
  headers: Record<string, string>,
): void {
  const body = JSON.stringify(value);
  response.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    ...headers,
  });
  response.end(body);
}
