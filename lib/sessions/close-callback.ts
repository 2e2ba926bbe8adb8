import type { Dispatcher } from 'undici';
import { request as undiciRequest } from 'undici';
import { errorMessage, isRecord } from '../internal/values.ts';
import type { Logger } from '../log.ts';
import type { Session } from './store.ts';

/** The on_close callback's total timeout (§9). */
export const CLOSE_CALLBACK_TIMEOUT_MS = 10_000;

/** Where a relative on_close route goes: the model server. */
export interface ModelServerTarget {
  readonly dispatcher: Dispatcher;
  /** Path prefix of the model server's base URL (empty for a bare origin). */
  readonly basePath: string;
}

/**
 * POSTs the on_close callback (§9): the payload object plus `session_id`, `{}` for null, or
 * `{"payload": value}` for anything else. A relative route goes to the model server, an absolute
 * URL where it says. Failures are logged, never thrown.
 */
export async function runCloseCallback(
  model: ModelServerTarget,
  log: Logger,
  session: Session,
  route: string,
): Promise<void> {
  const fields = { sessionId: session.sessionId, route };
  try {
    // Inside the try: a payload that cannot be serialised must not escape this background task.
    const options = {
      method: 'POST' as const,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(callbackBody(session)),
      signal: AbortSignal.timeout(CLOSE_CALLBACK_TIMEOUT_MS),
    };
    const response = /^https?:\/\//i.test(route)
      ? await undiciRequest(route, options)
      : await model.dispatcher.request({
          ...options,
          path: model.basePath + (route.startsWith('/') ? route : `/${route}`),
        });
    await response.body.dump();
    if (response.statusCode >= 400) {
      log.warn({ ...fields, status: response.statusCode }, 'on_close callback failed');
    } else {
      log.debug({ ...fields, status: response.statusCode }, 'on_close callback sent');
    }
  } catch (error) {
    log.warn({ ...fields, error: errorMessage(error) }, 'on_close callback failed');
  }
}

function callbackBody(session: Session): Record<string, unknown> {
  const value = session.onClosePayload;
  const body: Record<string, unknown> =
    value === null || value === undefined
      ? {}
      : isRecord(value)
        ? { ...value }
        : { payload: value };
  if (!('session_id' in body)) body['session_id'] = session.sessionId;
  return body;
}
