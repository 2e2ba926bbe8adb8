/**
 * Hugging Face text-generation-inference: the port of the reference's `workers/tgi/worker.py`
 * (model-servers.md §7.1). `/generate` and `/generate_stream`, workload `parameters.max_new_tokens`,
 * readiness from TGI's JSON `Connected` line.
 */
import { z } from 'zod';
import { defineHandler, type ResolvedHandler } from '../handler.ts';
import {
  defineWorkerFactory,
  type LogActionConfig,
  type WorkerEnv,
  type WorkerFactory,
} from '../worker.ts';
import { apiPayload } from './envelope.ts';
import { DEFAULT_MAX_TOKENS, openaiHandler } from './openai.ts';
import { randomPrompt } from './prompts.ts';
import { EnvProblems, readEngineSettings, type EngineDefaults, routeList } from './settings.ts';

/** The reference's `MODEL_SERVER_PORT = 5001` (it binds 0.0.0.0; loopback is what it reaches). */
export const TGI_DEFAULT_URL = 'http://127.0.0.1:5001';
/** The reference's log; the template is expected to redirect TGI's output there. */
export const TGI_DEFAULT_LOG = '/workspace/infer.log';

/** The reference's strings (model-servers.md §7.1); the load lines match only `--json-output`. */
export const TGI_LOG_ACTIONS = {
  onLoad: [
    '"message":"Connected","target":"text_generation_router"',
    '"message":"Connected","target":"text_generation_router::server"',
  ],
  onError: ['Error: WebserverFailed', 'Error: DownloadError', 'Error: ShardCannotStart'],
  onInfo: ['"message":"Download'],
} as const satisfies LogActionConfig;

const BENCHMARK_WORDS = 250;
const BENCHMARK_MAX_NEW_TOKENS = 128;

// zod reports an absent field as "expected number, received undefined"; say it the reference's way.
const maxNewTokens = z
  .number({
    error: (issue) => (issue.input === undefined ? 'missing parameter' : undefined),
  })
  .int()
  .positive()
  .max(0xffff_ffff);

/**
 * TGI's request `{inputs, parameters}`. The worker needs `parameters.max_new_tokens` (its workload);
 * every other parameter passes through to TGI, which validates it with its own 422.
 */
export const TgiRequest = apiPayload({
  inputs: z.string(),
  // An absent `parameters` is reported as its missing `max_new_tokens`, the field the client must add.
  parameters: z.preprocess((value) => value ?? {}, z.looseObject({ max_new_tokens: maxNewTokens })),
});
export type TgiRequest = z.output<typeof TgiRequest>;

/** Tokens the request may generate: the workload of both routes and of the benchmark. */
export function tgiWorkload(request: {
  readonly parameters: { readonly max_new_tokens: number };
}): number {
  return request.parameters.max_new_tokens;
}

export const TGI_ROUTES = ['/generate', '/generate_stream'] as const;
export type TgiRoute = (typeof TGI_ROUTES)[number];

/** TGI's own OpenAI-compatible routes (Messages API), served only when `OPENAI_ROUTES` names them. */
export const TGI_OPENAI_ROUTES = ['/v1/completions', '/v1/chat/completions'] as const;
type TgiOpenAIRoute = (typeof TGI_OPENAI_ROUTES)[number];

/** One TGI route: parallel (TGI batches), 600 s of queue, the reference's benchmark on request. */
export function tgiHandler(route: TgiRoute, benchmark: boolean): ResolvedHandler {
  return defineHandler({
    route,
    payload: TgiRequest,
    workload: tgiWorkload,
    allowParallel: true,
    maxQueueTime: 600,
    ...(benchmark && {
      benchmark: {
        concurrency: 10,
        runs: 3,
        generator: () => ({
          inputs: randomPrompt(BENCHMARK_WORDS),
          parameters: {
            max_new_tokens: BENCHMARK_MAX_NEW_TOKENS,
            temperature: 0.7,
            return_full_text: false,
          },
        }),
      },
    }),
  });
}

export interface TgiEngine extends Partial<
  Pick<EngineDefaults, 'modelServerUrl' | 'healthPath' | 'modelLog' | 'logActions'>
> {
  /** @default 'tgi' */
  readonly name?: string;
}

const tgiRoute = z.enum(TGI_ROUTES, { message: `must be one of ${TGI_ROUTES.join(', ')}` });

/** What the TGI preset reads besides the engine settings, validated with them. */
export interface TgiSettings {
  readonly benchmarkRoute: TgiRoute;
  readonly openaiRoutes: readonly TgiOpenAIRoute[];
}

export function readTgiSettings(env: WorkerEnv, problems: EnvProblems): TgiSettings {
  return {
    benchmarkRoute: problems.read(env, 'BENCHMARK_ROUTE', tgiRoute, '/generate'),
    openaiRoutes: problems.read(
      env,
      'OPENAI_ROUTES',
      routeList(TGI_OPENAI_ROUTES, "TGI's OpenAI routes are"),
      [],
    ),
  };
}

/**
 * The TGI worker. TGI's benchmark sends no model id, so `MODEL_NAME` is not required.
 *
 * @example
 * export default tgiWorker();
 */
export function tgiWorker(engine: TgiEngine = {}): WorkerFactory {
  const name = engine.name ?? 'tgi';
  const defaults: EngineDefaults = {
    name,
    modelServerUrl: engine.modelServerUrl ?? TGI_DEFAULT_URL,
    modelLog: engine.modelLog ?? TGI_DEFAULT_LOG,
    logActions: engine.logActions ?? TGI_LOG_ACTIONS,
    ...(engine.healthPath !== undefined && { healthPath: engine.healthPath }),
  };
  return defineWorkerFactory(name, (env) => {
    const problems = new EnvProblems();
    const settings = readEngineSettings(env, defaults, problems);
    const tgi = readTgiSettings(env, problems);
    problems.throwIfAny();
    return {
      name,
      modelServerUrl: settings.modelServerUrl,
      modelLog: settings.modelLog,
      logActions: settings.logActions,
      modelHealthcheckPath: settings.modelHealthcheckPath,
      handlers: [
        ...TGI_ROUTES.map((route) => tgiHandler(route, route === tgi.benchmarkRoute)),
        // The client's `model` passes through untouched: TGI reads a model other than "tgi" as a
        // LoRA adapter id, so the worker never fills one in.
        ...tgi.openaiRoutes.map((route) =>
          openaiHandler({
            modelId: '',
            route,
            benchmark: false,
            embedChars: 600,
            defaultMaxTokens: DEFAULT_MAX_TOKENS,
          }),
        ),
      ],
    };
  });
}
