import { afterEach, describe, expect, it } from 'vitest';
import { defineHandler, defineWorker, DefinitionError, z } from '../../lib/index.ts';
import {
  createWorkerApp,
  loadConfig,
  RESERVED_PATHS,
  type ResolvedWorker,
} from '../../lib/entry-server.ts';
import helloWorld from '../../workers/hello_world/server.ts';
import { get } from '../helpers/request.ts';
import { startStack, type TestStack } from '../helpers/stack.ts';

/** hello_world whose model "loads" only when the test says so: readiness is driven by hand. */
const manualWorker: ResolvedWorker = defineWorker({
  name: 'manual-readiness',
  modelServerUrl: helloWorld.modelServerUrl,
  handlers: helloWorld.handlers,
  lifecycle: { start: () => new Promise<void>(() => undefined) },
});

async function health(stack: TestStack) {
  const [live, ready, sprocket] = await Promise.all([
    get(`${stack.worker.url}/health/live`),
    get(`${stack.worker.url}/health/ready`),
    get(`${stack.worker.url}/health`),
  ]);
  return {
    live: { status: live.status, body: live.json() },
    ready: { status: ready.status, body: ready.json() as Record<string, unknown> },
    sprocket: { status: sprocket.status, body: sprocket.json() },
  };
}

describe('health endpoints through the readiness states', () => {
  let stack: TestStack | undefined;
  afterEach(async () => {
    await stack?.close();
    stack = undefined;
  });

  it('are 503 while starting, model-loaded and benchmarking, 200 once ready, and 503 again when errored', async () => {
    stack = await startStack({ worker: manualWorker });
    const readiness = stack.worker.readiness;

    let now = await health(stack);
    expect(now.live).toEqual({ status: 200, body: { status: 'alive' } });
    expect(now.ready.status).toBe(503);
    expect(now.ready.body).toEqual({
      status: 'not ready',
      phase: 'starting',
      reason: 'waiting for the model to load',
    });
    expect(now.sprocket).toEqual({ status: 503, body: { status: 'unhealthy' } });

    readiness.modelLoaded();
    now = await health(stack);
    expect(now.ready.status).toBe(503);
    expect(now.ready.body).toMatchObject({
      phase: 'model-loaded',
      reason: expect.stringMatching(/benchmark/),
    });

    readiness.benchmarking();
    now = await health(stack);
    expect(now.ready.status).toBe(503);
    expect(now.ready.body).toMatchObject({ phase: 'benchmarking' });
    expect(now.sprocket.status).toBe(503);

    readiness.ready(120);
    now = await health(stack);
    expect(now.ready).toEqual({ status: 200, body: { status: 'ready', phase: 'ready' } });
    expect(now.sprocket).toEqual({ status: 200, body: { status: 'healthy' } });
    expect(now.live.status).toBe(200);

    readiness.errored('Exception: corrupted model file');
    now = await health(stack);
    expect(now.ready.status).toBe(503);
    expect(now.ready.body).toEqual({
      status: 'not ready',
      phase: 'errored',
      reason: 'Exception: corrupted model file',
    });
    expect(now.sprocket).toEqual({ status: 503, body: { status: 'unhealthy' } });
    expect(now.live).toEqual({ status: 200, body: { status: 'alive' } });
  });

  it('turn 503 at once when a ready worker starts draining, while liveness stays 200', async () => {
    stack = await startStack({ worker: manualWorker });
    const readiness = stack.worker.readiness;
    readiness.modelLoaded();
    readiness.ready(50);
    expect((await health(stack)).ready.status).toBe(200);

    readiness.startDraining();
    const now = await health(stack);
    expect(now.ready.status).toBe(503);
    expect(now.ready.body).toMatchObject({
      phase: 'ready',
      reason: expect.stringMatching(/draining/),
    });
    expect(now.sprocket).toEqual({ status: 503, body: { status: 'unhealthy' } });
    expect(now.live.status).toBe(200);
  });

  it('are never cached', async () => {
    stack = await startStack({ worker: manualWorker });
    const response = await get(`${stack.worker.url}/health/ready`);
    expect(response.headers['cache-control']).toBe('no-store');
  });
});

describe('reserved paths', () => {
  const config = loadConfig({ UNSECURED: 'true', WORKER_PORT: '0' });

  it.each(['/health', '/health/live', '/health/ready', '/session/end', '/pyworker/update'])(
    'a handler route on %s is a start-up error naming the route',
    (route) => {
      expect(RESERVED_PATHS).toContain(route);
      const worker = defineWorker({
        name: 'clash',
        modelServerUrl: 'http://127.0.0.1:5001',
        handlers: [defineHandler({ route, payload: z.object({}) })],
      });
      expect(() => createWorkerApp(worker, config)).toThrow(DefinitionError);
      expect(() => createWorkerApp(worker, config)).toThrow(route);
    },
  );

  it('an extra route on a health path is a start-up error too', () => {
    const worker = defineWorker({
      name: 'clash-extra',
      modelServerUrl: 'http://127.0.0.1:5001',
      handlers: helloWorld.handlers,
      extraRoutes: [{ method: 'GET', path: '/health/live', respond: () => new Response('mine') }],
    });
    expect(() => createWorkerApp(worker, config)).toThrow(/\/health\/live clashes/);
  });
});
