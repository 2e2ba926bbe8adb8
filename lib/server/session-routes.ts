/**
 * The session routes (protocol §9): POST /session/create, /session/get, /session/health and
 * /session/end, the close procedure (shared by end, GC and shutdown) and the GC sweep.
 *
 * Fixes of the reference's weaknesses (§12.2, §12.13, §12.18): create verifies the signature and
 * validates its body (422, never 500); ids come from the CSPRNG; the expiry extension is bounded
 * (SessionStore.bind); the on_close callback runs after /session/end has answered; session_auth is
 * compared by deep equality.
 */
import { randomBytes } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import type { HttpBindings } from '@hono/node-server';
import type { Context, Hono } from 'hono';
import { request as undiciRequest } from 'undici';
import { z } from 'zod';
import { draining, sessionClosed, WorkerError } from '../errors.ts';
import { DEFAULT_WORKLOAD } from '../handler.ts';
import { checkSignature } from '../pipeline/auth.ts';
import { parseJson } from '../pipeline/parse.ts';
import { envelopeRulesFor, validateEnvelope, type EnvelopeRules } from '../pipeline/validate.ts';
import { basePath } from '../proxy/index.ts';
import type { WorkerRuntime } from './app.ts';
import type { Session } from '../sessions/store.ts';
import { isRecord } from '../internal/values.ts';

type Env = { Bindings: HttpBindings };

/** `lifetime` when create does not give one, in seconds (§9). */
export const DEFAULT_SESSION_LIFETIME = 60;
/** How often expired sessions are closed (§1.1). */
export const DEFAULT_SESSION_GC_INTERVAL_MS = 5_000;
/** The on_close callback's total timeout (§9). */
export const CLOSE_CALLBACK_TIMEOUT_MS = 10_000;
/** Reference-length ids (§11.40), but from the CSPRNG: 13 × log2(62) ≈ 77 bits. */
const SESSION_ID_LENGTH = 13;
const ID_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

export type SessionCloseReason = 'ended' | 'expired' | 'shutdown';

/** A path on the model server ("/done"), or an absolute http(s) URL. */
const closeRoute = z
  .string()
  .min(1, 'must not be empty')
  .refine(
    (route) => !/^[a-z][a-z0-9+.-]*:/i.test(route) || /^https?:\/\/[^/]/i.test(route),
    'must be a path on the model server or an http(s) URL',
  );

/** The create body's `payload` (§9); anything else in it is ignored, as the reference does. */
const createPayload = z.object({
  lifetime: z
    .number({ message: 'must be a positive number of seconds' })
    .positive('must be a positive number of seconds')
    .refine(Number.isFinite, 'must be a finite number of seconds')
    .optional(),
  on_close_route: closeRoute.nullable().optional(),
  on_close_payload: z.unknown().optional(),
});

const sessionQuery = z.object({
  session_id: z.string().min(1),
  session_auth: z.unknown().optional(),
});

/** Close callbacks still running, per worker, so a shutdown can wait for them. */
const pendingCallbacks = new WeakMap<WorkerRuntime, Set<Promise<void>>>();

/** Mounts the four session routes on the main app. */
export function mountSessionRoutes(app: Hono<Env>, runtime: WorkerRuntime): void {
  const rules = envelopeRulesFor(runtime.config);
  app.post('/session/create', async (c) => createSession(c, runtime, rules, await c.req.text()));
  app.post('/session/get', async (c) => {
    const { session, query } = findSession(runtime, await c.req.text());
    if (session === undefined) throw sessionNotFound('session does not exist');
    checkSessionAuth(session, query.session_auth);
    return c.json({
      session_id: session.sessionId,
      auth_data: session.authData,
      lifetime: session.lifetime,
      expiration: session.expiration,
      created_at: session.createdAt,
      on_close_route: session.onCloseRoute,
      on_close_payload: session.onClosePayload,
    });
  });
  app.post('/session/health', async (c) => {
    const { session, query } = findSession(runtime, await c.req.text());
    // An unknown session is a normal answer here, not an error (§11.3).
    if (session === undefined) return c.json({ ok: false });
    checkSessionAuth(session, query.session_auth);
    return c.json({ ok: true });
  });
  app.post('/session/end', sessionEndHandler(runtime));
}

/** POST /session/end, on the main app and on the plain-HTTP listener. */
export function sessionEndHandler(runtime: WorkerRuntime): (c: Context<Env>) => Promise<Response> {
  return async (c) => {
    const { session, query } = findSession(runtime, await c.req.text());
    if (session === undefined) {
      // A recently closed id gets the reference's 410 (§11.23); one never seen its 400 (§11.19).
      if (runtime.sessions.wasClosed(query.session_id)) {
        throw new WorkerError({
          status: 410,
          code: 'TSW_ERR_SESSION_INVALID',
          message: 'session already closed',
          body: { error: 'session already closed' },
        });
      }
      throw sessionNotFound(`session with id ${query.session_id} not found`);
    }
    checkSessionAuth(session, query.session_auth);
    // No await between the checks above and the close: the reference's 410 race (§12.13) cannot happen.
    closeSession(runtime, session.sessionId, 'ended');
    return c.json({ ended: true, removed_session: session.sessionId });
  };
}

function createSession(
  c: Context<Env>,
  runtime: WorkerRuntime,
  rules: EnvelopeRules,
  rawBody: string,
): Response {
  if (runtime.readiness.draining) throw draining();
  const envelope = validateEnvelope(parseJson(rawBody), { payload: createPayload }, rules);
  const payload = envelope.payload as z.infer<typeof createPayload>;
  const authData = envelope.authData;
  const cost = authData['cost'];
  const record = runtime.accounting.create({
    route: '/session/create',
    requestIdx: asInteger(authData['request_idx']),
    reqnum: asInteger(authData['reqnum']),
    workload:
      typeof cost === 'number' && Number.isFinite(cost) && cost >= 0 ? cost : DEFAULT_WORKLOAD,
    isSession: true,
  });

  // The reference lets anyone open sessions (§12.2); a session costs capacity, so it is signed like a request.
  try {
    checkSignature(runtime.verifier, authData, rawBody);
  } catch (error) {
    runtime.accounting.rejected(record, 'unauthorized');
    throw error;
  }
  const max = runtime.worker.maxSessions;
  if (max !== null && runtime.sessions.size >= max) {
    runtime.accounting.rejected(record, 'session-cap');
    throw sessionLimit(runtime, max);
  }

  const nowSeconds = runtime.now() / 1000;
  const lifetime = payload.lifetime ?? DEFAULT_SESSION_LIFETIME;
  const onCloseRoute = payload.on_close_route ?? null;
  const session: Session = {
    sessionId: newSessionId(runtime),
    lifetime,
    expiration: nowSeconds + lifetime,
    createdAt: nowSeconds,
    authData,
    onCloseRoute,
    onClosePayload: onCloseRoute === null ? null : (payload.on_close_payload ?? null),
    requestIdx: asInteger(authData['request_idx']),
    sessionReqnum: 0,
    requests: new Set(),
    record,
  };
  runtime.sessions.add(session);
  runtime.accounting.started(record);
  runtime.accounting.workStarted(record, record.enteredQueueAt);
  runtime.logger
    .child({ component: 'sessions' })
    .info({ sessionId: session.sessionId, lifetime, workload: record.workload }, 'session created');
  return c.json({ session_id: session.sessionId, expiration: session.expiration }, 201);
}

/**
 * The close procedure (§9), for end, GC and shutdown: remove the session, abort its in-flight
 * requests (they count as cancelled, through the pipeline's normal path), record the session as
 * served, and start the on_close callback without waiting for it. Returns the session, or
 * undefined when it was already closed.
 */
export function closeSession(
  runtime: WorkerRuntime,
  sessionId: string,
  reason: SessionCloseReason,
): Session | undefined {
  const session = runtime.sessions.remove(sessionId);
  if (session === undefined) return undefined;
  const requests = [...session.requests];
  const closed = sessionClosed(sessionId);
  for (const request of requests) request.abort(closed);
  runtime.accounting.succeeded(session.record);
  runtime.accounting.ended(session.record);
  runtime.logger
    .child({ component: 'sessions' })
    .info({ sessionId, reason, abortedRequests: requests.length }, 'session closed');
  if (session.onCloseRoute !== null) {
    let pending = pendingCallbacks.get(runtime);
    if (pending === undefined) pendingCallbacks.set(runtime, (pending = new Set()));
    const callback = runCloseCallback(runtime, session, session.onCloseRoute);
    pending.add(callback);
    void callback.finally(() => pending.delete(callback));
  }
  return session;
}

/** Closes every open session (at shutdown). */
export function closeAllSessions(runtime: WorkerRuntime, reason: SessionCloseReason): number {
  const ids = [...runtime.sessions.values()].map((session) => session.sessionId);
  for (const id of ids) closeSession(runtime, id, reason);
  return ids.length;
}

/** Resolves when every on_close callback started so far has finished (each is bounded by 10 s). */
export async function settleCloseCallbacks(runtime: WorkerRuntime): Promise<void> {
  const pending = pendingCallbacks.get(runtime);
  if (pending !== undefined) await Promise.allSettled([...pending]);
}

/**
 * Closes sessions whose expiration has passed. A session with requests still running waits for
 * them: its expiry is about idleness, and a long stream must not be cut because of it.
 */
export function sweepExpiredSessions(runtime: WorkerRuntime): number {
  const nowSeconds = runtime.now() / 1000;
  const expired = [...runtime.sessions.values()].filter(
    (session) => session.expiration <= nowSeconds && session.requests.size === 0,
  );
  for (const session of expired) closeSession(runtime, session.sessionId, 'expired');
  return expired.length;
}

/** Runs the GC sweep every `intervalMs`; returns the function that stops it. */
export function startSessionGc(
  runtime: WorkerRuntime,
  intervalMs: number = DEFAULT_SESSION_GC_INTERVAL_MS,
): () => void {
  const log = runtime.logger.child({ component: 'sessions' });
  const timer = setInterval(() => {
    try {
      sweepExpiredSessions(runtime);
    } catch (error) {
      // The sweep must survive anything one session does; the next tick tries again.
      log.error({ err: error }, 'session GC sweep failed');
    }
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}

/**
 * POSTs the on_close callback (§9): the payload object plus `session_id`, `{}` for null, or
 * `{"payload": value}` for anything else. A relative route goes to the model server, an absolute
 * URL where it says. Failures are logged, never thrown.
 */
async function runCloseCallback(
  runtime: WorkerRuntime,
  session: Session,
  route: string,
): Promise<void> {
  const log = runtime.logger.child({ component: 'sessions' });
  const value = session.onClosePayload;
  const body: Record<string, unknown> =
    value === null || value === undefined
      ? {}
      : isRecord(value)
        ? { ...value }
        : { payload: value };
  if (!('session_id' in body)) body['session_id'] = session.sessionId;
  try {
    // Inside the try: a payload that cannot be serialised must not escape this background task.
    const options = {
      method: 'POST' as const,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(CLOSE_CALLBACK_TIMEOUT_MS),
    };
    const absolute = /^https?:\/\//i.test(route);
    const response = absolute
      ? await undiciRequest(route, options)
      : await runtime.dispatcher.request({
          ...options,
          path: basePath(runtime.modelServerUrl) + (route.startsWith('/') ? route : `/${route}`),
        });
    await response.body.dump();
    if (response.statusCode >= 400) {
      log.warn(
        { sessionId: session.sessionId, route, status: response.statusCode },
        'on_close callback failed',
      );
    } else {
      log.debug(
        { sessionId: session.sessionId, route, status: response.statusCode },
        'on_close callback sent',
      );
    }
  } catch (error) {
    log.warn(
      {
        sessionId: session.sessionId,
        route,
        error: error instanceof Error ? error.message : String(error),
      },
      'on_close callback failed',
    );
  }
}

function findSession(
  runtime: WorkerRuntime,
  rawBody: string,
): { session: Session | undefined; query: z.infer<typeof sessionQuery> } {
  const parsed = sessionQuery.safeParse(parseJson(rawBody));
  if (!parsed.success) {
    throw new WorkerError({
      status: 422,
      code: 'TSW_ERR_PAYLOAD_INVALID',
      message: 'missing session_id',
      body: { error: 'missing session_id' },
    });
  }
  return { session: runtime.sessions.get(parsed.data.session_id), query: parsed.data };
}

/** `session_auth` must be the auth_data given at create, compared structurally (key order ignored). */
function checkSessionAuth(session: Session, sessionAuth: unknown): void {
  if (
    sessionAuth === undefined ||
    sessionAuth === null ||
    !isDeepStrictEqual(sessionAuth, session.authData)
  ) {
    throw new WorkerError({
      status: 401,
      code: 'TSW_ERR_UNAUTHORIZED',
      message: 'session_auth is not valid',
      body: { error: 'session_auth is not valid' },
    });
  }
}

function sessionNotFound(message: string): WorkerError {
  return new WorkerError({
    status: 400,
    code: 'TSW_ERR_SESSION_NOT_FOUND',
    message,
    body: { error: message },
  });
}

/** 429 at the cap; Retry-After says when the soonest session expires. */
function sessionLimit(runtime: WorkerRuntime, max: number): WorkerError {
  const nowSeconds = runtime.now() / 1000;
  let soonest = Infinity;
  for (const session of runtime.sessions.values()) soonest = Math.min(soonest, session.expiration);
  const wait = Number.isFinite(soonest) ? soonest - nowSeconds : DEFAULT_SESSION_LIFETIME;
  return new WorkerError({
    status: 429,
    code: 'TSW_ERR_SESSION_LIMIT',
    message: max > 0 ? `session limit reached (${max} open)` : 'this worker accepts no sessions',
    headers: { 'retry-after': String(Math.max(1, Math.ceil(wait))) },
  });
}

/** 13 characters of [A-Za-z0-9] from the CSPRNG, without modulo bias (bytes ≥ 248 are skipped). */
function newSessionId(runtime: WorkerRuntime): string {
  for (;;) {
    let id = '';
    while (id.length < SESSION_ID_LENGTH) {
      for (const byte of randomBytes(SESSION_ID_LENGTH * 2)) {
        if (byte >= 248) continue;
        id += ID_ALPHABET[byte % 62];
        if (id.length === SESSION_ID_LENGTH) break;
      }
    }
    if (runtime.sessions.get(id) === undefined && !runtime.sessions.wasClosed(id)) return id;
  }
}

function asInteger(value: unknown): number | null {
  return typeof value === 'number' && Number.isInteger(value) ? value : null;
}
