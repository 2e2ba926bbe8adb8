import { describe, expect, it } from 'vitest';
import { DefinitionError, LogAction, passthroughWorker, z } from '../../../lib/index.ts';

const base = {
  name: 'mine',
  modelServerUrl: 'http://127.0.0.1:8080',
  routes: ['/predict', '/stream'],
};

describe('passthrough preset', () => {
  it('forwards any JSON object as it is, to the same path, at 100 per request by default', () => {
    const worker = passthroughWorker(base).create({});
    expect(worker.handlers.map((h) => [h.route, h.modelPath])).toEqual([
      ['/predict', '/predict'],
      ['/stream', '/stream'],
    ]);
    const body = { input: { image: 'x' }, nested: { list: [1, null, 'a'] }, n: 1.5 };
    const handler = worker.handlers[0];
    expect(handler?.payload.parse(body)).toEqual(body);
    expect(handler?.transformRequest).toBeUndefined();
    expect(handler?.workload(body)).toBe(100);
    expect(handler?.allowParallel).toBe(false);
    expect(worker.benchmarkHandler).toBeUndefined();
    expect(worker.modelHealthcheckPath).toBeUndefined();
  });

  it('measures workload with the given function, which learns the route', () => {
    const Body = z.looseObject({ tokens: z.number() });
    const worker = passthroughWorker({
      ...base,
      payload: Body,
      workload: (payload, route) => payload.tokens * (route === '/stream' ? 2 : 1),
    }).create({});
    expect(worker.handlers.map((h) => h.workload({ tokens: 10 }))).toEqual([10, 20]);
    // The schema validates (422 naming the field) and keeps the fields it does not name.
    expect(worker.handlers[0]?.payload.safeParse({ tokens: 'x' }).success).toBe(false);
    expect(worker.handlers[0]?.payload.parse({ tokens: 1, other: true })).toEqual({
      tokens: 1,
      other: true,
    });
  });

  it('puts the benchmark on its route, the first one by default', () => {
    const generator = () => ({ text: 'hello' });
    const first = passthroughWorker({ ...base, benchmark: { generator, runs: 2 } }).create({});
    expect(first.benchmarkHandler?.route).toBe('/predict');
    expect(first.benchmarkHandler?.benchmark).toMatchObject({ runs: 2, concurrency: 10 });
    const second = passthroughWorker({ ...base, benchmark: { route: '/stream', generator } });
    expect(second.create({}).benchmarkHandler?.route).toBe('/stream');
    expect(() => passthroughWorker({ ...base, benchmark: { route: '/other', generator } })).toThrow(
      DefinitionError,
    );
  });

  it('takes the log lines and the health endpoint from the environment over its own', () => {
    const options = {
      ...base,
      logActions: { onLoad: ['ready'], onError: ['fatal'] },
      healthPath: '/health',
      modelLog: '/var/log/mine.log',
    };
    const own = passthroughWorker(options).create({});
    expect(own.logActions).toEqual([
      [LogAction.ModelLoaded, 'ready'],
      [LogAction.ModelError, 'fatal'],
    ]);
    expect(own.modelHealthcheckPath).toBe('/health');
    expect(own.modelLog).toBe('/var/log/mine.log');
    const overridden = passthroughWorker(options).create({
      MODEL_LOAD_LOG_MSG: 'up\nlistening',
      MODEL_HEALTH_ENDPOINT: '/ping',
    });
    expect(overridden.logActions).toEqual([
      [LogAction.ModelLoaded, 'up'],
      [LogAction.ModelLoaded, 'listening'],
      [LogAction.ModelError, 'fatal'],
    ]);
    expect(overridden.modelHealthcheckPath).toBe('/ping');
    expect(() => passthroughWorker(options).create({ MODEL_HEALTH_ENDPOINT: 'ping' })).toThrow(
      /MODEL_HEALTH_ENDPOINT/,
    );
  });
});
