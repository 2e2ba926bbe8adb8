// Protocol reference §12.13: session edge cases (unbounded extension, rejected requests extending
// the session, unvalidated create bodies, non-cryptographic ids, the inline on_close callback, the
// /session/end race).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCallbackServer } from '../helpers/callback-server.ts';
import { post } from '../helpers/request.ts';
import { startStack, type TestStack } from '../helpers/stack.ts';

describe('ref-13: session edge cases', () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startStack({ env: {} });
  });
  afterAll(() => stack.close());

  async function create(payload: Record<string, unknown> = {}) {
    const auth = stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 100 });
    const response = await post(`${stack.worker.url}/session/create`, { auth_data: auth, payload });
    expect(response.status).toBe(201);
    return { id: (response.json() as { session_id: string }).session_id, auth };
  }
  const request = (sessionId: string, authData: unknown) =>
    post(`${stack.worker.url}/generate`, {
      auth_data: authData,
      payload: { prompt: 'x', max_response_tokens: 1 },
      session_id: sessionId,
    });

  it('bounds the expiry extension to ten lifetimes ahead of now', async () => {
    const { id } = await create({ lifetime: 1 });
    for (let i = 0; i < 30; i++) {
      expect(
        (await request(id, stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 1 }))).status,
      ).toBe(200);
    }
    const session = stack.worker.sessions.get(id)!;
    expect(session.sessionReqnum).toBe(30);
    expect(session.expiration).toBeLessThanOrEqual(Date.now() / 1000 + 10);
  });

  it('does not extend a session for a request rejected with 401', async () => {
    const { id } = await create({ lifetime: 5 });
    const session = stack.worker.sessions.get(id)!;
    const before = session.expiration;
    const forged = {
      ...stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 1 }),
      signature: 'AAAA',
    };
    expect((await request(id, forged)).status).toBe(401);
    expect(session.expiration).toBe(before);
    expect(session.sessionReqnum).toBe(0);
    expect(session.requests.size).toBe(0);
  });

  it.each([[null], [-1], [0], ['60']])('answers 422, not 500, to lifetime %j', async (lifetime) => {
    const response = await post(`${stack.worker.url}/session/create`, {
      auth_data: stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 100 }),
      payload: { lifetime },
    });
    expect(response.status).toBe(422);
  });

  it('makes distinct 13-character alphanumeric ids', async () => {
    const ids = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const { id, auth } = await create();
      expect(id).toMatch(/^[A-Za-z0-9]{13}$/);
      ids.add(id);
      await post(`${stack.worker.url}/session/end`, { session_id: id, session_auth: auth });
    }
    expect(ids.size).toBe(20);
  });

  it('answers /session/end before the on_close callback finishes', async () => {
    const held = await startCallbackServer({ hold: true });
    try {
      const { id, auth } = await create({ on_close_route: `${held.url}/done` });
      const next = held.next();
      const response = await post(`${stack.worker.url}/session/end`, {
        session_id: id,
        session_auth: auth,
      });
      expect(response.status).toBe(200);
      const callback = await next;
      expect(callback.aborted()).toBe(false);
      callback.respond();
    } finally {
      await held.close();
    }
  });

  it('answers 410 "session already closed" to an end racing another end', async () => {
    const { id, auth } = await create();
    const [first, second] = await Promise.all([
      post(`${stack.worker.url}/session/end`, { session_id: id, session_auth: auth }),
      post(`${stack.worker.url}/session/end`, { session_id: id, session_auth: auth }),
    ]);
    expect([first.status, second.status].sort()).toEqual([200, 410]);
  });
});
