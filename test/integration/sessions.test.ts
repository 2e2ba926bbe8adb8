import { once } from 'node:events';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defineWorker } from '../../lib/index.ts';
import helloWorld from '../../workers/hello_world/server.ts';
import { startCallbackServer, type CallbackServer } from '../helpers/callback-server.ts';
import { post, postStreaming } from '../helpers/request.ts';
import { startStack, type TestStack } from '../helpers/stack.ts';
import { waitFor } from '../helpers/wait-for.ts';

type Json = Record<string, unknown>;

/** hello_world with another session cap. */
function helloWithCap(maxSessions: number | null) {
  return defineWorker({
    name: `hello-cap-${String(maxSessions)}`,
    modelServerUrl: helloWorld.modelServerUrl,
    handlers: helloWorld.handlers,
    maxSessions,
  });
}

async function createSession(stack: TestStack, payload: Json = {}, cost = 100) {
  const auth = stack.autoscaler.issueAuthData({ endpoint: 'hello', cost });
  const response = await post(`${stack.worker.url}/session/create`, { auth_data: auth, payload });
  expect(response.status).toBe(201);
  const body = response.json() as { session_id: string; expiration: number };
  return { id: body.session_id, expiration: body.expiration, auth };
}

describe('session routes on the main listener', () => {
  let stack: TestStack;
  let callbacks: CallbackServer;
  beforeAll(async () => {
    stack = await startStack({ worker: helloWithCap(null) });
    callbacks = await startCallbackServer();
  });
  afterAll(async () => {
    await stack.close();
    await callbacks.close();
  });

  const url = (path: string) => `${stack.worker.url}${path}`;

  describe('POST /session/create', () => {
    it('answers 201 with a 13-character alphanumeric id and the expiration, and stores the session', async () => {
      const before = Date.now() / 1000;
      const response = await post(url('/session/create'), {
        auth_data: stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 100 }),
        payload: { lifetime: 30 },
      });
      expect(response.status).toBe(201);
      const body = response.json() as { session_id: string; expiration: number };
      expect(Object.keys(body).sort()).toEqual(['expiration', 'session_id']);
      expect(body.session_id).toMatch(/^[A-Za-z0-9]{13}$/);
      expect(body.expiration).toBeGreaterThanOrEqual(before + 30);
      expect(body.expiration).toBeLessThanOrEqual(Date.now() / 1000 + 30);
      expect(stack.worker.sessions.get(body.session_id)?.lifetime).toBe(30);
    });

    it('uses a 60 s lifetime when none is given', async () => {
      const { id } = await createSession(stack);
      const session = stack.worker.sessions.get(id);
      expect(session?.lifetime).toBe(60);
      expect(session!.expiration - session!.createdAt).toBeCloseTo(60, 6);
    });

    it('stores on_close_route and on_close_payload as given, and a null payload when only the route is given', async () => {
      const withPayload = await createSession(stack, {
        on_close_route: '/done',
        on_close_payload: { job: 7, tags: ['a'] },
      });
      const routeOnly = await createSession(stack, { on_close_route: '/done' });
      const get = async (id: string, auth: unknown) =>
        (await post(url('/session/get'), { session_id: id, session_auth: auth })).json() as Json;
      expect(await get(withPayload.id, withPayload.auth)).toMatchObject({
        on_close_route: '/done',
        on_close_payload: { job: 7, tags: ['a'] },
      });
      expect(await get(routeOnly.id, routeOnly.auth)).toMatchObject({
        on_close_route: '/done',
        on_close_payload: null,
      });
    });

    it('answers 422 {"error":"invalid JSON"} to a body that is not JSON', async () => {
      const response = await post(url('/session/create'), '{"auth_data": ');
      expect(response.status).toBe(422);
      expect(response.json()).toEqual({ error: 'invalid JSON' });
    });

    it.each([
      ['auth_data absent', { payload: {} }, { auth_data: 'field missing' }],
      ['auth_data null', { auth_data: null, payload: {} }, { auth_data: 'field missing' }],
      ['payload absent', 'signed', { payload: 'field missing' }],
      [
        'payload null',
        'signed-null-payload',
        { payload: { data: 'payload must be a dictionary' } },
      ],
    ])('answers 422 with the field map when %s, never a 500', async (_name, shape, expected) => {
      const auth = stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 100 });
      const body =
        shape === 'signed'
          ? { auth_data: auth }
          : shape === 'signed-null-payload'
            ? { auth_data: auth, payload: null }
            : shape;
      const response = await post(url('/session/create'), body);
      expect(response.status).toBe(422);
      expect(response.json()).toEqual(expected);
    });

    it.each([
      ['negative', -5],
      ['zero', 0],
      ['a string', '30'],
      ['null', null],
      ['infinite (1e400)', '1e400'],
    ])('answers 422 naming the lifetime when it is %s', async (_name, lifetime) => {
      const auth = JSON.stringify(stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 100 }));
      const raw = `{"auth_data": ${auth}, "payload": {"lifetime": ${lifetime === '1e400' ? '1e400' : JSON.stringify(lifetime)}}}`;
      const response = await post(url('/session/create'), raw);
      expect(response.status).toBe(422);
      const body = response.json() as { payload: Record<string, string> };
      expect(body.payload['lifetime']).toMatch(/lifetime|seconds|number/i);
    });

    it('answers 422 to an on_close_route with a scheme other than http(s)', async () => {
      const response = await post(url('/session/create'), {
        auth_data: stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 100 }),
        payload: { on_close_route: 'file:///etc/passwd' },
      });
      expect(response.status).toBe(422);
      expect(response.json()).toMatchObject({ payload: { on_close_route: expect.any(String) } });
    });

    it('answers 401 to a create whose signature does not verify, and opens no session', async () => {
      const sessions = stack.worker.sessions.size;
      const forged = stack.autoscaler.issueAuthData({
        endpoint: 'hello',
        cost: 100,
        url: 'http://10.0.0.9:9',
      });
      const response = await post(url('/session/create'), {
        auth_data: { ...forged, url: stack.worker.url },
        payload: {},
      });
      expect(response.status).toBe(401);
      expect(response.json()).toMatchObject({ code: 'TSW_ERR_UNAUTHORIZED', origin: 'worker' });
      expect(stack.worker.sessions.size).toBe(sessions);
    });

    it('starts a session-level record whose workload is auth_data.cost, counted in cur_load until the end', async () => {
      const before = stack.worker.inspect();
      const { id, auth } = await createSession(stack, {}, 250);
      const session = stack.worker.sessions.get(id)!;
      expect(session.record).toMatchObject({ isSession: true, workload: 250, status: 'Started' });
      const open = stack.worker.inspect();
      expect(open.working - before.working).toBe(1);
      expect(open.currentLoad - before.currentLoad).toBe(250);
      expect(session.record.workStartedAt).toBe(session.record.enteredQueueAt);
      await post(url('/session/end'), { session_id: id, session_auth: auth });
      const ended = stack.worker.inspect();
      expect(ended.working).toBe(before.working);
      expect(ended.currentLoad).toBe(before.currentLoad);
      expect(ended.totals.served - open.totals.served).toBe(250);
      expect(session.record).toMatchObject({ status: 'Success', success: true });
      expect(ended.pendingDeletes).toContain(session.record);
    });
  });

  describe('POST /session/get', () => {
    it('returns the stored session without extending it', async () => {
      const { id, auth, expiration } = await createSession(stack, {
        lifetime: 45,
        on_close_route: '/bye',
        on_close_payload: 'x',
      });
      const response = await post(url('/session/get'), { session_id: id, session_auth: auth });
      expect(response.status).toBe(200);
      const body = response.json() as Json;
      expect(Object.keys(body).sort()).toEqual([
        'auth_data',
        'created_at',
        'expiration',
        'lifetime',
        'on_close_payload',
        'on_close_route',
        'session_id',
      ]);
      expect(body).toMatchObject({
        session_id: id,
        auth_data: auth,
        lifetime: 45,
        expiration,
        on_close_route: '/bye',
        on_close_payload: 'x',
      });
      expect(stack.worker.sessions.get(id)?.expiration).toBe(expiration);
    });

    it('compares session_auth by deep equality, so key order does not matter', async () => {
      const { id, auth } = await createSession(stack);
      const reordered = Object.fromEntries(Object.entries(auth).reverse());
      expect(JSON.stringify(reordered)).not.toBe(JSON.stringify(auth));
      const response = await post(url('/session/get'), { session_id: id, session_auth: reordered });
      expect(response.status).toBe(200);
    });

    it('answers 400 "session does not exist" to an unknown id', async () => {
      const response = await post(url('/session/get'), { session_id: 'nope', session_auth: {} });
      expect(response.status).toBe(400);
      expect(response.json()).toEqual({ error: 'session does not exist' });
    });

    it('answers 401 to a session_auth that differs or is null', async () => {
      const { id, auth } = await createSession(stack);
      for (const sessionAuth of [{ ...auth, cost: 101 }, null, undefined]) {
        const response = await post(url('/session/get'), {
          session_id: id,
          session_auth: sessionAuth,
        });
        expect(response.status).toBe(401);
        expect(response.json()).toEqual({ error: 'session_auth is not valid' });
      }
    });

    it.each([
      ['absent', {}],
      ['empty', { session_id: '' }],
      ['not a string', { session_id: 5 }],
    ])('answers 422 "missing session_id" when the id is %s', async (_name, body) => {
      const response = await post(url('/session/get'), body);
      expect(response.status).toBe(422);
      expect(response.json()).toEqual({ error: 'missing session_id' });
    });

    it('answers 422 "invalid JSON" to a body that is not JSON', async () => {
      const response = await post(url('/session/get'), 'session');
      expect(response.status).toBe(422);
      expect(response.json()).toEqual({ error: 'invalid JSON' });
    });
  });

  describe('POST /session/health', () => {
    it('answers 200 {"ok":true} to the right session_auth', async () => {
      const { id, auth } = await createSession(stack);
      const response = await post(url('/session/health'), { session_id: id, session_auth: auth });
      expect(response.status).toBe(200);
      expect(response.json()).toEqual({ ok: true });
    });

    it('answers 200 {"ok":false} to an unknown session, not an error status', async () => {
      const response = await post(url('/session/health'), { session_id: 'gone', session_auth: {} });
      expect(response.status).toBe(200);
      expect(response.json()).toEqual({ ok: false });
    });

    it('answers 401 naming session_auth when it does not match', async () => {
      const { id } = await createSession(stack);
      const response = await post(url('/session/health'), {
        session_id: id,
        session_auth: { a: 1 },
      });
      expect(response.status).toBe(401);
      expect((response.json() as { error: string }).error).toContain('session_auth');
    });

    it('answers 422 to invalid JSON and to a missing or empty id', async () => {
      expect((await post(url('/session/health'), '{')).json()).toEqual({ error: 'invalid JSON' });
      for (const body of [{}, { session_id: '' }]) {
        const response = await post(url('/session/health'), body);
        expect(response.status).toBe(422);
        expect(response.json()).toEqual({ error: 'missing session_id' });
      }
    });
  });

  describe('POST /session/end', () => {
    it('answers 200 {"ended":true,"removed_session":id} and removes the session', async () => {
      const { id, auth } = await createSession(stack);
      const response = await post(url('/session/end'), { session_id: id, session_auth: auth });
      expect(response.status).toBe(200);
      expect(response.json()).toEqual({ ended: true, removed_session: id });
      expect(stack.worker.sessions.get(id)).toBeUndefined();
    });

    it('answers 400 naming the id of a session it never had', async () => {
      const response = await post(url('/session/end'), { session_id: 'never', session_auth: {} });
      expect(response.status).toBe(400);
      expect(response.json()).toEqual({ error: 'session with id never not found' });
    });

    it('answers 410 "session already closed" when the session has just been closed', async () => {
      const { id, auth } = await createSession(stack);
      expect((await post(url('/session/end'), { session_id: id, session_auth: auth })).status).toBe(
        200,
      );
      const again = await post(url('/session/end'), { session_id: id, session_auth: auth });
      expect(again.status).toBe(410);
      expect((again.json() as { error: string }).error).toContain('already closed');
    });

    it('answers 401 to a wrong session_auth and keeps the session open', async () => {
      const { id, auth } = await createSession(stack);
      const response = await post(url('/session/end'), {
        session_id: id,
        session_auth: { ...auth, signature: 'forged' },
      });
      expect(response.status).toBe(401);
      expect(stack.worker.sessions.get(id)).toBeDefined();
    });

    it('answers 422 to invalid JSON and to a missing or empty id', async () => {
      expect((await post(url('/session/end'), 'x')).status).toBe(422);
      for (const body of [{}, { session_id: '' }]) {
        const response = await post(url('/session/end'), body);
        expect(response.status).toBe(422);
        expect(response.json()).toEqual({ error: 'missing session_id' });
      }
    });
  });

  describe('the plain-HTTP second listener', () => {
    it('ends a session', async () => {
      const { id, auth } = await createSession(stack);
      expect(stack.worker.httpUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect(stack.worker.httpPort).not.toBe(stack.worker.port);
      const response = await post(`${stack.worker.httpUrl}/session/end`, {
        session_id: id,
        session_auth: auth,
      });
      expect(response.status).toBe(200);
      expect(response.json()).toEqual({ ended: true, removed_session: id });
    });

    it('serves nothing but POST /session/end', async () => {
      for (const path of ['/session/create', '/session/get', '/generate', '/health/live']) {
        const response = await post(`${stack.worker.httpUrl}${path}`, {});
        expect(response.status).toBe(404);
      }
    });

    it('answers 413 to a body over 1 MiB, and still ends sessions with the same errors', async () => {
      // A raw socket announces 1 MiB + 1 byte and sends a little: the answer must not wait for the rest.
      const socket = connect(stack.worker.httpPort, '127.0.0.1');
      socket.setEncoding('utf8');
      socket.write(
        `POST /session/end HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
          `Content-Length: ${1024 * 1024 + 1}\r\n\r\n{"session_id": "x", "pad": "`,
      );
      let raw = '';
      socket.on('data', (chunk: string) => (raw += chunk));
      await waitFor(() => raw.includes('TSW_ERR_BODY_TOO_LARGE'), { label: '413 answer' });
      socket.destroy();
      expect(raw).toMatch(/^HTTP\/1\.1 413 /);
      const unknown = await post(`${stack.worker.httpUrl}/session/end`, { session_id: 'none' });
      expect(unknown.status).toBe(400);
      expect((await post(`${stack.worker.httpUrl}/session/end`, '{')).json()).toEqual({
        error: 'invalid JSON',
      });
    });
  });

  describe('requests inside a session', () => {
    it('extends the expiry by one lifetime per request, up to ten lifetimes ahead of now', async () => {
      const { id, expiration } = await createSession(stack, { lifetime: 2 });
      const body = () => ({
        auth_data: stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 10 }),
        payload: { prompt: 'hi', max_response_tokens: 1 },
        session_id: id,
      });
      const first = await post(url('/generate'), body());
      expect(first.status).toBe(200);
      const session = stack.worker.sessions.get(id)!;
      expect(session.expiration).toBeCloseTo(expiration + 2, 6);
      expect(session.sessionReqnum).toBe(1);
      for (let i = 0; i < 15; i++) expect((await post(url('/generate'), body())).status).toBe(200);
      expect(session.sessionReqnum).toBe(16);
      expect(session.expiration).toBeLessThanOrEqual(Date.now() / 1000 + 20);
      expect(session.expiration).toBeLessThan(expiration + 16 * 2);
    });

    it('ending the session cancels its in-flight stream through the normal cancellation path', async () => {
      const { id, auth } = await createSession(stack);
      // The stream stays open after its first token until the session's end cancels it.
      stack.model.configure({ hold: { at: 'tokens', afterTokens: 1 } });
      try {
        const cancelled = stack.worker.inspect().totals.cancelled;
        const call = postStreaming(url('/generate_stream'), {
          auth_data: stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 10 }),
          payload: { prompt: 'a long answer', max_response_tokens: 500 },
          session_id: id,
        });
        await waitFor(() => call.chunks.length > 0, { label: 'first chunk' });
        const aborted = once(stack.model, 'aborted');
        const ended = await post(url('/session/end'), { session_id: id, session_auth: auth });
        expect(ended.status).toBe(200);
        await aborted;
        await expect(call.done).rejects.toThrow();
        await waitFor(() => stack.worker.inspect().totals.cancelled > cancelled, {
          label: 'cancelled workload',
        });
        expect(stack.worker.inspect().requestsInProgress).toBe(0);
      } finally {
        stack.model.release();
      }
    });

    it('a request still waiting for the model when its session ends gets 410 "invalid session"', async () => {
      const { id, auth } = await createSession(stack);
      stack.model.configure({ failure: { kind: 'hang-headers' } });
      try {
        const arrived = once(stack.model, 'request');
        const call = postStreaming(url('/generate'), {
          auth_data: stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 10 }),
          payload: { prompt: 'wait', max_response_tokens: 3 },
          session_id: id,
        });
        await arrived;
        await post(url('/session/end'), { session_id: id, session_auth: auth });
        expect((await call.headers).status).toBe(410);
        expect(JSON.parse(await call.done)).toEqual({ error: 'invalid session' });
      } finally {
        stack.model.configure({ failure: { kind: 'none' } });
      }
    });
  });

  describe('the on_close callback', () => {
    it('POSTs the payload object plus session_id to an absolute URL', async () => {
      const { id, auth } = await createSession(stack, {
        on_close_route: `${callbacks.url}/closed`,
        on_close_payload: { job: 42 },
      });
      const next = callbacks.next();
      await post(url('/session/end'), { session_id: id, session_auth: auth });
      const callback = await next;
      expect(callback.path).toBe('/closed');
      expect(callback.body).toEqual({ job: 42, session_id: id });
    });

    it('wraps a scalar payload as {"payload": value} and sends only session_id for a null one', async () => {
      const scalar = await createSession(stack, {
        on_close_route: `${callbacks.url}/s`,
        on_close_payload: 3,
      });
      const bare = await createSession(stack, { on_close_route: `${callbacks.url}/n` });
      let next = callbacks.next();
      await post(url('/session/end'), { session_id: scalar.id, session_auth: scalar.auth });
      expect((await next).body).toEqual({ payload: 3, session_id: scalar.id });
      next = callbacks.next();
      await post(url('/session/end'), { session_id: bare.id, session_auth: bare.auth });
      expect((await next).body).toEqual({ session_id: bare.id });
    });

    it('keeps a session_id the payload already carries', async () => {
      const { id, auth } = await createSession(stack, {
        on_close_route: `${callbacks.url}/k`,
        on_close_payload: { session_id: 'mine' },
      });
      const next = callbacks.next();
      await post(url('/session/end'), { session_id: id, session_auth: auth });
      expect((await next).body).toEqual({ session_id: 'mine' });
    });

    it('sends a relative route to the model server', async () => {
      const { id, auth } = await createSession(stack, {
        on_close_route: '/session_done',
        on_close_payload: { a: 1 },
      });
      const seen = new Promise<unknown>((resolve) => {
        const onRequest = (event: { path: string; body: unknown }) => {
          if (event.path !== '/session_done') return;
          stack.model.off('request', onRequest);
          resolve(event.body);
        };
        stack.model.on('request', onRequest);
      });
      await post(url('/session/end'), { session_id: id, session_auth: auth });
      expect(await seen).toEqual({ a: 1, session_id: id });
    });

    it('does not delay the /session/end answer, and a failing callback changes nothing', async () => {
      const held = await startCallbackServer({ hold: true, status: 500 });
      try {
        const { id, auth } = await createSession(stack, { on_close_route: `${held.url}/slow` });
        const next = held.next();
        const response = await post(url('/session/end'), { session_id: id, session_auth: auth });
        expect(response.status).toBe(200);
        const callback = await next;
        // Had the answer waited for the callback, its 10 s timeout would have cut this request by now.
        expect(callback.aborted()).toBe(false);
        callback.respond(500);
      } finally {
        await held.close();
      }
    });

    it('is not sent when the session has no on_close_route', async () => {
      const before = callbacks.received.length;
      const { id, auth } = await createSession(stack);
      await post(url('/session/end'), { session_id: id, session_auth: auth });
      // A session with a callback, ended after, is the only one the server sees.
      const marker = await createSession(stack, { on_close_route: `${callbacks.url}/marker` });
      const next = callbacks.next();
      await post(url('/session/end'), { session_id: marker.id, session_auth: marker.auth });
      expect((await next).path).toBe('/marker');
      expect(callbacks.received.length).toBe(before + 1);
    });
  });
});

describe('session expiry', () => {
  let stack: TestStack;
  let callbacks: CallbackServer;
  beforeAll(async () => {
    stack = await startStack({ worker: helloWithCap(null), deps: { sessionGcIntervalMs: 20 } });
    callbacks = await startCallbackServer();
  });
  afterAll(async () => {
    await stack.close();
    await callbacks.close();
  });

  it('the GC closes an expired session within a sweep and runs its on_close callback', async () => {
    const { id } = await createSession(stack, {
      lifetime: 0.05,
      on_close_route: `${callbacks.url}/expired`,
    });
    const callback = await callbacks.next();
    expect(callback.body).toEqual({ session_id: id });
    expect(stack.worker.sessions.get(id)).toBeUndefined();
  });

  it('a session with a request in flight outlives its expiry until the request ends', async () => {
    // Long enough that the request surely joins the session before it expires, even on a busy machine.
    const { id } = await createSession(stack, { lifetime: 1 });
    stack.model.configure({ failure: { kind: 'hang-headers' } });
    const sessions = stack.worker.sessions;
    try {
      const arrived = once(stack.model, 'request');
      const call = postStreaming(`${stack.worker.url}/generate`, {
        auth_data: stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 10 }),
        payload: { prompt: 'hold', max_response_tokens: 2 },
        session_id: id,
      });
      await arrived;
      const session = sessions.get(id)!;
      await waitFor(() => session.expiration <= Date.now() / 1000, {
        label: 'session past its expiry',
      });
      expect(sessions.sweepExpired()).toBe(0);
      expect(sessions.get(id)).toBe(session);
      call.disconnect();
      await waitFor(() => sessions.get(id) === undefined, {
        label: 'session closed by the GC',
      });
    } finally {
      stack.model.configure({ failure: { kind: 'none' } });
    }
  });
});

describe('the session cap (max_sessions)', () => {
  it('answers 429 once max_sessions sessions are open, and records the rejection', async () => {
    const stack = await startStack({ worker: helloWithCap(1) });
    try {
      await createSession(stack);
      const rejected = stack.worker.inspect().totals.rejected;
      const response = await post(`${stack.worker.url}/session/create`, {
        auth_data: stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 70 }),
        payload: {},
      });
      expect(response.status).toBe(429);
      expect(response.json()).toMatchObject({ code: 'TSW_ERR_SESSION_LIMIT' });
      expect(Number(response.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      const after = stack.worker.inspect();
      expect(after.totals.rejected - rejected).toBe(70);
      expect(after.pendingDeletes.at(-1)).toMatchObject({ status: 'Rejected', isSession: true });
      expect(stack.worker.sessions.size).toBe(1);
    } finally {
      await stack.close();
    }
  });

  it('rejects even the first create when max_sessions is negative', async () => {
    const stack = await startStack({ worker: helloWithCap(-1) });
    try {
      const response = await post(`${stack.worker.url}/session/create`, {
        auth_data: stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 100 }),
        payload: {},
      });
      expect(response.status).toBe(429);
    } finally {
      await stack.close();
    }
  });

  it('treats 0 and null as unlimited', async () => {
    const stack = await startStack({ worker: helloWithCap(0) });
    try {
      for (let i = 0; i < 12; i++) await createSession(stack);
      expect(stack.worker.sessions.size).toBe(12);
    } finally {
      await stack.close();
    }
  });

  it('refuses new sessions with 503 and Retry-After while draining', async () => {
    const stack = await startStack();
    try {
      stack.worker.readiness.startDraining();
      const response = await post(`${stack.worker.url}/session/create`, {
        auth_data: stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 100 }),
        payload: {},
      });
      expect(response.status).toBe(503);
      expect(response.headers['retry-after']).toBeDefined();
      expect(response.json()).toMatchObject({ code: 'TSW_ERR_DRAINING' });
    } finally {
      await stack.close();
    }
  });
});
