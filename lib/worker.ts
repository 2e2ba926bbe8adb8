import { DefinitionError } from './errors.ts';
import {
  defineHandler,
  type EndpointHandler,
  type HandlerOptions,
  type ResolvedHandler,
} from './handler.ts';
import type { z } from 'zod';
import { optionKeys, unknownOptions } from './internal/suggest.ts';
import { trimTrailingSlashes } from './internal/values.ts';

/** What a model-log line means (PyWorker's `LogAction`, same numeric values). */
export const LogAction = { ModelLoaded: 1, ModelError: 2, Info: 3 } as const;
export type LogAction = (typeof LogAction)[keyof typeof LogAction];

/** Substrings looked for in the model's log, in PyWorker's `LogActionConfig` shape. */
export interface LogActionConfig {
  /** The model server is up: run the benchmark and readiness sequence. */
  onLoad?: readonly string[];
  /** A fatal model error: mark the worker errored. */
  onError?: readonly string[];
  /** Echo the line in the worker's log. */
  onInfo?: readonly string[];
}

/** A route served outside the request pipeline: no auth, no queue, no accounting. */
export type ExtraRoute =
  | { method: 'GET' | 'POST'; path: string; forward: string }
  | {
      method: 'GET' | 'POST';
      path: string;
      respond: (request: Request) => Response | Promise<Response>;
    };

/**
 * In-process readiness instead of the model log (PyWorker's `lifecycle`): `start` resolves when the
 * model is loaded; `stop` runs at shutdown.
 */
export interface Lifecycle {
  start: () => Promise<void>;
  stop?: () => Promise<void>;
}

type AnyHandler = HandlerOptions<z.ZodType> | EndpointHandler<z.ZodType> | ResolvedHandler;

export interface WorkerOptions {
  /** Shown in logs and in `npm start`'s banner. */
  name: string;
  /** The model server's base URL. `MODEL_SERVER_URL` overrides it. */
  modelServerUrl: string;
  handlers: readonly AnyHandler[];
  logActions?: LogActionConfig;
  /** The model's log when `MODEL_LOG` is unset, e.g. `/var/log/portal/vllm.log`. */
  modelLog?: string;
  /**
   * Polled with GET once the model is loaded: a model-server path, or an absolute URL for a health
   * route on another server. Unset turns healthchecks off.
   */
  modelHealthcheckPath?: string;
  extraRoutes?: readonly ExtraRoute[];
  /** Open sessions allowed at once; `null` or 0 means unlimited, a negative number none. @default 10 */
  maxSessions?: number | null;
  /**
   * Workload per second assumed for admission until the benchmark has measured the model.
   * `ASSUMED_THROUGHPUT` overrides it. @default 1000
   */
  assumedThroughput?: number;
  lifecycle?: Lifecycle;
  /** Runs once during graceful shutdown, after in-flight requests are done. */
  shutdown?: () => void | Promise<void>;
}

export interface ResolvedWorker {
  readonly kind: 'resolved-worker';
  readonly name: string;
  readonly modelServerUrl: string;
  readonly handlers: readonly ResolvedHandler[];
  /** The single handler whose benchmark measures the model, if any handler carries one. */
  readonly benchmarkHandler: ResolvedHandler | undefined;
  /** on_load patterns, then on_error, then on_info, each in list order (protocol §2.4). */
  readonly logActions: readonly (readonly [LogAction, string])[];
  readonly modelLog: string | undefined;
  readonly modelHealthcheckPath: string | undefined;
  readonly extraRoutes: readonly ExtraRoute[];
  readonly maxSessions: number | null;
  readonly assumedThroughput: number;
  readonly lifecycle: Lifecycle | undefined;
  readonly shutdown: (() => void | Promise<void>) | undefined;
}

/** Every option of each kind, checked against the interfaces: a new option must be listed here. */
const WORKER_KEYS = optionKeys<WorkerOptions>({
  name: true,
  modelServerUrl: true,
  handlers: true,
  logActions: true,
  modelLog: true,
  modelHealthcheckPath: true,
  extraRoutes: true,
  maxSessions: true,
  assumedThroughput: true,
  lifecycle: true,
  shutdown: true,
});
const LOG_ACTION_KEYS = optionKeys<LogActionConfig>({ onLoad: true, onError: true, onInfo: true });
const LIFECYCLE_KEYS = optionKeys<Lifecycle>({ start: true, stop: true });
const EXTRA_ROUTE_KEYS = ['method', 'path', 'forward', 'respond'];

const isObject = (value: unknown): value is object => typeof value === 'object' && value !== null;

/**
 * Misspelled options would be ignored (`logActions: { onload }` leaves the worker waiting for a
 * load line forever), so each one stops start-up with the closest known option.
 */
function unknownWorkerOptions(source: WorkerOptions): string[] {
  const problems = unknownOptions(source, WORKER_KEYS);
  if (isObject(source.logActions)) {
    problems.push(...unknownOptions(source.logActions, LOG_ACTION_KEYS, 'logActions.'));
  }
  if (isObject(source.lifecycle)) {
    problems.push(...unknownOptions(source.lifecycle, LIFECYCLE_KEYS, 'lifecycle.'));
  }
  if (Array.isArray(source.extraRoutes)) {
    source.extraRoutes.forEach((route: unknown, i) => {
      if (isObject(route)) {
        problems.push(...unknownOptions(route, EXTRA_ROUTE_KEYS, `extraRoutes[${i}].`));
      }
    });
  }
  return problems;
}

/**
 * Validates a worker folder's definition: one route per handler, at most one benchmark handler,
 * sane limits. Throws `DefinitionError` at start-up.
 *
 * @example
 * export default defineWorker({
 *   name: 'hello_world',
 *   modelServerUrl: 'http://127.0.0.1:5001',
 *   handlers: [generate, generateStream],
 *   logActions: { onLoad: ['server has started'], onError: ['Exception: corrupted model file'] },
 * });
 */
export function defineWorker(options: WorkerOptions | ResolvedWorker): ResolvedWorker {
  if ('kind' in options && options.kind === 'resolved-worker') return options;
  const source = options as WorkerOptions;
  const misspelled = unknownWorkerOptions(source);
  if (misspelled.length > 0) {
    const label = typeof source.name === 'string' && source.name !== '' ? ` ${source.name}` : '';
    throw new DefinitionError(`worker${label}: ${misspelled.join('; ')}`);
  }
  if (typeof source.name !== 'string' || source.name === '') {
    throw new DefinitionError('worker: "name" must be a non-empty string');
  }
  try {
    new URL(source.modelServerUrl);
  } catch {
    throw new DefinitionError(`worker ${source.name}: "modelServerUrl" must be an absolute URL`);
  }
  if (!Array.isArray(source.handlers) || source.handlers.length === 0) {
    throw new DefinitionError(`worker ${source.name}: "handlers" must list at least one handler`);
  }
  const handlers = source.handlers.map((handler) => defineHandler(handler));
  checkRoutesUnique(source, handlers);
  const benchmarked = handlers.filter((h) => h.benchmark !== undefined);
  if (benchmarked.length > 1) {
    throw new DefinitionError(
      `worker ${source.name}: only one handler may carry a benchmark (found ${benchmarked.map((h) => h.route).join(', ')})`,
    );
  }
  const assumedThroughput = source.assumedThroughput ?? 1000;
  if (!(assumedThroughput > 0) || !Number.isFinite(assumedThroughput)) {
    throw new DefinitionError(
      `worker ${source.name}: "assumedThroughput" must be a positive number`,
    );
  }
  const maxSessions = source.maxSessions === undefined ? 10 : source.maxSessions;
  // As in PyWorker (protocol §12 #12): 0 and null are unlimited, and a negative cap refuses every session.
  if (maxSessions !== null && !Number.isSafeInteger(maxSessions)) {
    throw new DefinitionError(
      `worker ${source.name}: "maxSessions" must be a whole number (0 or null: unlimited; negative: no sessions)`,
    );
  }
  const actions = checkedLogActions(source);
  return Object.freeze({
    kind: 'resolved-worker',
    name: source.name,
    modelServerUrl: trimTrailingSlashes(source.modelServerUrl),
    handlers,
    benchmarkHandler: benchmarked[0],
    logActions: Object.freeze([
      ...(actions.onLoad ?? []).map((p) => [LogAction.ModelLoaded, p] as const),
      ...(actions.onError ?? []).map((p) => [LogAction.ModelError, p] as const),
      ...(actions.onInfo ?? []).map((p) => [LogAction.Info, p] as const),
    ]),
    modelLog: source.modelLog || undefined,
    modelHealthcheckPath: source.modelHealthcheckPath || undefined,
    extraRoutes: Object.freeze([...(source.extraRoutes ?? [])]),
    maxSessions: maxSessions === 0 ? null : maxSessions,
    assumedThroughput,
    lifecycle: source.lifecycle,
    shutdown: source.shutdown,
  } satisfies ResolvedWorker);
}

/** The environment a worker factory reads its settings from. */
export type WorkerEnv = Readonly<Record<string, string | undefined>>;

/**
 * A worker whose definition depends on the environment (the engine presets read `MODEL_NAME`,
 * `OPENAI_ROUTES`, `MODEL_LOAD_LOG_MSG`…). `tsworker start` calls `create` with the process's
 * environment, after the rest of the configuration has been validated.
 */
export interface WorkerFactory {
  readonly kind: 'worker-factory';
  readonly name: string;
  create(env: WorkerEnv): ResolvedWorker;
}

/**
 * Defines a worker from the environment. `create` may throw `ConfigError` listing every bad
 * variable; it runs once at start-up.
 *
 * @example
 * export default defineWorkerFactory('my_engine', (env) => ({
 *   name: 'my_engine',
 *   modelServerUrl: env['MY_ENGINE_URL'] ?? 'http://127.0.0.1:18000',
 *   handlers: [generate],
 * }));
 */
/** Each route (method and path, handler and extra routes together) is defined once. */
function checkRoutesUnique(source: WorkerOptions, handlers: readonly ResolvedHandler[]): void {
  const seen = new Set<string>();
  for (const route of [
    ...handlers.map((h) => `POST ${h.route}`),
    ...(source.extraRoutes ?? []).map((r) => `${r.method} ${r.path}`),
  ]) {
    if (seen.has(route))
      throw new DefinitionError(`worker ${source.name}: route ${route} is defined twice`);
    seen.add(route);
  }
}

/** `logActions`, each a list of strings when given. */
function checkedLogActions(source: WorkerOptions): NonNullable<WorkerOptions['logActions']> {
  const actions = source.logActions ?? {};
  for (const key of LOG_ACTION_KEYS) {
    const patterns: unknown = (actions as Readonly<Record<string, unknown>>)[key];
    if (
      patterns !== undefined &&
      !(Array.isArray(patterns) && patterns.every((p) => typeof p === 'string'))
    ) {
      throw new DefinitionError(
        `worker ${source.name}: "logActions.${key}" must be a list of strings`,
      );
    }
  }
  return actions;
}

export function defineWorkerFactory(
  name: string,
  create: (env: WorkerEnv) => WorkerOptions | ResolvedWorker,
): WorkerFactory {
  if (typeof name !== 'string' || name === '') {
    throw new DefinitionError('worker factory: "name" must be a non-empty string');
  }
  return Object.freeze({
    kind: 'worker-factory',
    name,
    create: (env: WorkerEnv) => defineWorker(create(env)),
  });
}

export function isWorkerFactory(value: unknown): value is WorkerFactory {
  return (
    typeof value === 'object' &&
    value !== null &&
    (value as { kind?: unknown }).kind === 'worker-factory'
  );
}

/** A worker definition or factory, resolved against the environment. */
export function resolveWorker(
  definition: WorkerOptions | ResolvedWorker | WorkerFactory,
  env: WorkerEnv,
): ResolvedWorker {
  return isWorkerFactory(definition) ? definition.create(env) : defineWorker(definition);
}
