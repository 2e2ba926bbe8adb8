/**
 * The generic preset: any HTTP model server that takes a JSON body. Each route forwards the
 * client's payload, as it is, to the same path on the model server, and pipes the answer back
 * (JSON, SSE or any other stream). The worker states its routes, and optionally a schema, a
 * workload function and a benchmark.
 */
import { z } from 'zod';
import { DefinitionError } from '../errors.ts';
import { defineHandler } from '../handler.ts';
import { defineWorkerFactory, type LogActionConfig, type WorkerFactory } from '../worker.ts';
import { EnvProblems, readEngineSettings } from './settings.ts';

/** Any JSON object; unknown fields pass through untouched. */
export const AnyJsonObject = z.looseObject({});

type ObjectSchema = z.ZodType<Record<string, unknown>>;

export interface PassthroughBenchmark<Schema extends ObjectSchema> {
  /** The route the benchmark calls. @default the first route */
  readonly route?: string;
  /** Sample payloads, picked at random, or else `generator`. */
  readonly dataset?: readonly z.input<Schema>[];
  readonly generator?: () => z.input<Schema>;
  /** @default 8 */
  readonly runs?: number;
  /** Requests per round (1 when the route is FIFO). @default 10 */
  readonly concurrency?: number;
  /** @default true */
  readonly warmup?: boolean;
}

export interface PassthroughOptions<Schema extends ObjectSchema = typeof AnyJsonObject> {
  readonly name: string;
  /** Where the model server listens. `MODEL_SERVER_URL` overrides it. */
  readonly modelServerUrl: string;
  /** Worker routes; each forwards to the same path on the model server. */
  readonly routes: readonly string[];
  /**
   * Validates the payload (422 naming the bad fields). Its output is what the model receives, so a
   * loose object (`z.looseObject`) keeps the fields it does not name. @default any JSON object
   */
  readonly payload?: Schema;
  /** The request's cost, in the unit the benchmark measures per second. @default 100 per request */
  readonly workload?: (payload: z.output<Schema>, route: string) => number;
  /** Run requests at once; `false` queues them in the worker's FIFO, one at a time. @default false */
  readonly allowParallel?: boolean;
  /** Seconds of estimated wait above which a request gets 429; `null`: no admission. @default 30 */
  readonly maxQueueTime?: number | null;
  /** Without one the worker reports its assumed throughput (`ASSUMED_THROUGHPUT`) as max_perf. */
  readonly benchmark?: PassthroughBenchmark<Schema>;
  /** The model's log when `MODEL_LOG` is unset. */
  readonly modelLog?: string;
  /** `MODEL_LOAD_LOG_MSG`, `MODEL_ERROR_LOG_MSGS` and `MODEL_INFO_LOG_MSGS` override each list. */
  readonly logActions?: LogActionConfig;
  /** GET path (or absolute URL) polled once loaded; `MODEL_HEALTH_ENDPOINT` overrides it. @default none */
  readonly healthPath?: string;
}

/**
 * A worker that forwards JSON bodies as they are. Workload is 100 per request (`DEFAULT_WORKLOAD`)
 * unless `workload` says otherwise; the environment's overrides of the log lines
 * (`MODEL_*_LOG_MSG(S)`) and of the health endpoint (`MODEL_HEALTH_ENDPOINT`) apply.
 *
 * @example
 * export default passthroughWorker({
 *   name: 'my_model',
 *   modelServerUrl: 'http://127.0.0.1:8080',
 *   routes: ['/predict'],
 *   allowParallel: true,
 *   benchmark: { generator: () => ({ text: 'hello' }), runs: 3 },
 *   logActions: { onLoad: ['Uvicorn running on'] },
 *   healthPath: '/health',
 * });
 */
export function passthroughWorker<Schema extends ObjectSchema = typeof AnyJsonObject>(
  options: PassthroughOptions<Schema>,
): WorkerFactory {
  const payload = (options.payload ?? AnyJsonObject) as Schema;
  const bench = options.benchmark;
  const benchmarkRoute = bench?.route ?? options.routes[0];
  if (bench !== undefined && !options.routes.includes(benchmarkRoute ?? '')) {
    throw new DefinitionError(
      `worker ${options.name}: benchmark.route ${String(benchmarkRoute)} is not one of its routes (${options.routes.join(', ')})`,
    );
  }
  const { workload } = options;
  return defineWorkerFactory(options.name, (env) => {
    const problems = new EnvProblems();
    const settings = readEngineSettings(
      env,
      {
        name: options.name,
        modelServerUrl: options.modelServerUrl,
        modelLog: options.modelLog ?? '',
        logActions: options.logActions ?? {},
        // An empty default keeps healthchecks off unless asked for.
        healthPath: options.healthPath ?? '',
      },
      problems,
    );
    problems.throwIfAny();
    const handlers = options.routes.map((route) =>
      defineHandler({
        route,
        payload,
        ...(workload !== undefined && {
          workload: (body: z.output<Schema>) => workload(body, route),
        }),
        ...(options.allowParallel !== undefined && { allowParallel: options.allowParallel }),
        ...(options.maxQueueTime !== undefined && { maxQueueTime: options.maxQueueTime }),
        ...(bench !== undefined &&
          route === benchmarkRoute && {
            benchmark: {
              ...(bench.dataset !== undefined && { dataset: bench.dataset }),
              ...(bench.generator !== undefined && { generator: bench.generator }),
              ...(bench.runs !== undefined && { runs: bench.runs }),
              ...(bench.concurrency !== undefined && { concurrency: bench.concurrency }),
              ...(bench.warmup !== undefined && { warmup: bench.warmup }),
            },
          }),
      }),
    );
    return {
      name: options.name,
      modelServerUrl: settings.modelServerUrl,
      ...(options.modelLog !== undefined && { modelLog: options.modelLog }),
      logActions: settings.logActions,
      modelHealthcheckPath: settings.modelHealthcheckPath,
      handlers,
    };
  });
}
