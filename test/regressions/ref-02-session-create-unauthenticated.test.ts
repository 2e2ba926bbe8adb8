// Protocol reference §12.2: /session/create was unauthenticated, so anyone could fill the session cap.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defineWorker } from '../../lib/index.ts';
import helloWorld from '../../workers/hello_world/server.ts';
import { post } from '../helpers/request.ts';
import { startStack, type TestStack } from '../helpers/stack.ts';

describe('ref-02: /session/create verifies the signature', () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startStack({
      worker: defineWorker({
        name: 'one-session',
        modelServerUrl: helloWorld.modelServerUrl,
        handlers: helloWorld.handlers,
        maxSessions: 1,
      }),
    });
  });
  afterAll(() => stack.close());

  it('answers 401 to creates without a valid signature, so they cannot take the only slot', async () => {
    const create = (authData: unknown) =>
      post(`${stack.worker.url}/session/create`, {
        auth_data: authData,
        payload: { lifetime: 600 },
      });
    const genuine = stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 100 });
    for (const forged of [
      { ...genuine, signature: 'AAAA' },
      { ...genuine, url: 'http://10.9.8.7:1' },
      {
        ...stack.autoscaler.issueAuthData({
          endpoint: 'hello',
          cost: 100,
          url: 'http://10.9.8.7:1',
        }),
        url: stack.worker.url,
      },
    ]) {
      const response = await create(forged);
      expect(response.status).toBe(401);
    }
    expect(stack.worker.sessions.size).toBe(0);
    expect((await create(genuine)).status).toBe(201);
  });

  it('does not count refused creates in cur_load, nor a forged one in rej_load', async () => {
    const load = stack.worker.inspect().currentLoad;
    const rejected = stack.worker.inspect().totals.rejected;
    const genuine = stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 500 });
    await post(`${stack.worker.url}/session/create`, {
      auth_data: { ...genuine, signature: 'AAAA' },
      payload: {},
    });
    expect(stack.worker.inspect().currentLoad).toBe(load);
    // As a forged request: its cost is the client's word, and it was never signed.
    expect(stack.worker.inspect().totals.rejected).toBe(rejected);
    expect(stack.worker.inspect().pendingDeletes.at(-1)).toMatchObject({
      status: 'Rejected',
      isSession: true,
      workload: 0,
    });
  });
});
