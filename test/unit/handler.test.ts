import { describe, expect, it } from 'vitest';
import {
  DefinitionError,
  defineHandler,
  defineWorker,
  EndpointHandler,
  z,
} from '../../lib/index.ts';

const Payload = z.object({ prompt: z.string() });

describe('defineHandler', () => {
  it('applies the defaults: model path = route, workload 100, FIFO, max_queue_time 30, no timeouts', () => {
    const handler = defineHandler({ route: '/generate', payload: Payload });
    expect(handler).toMatchObject({
      route: '/generate',
      modelPath: '/generate',
      allowParallel: false,
      maxQueueTime: 30,
      headersTimeoutMs: 0,
      bodyTimeoutMs: 0,
    });
    expect(handler.workload({ prompt: 'x' })).toBe(100);
  });

  it('names the handler and the field when a definition is invalid', () => {
    expect(() => defineHandler({ route: 'generate', payload: Payload })).toThrow(
      /handler generate: route: must start with "\/"/,
    );
    expect(() => defineHandler({ route: '/g', payload: Payload, maxQueueTime: -1 })).toThrow(
      /handler \/g: maxQueueTime/,
    );
    expect(() => defineHandler({ route: '/g', payload: {} as typeof Payload })).toThrow(
      DefinitionError,
    );
  });

  it('resolves the class form like the object form', () => {
    class Generate extends EndpointHandler<typeof Payload> {
      route = '/generate';
      payload = Payload;
      override workload(payload: { prompt: string }): number {
        return payload.prompt.length;
      }
    }
    const handler = defineHandler(new Generate());
    expect(handler.route).toBe('/generate');
    expect(handler.workload({ prompt: 'abcd' })).toBe(4);
    expect(handler.hasCustomWorkload).toBe(true);
  });

  it('passes a defined handler through, but refuses a spread copy that would keep a stale model path', () => {
    const generate = defineHandler({ route: '/generate', payload: Payload });
    expect(defineHandler(generate)).toBe(generate);
    expect(() => defineHandler({ ...generate, route: '/generate_stream' })).toThrow(
      /spread the handler's options, not a defined handler/,
    );
  });
});

describe('defineWorker', () => {
  it('refuses two handlers on one route and two benchmark handlers', () => {
    const base = { name: 'w', modelServerUrl: 'http://127.0.0.1:5001' };
    const plain = { route: '/a', payload: Payload };
    const a = { ...plain, benchmark: { generator: () => ({ prompt: 'x' }) } };
    expect(() => defineWorker({ ...base, handlers: [a, plain] })).toThrow(
      /route POST \/a is defined twice/,
    );
    expect(() => defineWorker({ ...base, handlers: [a, { ...a, route: '/b' }] })).toThrow(
      /only one handler may carry a benchmark/,
    );
  });
});
