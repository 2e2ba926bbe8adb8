import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../lib/entry-server.ts';
import { post } from '../helpers/request.ts';
import { startStack, type TestStack } from '../helpers/stack.ts';
import { waitFor } from '../helpers/wait-for.ts';

type Line = Record<string, unknown>;

/** A JSON logger writing into memory: every line it wrote, parsed. */
function capture() {
  const lines: Line[] = [];
  let partial = '';
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      partial += chunk.toString('utf8');
      let newline: number;
      while ((newline = partial.indexOf('\n')) !== -1) {
        lines.push(JSON.parse(partial.slice(0, newline)) as Line);
        partial = partial.slice(newline + 1);
      }
      done();
    },
  });
  return { logger: createLogger({ level: 'info', pretty: false, destination }), lines };
}

/** Our own ids: 8 hex characters, a dash, a counter in base 36. */
const OUR_ID = /^[0-9a-f]{8}-[0-9a-z]+$/;

describe('request tracing', () => {
  let stack: TestStack;
  const { logger, lines } = capture();
  beforeAll(async () => {
    stack = await startStack({ logger });
  });
  afterAll(() => stack.close());

  const requestLine = (requestId: string) =>
    waitFor(() => lines.find((l) => l['component'] === 'request' && l['requestId'] === requestId), {
      label: `the request line of ${requestId}`,
    });

  it("logs the client's request_idx and reqnum, and honours and echoes its x-request-id", async () => {
    const authData = stack.autoscaler.issueAuthData({
      endpoint: 'hello',
      cost: 5,
      request_idx: 4242,
    });
    const clientId = 'client:trace_01.retry-2';
    const response = await post(
      `${stack.worker.url}/generate`,
      { auth_data: authData, payload: { prompt: 'trace me', max_response_tokens: 2 } },
      { 'x-request-id': clientId },
    );
    expect(response.status).toBe(200);
    expect(response.headers['x-request-id']).toBe(clientId);
    const line = await requestLine(clientId);
    expect(line).toMatchObject({
      route: '/generate',
      status: 200,
      outcome: 'success',
      request_idx: 4242,
      reqnum: authData.reqnum,
    });
    expect(line).not.toHaveProperty('session_id');
  });

  it('replaces an x-request-id that is too long or has other characters by its own, and echoes that', async () => {
    const unsafe = [
      'a'.repeat(65),
      'two words',
      'quote"and{brace}',
      'slash/and;semicolon',
      '',
      'ünïcode',
    ];
    for (const incoming of unsafe) {
      const response = await post(
        `${stack.worker.url}/generate`,
        {
          auth_data: stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 1 }),
          payload: { prompt: 'x', max_response_tokens: 1 },
        },
        { 'x-request-id': Buffer.from(incoming, 'utf8').toString('latin1') },
      );
      expect(response.status, incoming).toBe(200);
      const echoed = String(response.headers['x-request-id']);
      expect(echoed, incoming).toMatch(OUR_ID);
      const line = await requestLine(echoed);
      expect(line['requestId']).toBe(echoed);
    }
    // 64 characters of the allowed set are kept as they are.
    const longest = `${'A1._:-'.repeat(10)}zZ9-`;
    expect(longest).toHaveLength(64);
    const kept = await post(
      `${stack.worker.url}/generate`,
      {
        auth_data: stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 1 }),
        payload: { prompt: 'x', max_response_tokens: 1 },
      },
      { 'x-request-id': longest },
    );
    expect(kept.headers['x-request-id']).toBe(longest);
    // No client id leaked into any line.
    const text = JSON.stringify(lines);
    expect(text).not.toContain('two words');
    expect(text).not.toContain('semicolon');
  });

  it('keeps the ids on a refused request: a forged signature answers 401 with the echoed id', async () => {
    const authData = {
      ...stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 1, request_idx: 777 }),
      signature: Buffer.from('forged').toString('base64'),
    };
    const response = await post(
      `${stack.worker.url}/generate`,
      { auth_data: authData, payload: { prompt: 'x', max_response_tokens: 1 } },
      { 'x-request-id': 'forged-1' },
    );
    expect(response.status).toBe(401);
    expect(response.headers['x-request-id']).toBe('forged-1');
    expect(await requestLine('forged-1')).toMatchObject({
      status: 401,
      outcome: 'rejected',
      request_idx: 777,
      reqnum: authData.reqnum,
    });
  });

  it('logs the session_id of a request made in a session', async () => {
    const auth = stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 10 });
    const created = await post(`${stack.worker.url}/session/create`, {
      auth_data: auth,
      payload: {},
    });
    expect(created.status).toBe(201);
    const sessionId = (created.json() as { session_id: string }).session_id;
    const authData = stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 3 });
    const response = await post(
      `${stack.worker.url}/generate`,
      {
        auth_data: authData,
        payload: { prompt: 'in a session', max_response_tokens: 1 },
        session_id: sessionId,
      },
      { 'x-request-id': 'in-session' },
    );
    expect(response.status).toBe(200);
    expect(await requestLine('in-session')).toMatchObject({
      session_id: sessionId,
      request_idx: authData.request_idx,
      reqnum: authData.reqnum,
    });
    // An unknown session is logged with the id the client sent, cut to 64 characters.
    const unknown = await post(
      `${stack.worker.url}/generate`,
      {
        auth_data: stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 3 }),
        payload: { prompt: 'x', max_response_tokens: 1 },
        session_id: 's'.repeat(500),
      },
      { 'x-request-id': 'unknown-session' },
    );
    expect(unknown.status).toBe(410);
    expect(await requestLine('unknown-session')).toMatchObject({
      status: 410,
      session_id: 's'.repeat(64),
    });
  });
});

describe('the worker listening line', () => {
  let stack: TestStack;
  const { logger, lines } = capture();
  beforeAll(async () => {
    // WORKER_PORT is 0 in the test stack, so the public port comes from VAST_TCP_PORT_0.
    stack = await startStack({
      logger,
      env: { PUBLIC_IPADDR: '203.0.113.9', VAST_TCP_PORT_0: '40123' },
    });
  });
  afterAll(() => stack.close());

  it('carries the public URL the autoscaler is told, and the version', async () => {
    const listening = lines.find((l) => l['message'] === 'worker listening');
    expect(listening).toMatchObject({
      component: 'server',
      url: stack.worker.url,
      publicUrl: 'http://203.0.113.9:40123',
      worker: 'hello_world',
      version: expect.stringMatching(/^\d+\.\d+\.\d+/),
    });
    const report = await stack.autoscaler.waitForReport(() => true, 10_000);
    expect(report.url).toBe(listening?.['publicUrl']);
  });
});
