/**
 * Every error response, whichever route sends it, has the same shape: a JSON body, the
 * `x-worker-error-source` header and the request's `x-request-id` (the client's own when it sent a
 * safe one). And a `WorkerError` thrown by a worker's own code keeps its status and code.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defineHandler, defineWorker, WorkerError, z } from '../../lib/index.ts';
import { resolveWorker } from '../../lib/worker.ts';
import { InputData } from '../../workers/hello_world/data_types.ts';
import { get, post, type JsonResponse } from '../helpers/request.ts';
import { startStack, type TestStack } from '../helpers/stack.ts';
import { request } from 'undici';

const slotTaken = () =>
  new WorkerError({ status: 409, code: 'SLOT_TAKEN', message: 'the slot is taken' });

const worker = defineWorker({
  name: 'error-walk',
  modelServerUrl: 'http://127.0.0.1:5001',
  handlers: [
    defineHandler({ route: '/generate', payload: InputData, allowParallel: true }),
    defineHandler({
      route: '/conflict',
      payload: z.object({}),
      predict: () => {
        throw slotTaken();
      },
    }),
    defineHandler({
      route: '/conflict-before-model',
      modelPath: '/generate',
      payload: z.object({}),
      transformRequest: () => {
        throw slotTaken();
      },
    }),
    defineHandler({
      route: '/conflict-after-model',
      modelPath: '/generate',
      payload: z.object({}),
      transformRequest: () => ({ prompt: 'x', max_response_tokens: 1 }),
      transformResponse: () => {
        throw slotTaken();
      },
    }),
  ],
});

const METRICS_TOKEN = 'metrics-secret';
const MASTER_TOKEN = 'master-secret';

async function send(method: string, url: string, body: string, requestId: string) {
  const response = await request(url, {
    method: method as 'POST',
    headers: { 'content-type': 'application/json', 'x-request-id': requestId },
    ...(method === 'GET' ? {} : { body }),
  });
  const text = await response.body.text();
  return { status: response.statusCode, headers: response.headers, text };
}

describe('error responses on every route', () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startStack({
      worker: resolveWorker(worker, {}),
      env: { METRICS_TOKEN, MASTER_TOKEN },
    });
  });
  afterAll(() => stack.close());

  const main = () => stack.worker.url;
  const plain = () => stack.worker.httpUrl;
  // [what, method, base, path, body, expected status]
  const walk: [string, string, () => string, string, string, number][] = [
    ['handler route, invalid JSON', 'POST', main, '/generate', '{', 422],
    ['handler route, bad payload', 'POST', main, '/generate', '{"auth_data":{},"payload":{}}', 422],
    [
      'handler route, bad signature',
      'POST',
      main,
      '/generate',
      JSON.stringify({
        auth_data: { signature: 'x', cost: 1, reqnum: 1, endpoint: 'e', request_idx: 1, url: 'u' },
        payload: { prompt: 'x', max_response_tokens: 1 },
      }),
      401,
    ],
    ['handler route, wrong method', 'GET', main, '/generate', '', 405],
    ['unknown path', 'GET', main, '/nowhere', '', 404],
    ['health, wrong method', 'POST', main, '/health', '', 404],
    ['metrics without its token', 'GET', main, '/metrics', '', 401],
    ['/pyworker/update without its token', 'POST', main, '/pyworker/update', '', 401],
    ['/session/create, invalid JSON', 'POST', main, '/session/create', '{', 422],
    ['/session/get, unknown session', 'POST', main, '/session/get', '{"session_id":"nope"}', 400],
    ['/session/health, invalid JSON', 'POST', main, '/session/health', '{', 422],
    ['/session/end, unknown session', 'POST', main, '/session/end', '{"session_id":"nope"}', 400],
    ['plain /session/end, invalid JSON', 'POST', plain, '/session/end', '{', 422],
    ['plain listener, unknown path', 'GET', plain, '/nowhere', '', 404],
  ];

  it.each(walk)('%s: JSON error, both headers', async (_what, method, base, path, body, status) => {
    const requestId = `walk-${status}-${path.replace(/\W/g, '')}`;
    const response = await send(method, base() + path, body, requestId);
    expect(response.status).toBe(status);
    expect(response.headers['content-type']).toMatch(/^application\/json/);
    expect(response.headers['x-request-id']).toBe(requestId);
    expect(response.headers['x-worker-error-source']).toBe('worker');
    const parsed = JSON.parse(response.text) as unknown;
    expect(parsed).toBeTypeOf('object');
    expect(parsed).not.toBeNull();
  });

  it('gives 404 and 405 the catalogue body, and 405 an Allow header', async () => {
    const missing = await send('GET', `${main()}/nowhere`, '', 'walk-404');
    expect(JSON.parse(missing.text)).toEqual({
      error: 'no route GET /nowhere',
      code: 'TSW_ERR_NOT_FOUND',
      origin: 'worker',
    });
    const wrongMethod = await send('GET', `${main()}/generate`, '', 'walk-405');
    expect(JSON.parse(wrongMethod.text)).toEqual({
      error: 'method GET not allowed',
      code: 'TSW_ERR_METHOD_NOT_ALLOWED',
      origin: 'worker',
    });
    expect(wrongMethod.headers['allow']).toBe('POST');
  });

  it('makes up a request id when the client sent none, or an unsafe one', async () => {
    const missing = await get(`${main()}/nowhere`);
    expect(missing.headers['x-request-id']).toMatch(/^[a-f0-9]{8}-[a-z0-9]+$/);
    const unsafe = await send('GET', `${main()}/nowhere`, '', 'bad id\twith tab');
    expect(unsafe.headers['x-request-id']).not.toContain('bad id');
  });

  function signed(route: string): Promise<JsonResponse> {
    return post(`${main()}${route}`, {
      auth_data: stack.autoscaler.issueAuthData({ endpoint: 'error-walk', cost: 100 }),
      payload: {},
    });
  }

  it.each(['/conflict', '/conflict-before-model', '/conflict-after-model'])(
    'a WorkerError(409) thrown by the worker on %s reaches the client as 409 with its own code',
    async (route) => {
      const response = await signed(route);
      expect(response.status).toBe(409);
      expect(response.json()).toEqual({
        error: 'the slot is taken',
        code: 'SLOT_TAKEN',
        origin: 'worker',
      });
      expect(response.headers['x-worker-error-source']).toBe('worker');
      expect(response.headers['x-request-id']).toBeTypeOf('string');
    },
  );
});
