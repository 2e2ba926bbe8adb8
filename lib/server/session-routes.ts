/**
 * The session routes (protocol §9), HTTP only: POST /session/create, /session/get, /session/health
 * and /session/end. The sessions themselves, their close procedure and GC, are `SessionManager`'s.
 *
 * Fixes of the reference's weaknesses (§12.2, §12.13): create goes through the same accept stages
 * as a request (drain, validation with 422 never 500, signature, then the session cap), and
 * session_auth is compared by deep equality.
 */
import { isDeepStrictEqual } from 'node:util';
import type { HttpBindings } from '@hono/node-server';
import type { Context, Hono } from 'hono';
import { z } from 'zod';
import { WorkerError } from '../errors.ts';
import { DEFAULT_WORKLOAD } from '../handler.ts';
import {
  acceptBody,
  refuseWhileDraining,
  type AcceptDeps,
  type AcceptRoute,
} from '../pipeline/accept.ts';
import { parseJson } from '../pipeline/parse.ts';
import type { SessionManager } from '../sessions/manager.ts';
import type { Session } from '../sessions/store.ts';

type Env = { Bindings: HttpBindings };

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

/** What the session routes need: the sessions, and the accept stages' view of the worker. */
export interface SessionRouteDeps {
  readonly sessions: SessionManager;
  readonly accept: AcceptDeps;
}

/** Mounts the four session routes on the main app. */
export function mountSessionRoutes(app: Hono<Env>, deps: SessionRouteDeps): void {
  const { sessions } = deps;
  const create = createRoute(sessions);
  app.post('/session/create', async (c) => {
    refuseWhileDraining(deps.accept.readiness);
    return createSession(c, deps, create, await c.req.text());
  });
  app.post('/session/get', async (c) => {
    const { session, query } = findSession(sessions, await c.req.text());
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
    const { session, query } = findSession(sessions, await c.req.text());
    // An unknown session is a normal answer here, not an error (§11.3).
    if (session === undefined) return c.json({ ok: false });
    checkSessionAuth(session, query.session_auth);
    return c.json({ ok: true });
  });
  app.post('/session/end', sessionEndHandler(sessions));
}

/** POST /session/end, on the main app and on the plain-HTTP listener. */
export function sessionEndHandler(
  sessions: SessionManager,
): (c: Context<Env>) => Promise<Response> {
  return async (c) => {
    const { session, query } = findSession(sessions, await c.req.text());
    if (session === undefined) {
      // A recently closed id gets the reference's 410 (§11.23); one never seen its 400 (§11.19).
      if (sessions.wasClosed(query.session_id)) {
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
    sessions.close(session.sessionId, 'ended');
    return c.json({ ended: true, removed_session: session.sessionId });
  };
}

/** The accept stages with a session's rules, then the session itself: 201 with its id. */
async function createSession(
  c: Context<Env>,
  deps: SessionRouteDeps,
  route: AcceptRoute,
  rawBody: string,
): Promise<Response> {
  const { envelope, record } = await acceptBody(deps.accept, route, rawBody);
  const payload = envelope.payload as z.infer<typeof createPayload>;
  const session = deps.sessions.open(record, {
    authData: envelope.authData,
    lifetime: payload.lifetime,
    onCloseRoute: payload.on_close_route,
    onClosePayload: payload.on_close_payload,
  });
  return c.json({ session_id: session.sessionId, expiration: session.expiration }, 201);
}

/**
 * /session/create's side of the accept stages. The reference lets anyone open sessions (§12.2); a
 * session costs capacity, so it is signed like a request. Its workload is the signed request's
 * `cost`, reported as load until the session closes.
 */
function createRoute(sessions: SessionManager): AcceptRoute {
  return {
    route: '/session/create',
    payload: createPayload,
    opensSession: true,
    workload: ({ authData }) => {
      const cost = authData['cost'];
      return typeof cost === 'number' && Number.isFinite(cost) && cost >= 0
        ? cost
        : DEFAULT_WORKLOAD;
    },
    admit: () => sessions.capRefusal(),
  };
}

function findSession(
  sessions: SessionManager,
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
  return { session: sessions.get(parsed.data.session_id), query: parsed.data };
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
