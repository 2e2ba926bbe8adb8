import { describe, expect, it } from 'vitest';
import {
  DefinitionError,
  defineHandler,
  defineWorker,
  defineWorkerFactory,
  EndpointHandler,
  z,
  type HandlerOptions,
  type HandlerTimeouts,
  type LogActionConfig,
  type WorkerOptions,
} from '../../lib/index.ts';
import { closestName } from '../../lib/internal/suggest.ts';

const Payload = z.object({ prompt: z.string() });
const generator = () => ({ prompt: 'x' });
const base = { name: 'w', modelServerUrl: 'http://127.0.0.1:5001' };

/** The DefinitionError's message, failing the test when nothing or something else was thrown. */
function definitionError(define: () => unknown): string {
  try {
    define();
  } catch (error) {
    expect(error).toBeInstanceOf(DefinitionError);
    return (error as Error).message;
  }
  throw new Error('expected a DefinitionError');
}

describe('closestName', () => {
  it.each([
    ['allowParrallel', 'allowParallel'],
    ['onload', 'onLoad'],
    ['run', 'runs'],
    ['modelServerURL', 'modelServerUrl'],
    ['max_queue_time', 'maxQueueTime'],
    ['maxQueTime', 'maxQueueTime'],
    ['worklaod', 'workload'],
    ['modelHealthcheck', 'modelHealthcheckPath'],
  ])('suggests %s → %s', (typo, expected) => {
    const known = [
      'allowParallel',
      'onLoad',
      'onError',
      'runs',
      'modelServerUrl',
      'modelLog',
      'maxQueueTime',
      'workload',
      'modelHealthcheckPath',
    ];
    expect(closestName(typo, known)).toBe(expected);
  });

  it('suggests nothing when no known name is close', () => {
    expect(closestName('tokenizer', ['route', 'payload', 'workload'])).toBeUndefined();
    expect(closestName('x', ['runs'])).toBeUndefined();
  });
});

describe('defineHandler refuses options it does not know', () => {
  it('names the handler, the misspelled option and the option it meant', () => {
    // As a worker writes it: shared options in a variable, so TypeScript does not flag the typo.
    const common = { payload: Payload, allowParrallel: true };
    expect(definitionError(() => defineHandler({ ...common, route: '/generate' }))).toBe(
      'handler /generate: unknown option "allowParrallel" (did you mean "allowParallel"?)',
    );
  });

  it('checks benchmark and timeouts too, naming the full option path', () => {
    const benchmark = { generator, run: 2 };
    // TypeScript flags an options object that shares no key with HandlerTimeouts; JavaScript does not.
    const timeouts = { headerMs: 1000 } as unknown as HandlerTimeouts;
    const message = definitionError(() =>
      defineHandler({ route: '/generate', payload: Payload, benchmark, timeouts }),
    );
    expect(message).toContain('unknown option "benchmark.run" (did you mean "benchmark.runs"?)');
    expect(message).toContain(
      'unknown option "timeouts.headerMs" (did you mean "timeouts.headersMs"?)',
    );
  });

  it("understands PyWorker's snake_case names", () => {
    const options = { route: '/g', payload: Payload, allow_parallel: true, max_queue_time: 10 };
    const message = definitionError(() => defineHandler(options));
    expect(message).toContain('"allow_parallel" (did you mean "allowParallel"?)');
    expect(message).toContain('"max_queue_time" (did you mean "maxQueueTime"?)');
  });

  it('lists the known options when nothing is close, together with the other problems', () => {
    const options = { route: '/g', payload: Payload, maxQueueTime: -1, colour: 'blue' };
    const message = definitionError(() => defineHandler(options));
    expect(message).toMatch(/^handler \/g: unknown option "colour" \(known options: route, /);
    expect(message).toContain('maxQueueTime:');
  });

  it('accepts every documented option', () => {
    const every: Required<HandlerOptions<typeof Payload>> = {
      route: '/generate',
      modelPath: '/v1/generate',
      payload: Payload,
      unknownFields: 'strip',
      workload: () => 1,
      benchmark: { dataset: [{ prompt: 'x' }], generator, runs: 1, concurrency: 1, warmup: false },
      allowParallel: true,
      maxQueueTime: null,
      timeouts: { headersMs: 1, bodyMs: 1 },
      transformRequest: (p) => p,
      transformResponse: (r) => r,
      predict: () => 1,
    };
    expect(defineHandler(every)).toMatchObject({ route: '/generate', allowParallel: true });
  });

  it("refuses a class member that looks like a misspelled option, but keeps the class's own members", () => {
    class Typo extends EndpointHandler<typeof Payload> {
      route = '/generate';
      payload = Payload;
      allowParrallel = true;
    }
    expect(definitionError(() => defineHandler(new Typo()))).toBe(
      'handler /generate: unknown option "allowParrallel" (did you mean "allowParallel"?)',
    );

    class MethodTypo extends EndpointHandler<typeof Payload> {
      route = '/generate';
      payload = Payload;
      workLoad(payload: { prompt: string }): number {
        return payload.prompt.length;
      }
    }
    expect(definitionError(() => defineHandler(new MethodTypo()))).toContain(
      'unknown option "workLoad" (did you mean "workload"?)',
    );

    class Own extends EndpointHandler<typeof Payload> {
      route = '/generate';
      payload = Payload;
      cache = new Map<string, number>();
      payloadSchema = Payload;
      routeName = 'generate';
      override allowParallel = true;
      countCharacters(payload: { prompt: string }): number {
        return payload.prompt.length;
      }
      override workload(payload: { prompt: string }): number {
        return this.countCharacters(payload);
      }
    }
    const handler = defineHandler(new Own());
    expect(handler.allowParallel).toBe(true);
    expect(handler.workload({ prompt: 'abc' })).toBe(3);
  });

  it("checks a class's benchmark like the object form's", () => {
    class Bench extends EndpointHandler<typeof Payload> {
      route = '/generate';
      payload = Payload;
      override benchmark = { generator, concurency: 4 };
    }
    expect(definitionError(() => defineHandler(new Bench()))).toContain(
      '"benchmark.concurency" (did you mean "benchmark.concurrency"?)',
    );
  });
});

describe('defineWorker refuses options it does not know', () => {
  const handlers = [defineHandler({ route: '/generate', payload: Payload })];

  it('names the key it expected for a misspelled modelServerURL, not a missing URL', () => {
    const options = { name: 'w', modelServerURL: 'http://127.0.0.1:5001', handlers };
    expect(definitionError(() => defineWorker(options as unknown as WorkerOptions))).toBe(
      'worker w: unknown option "modelServerURL" (did you mean "modelServerUrl"?)',
    );
  });

  it('checks logActions, lifecycle and extra routes', () => {
    const logActions = { onload: ['server has started'] } as unknown as LogActionConfig;
    expect(definitionError(() => defineWorker({ ...base, handlers, logActions }))).toBe(
      'worker w: unknown option "logActions.onload" (did you mean "logActions.onLoad"?)',
    );
    const lifecycle = { start: () => Promise.resolve(), stopp: () => Promise.resolve() };
    expect(definitionError(() => defineWorker({ ...base, handlers, lifecycle }))).toContain(
      '"lifecycle.stopp" (did you mean "lifecycle.stop"?)',
    );
    const extraRoutes = [{ method: 'GET' as const, path: '/ping', forward: '/ping', methd: 'x' }];
    expect(definitionError(() => defineWorker({ ...base, handlers, extraRoutes }))).toContain(
      '"extraRoutes[0].methd" (did you mean "extraRoutes[0].method"?)',
    );
  });

  it('refuses a log pattern list that is a string', () => {
    const logActions = { onLoad: 'server has started' };
    expect(
      definitionError(() =>
        defineWorker({ ...base, handlers, logActions } as unknown as WorkerOptions),
      ),
    ).toBe('worker w: "logActions.onLoad" must be a list of strings');
  });

  it('refuses a fractional maxSessions, and takes 0 and null as unlimited', () => {
    for (const maxSessions of [2.5, Number.NaN]) {
      expect(definitionError(() => defineWorker({ ...base, handlers, maxSessions }))).toBe(
        'worker w: "maxSessions" must be a whole number (0 or null: unlimited; negative: no sessions)',
      );
    }
    expect(defineWorker({ ...base, handlers, maxSessions: 0 }).maxSessions).toBeNull();
    expect(defineWorker({ ...base, handlers, maxSessions: null }).maxSessions).toBeNull();
  });

  it('accepts every documented option', () => {
    const every: Required<WorkerOptions> = {
      ...base,
      handlers,
      logActions: { onLoad: ['a'], onError: ['b'], onInfo: ['c'] },
      modelLog: '/var/log/model.log',
      modelHealthcheckPath: '/health',
      extraRoutes: [{ method: 'GET', path: '/ping', respond: () => new Response('pong') }],
      maxSessions: 3,
      assumedThroughput: 50,
      lifecycle: { start: () => Promise.resolve(), stop: () => Promise.resolve() },
      shutdown: () => undefined,
    };
    expect(defineWorker(every)).toMatchObject({ name: 'w', modelLog: '/var/log/model.log' });
  });

  it("checks a factory's definition when the factory runs", () => {
    const factory = defineWorkerFactory('engine', () => {
      const options = { ...base, name: 'engine', handlers, modelHealthcheck: '/health' };
      return options;
    });
    expect(definitionError(() => factory.create({}))).toBe(
      'worker engine: unknown option "modelHealthcheck" (did you mean "modelHealthcheckPath"?)',
    );
  });
});

describe('payload fields the schema does not name', () => {
  const extra = { temperature: 0.2, top_p: 0.9, stop: ['\n'] };

  it('are forwarded by default by a plain z.object, as README teaches it', () => {
    const handler = defineHandler({ route: '/g', payload: Payload });
    expect(handler.payload.parse({ prompt: 'hi', ...extra })).toEqual({ prompt: 'hi', ...extra });
  });

  it('are forwarded in nested plain objects too: array items, optional objects, unions, records', () => {
    const Chat = z.object({
      messages: z.array(z.object({ role: z.string() })).min(1),
      options: z.object({ seed: z.number() }).optional(),
      tool: z.union([z.object({ kind: z.literal('a') }), z.object({ kind: z.literal('b') })]),
      meta: z.record(z.string(), z.object({ id: z.string() })),
      tail: z.tuple([z.object({ n: z.number() })]),
    });
    const body = {
      messages: [{ role: 'user', content: 'hello', name: 'ann' }],
      options: { seed: 1, mirostat: 2 },
      tool: { kind: 'b', args: [1] },
      meta: { one: { id: 'x', tag: 'y' } },
      tail: [{ n: 1, m: 2 }],
      ...extra,
    };
    const handler = defineHandler({ route: '/chat', payload: Chat });
    expect(handler.payload.parse(body)).toEqual(body);
  });

  it("keep the schema's checks, defaults, transforms and wrappers", () => {
    const Schema = z.preprocess(
      (v) => v,
      z
        .object({ n: z.number().default(3), s: z.string().transform((s) => s.toUpperCase()) })
        .refine((v) => v.n > 0, { message: 'n must be positive', path: ['n'] }),
    );
    const handler = defineHandler({ route: '/g', payload: Schema });
    expect(handler.payload.parse({ s: 'a', x: 1 })).toEqual({ n: 3, s: 'A', x: 1 });
    expect(handler.payload.safeParse({ n: -1, s: 'a' }).error?.issues[0]?.message).toBe(
      'n must be positive',
    );
  });

  it('reach a recursive schema at every depth', () => {
    interface Node {
      name: string;
      children: Node[];
    }
    const Tree: z.ZodType<Node> = z.object({
      name: z.string(),
      get children() {
        return z.array(Tree);
      },
    });
    const Lazy: z.ZodType<Node> = z.lazy(() =>
      z.object({ name: z.string(), children: z.array(Lazy) }),
    );
    const body = { name: 'a', x: 1, children: [{ name: 'b', y: 2, children: [] }] };
    expect(defineHandler({ route: '/t', payload: Tree }).payload.parse(body)).toEqual(body);
    expect(defineHandler({ route: '/l', payload: Lazy }).payload.parse(body)).toEqual(body);
  });

  it('are still refused by z.strictObject, and a typed catchall keeps its type', () => {
    const strict = defineHandler({ route: '/s', payload: z.strictObject({ prompt: z.string() }) });
    expect(strict.payload.safeParse({ prompt: 'x', temperature: 1 }).success).toBe(false);
    const numbers = z.object({ prompt: z.string() }).catchall(z.number());
    const typed = defineHandler({ route: '/c', payload: numbers });
    expect(typed.payload.safeParse({ prompt: 'x', temperature: 1 }).success).toBe(true);
    expect(typed.payload.safeParse({ prompt: 'x', stop: 'no' }).success).toBe(false);
  });

  it("leave an intersection to zod: a loose side would fail to merge the other side's transforms", () => {
    const Both = z.intersection(
      z.object({ n: z.coerce.number() }),
      z.object({ prompt: z.string() }),
    );
    const handler = defineHandler({ route: '/i', payload: Both });
    expect(handler.payload.parse({ n: '1', prompt: 'x' })).toEqual({ n: 1, prompt: 'x' });
  });

  it("are dropped with unknownFields: 'strip' and refused, nested ones too, with 'reject'", () => {
    const Nested = z.object({ prompt: z.string(), options: z.object({ seed: z.number() }) });
    const body = { prompt: 'x', options: { seed: 1, mirostat: 2 }, ...extra };
    const strip = defineHandler({ route: '/s', payload: Nested, unknownFields: 'strip' });
    expect(strip.payload.parse(body)).toEqual({ prompt: 'x', options: { seed: 1 } });
    const reject = defineHandler({ route: '/r', payload: Nested, unknownFields: 'reject' });
    const issues = reject.payload.safeParse(body).error?.issues ?? [];
    expect(issues.map((i) => [i.code, i.path, 'keys' in i ? i.keys : []])).toEqual([
      ['unrecognized_keys', ['options'], ['mirostat']],
      ['unrecognized_keys', [], ['temperature', 'top_p', 'stop']],
    ]);
    expect(reject.payload.parse({ prompt: 'x', options: { seed: 1 } })).toEqual({
      prompt: 'x',
      options: { seed: 1 },
    });
  });

  it('refuses an unknownFields value it does not know', () => {
    const options = { route: '/g', payload: Payload, unknownFields: 'passthrough' };
    expect(
      definitionError(() => defineHandler(options as unknown as HandlerOptions<typeof Payload>)),
    ).toBe('handler /g: unknownFields: must be "forward", "strip" or "reject"');
  });
});
