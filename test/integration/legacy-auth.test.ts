import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PyFloat } from '../../lib/auth/index.ts';
import { post } from '../helpers/request.ts';
import { startStack, type TestStack } from '../helpers/stack.ts';

describe('AUTH_MODE=legacy for old autoscalers', () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startStack({ authMode: 'legacy' });
  });
  afterAll(() => stack.close());

  const payload = { prompt: 'legacy client', max_response_tokens: 2 };

  it('accepts five-field auth_data signed over every field but the signature', async () => {
    const authData = stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 100 });
    expect(Object.keys(authData).sort()).toEqual([
      'cost',
      'endpoint',
      'reqnum',
      'signature',
      'url',
    ]);
    const response = await post(`${stack.worker.url}/generate`, { auth_data: authData, payload });
    expect(response.status).toBe(200);
  });

  it('verifies numbers as Python formats them: a cost sent as 242.0 is signed as 242.0', async () => {
    const url = stack.worker.url;
    const signature = stack.autoscaler.sign(
      { cost: new PyFloat(242), endpoint: 'hello', reqnum: 10, url },
      'legacy',
    );
    const body = (cost: string, reqnum: number) =>
      `{"auth_data":{"cost":${cost},"endpoint":"hello","reqnum":${reqnum},"url":"${url}","signature":"${signature}"},"payload":${JSON.stringify(payload)}}`;
    // JSON.parse would turn 242.0 into 242 and re-serialise it as "242": the signature would not match.
    expect((await post(`${url}/generate`, body('242.0', 10))).status).toBe(200);
    const intSignature = stack.autoscaler.sign(
      { cost: 242, endpoint: 'hello', reqnum: 11, url },
      'legacy',
    );
    const asInt = body('242.0', 11).replace(signature, intSignature);
    expect((await post(`${url}/generate`, asInt)).status).toBe(401);
  });

  it('rejects a replayed request', async () => {
    const body = {
      auth_data: stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 100 }),
      payload,
    };
    expect((await post(`${stack.worker.url}/generate`, body)).status).toBe(200);
    const replay = await post(`${stack.worker.url}/generate`, body);
    expect(replay.status).toBe(401);
    expect((replay.json() as { error: string }).error).toMatch(/replay|duplicate/i);
  });

  it('rejects a reqnum more than 100 below the highest seen', async () => {
    const fields = { cost: 1, endpoint: 'hello', reqnum: 100_000, url: stack.worker.url };
    const high = { ...fields, signature: stack.autoscaler.sign(fields, 'legacy') };
    expect((await post(`${stack.worker.url}/generate`, { auth_data: high, payload })).status).toBe(
      200,
    );
    const oldFields = { ...fields, reqnum: 99_899 };
    const old = { ...oldFields, signature: stack.autoscaler.sign(oldFields, 'legacy') };
    const response = await post(`${stack.worker.url}/generate`, { auth_data: old, payload });
    expect(response.status).toBe(401);
    const withinFields = { ...fields, reqnum: 99_950 };
    const within = { ...withinFields, signature: stack.autoscaler.sign(withinFields, 'legacy') };
    expect(
      (await post(`${stack.worker.url}/generate`, { auth_data: within, payload })).status,
    ).toBe(200);
  });
});
