import { z } from 'zod';
import { DefinitionError } from './errors.ts';

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
  /** Workload of one request, in the unit the benchmark measures per second. @default 100 */
  workload?: (payload: z.output<Schema>) => number;
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
  benchmark?: BenchmarkConfig<z.input<Schema>>;
  allowParallel?: boolean;
  maxQueueTime?: number | null;
  timeouts?: HandlerTimeouts;
  workload?(payload: z.output<Schema>): number;
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
  readonly workload: (payload: unknown) => number;
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

const routeSchema = z.string().regex(/^\/[^\s?#]*$/, 'must start with "/" and have no query');
const optionsSchema = z.object({
  route: routeSchema,
  modelPath: routeSchema.optional(),
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
  const label = typeof source.route === 'string' ? source.route : '(no route)';
  const checked = optionsSchema.safeParse({
    route: source.route,
    modelPath: source.modelPath,
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
  if (!checked.success) {
    const problems = checked.error.issues.map(
      (issue) => `${issue.path.join('.')}: ${issue.message}`,
    );
    throw new DefinitionError(`handler ${label}: ${problems.join('; ')}`);
  }
  if (!(source.payload instanceof z.ZodType)) {
    throw new DefinitionError(`handler ${label}: "payload" must be a zod schema`);
  }
  const route = source.route;
  const workload = optionalFunction<(payload: unknown) => number>(
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
    payload: source.payload,
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
