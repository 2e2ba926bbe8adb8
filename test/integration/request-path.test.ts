import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defineHandler, defineWorker, z } from '../../lib/index.ts';
import { InputData } from '../../workers/hello_world/data_types.ts';
import { get, post } from '../helpers/request.ts';
import { startStack, type TestStack } from '../helpers/stack.ts';

const payload = { prompt: 'Hello there, model', max_response_tokens: 5 };

describe('the request path through hello_world', () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startStack();
  });
  afterAll(() => stack.close());

  function signed(extra: Record<string, unknown> = {}) {
    return {
      auth_data: stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 100 }),
      payload,
      ...extra,
    };
  }

  it('serves a request signed by the local autoscaler through its /route/', async () => {
    const routed = await post(`${stack.autoscaler.url}/route/`, {
      endpoint: 'hello',
      api_key: 'local',
      cost: 100,
    });
    expect(routed.status).toBe(200);
    const authData = routed.json() as Record<string, unknown>;
    expect(authData['url']).toBe(stack.worker.url);
    const response = await post(`${stack.worker.url}/generate`, { auth_data: authData, payload });
    expect(response.status).toBe(200);
    expect(response.json()).toMatchObject({ tokens: 5 });
    expect(response.headers['x-request-id']).toBeTypeOf('string');
  });

  it('passes the model body through unchanged, with hop-by-hop headers dropped', async () => {
    const response = await post(`${stack.worker.url}/generate`, signed());
    expect(response.status).toBe(200);
    expect(response.headers['content-type']).toMatch(/^application\/json/);
    expect(response.headers['content-length']).toBe(String(Buffer.byteLength(response.text)));
    // The model's own keep-alive (Node's default, timeout=5) is not passed on; this is the worker's.
    expect(response.headers['keep-alive']).toBe('timeout=65');
  });

  it('accepts an api_key query string on the route, as the Python client sends one', async () => {
    const response = await post(`${stack.worker.url}/generate?api_key=abc`, signed());
    expect(response.status).toBe(200);
  });

  it('answers 422 {"error":"invalid JSON"} to a body that is not JSON', async () => {
    const response = await post(`${stack.worker.url}/generate`, '{"auth_data": ');
    expect(response.status).toBe(422);
    expect(response.json()).toEqual({ error: 'invalid JSON' });
  });

  it('answers 422 "field missing" for absent auth_data and payload keys', async () => {
    const response = await post(`${stack.worker.url}/generate`, {});
    expect(response.status).toBe(422);
    expect(response.json()).toEqual({ auth_data: 'field missing', payload: 'field missing' });
  });

  it('names every missing auth_data field with "missing parameter"', async () => {
    const response = await post(`${stack.worker.url}/generate`, {
      auth_data: { url: 'x' },
      payload,
    });
    expect(response.status).toBe(422);
    expect(response.json()).toEqual({
      auth_data: {
        cost: 'missing parameter',
        endpoint: 'missing parameter',
        reqnum: 'missing parameter',
        request_idx: 'missing parameter',
        signature: 'missing parameter',
      },
    });
  });

  it('combines auth_data and payload errors, with zod precise messages for wrong types', async () => {
    const response = await post(`${stack.worker.url}/generate`, {
      auth_data: { cost: 1, endpoint: 'e', reqnum: 1, request_idx: 2, signature: 5, url: 'u' },
      payload: { max_response_tokens: 'ten' },
    });
    expect(response.status).toBe(422);
    const body = response.json() as {
      auth_data: Record<string, string>;
      payload: Record<string, string>;
    };
    expect(body.auth_data).toEqual({ signature: 'must be a string' });
    expect(body.payload['prompt']).toBe('missing parameter');
    expect(body.payload['max_response_tokens']).toMatch(/expected number/);
  });

  it('answers a payload that is not an object with the reference\'s "payload must be a dictionary"', async () => {
    const response = await post(`${stack.worker.url}/generate`, { ...signed(), payload: [1, 2] });
    expect(response.status).toBe(422);
    expect(response.json()).toEqual({ payload: { data: 'payload must be a dictionary' } });
  });

  it.each([['null'], ['42'], ['[1,2]'], ['"text"']])(
    'answers a %s body with a clear 422, never a 500',
    async (raw) => {
      const response = await post(`${stack.worker.url}/generate`, raw);
      expect(response.status).toBe(422);
      expect(response.json()).toMatchObject({
        error: 'request body must be a JSON object',
        auth_data: 'field missing',
        payload: 'field missing',
      });
    },
  );

  it('answers 401 to a signature made for another worker, without calling the model', async () => {
    const before = stack.model.stats.received;
    const forged = stack.autoscaler.issueAuthData({
      endpoint: 'hello',
      cost: 100,
      url: 'http://10.0.0.9:9',
    });
    const response = await post(`${stack.worker.url}/generate`, {
      auth_data: { ...forged, url: stack.worker.url },
      payload,
    });
    expect(response.status).toBe(401);
    expect(response.json()).toMatchObject({ code: 'TSW_ERR_UNAUTHORIZED', origin: 'worker' });
    expect(response.headers['x-worker-error-source']).toBe('worker');
    expect(stack.model.stats.received).toBe(before);
  });

  it('answers 410 to an unknown session id before checking the signature', async () => {
    const response = await post(`${stack.worker.url}/generate`, {
      auth_data: { cost: 1, endpoint: 'e', reqnum: 1, request_idx: 1, signature: 'bad', url: 'u' },
      payload,
      session_id: 'no-such-session',
    });
    expect(response.status).toBe(410);
    expect(response.json()).toEqual({ error: 'invalid session' });
  });

  it("passes the model's own non-2xx status and body through", async () => {
    stack.model.configure({
      failure: { kind: 'status', status: 503, body: '{"error":"model busy"}' },
    });
    try {
      const response = await post(`${stack.worker.url}/generate`, signed());
      expect(response.status).toBe(503);
      expect(response.json()).toEqual({ error: 'model busy' });
    } finally {
      stack.model.configure({ failure: { kind: 'none' } });
    }
  });

  it('answers 502 with a JSON error from the model side when the model resets the connection', async () => {
    stack.model.configure({ failure: { kind: 'reset' } });
    try {
      const response = await post(`${stack.worker.url}/generate`, signed());
      expect(response.status).toBe(502);
      expect(response.json()).toMatchObject({
        code: 'TSW_ERR_UPSTREAM_UNAVAILABLE',
        origin: 'model',
      });
      expect(response.headers['x-worker-error-source']).toBe('model');
    } finally {
      stack.model.configure({ failure: { kind: 'none' } });
    }
  });

  it("keeps the seed's GET /ping and forwards GET /healthcheck to the model", async () => {
    const ping = await get(`${stack.worker.url}/ping`);
    expect(ping.status).toBe(200);
    expect(ping.text).toBe('pong');
    const health = await get(`${stack.worker.url}/healthcheck`);
    expect(health.status).toBe(200);
    expect(stack.model.stats.healthchecks).toBeGreaterThan(0);
  });

  it('answers 405 with Allow: POST to a GET on a handler route, and 404 JSON to an unknown path', async () => {
    const wrongMethod = await get(`${stack.worker.url}/generate`);
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers['allow']).toBe('POST');
    const unknown = await post(`${stack.worker.url}/nope`, {});
    expect(unknown.status).toBe(404);
    expect(unknown.json()).toMatchObject({ code: 'TSW_ERR_NOT_FOUND' });
    expect(wrongMethod.json()).toMatchObject({ code: 'TSW_ERR_METHOD_NOT_ALLOWED' });
  });
});

describe('a worker whose model server is down', () => {
  it('answers 502 with a JSON error that names the model as the cause', async () => {
    const stack = await startStack();
    try {
      await stack.model.close();
      const response = await post(`${stack.worker.url}/generate`, {
        auth_data: stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 1 }),
        payload,
      });
      expect(response.status).toBe(502);
      expect(response.json()).toMatchObject({
        code: 'TSW_ERR_UPSTREAM_UNAVAILABLE',
        origin: 'model',
      });
      expect(stack.worker.inspect().totals.errored).toBeGreaterThan(0);
      const health = await get(`${stack.worker.url}/healthcheck`);
      expect(health.status).toBe(502);
      expect(health.json()).toMatchObject({
        code: 'TSW_ERR_UPSTREAM_UNAVAILABLE',
        origin: 'model',
      });
    } finally {
      await stack.close();
    }
  });
});

describe('handler options', () => {
  const throwingWorkload = defineWorker({
    name: 'handler-options',
    modelServerUrl: 'http://127.0.0.1:5001',
    handlers: [
      defineHandler({
        route: '/generate',
        payload: InputData,
        allowParallel: true,
        workload: () => {
          throw new Error('tokenizer exploded');
        },
      }),
      defineHandler({
        route: '/echo',
        payload: z.object({ text: z.string() }),
        predict: (p) => ({ echoed: p.text.toUpperCase() }),
      }),
      defineHandler({
        route: '/broken',
        payload: z.object({}),
        predict: () => {
          throw new Error('predict failed');
        },
      }),
      defineHandler({
        route: '/transformed',
        modelPath: '/generate',
        payload: z.object({ words: z.number().int() }),
        allowParallel: true,
        transformRequest: (p) => ({ prompt: 'x', max_response_tokens: p.words }),
        transformResponse: async (upstream) => {
          const body = (await upstream.json()) as { tokens: number };
          return Response.json({ count: body.tokens }, { status: upstream.status });
        },
      }),
      defineHandler({
        route: '/slow',
        modelPath: '/generate',
        payload: InputData,
        allowParallel: true,
        timeouts: { headersMs: 100 },
      }),
    ],
  });
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startStack({ worker: throwingWorkload, env: { UNSECURED: 'true' } });
  });
  afterAll(() => stack.close());

  it('falls back to the default workload of 100 when the workload function throws (protocol §13.3)', async () => {
    const response = await post(`${stack.worker.url}/generate`, { payload });
    expect(response.status).toBe(200);
    const record = stack.worker.inspect().pendingDeletes.at(-1);
    expect(record?.workload).toBe(100);
  });

  it('serves an in-process predict function as 200 {"result": ...} without a model server', async () => {
    const before = stack.model.stats.received;
    const response = await post(`${stack.worker.url}/echo`, { payload: { text: 'hi' } });
    expect(response.status).toBe(200);
    expect(response.json()).toEqual({ result: { echoed: 'HI' } });
    expect(stack.model.stats.received).toBe(before);
  });

  it('answers 500 with a JSON error naming the route when predict throws', async () => {
    const response = await post(`${stack.worker.url}/broken`, { payload: {} });
    expect(response.status).toBe(500);
    expect(response.json()).toMatchObject({ code: 'TSW_ERR_HANDLER_FAILED', origin: 'worker' });
    expect((response.json() as { error: string }).error).toContain('/broken');
  });

  it('applies request and response transforms around the model call', async () => {
    const response = await post(`${stack.worker.url}/transformed`, { payload: { words: 3 } });
    expect(response.status).toBe(200);
    expect(response.json()).toEqual({ count: 3 });
  });

  it('answers 504 when a configured headers timeout passes, and counts the request as errored', async () => {
    stack.model.configure({ failure: { kind: 'hang-headers' } });
    try {
      const errored = stack.worker.inspect().totals.errored;
      const response = await post(`${stack.worker.url}/slow`, { payload });
      expect(response.status).toBe(504);
      expect(response.json()).toMatchObject({ code: 'TSW_ERR_UPSTREAM_TIMEOUT', origin: 'model' });
      expect(stack.worker.inspect().totals.errored).toBeGreaterThan(errored);
    } finally {
      stack.model.configure({ failure: { kind: 'none' } });
    }
  });

  it('accepts requests without auth_data in UNSECURED mode', async () => {
    const response = await post(`${stack.worker.url}/generate`, { payload });
    expect(response.status).toBe(200);
  });
});
