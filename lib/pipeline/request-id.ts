import type { IncomingMessage } from 'node:http';
import { randomBytes } from 'node:crypto';

const requestIdPrefix = randomBytes(4).toString('hex');
let requestCounter = 0;

/**
 * A client's `x-request-id` that is used as the request's id (log lines, the echoed header, error
 * bodies): 1 to 64 characters of `[A-Za-z0-9._:-]`, so it cannot forge log lines or headers. Any
 * other value is replaced by an id of ours.
 */
export const REQUEST_ID_PATTERN = /^[A-Za-z0-9._:-]{1,64}$/;

/** The incoming `x-request-id` if it is safe to reuse, else a new id. */
export function requestIdFor(request: IncomingMessage): string {
  const incoming = request.headers['x-request-id'];
  if (typeof incoming === 'string' && REQUEST_ID_PATTERN.test(incoming)) return incoming;
  return `${requestIdPrefix}-${(++requestCounter).toString(36)}`;
}
