/**
 * The OpenAI-compatible engines (vLLM, SGLang, llama.cpp's llama-server, Ollama's /v1): the port
 * of the reference's `workers/openai/core.py` (model-servers.md §2.1). An engine's worker folder
 * states only its name, log and log lines.
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
import { randomPrompt } from './prompts.ts';
import {
  EnvProblems,
  readEngineSettings,
  requireModelId,
  type EngineDefaults,
  positiveInteger,
  routeList,
} from './settings.ts';

export const OPENAI_DEFAULT_URL = 'http://127.0.0.1:18000';

/** The reference counts 0 for a request without `max_tokens`; we count this instead. */
export const DEFAULT_MAX_TOKENS = 500;

/** Every route counts in benchmark requests: the benchmark asks for this many tokens. */
const BENCHMARK_MAX_TOKENS = 500;
const BENCHMARK_WORDS = 250;

const tokenCount = z.number().int().nonnegative().nullish();
const stringOrList = z.union([z.string(), z.array(z.unknown())]);

/** The fields the worker reads; everything else reaches the engine untouched. */
export const CompletionRequest = apiPayload({
  model: z.string().optional(),
  prompt: stringOrList,
  max_tokens: tokenCount,
  stream: z.boolean().nullish(),
});
export type CompletionRequest = z.output<typeof CompletionRequest>;

export const ChatRequest = apiPayload({
  model: z.string().optional(),
  messages: z.array(z.looseObject({ role: z.string() })).min(1),
  max_tokens: tokenCount,
  max_completion_tokens: tokenCount,
  stream: z.boolean().nullish(),
});
export type ChatRequest = z.output<typeof ChatRequest>;

export const EmbeddingRequest = apiPayload({
  model: z.string().optional(),
  input: stringOrList,
});
export type EmbeddingRequest = z.output<typeof EmbeddingRequest>;

/** Tokens the request may generate: `max_tokens`, else `max_completion_tokens`, else the default. */
export function generationWorkload(
  request: {
    readonly max_tokens?: number | null | undefined;
    readonly max_completion_tokens?: number | null | undefined;
  },
  fallback = DEFAULT_MAX_TOKENS,
): number {
  return request.max_tokens ?? request.max_completion_tokens ?? fallback;
}

/** Characters of an embedding input (a string, or a list of strings or token ids). */
function inputChars(input: string | readonly unknown[]): number {
  if (typeof input === 'string') return input.length;
  let chars = 0;
  for (const item of input) chars += typeof item === 'string' ? item.length : 4;
  return chars;
}

/** The reference's rule for non-generation routes: 500 × size ÷ reference size, clamped to [0.1, 8]. */
export function scaledWorkload(size: number, referenceSize: number): number {
  const ratio = Math.min(8, Math.max(0.1, size / referenceSize));
  return BENCHMARK_MAX_TOKENS * ratio;
}

/** The routes an OpenAI-compatible worker can serve, and what `OPENAI_ROUTES` may name. */
export const OPENAI_ROUTES = ['/v1/completions', '/v1/chat/completions', '/v1/embeddings'] as const;
export type OpenAIRoute = (typeof OPENAI_ROUTES)[number];

const DEFAULT_ROUTES: readonly OpenAIRoute[] = ['/v1/completions', '/v1/chat/completions'];

export interface OpenAIRouteOptions {
  readonly modelId: string;
  readonly route: OpenAIRoute;
  readonly benchmark: boolean;
  /** `BENCHMARK_EMBED_CHARS`. @default 600 */
  readonly embedChars: number;
  /** `DEFAULT_MAX_TOKENS`. */
  readonly defaultMaxTokens: number;
}

/** What differs between the OpenAI routes: the fields read, the workload, the benchmark sample. */
interface RouteSpec<Schema extends z.ZodType> {
  readonly payload: Schema;
  readonly workload: (request: z.output<Schema>, options: OpenAIRouteOptions) => number;
  readonly sample: (options: OpenAIRouteOptions) => Record<string, unknown>;
}

const ROUTE_SPECS = {
  '/v1/completions': {
    payload: CompletionRequest,
    workload: (request, options) => generationWorkload(request, options.defaultMaxTokens),
    sample: ({ modelId }) => ({
      model: modelId,
      prompt: randomPrompt(BENCHMARK_WORDS),
      temperature: 0.7,
      max_tokens: BENCHMARK_MAX_TOKENS,
    }),
  } satisfies RouteSpec<typeof CompletionRequest>,
  '/v1/chat/completions': {
    payload: ChatRequest,
    workload: (request, options) => generationWorkload(request, options.defaultMaxTokens),
    sample: ({ modelId }) => ({
      model: modelId,
      messages: [{ role: 'user', content: randomPrompt(BENCHMARK_WORDS) }],
      temperature: 0.7,
      max_tokens: BENCHMARK_MAX_TOKENS,
    }),
  } satisfies RouteSpec<typeof ChatRequest>,
  '/v1/embeddings': {
    payload: EmbeddingRequest,
    workload: (request, options) => scaledWorkload(inputChars(request.input), options.embedChars),
    sample: ({ modelId, embedChars }) => ({
      model: modelId,
      input: randomPrompt(Math.ceil(embedChars / 5)).slice(0, embedChars),
    }),
  } satisfies RouteSpec<typeof EmbeddingRequest>,
} as const;

function handlerFor<Schema extends z.ZodType>(
  spec: RouteSpec<Schema>,
  options: OpenAIRouteOptions,
): ResolvedHandler {
  const { modelId } = options;
  return defineHandler({
    route: options.route,
    allowParallel: true,
    maxQueueTime: 600,
    payload: spec.payload,
    workload: (request: z.output<Schema>) => spec.workload(request, options),
    // The model id is filled in when the client leaves it out, as the engines expect one.
    transformRequest: (request) => {
      const body = request as { model?: unknown };
      return body.model === undefined && modelId !== '' ? { ...body, model: modelId } : body;
    },
    ...(options.benchmark && {
      benchmark: { concurrency: 10, runs: 3, generator: () => spec.sample(options) },
    }),
  });
}

/**
 * One OpenAI route as a handler: parallel, 600 s of queue, the model id filled in when the client
 * leaves it out, and the reference's benchmark when this route carries it.
 */
export function openaiHandler(options: OpenAIRouteOptions): ResolvedHandler {
  switch (options.route) {
    case '/v1/completions':
      return handlerFor(ROUTE_SPECS['/v1/completions'], options);
    case '/v1/chat/completions':
      return handlerFor(ROUTE_SPECS['/v1/chat/completions'], options);
    case '/v1/embeddings':
      return handlerFor(ROUTE_SPECS['/v1/embeddings'], options);
  }
}

export interface OpenAIEngine extends Partial<
  Pick<EngineDefaults, 'modelServerUrl' | 'healthPath'>
> {
  readonly name: string;
  readonly modelLog: string;
  readonly logActions: LogActionConfig;
  /** Variables holding the model id after `MODEL_NAME`, e.g. `['VLLM_MODEL']`. */
  readonly modelEnv?: readonly string[];
}

const openaiRoute = z.enum(OPENAI_ROUTES, {
  message: `must be one of ${OPENAI_ROUTES.join(', ')}`,
});

/** What the OpenAI preset reads from the environment, validated together. */
export interface OpenAISettings {
  readonly routes: readonly OpenAIRoute[];
  readonly benchmarkRoute: OpenAIRoute;
  readonly embedChars: number;
  readonly defaultMaxTokens: number;
}

export function readOpenAISettings(env: WorkerEnv, problems: EnvProblems): OpenAISettings {
  const benchmarkRoute = problems.read(env, 'BENCHMARK_ROUTE', openaiRoute, '/v1/completions');
  const listed = problems.read<OpenAIRoute[] | undefined>(
    env,
    'OPENAI_ROUTES',
    routeList(OPENAI_ROUTES, 'this worker serves'),
    undefined,
  );
  // The default serves the benchmark route too; an explicit list must name it (reference core.py).
  const routes = listed ?? [...new Set([...DEFAULT_ROUTES, benchmarkRoute])];
  if (listed !== undefined && !listed.includes(benchmarkRoute)) {
    problems.add(
      'BENCHMARK_ROUTE',
      `${benchmarkRoute} is not served: add it to OPENAI_ROUTES, or set BENCHMARK_ROUTE to a route the model serves`,
    );
  }
  return {
    routes,
    benchmarkRoute,
    embedChars: problems.read(env, 'BENCHMARK_EMBED_CHARS', positiveInteger, 600),
    defaultMaxTokens: problems.read(env, 'DEFAULT_MAX_TOKENS', positiveInteger, DEFAULT_MAX_TOKENS),
  };
}

/**
 * A worker for an OpenAI-compatible engine. Its routes come from `OPENAI_ROUTES`, its benchmark
 * from `BENCHMARK_ROUTE`, its model id from `MODEL_NAME` or the engine's own variable.
 *
 * @example
 * export default openaiWorker({
 *   name: 'vllm',
 *   modelLog: '/var/log/portal/vllm.log',
 *   modelEnv: ['VLLM_MODEL'],
 *   logActions: { onLoad: ['Application startup complete.'], onError: ['RuntimeError: Engine'] },
 * });
 */
export function openaiWorker(engine: OpenAIEngine): WorkerFactory {
  const defaults: EngineDefaults = {
    modelServerUrl: OPENAI_DEFAULT_URL,
    ...engine,
  };
  return defineWorkerFactory(engine.name, (env) => {
    const problems = new EnvProblems();
    const settings = readEngineSettings(env, defaults, problems);
    const modelId = requireModelId(settings, defaults, problems);
    const openai = readOpenAISettings(env, problems);
    problems.throwIfAny();
    return {
      name: engine.name,
      modelServerUrl: settings.modelServerUrl,
      modelLog: settings.modelLog,
      logActions: settings.logActions,
      modelHealthcheckPath: settings.modelHealthcheckPath,
      handlers: openai.routes.map((route) =>
        openaiHandler({
          modelId,
          route,
          benchmark: route === openai.benchmarkRoute,
          embedChars: openai.embedChars,
          defaultMaxTokens: openai.defaultMaxTokens,
        }),
      ),
    };
  });
}
