/**
 * The one error catalogue. Every failure a client can see is a `WorkerError`: a status, a stable
 * `TSW_ERR_*` code, a JSON body and the origin (the worker itself, or the model server behind it).
 * The server's single error handler turns these into responses; handlers never build error responses.
 */
import { errorMessage } from './internal/values.ts';

export type ErrorOrigin = 'worker' | 'model';

export type ErrorCode =
  | 'TSW_ERR_INVALID_JSON'
  | 'TSW_ERR_PAYLOAD_INVALID'
  | 'TSW_ERR_UNAUTHORIZED'
  | 'TSW_ERR_SESSION_INVALID'
  | 'TSW_ERR_SESSION_NOT_FOUND'
  | 'TSW_ERR_SESSION_LIMIT'
  | 'TSW_ERR_OVERLOADED'
  | 'TSW_ERR_DRAINING'
  | 'TSW_ERR_NOT_READY'
  | 'TSW_ERR_UPSTREAM_UNAVAILABLE'
  | 'TSW_ERR_UPSTREAM_TIMEOUT'
  | 'TSW_ERR_HANDLER_FAILED'
  | 'TSW_ERR_NOT_FOUND'
  | 'TSW_ERR_METHOD_NOT_ALLOWED'
  | 'TSW_ERR_BODY_TOO_LARGE'
  | 'TSW_ERR_UPDATE_FAILED'
  | 'TSW_ERR_INTERNAL';

/**
 * A code a worker chose for its own errors (`new WorkerError({ status: 409, code: 'SLOT_TAKEN', ... })`).
 * Any string works; a worker's own codes should not start with `TSW_ERR_`, which are tsworker's.
 */
export type CustomErrorCode = string & {};

export type JsonBody = { readonly [key: string]: unknown };

export class WorkerError extends Error {
  readonly status: number;
  readonly code: ErrorCode | CustomErrorCode;
  readonly origin: ErrorOrigin;
  /** Extra response headers, such as `Retry-After`. */
  readonly headers: Readonly<Record<string, string>>;
  readonly #body: JsonBody | undefined;

  constructor(options: {
    status: number;
    code: ErrorCode | CustomErrorCode;
    message: string;
    origin?: ErrorOrigin;
    /** The exact wire body; defaults to `{error, code, origin}`. */
    body?: JsonBody;
    headers?: Record<string, string>;
    cause?: unknown;
  }) {
    super(options.message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'WorkerError';
    this.status = options.status;
    this.code = options.code;
    this.origin = options.origin ?? 'worker';
    this.headers = options.headers ?? {};
    this.#body = options.body;
  }

  get body(): JsonBody {
    return this.#body ?? { error: this.message, code: this.code, origin: this.origin };
  }
}

/** 422 `{"error":"invalid JSON"}`, byte for byte the reference's body (protocol §3.3). */
export function invalidJson(): WorkerError {
  return new WorkerError({
    status: 422,
    code: 'TSW_ERR_INVALID_JSON',
    message: 'invalid JSON',
    body: { error: 'invalid JSON' },
  });
}

/** 422 whose body is the reference's field map, e.g. `{"payload":{"prompt":"missing parameter"}}`. */
export function payloadInvalid(fieldErrors: JsonBody): WorkerError {
  return new WorkerError({
    status: 422,
    code: 'TSW_ERR_PAYLOAD_INVALID',
    message: 'invalid request fields',
    body: fieldErrors,
  });
}

export function unauthorized(reason: string): WorkerError {
  return new WorkerError({ status: 401, code: 'TSW_ERR_UNAUTHORIZED', message: reason });
}

export function invalidSession(): WorkerError {
  return new WorkerError({
    status: 410,
    code: 'TSW_ERR_SESSION_INVALID',
    message: 'invalid session',
    body: { error: 'invalid session' },
  });
}

/**
 * Why a session's requests are aborted when it closes: the 410 they answer, if nothing has reached
 * their clients yet.
 */
export function sessionClosed(sessionId: string): WorkerError {
  return new WorkerError({
    status: 410,
    code: 'TSW_ERR_SESSION_INVALID',
    message: `session ${sessionId} closed`,
    body: { error: 'invalid session' },
  });
}

/** 429 with an honest `Retry-After`: the estimated wait in whole seconds, rounded up. */
export function overloaded(estimatedWaitSeconds: number, maxQueueTime: number): WorkerError {
  const retryAfter = Math.max(1, Math.ceil(estimatedWaitSeconds));
  return new WorkerError({
    status: 429,
    code: 'TSW_ERR_OVERLOADED',
    message: `estimated wait ${estimatedWaitSeconds.toFixed(1)}s exceeds max_queue_time ${maxQueueTime}s`,
    headers: { 'retry-after': String(retryAfter) },
  });
}

/** How soon a client refused during a drain should retry (elsewhere, through the autoscaler). */
export const DRAIN_RETRY_AFTER_SECONDS = 5;

export function draining(retryAfterSeconds = DRAIN_RETRY_AFTER_SECONDS): WorkerError {
  return new WorkerError({
    status: 503,
    code: 'TSW_ERR_DRAINING',
    message: 'worker is shutting down',
    headers: { 'retry-after': String(Math.max(1, Math.ceil(retryAfterSeconds))) },
  });
}

/** 503 for a request the grace period ran out on: it was cancelled, not silently dropped. */
export function shutDownBeforeFinishing(): WorkerError {
  return new WorkerError({
    status: 503,
    code: 'TSW_ERR_DRAINING',
    message: 'worker shut down before the request finished',
    headers: { 'retry-after': '1' },
  });
}

export function bodyTooLarge(limitBytes: number): WorkerError {
  return new WorkerError({
    status: 413,
    code: 'TSW_ERR_BODY_TOO_LARGE',
    message: `request body exceeds ${limitBytes} bytes`,
    // The rest of the body is only drained for a while (lingerOnRefusedBody): never reused.
    headers: { connection: 'close' },
  });
}

export function upstreamUnavailable(detail: string, cause?: unknown): WorkerError {
  return new WorkerError({
    status: 502,
    code: 'TSW_ERR_UPSTREAM_UNAVAILABLE',
    message: `model server unavailable: ${detail}`,
    origin: 'model',
    cause,
  });
}

export function upstreamTimeout(detail: string, cause?: unknown): WorkerError {
  return new WorkerError({
    status: 504,
    code: 'TSW_ERR_UPSTREAM_TIMEOUT',
    message: `model server timed out: ${detail}`,
    origin: 'model',
    cause,
  });
}

/**
 * The handler's own code (predict, transforms) threw: a 500 that names the route. A `WorkerError`
 * it threw on purpose (say a 409 with the worker's own code) reaches the client as it is.
 */
export function handlerFailed(route: string, cause: unknown): WorkerError {
  if (cause instanceof WorkerError) return cause;
  const detail = errorMessage(cause);
  return new WorkerError({
    status: 500,
    code: 'TSW_ERR_HANDLER_FAILED',
    message: `handler for ${route} failed: ${detail}`,
    cause,
  });
}

/** 404 for a path no route serves. */
export function notFound(method: string, path: string): WorkerError {
  return new WorkerError({
    status: 404,
    code: 'TSW_ERR_NOT_FOUND',
    message: `no route ${method} ${path}`,
  });
}

/** 405 for a route that exists with other methods; `Allow` names them (RFC 9110 §15.5.6). */
export function methodNotAllowed(method: string, allowed: string): WorkerError {
  return new WorkerError({
    status: 405,
    code: 'TSW_ERR_METHOD_NOT_ALLOWED',
    message: `method ${method} not allowed`,
    headers: { allow: allowed },
  });
}

/**
 * The headers every error response carries, whichever path sends it: the error's own (such as
 * `Retry-After`), the request id, and whether the worker or the model caused it.
 */
export function errorHeaders(error: WorkerError, requestId: string): Record<string, string> {
  return {
    'x-request-id': requestId,
    'x-worker-error-source': error.origin,
    ...error.headers,
  };
}

export function internalError(cause: unknown): WorkerError {
  return new WorkerError({
    status: 500,
    code: 'TSW_ERR_INTERNAL',
    message: 'internal worker error',
    cause,
  });
}

/** Thrown by a worker definition or handler that is invalid: a start-up error, never a request error. */
export class DefinitionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DefinitionError';
  }
}

/** The worker could not start (a listener, the TLS pair): a start-up error with one clear message. */
export class StartupError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StartupError';
  }
}
