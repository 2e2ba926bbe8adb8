import { z } from 'zod';
import { DefinitionError } from './errors.ts';
import {
  closestName,
  optionKeys,
  unknownOptionMessage,
  unknownOptions,
} from './internal/suggest.ts';

/** What an in-process function or a response transform learns about the request it serves. */
export interface HandlerContext {
  /** Aborted when the client disconnects, the session ends or the worker gives up on the request. */
  readonly signal: AbortSignal;
  readonly route: string;
  readonly requestId: string;
}

/**
 * How the start-up benchmark exercises this handler (protocol §7). Exactly one handler of a worker
 * carries one; its samples come from `dataset` (picked at random) or else from `generator`.
 */
export interface BenchmarkConfig<Payload> {
  dataset?: readonly Payload[];
  generator?: () => Payload;
  /** Timed rounds. @default 8 */
  runs?: number;
  /** Requests per round; FIFO handlers always use 1. @default 10 */
  concurrency?: number;
  /** One untimed request before the rounds. @default true */
  warmup?: boolean;
}

/** Optional per-handler upstream timeouts in milliseconds. Absent or 0 means no timeout (504 when hit). */
export interface HandlerTimeouts {
  /** Time allowed for the model server to send response headers. */
  headersMs?: number;
  /** Longest silence allowed between two body chunks. */
  bodyMs?: number;
}

/**
 * What happens to payload fields the schema does not name.
 * - `'forward'`: they reach the model untouched, as the reference forwards the whole payload.
 * - `'strip'`: zod's own default; the model receives only the fields the schema names.
 * - `'reject'`: the request gets 422 naming each unknown field (`"unknown parameter"`).
 */
export type UnknownFields = 'forward' | 'strip' | 'reject';

/**
 * One worker route: the PyWorker `EndpointHandler`. Requests to `route` are validated against
 * `payload`, measured by `workload`, queued (unless `allowParallel`) and forwarded to `modelPath`
 * on the model server, or served in-process by `predict`.
 *
 * @example
 * const generate = defineHandler({
 *   route: '/generate',
 *   payload: z.object({ prompt: z.string(), max_response_tokens: z.number().int() }),
 *   workload: (p) => countTokens(p.prompt),
 *   benchmark: { generator: () => ({ prompt: randomWords(250), max_response_tokens: 300 }) },
 * });
 */
export interface HandlerOptions<Schema extends z.ZodType = z.ZodType> {
  /** Worker path clients POST to. */
  route: string;
  /** Model-server path the request is forwarded to. @default route */
  modelPath?: string;
  /** zod schema for the `payload` field. Its output is what the model server receives. */
  payload: Schema;
  /**
   * Payload fields the schema does not name, in every plain `z.object` of the schema (nested ones
   * too). Objects that state their own rule (`z.strictObject`, `z.looseObject`, `.catchall()`)
   * keep it, and so do the sides of a `z.intersection`. @default 'forward'
   */
  unknownFields?: UnknownFields;
  /**
   * Workload of one request, in the unit the benchmark measures per second. It may return a promise
   * (`countTokensAsync` counts a large prompt off the main thread); a plain number costs no await.
   * @default 100
   */
  workload?: (payload: z.output<Schema>) => number | Promise<number>;
  benchmark?: BenchmarkConfig<z.input<Schema>>;
  /** Run requests at once instead of in the worker's single FIFO. @default false */
  allowParallel?: boolean;
  /** Seconds of estimated wait above which a request gets 429; `null` turns admission off. @default 30 */
  maxQueueTime?: number | null;
  timeouts?: HandlerTimeouts;
  /** Turns the validated payload into the body sent to the model server. */
  transformRequest?: (payload: z.output<Schema>) => unknown;
  /** Replaces the default passthrough of the model's response. */
  transformResponse?: (upstream: Response, context: HandlerContext) => Response | Promise<Response>;
  /**
   * Serve the request in-process instead of calling a model server (PyWorker's `remote_function`,
   * Sprocket's `predict`). The answer is 200 `{"result": value}`, or the value itself if it is a Response.
   */
  predict?: (payload: z.output<Schema>, context: HandlerContext) => unknown;
}

/**
 * The class form of a handler: subclass it and pass an instance to `defineHandler` or `defineWorker`.
 *
 * @example
 * class Generate extends EndpointHandler<typeof InputSchema> {
 *   route = '/generate';
 *   payload = InputSchema;
 *   override workload(p: Input) { return countTokens(p.prompt); }
 * }
 */
export abstract class EndpointHandler<
  Schema extends z.ZodType = z.ZodType,
> implements HandlerOptions<Schema> {
  abstract readonly route: string;
  abstract readonly payload: Schema;
  modelPath?: string;
  unknownFields?: UnknownFields;
  benchmark?: BenchmarkConfig<z.input<Schema>>;
  allowParallel?: boolean;
  maxQueueTime?: number | null;
  timeouts?: HandlerTimeouts;
  workload?(payload: z.output<Schema>): number | Promise<number>;
  transformRequest?(payload: z.output<Schema>): unknown;
  transformResponse?(upstream: Response, context: HandlerContext): Response | Promise<Response>;
  predict?(payload: z.output<Schema>, context: HandlerContext): unknown;
}

export interface ResolvedBenchmark {
  readonly runs: number;
  readonly concurrency: number;
  readonly warmup: boolean;
  /** A fresh sample payload (before validation), from the dataset or the generator. */
  readonly sample: () => unknown;
}

/** A validated, frozen handler. Everything the pipeline needs, with defaults applied. */
export interface ResolvedHandler {
  readonly kind: 'resolved-handler';
  readonly route: string;
  readonly modelPath: string;
  readonly payload: z.ZodType;
  readonly workload: (payload: unknown) => number | Promise<number>;
  readonly hasCustomWorkload: boolean;
  readonly allowParallel: boolean;
  readonly maxQueueTime: number | null;
  readonly headersTimeoutMs: number;
  readonly bodyTimeoutMs: number;
  readonly transformRequest: ((payload: unknown) => unknown) | undefined;
  readonly transformResponse:
    ((upstream: Response, context: HandlerContext) => Response | Promise<Response>) | undefined;
  readonly predict: ((payload: unknown, context: HandlerContext) => unknown) | undefined;
  readonly benchmark: ResolvedBenchmark | undefined;
}

export const DEFAULT_WORKLOAD = 100;

/** The handlers defineHandler returned: only these pass through it unchanged. */
const resolvedHandlers = new WeakSet<ResolvedHandler>();
export const DEFAULT_MAX_QUEUE_TIME = 30;

/** Every option of each kind, checked against the interfaces: a new option must be listed here. */
const HANDLER_KEYS = optionKeys<HandlerOptions>({
  route: true,
  modelPath: true,
  payload: true,
  unknownFields: true,
  workload: true,
  benchmark: true,
  allowParallel: true,
  maxQueueTime: true,
  timeouts: true,
  transformRequest: true,
  transformResponse: true,
  predict: true,
});
const BENCHMARK_KEYS = optionKeys<BenchmarkConfig<unknown>>({
  dataset: true,
  generator: true,
  runs: true,
  concurrency: true,
  warmup: true,
});
const TIMEOUT_KEYS = optionKeys<HandlerTimeouts>({
  headersMs: true,
  bodyMs: true,
});

const isPlainObject = (value: unknown): value is object => {
  if (typeof value !== 'object' || value === null) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
};

/**
 * A misspelled option would be ignored and its default used, so it stops start-up instead. The
 * object form may hold only known options. A class instance may carry its own fields and methods,
 * so only those a few edits away from an option (`workLoad`, `allowParrallel`) are refused.
 */
function unknownHandlerOptions(source: object): string[] {
  const problems = isPlainObject(source)
    ? unknownOptions(source, HANDLER_KEYS)
    : misspelledMembers(source);
  const { benchmark, timeouts } = source as Partial<HandlerOptions>;
  if (isPlainObject(benchmark)) {
    problems.push(...unknownOptions(benchmark, BENCHMARK_KEYS, 'benchmark.'));
  }
  if (isPlainObject(timeouts)) {
    problems.push(...unknownOptions(timeouts, TIMEOUT_KEYS, 'timeouts.'));
  }
  return problems;
}

function misspelledMembers(instance: object): string[] {
  const names = new Set(Object.keys(instance));
  for (
    let proto: unknown = Object.getPrototypeOf(instance);
    typeof proto === 'object' &&
    proto !== null &&
    proto !== Object.prototype &&
    proto !== EndpointHandler.prototype;
    proto = Object.getPrototypeOf(proto)
  ) {
    for (const name of Object.getOwnPropertyNames(proto)) {
      if (name !== 'constructor') names.add(name);
    }
  }
  return [...names]
    .filter(
      (name) =>
        !HANDLER_KEYS.includes(name) &&
        // `payloadSchema` or `routeName` are the class's own; `allowParrallel` is a typo.
        closestName(name, HANDLER_KEYS, { partial: false }) !== undefined,
    )
    .map((name) => unknownOptionMessage(name, HANDLER_KEYS));
}

const RESOLVING = Symbol('resolving');

/** Throws one `DefinitionError` listing every problem with a handler's options. */
function checkHandlerOptions(source: HandlerOptions<z.ZodType>): void {
  const label = typeof source.route === 'string' ? source.route : '(no route)';
  const checked = optionsSchema.safeParse({
    route: source.route,
    modelPath: source.modelPath,
    unknownFields: source.unknownFields,
    allowParallel: source.allowParallel,
    maxQueueTime: source.maxQueueTime,
    timeouts: source.timeouts,
    benchmark: source.benchmark && {
      dataset: source.benchmark.dataset,
      runs: source.benchmark.runs,
      concurrency: source.benchmark.concurrency,
      warmup: source.benchmark.warmup,
    },
  });
  const problems = [
    ...unknownHandlerOptions(source),
    ...(checked.error?.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`) ?? []),
  ];
  if (problems.length > 0) {
    throw new DefinitionError(`handler ${label}: ${problems.join('; ')}`);
  }
  if (!(source.payload instanceof z.ZodType)) {
    throw new DefinitionError(`handler ${label}: "payload" must be a zod schema`);
  }
}

/**
 * The payload schema with `policy` applied to every plain `z.object` it contains: through
 * optional, nullable, default, catch and readonly wrappers, arrays, tuples, record values, unions
 * (discriminated ones too), pipes (`z.preprocess`, `.transform`) and lazy schemas. Objects with
 * their own catchall (strict, loose or typed) are left as they are. Intersections are left whole:
 * a loose side would hand the other side's fields back untransformed, and zod cannot merge them.
 */
export function applyUnknownFields<Schema extends z.ZodType>(
  schema: Schema,
  policy: UnknownFields,
): Schema {
  if (policy === 'strip') return schema;
  const catchall = policy === 'forward' ? z.unknown() : z.never();
  return new CatchallRewriter(catchall).run(schema) as Schema;
}

type SchemaNode = z.core.$ZodType;

/** One pass of `applyUnknownFields`: each node rewritten once, unchanged nodes kept as they are. */
class CatchallRewriter {
  readonly #catchall: SchemaNode;
  readonly #done = new Map<SchemaNode, SchemaNode | typeof RESOLVING>();

  constructor(catchall: SchemaNode) {
    this.#catchall = catchall;
  }

  run(node: SchemaNode): SchemaNode {
    const cached = this.#done.get(node);
    // A cycle that does not go through z.lazy (a getter in a shape): resolve it at parse time.
    if (cached === RESOLVING) return z.lazy(() => this.#done.get(node) as z.ZodType);
    if (cached !== undefined) return cached;
    this.#done.set(node, RESOLVING);
    const rewritten = this.#rewrite(node);
    this.#done.set(node, rewritten);
    return rewritten;
  }

  /** The nodes rewritten, or undefined when none changed. */
  #list(nodes: readonly SchemaNode[]): SchemaNode[] | undefined {
    const mapped = nodes.map((node) => this.run(node));
    return mapped.some((m, i) => m !== nodes[i]) ? mapped : undefined;
  }

  /** `node` with one child rewritten, or `node` itself when the child did not change. */
  #withChild(node: SchemaNode, key: string, child: SchemaNode): SchemaNode {
    const mapped = this.run(child);
    return mapped === child ? node : clone(node, { [key]: mapped });
  }

  #rewrite(node: SchemaNode): SchemaNode {
    const def = node._zod.def;
    switch (def.type) {
      case 'object':
        return this.#object(node, def as z.core.$ZodObjectDef);
      case 'array':
        return this.#withChild(node, 'element', (def as z.core.$ZodArrayDef).element);
      case 'tuple':
        return this.#tuple(node, def as z.core.$ZodTupleDef);
      case 'record':
        return this.#withChild(node, 'valueType', (def as z.core.$ZodRecordDef).valueType);
      case 'union': {
        const options = this.#list((def as z.core.$ZodUnionDef).options);
        return options === undefined ? node : clone(node, { options });
      }
      case 'optional':
      case 'nullable':
      case 'default':
      case 'prefault':
      case 'catch':
      case 'readonly':
      case 'nonoptional':
        return this.#withChild(node, 'innerType', (def as z.core.$ZodOptionalDef).innerType);
      case 'pipe': {
        const { in: input, out } = def as z.core.$ZodPipeDef;
        const newIn = this.run(input);
        const newOut = this.run(out);
        return newIn === input && newOut === out ? node : clone(node, { in: newIn, out: newOut });
      }
      case 'lazy': {
        const { getter } = def as z.core.$ZodLazyDef;
        // A fresh def: the original caches its resolved inner schema on itself.
        return z.core.clone(node, { type: 'lazy', getter: () => this.run(getter()) } as typeof def);
      }
      default:
        return node;
    }
  }

  #object(node: SchemaNode, def: z.core.$ZodObjectDef): SchemaNode {
    const { shape, catchall: own } = def;
    const keys = Object.keys(shape);
    const values = this.#list(keys.map((key) => shape[key] as SchemaNode));
    const newCatchall = own === undefined ? this.#catchall : this.run(own);
    if (values === undefined && newCatchall === own) return node;
    // An unchanged shape is kept as it is, getters (recursive schemas) included.
    const newShape = values ? Object.fromEntries(keys.map((key, i) => [key, values[i]])) : shape;
    return clone(node, { shape: newShape, catchall: newCatchall });
  }

  #tuple(node: SchemaNode, def: z.core.$ZodTupleDef): SchemaNode {
    const { items, rest } = def;
    const newItems = this.#list(items);
    const newRest = rest ? this.run(rest) : rest;
    if (newItems === undefined && newRest === rest) return node;
    return clone(node, { items: newItems ?? items, rest: newRest });
  }
}

function clone(node: SchemaNode, changes: object): SchemaNode {
  return z.core.clone(node, { ...node._zod.def, ...changes } as typeof node._zod.def);
}

const routeSchema = z.string().regex(/^\/[^\s?#]*$/, 'must start with "/" and have no query');
const optionsSchema = z.object({
  route: routeSchema,
  modelPath: routeSchema.optional(),
  unknownFields: z
    .enum(['forward', 'strip', 'reject'], { message: 'must be "forward", "strip" or "reject"' })
    .optional(),
  allowParallel: z.boolean().optional(),
  maxQueueTime: z.number().nonnegative().nullable().optional(),
  timeouts: z
    .object({
      headersMs: z.number().int().nonnegative().optional(),
      bodyMs: z.number().int().nonnegative().optional(),
    })
    .optional(),
  benchmark: z
    .object({
      dataset: z.array(z.unknown()).optional(),
      runs: z.number().int().positive().optional(),
      concurrency: z.number().int().positive().optional(),
      warmup: z.boolean().optional(),
    })
    .optional(),
});

function optionalFunction<F>(
  route: string,
  name: string,
  value: unknown,
  owner: object,
): F | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'function') {
    throw new DefinitionError(`handler ${route}: "${name}" must be a function`);
  }
  return value.bind(owner) as F;
}

/**
 * Validates a handler at definition time and applies the defaults. Accepts the object form, an
 * `EndpointHandler` instance, or an already resolved handler. Throws `DefinitionError` naming the
 * handler and the field, so a bad handler fails at start-up, never on the first request.
 */
export function defineHandler<Schema extends z.ZodType>(
  definition: HandlerOptions<Schema>,
): ResolvedHandler;
export function defineHandler(definition: EndpointHandler | ResolvedHandler): ResolvedHandler;
export function defineHandler<Schema extends z.ZodType>(
  definition: HandlerOptions<Schema> | EndpointHandler<Schema> | ResolvedHandler,
): ResolvedHandler {
  if ('kind' in definition && definition.kind === 'resolved-handler') {
    if (resolvedHandlers.has(definition)) return definition;
    // `{ ...defined, route: '/other' }` would keep the old modelPath and skip validation.
    throw new DefinitionError(
      `handler ${String(definition.route)}: spread the handler's options, not a defined handler`,
    );
  }
  const source = definition as HandlerOptions<Schema>;
  checkHandlerOptions(source);
  const route = source.route;
  const workload = optionalFunction<(payload: unknown) => number | Promise<number>>(
    route,
    'workload',
    source.workload,
    source,
  );
  const benchmark = resolveBenchmark(route, source.benchmark, source);
  const resolved: ResolvedHandler = Object.freeze({
    kind: 'resolved-handler',
    route,
    modelPath: source.modelPath ?? route,
    payload: applyUnknownFields(source.payload, source.unknownFields ?? 'forward'),
    workload: workload ?? (() => DEFAULT_WORKLOAD),
    hasCustomWorkload: workload !== undefined,
    allowParallel: source.allowParallel ?? false,
    maxQueueTime: source.maxQueueTime === undefined ? DEFAULT_MAX_QUEUE_TIME : source.maxQueueTime,
    headersTimeoutMs: source.timeouts?.headersMs ?? 0,
    bodyTimeoutMs: source.timeouts?.bodyMs ?? 0,
    transformRequest: optionalFunction(route, 'transformRequest', source.transformRequest, source),
    transformResponse: optionalFunction(
      route,
      'transformResponse',
      source.transformResponse,
      source,
    ),
    predict: optionalFunction(route, 'predict', source.predict, source),
    benchmark,
  } satisfies ResolvedHandler);
  resolvedHandlers.add(resolved);
  return resolved;
}

function resolveBenchmark<Payload>(
  route: string,
  config: BenchmarkConfig<Payload> | undefined,
  owner: object,
): ResolvedBenchmark | undefined {
  if (config === undefined) return undefined;
  const dataset = config.dataset;
  const generator = optionalFunction<() => Payload>(
    route,
    'benchmark.generator',
    config.generator,
    owner,
  );
  let sample: () => unknown;
  if (dataset !== undefined && dataset.length > 0) {
    sample = () => structuredClone(dataset[Math.floor(Math.random() * dataset.length)]);
  } else if (generator !== undefined) {
    sample = generator;
  } else {
    throw new DefinitionError(
      `handler ${route}: "benchmark" needs a non-empty dataset or a generator`,
    );
  }
  return Object.freeze({
    runs: config.runs ?? 8,
    concurrency: config.concurrency ?? 10,
    warmup: config.warmup ?? true,
    sample,
  });
}
