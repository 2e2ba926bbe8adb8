/**
 * Ollama (`ollama serve`), as Vast's Ollama image runs it (model-servers.md §6). The reference has no
 * Ollama worker, only a template for its OpenAI worker; this one serves Ollama's native API
 * (`/api/generate`, `/api/chat`, NDJSON streams passed through byte for byte) and its OpenAI routes
 * (the OpenAI preset's handlers), keys readiness on the image's `Model pull complete:` line, and
 * checks health on `/api/version`, since Ollama has no `/health`.
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
import { DEFAULT_MAX_TOKENS, OPENAI_ROUTES, openaiHandler, type OpenAIRoute } from './openai.ts';
import { randomPrompt } from './prompts.ts';
import {
  EnvProblems,
  readEngineSettings,
  requireModelId,
  type EngineDefaults,
  positiveInteger,
  routeList,
} from './settings.ts';
import { trimTrailingSlashes } from '../internal/values.ts';

/** Ollama's default `OLLAMA_HOST` (envconfig): `127.0.0.1:11434`, plain HTTP. */
export const OLLAMA_DEFAULT_URL = 'http://127.0.0.1:11434';
/** Where Vast's image logs `ollama serve` and its pull script (supervisord program `ollama`). */
export const OLLAMA_DEFAULT_LOG = '/var/log/portal/ollama.log';

/**
 * The image's lines (model-servers.md §6.1): the pull script logs `Model pull complete: <model>`
 * once the model is on disk and the server answers, or `Failed to pull model: <model>` before it
 * kills the server. `Error: pull model manifest:` is `ollama pull`'s own fatal error (§6.2), printed
 * just before. A stalled download retries by itself, so it is only echoed (the class-era reference
 * made it fatal, which fails a worker whose download is merely slow).
 */
export const OLLAMA_LOG_ACTIONS = {
  onLoad: ['Model pull complete:'],
  onError: ['Failed to pull model:', 'Error: pull model manifest:'],
  onInfo: ['stalled; retrying'],
} as const satisfies LogActionConfig;

/** Ollama's own health answer: `GET /api/version` → 200 `{"version": …}` (there is no `/health`). */
export const OLLAMA_HEALTH_PATH = '/api/version';

const BENCHMARK_WORDS = 250;
const BENCHMARK_NUM_PREDICT = 500;

/** `options`: the worker reads `num_predict`; every other option reaches Ollama untouched. */
const Options = z.looseObject({ num_predict: z.number().nullish() }).nullish();

/** `POST /api/generate`. An absent or empty `prompt` is valid: Ollama only loads the model. */
export const OllamaGenerateRequest = apiPayload({
  model: z.string().optional(),
  prompt: z.string().nullish(),
  stream: z.boolean().nullish(),
  options: Options,
});
export type OllamaGenerateRequest = z.output<typeof OllamaGenerateRequest>;

/** `POST /api/chat`. No messages is valid too (a load request). */
export const OllamaChatRequest = apiPayload({
  model: z.string().optional(),
  messages: z.array(z.looseObject({ role: z.string() })).nullish(),
  stream: z.boolean().nullish(),
  options: Options,
});
export type OllamaChatRequest = z.output<typeof OllamaChatRequest>;

/**
 * Tokens a native request may generate: `options.num_predict`, truncated as Ollama does. Ollama's
 * own default is -1 ("until the model stops"; -2 fills the context), which has no size, so absent,
 * zero and negative values count `fallback`: `DEFAULT_MAX_TOKENS` (500), the default of the OpenAI
 * routes, so both APIs weigh a request without a limit alike.
 */
export function ollamaWorkload(
  request: {
    readonly options?: { readonly num_predict?: number | null | undefined } | null | undefined;
  },
  fallback = DEFAULT_MAX_TOKENS,
): number {
  const asked = request.options?.num_predict;
  return asked !== undefined && asked !== null && asked >= 1 ? Math.trunc(asked) : fallback;
}

export const OLLAMA_NATIVE_ROUTES = ['/api/generate', '/api/chat'] as const;
export type OllamaNativeRoute = (typeof OLLAMA_NATIVE_ROUTES)[number];
export type OllamaRoute = OllamaNativeRoute | OpenAIRoute;

const DEFAULT_OPENAI_ROUTES: readonly OpenAIRoute[] = ['/v1/completions', '/v1/chat/completions'];

export interface OllamaRouteOptions {
  /** Filled in when the client names no model (Ollama requires one). */
  readonly modelId: string;
  readonly route: OllamaNativeRoute;
  readonly benchmark: boolean;
  /** `DEFAULT_MAX_TOKENS`. */
  readonly defaultMaxTokens: number;
}

/**
 * One native route: parallel (Ollama queues inside, `OLLAMA_MAX_QUEUE`), 600 s of queue as the
 * OpenAI routes, and the benchmark on request: 250 random words, `num_predict` 500, not streamed.
 */
export function ollamaHandler(options: OllamaRouteOptions): ResolvedHandler {
  const { modelId, route, defaultMaxTokens } = options;
  const withModel = <T extends { model?: string | undefined }>(body: T): T =>
    body.model === undefined && modelId !== '' ? { ...body, model: modelId } : body;
  const common = {
    route,
    allowParallel: true,
    maxQueueTime: 600,
    workload: (request: OllamaGenerateRequest | OllamaChatRequest) =>
      ollamaWorkload(request, defaultMaxTokens),
    transformRequest: withModel,
  } as const;
  const benchmark = { concurrency: 10, runs: 3 };
  const benchmarkOptions = { temperature: 0.7, num_predict: BENCHMARK_NUM_PREDICT };
  if (route === '/api/generate') {
    return defineHandler({
      ...common,
      payload: OllamaGenerateRequest,
      ...(options.benchmark && {
        benchmark: {
          ...benchmark,
          generator: () => ({
            model: modelId,
            prompt: randomPrompt(BENCHMARK_WORDS),
            stream: false,
            options: benchmarkOptions,
          }),
        },
      }),
    });
  }
  return defineHandler({
    ...common,
    payload: OllamaChatRequest,
    ...(options.benchmark && {
      benchmark: {
        ...benchmark,
        generator: () => ({
          model: modelId,
          messages: [{ role: 'user', content: randomPrompt(BENCHMARK_WORDS) }],
          stream: false,
          options: benchmarkOptions,
        }),
      },
    }),
  });
}

/**
 * `OLLAMA_HOST` as Ollama reads it (envconfig.Host): `host`, `host:port`, `:port` or a URL, scheme
 * `http` and port 11434 by default. A listen-everywhere address (`0.0.0.0`, `::`, empty) is reached
 * on loopback. Returns undefined for a value that is no address.
 */
export function ollamaHostUrl(value: string): string | undefined {
  const raw = value.trim().replace(/^["']|["']$/g, '');
  const cut = raw.indexOf('://');
  const scheme = cut === -1 ? 'http' : raw.slice(0, cut).toLowerCase();
  if (scheme !== 'http' && scheme !== 'https') return undefined;
  let rest = cut === -1 ? raw : raw.slice(cut + 3);
  const slash = rest.indexOf('/');
  const path = slash === -1 ? '' : trimTrailingSlashes(rest.slice(slash));
  rest = slash === -1 ? rest : rest.slice(0, slash);
  let host = rest;
  let port = scheme === 'https' ? '443' : '11434';
  const hostPort = /^(\[[^\]]*\]|[^:]*):(\d*)$/.exec(rest);
  if (hostPort !== null) {
    host = hostPort[1] ?? '';
    if (hostPort[2]) port = hostPort[2];
  }
  const bare = host.replace(/^\[|\]$/g, '');
  if (bare === '' || bare === '0.0.0.0' || bare === '::') host = '127.0.0.1';
  else if (bare.includes(':')) host = `[${bare}]`;
  try {
    const url = new URL(`${scheme}://${host}:${port}${path}`);
    return trimTrailingSlashes(url.href);
  } catch {
    return undefined;
  }
}

export interface OllamaEngine extends Partial<
  Pick<EngineDefaults, 'modelServerUrl' | 'healthPath' | 'modelLog' | 'logActions'>
> {
  /** @default 'ollama' */
  readonly name?: string;
}

const OLLAMA_ROUTES = [...OLLAMA_NATIVE_ROUTES, ...OPENAI_ROUTES] as const;

const benchmarkRoute = z.enum(OLLAMA_ROUTES, {
  message: `must be one of ${OLLAMA_ROUTES.join(', ')}`,
});
const hostSetting = z.string().transform((value, ctx) => {
  const url = ollamaHostUrl(value);
  if (url === undefined) {
    ctx.addIssue({ code: 'custom', message: 'must be host, host:port or an http(s) URL' });
    return z.NEVER;
  }
  return url;
});

/** What the Ollama preset reads besides the engine settings, validated with them. */
export interface OllamaSettings {
  /** From `OLLAMA_HOST`; `MODEL_SERVER_URL` still overrides it. */
  readonly modelServerUrl: string;
  readonly openaiRoutes: readonly OpenAIRoute[];
  readonly benchmarkRoute: OllamaRoute;
  readonly defaultMaxTokens: number;
  readonly embedChars: number;
}

export function readOllamaSettings(
  env: WorkerEnv,
  problems: EnvProblems,
  defaultUrl = OLLAMA_DEFAULT_URL,
): OllamaSettings {
  const bench = problems.read<OllamaRoute>(env, 'BENCHMARK_ROUTE', benchmarkRoute, '/api/generate');
  const listed = problems.read<OpenAIRoute[] | undefined>(
    env,
    'OPENAI_ROUTES',
    routeList(OPENAI_ROUTES, "Ollama's OpenAI routes here are"),
    undefined,
  );
  const isNative = (OLLAMA_NATIVE_ROUTES as readonly string[]).includes(bench);
  const openaiRoutes =
    listed ??
    (isNative
      ? DEFAULT_OPENAI_ROUTES
      : [...new Set([...DEFAULT_OPENAI_ROUTES, bench as OpenAIRoute])]);
  if (!isNative && !openaiRoutes.includes(bench as OpenAIRoute)) {
    problems.add(
      'BENCHMARK_ROUTE',
      `${bench} is not served: add it to OPENAI_ROUTES, or set BENCHMARK_ROUTE to a route the model serves`,
    );
  }
  return {
    modelServerUrl: problems.read(env, 'OLLAMA_HOST', hostSetting, defaultUrl),
    openaiRoutes,
    benchmarkRoute: bench,
    defaultMaxTokens: problems.read(env, 'DEFAULT_MAX_TOKENS', positiveInteger, DEFAULT_MAX_TOKENS),
    embedChars: problems.read(env, 'BENCHMARK_EMBED_CHARS', positiveInteger, 600),
  };
}

/**
 * The Ollama worker: `/api/generate` and `/api/chat`, plus the OpenAI routes of `OPENAI_ROUTES`
 * (default `/v1/completions`, `/v1/chat/completions`). The model id comes from `MODEL_NAME` or
 * `OLLAMA_MODEL`, the server from `OLLAMA_HOST` (or `MODEL_SERVER_URL`).
 *
 * @example
 * export default ollamaWorker();
 */
export function ollamaWorker(engine: OllamaEngine = {}): WorkerFactory {
  const name = engine.name ?? 'ollama';
  const defaults: EngineDefaults = {
    name,
    modelServerUrl: engine.modelServerUrl ?? OLLAMA_DEFAULT_URL,
    modelLog: engine.modelLog ?? OLLAMA_DEFAULT_LOG,
    logActions: engine.logActions ?? OLLAMA_LOG_ACTIONS,
    healthPath: engine.healthPath ?? OLLAMA_HEALTH_PATH,
    modelEnv: ['OLLAMA_MODEL'],
  };
  return defineWorkerFactory(name, (env) => {
    const problems = new EnvProblems();
    const settings = readEngineSettings(env, defaults, problems);
    const modelId = requireModelId(settings, defaults, problems);
    const ollama = readOllamaSettings(env, problems, defaults.modelServerUrl);
    problems.throwIfAny();
    return {
      name,
      modelServerUrl: ollama.modelServerUrl,
      modelLog: settings.modelLog,
      logActions: settings.logActions,
      modelHealthcheckPath: settings.modelHealthcheckPath,
      handlers: [
        ...OLLAMA_NATIVE_ROUTES.map((route) =>
          ollamaHandler({
            modelId,
            route,
            benchmark: route === ollama.benchmarkRoute,
            defaultMaxTokens: ollama.defaultMaxTokens,
          }),
        ),
        ...ollama.openaiRoutes.map((route) =>
          openaiHandler({
            modelId,
            route,
            benchmark: route === ollama.benchmarkRoute,
            embedChars: ollama.embedChars,
            defaultMaxTokens: ollama.defaultMaxTokens,
          }),
        ),
      ],
    };
  });
}
