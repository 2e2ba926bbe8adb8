/**
 * ComfyUI behind ai-dock's comfyui-api-wrapper: the port of the reference's `workers/comfyui-json`
 * (model-servers.md §8.1). The worker talks to the wrapper (`/generate/sync`, and the wrapper's SSE
 * `/generate/stream`, which the reference does not route), never to ComfyUI's own port.
 *
 * Readiness is a lifecycle hook, the reference's readiness shim done in-process: the model is
 * loaded when ComfyUI's `/system_stats` and the wrapper's `/health` both answer 2xx, or as soon as
 * the wrapper logs `BACKENDS_READY`, whichever comes first. A fatal line in the log before that
 * (`BACKENDS_READY_TIMEOUT`, `BACKEND_UNRECOVERABLE`, `Application startup failed`) fails start-up
 * at once. After readiness the healthcheck on the wrapper's `/health` takes over: a latched GPU
 * fault (`BACKEND_UNRECOVERABLE`) turns it 503, which marks the worker errored.
 */
import { existsSync, readFileSync } from 'node:fs';
import { Agent, request } from 'undici';
import { z } from 'zod';
import { defineHandler, type ResolvedHandler } from '../handler.ts';
import { watchModelLog, type LogWatcher } from '../readiness/log-watcher.ts';
import { defineLoadTest, type LoadTestDefinition } from '../test-harness/definition.ts';
import type { Answer } from '../test-harness/load-types.ts';
import {
  defineWorkerFactory,
  LogAction,
  type Lifecycle,
  type LogActionConfig,
  type WorkerEnv,
  type WorkerFactory,
} from '../worker.ts';
import { apiPayload } from './envelope.ts';
import {
  EnvProblems,
  positiveInteger,
  readEngineSettings,
  type EngineDefaults,
} from './settings.ts';
import { errorMessage, isRecord, trimTrailingSlashes } from '../internal/values.ts';

/** The wrapper (`uvicorn main:app --port 18288`), "not ComfyUI's own port (18188)". */
export const COMFYUI_WRAPPER_URL = 'http://127.0.0.1:18288';
/** ComfyUI itself (`python main.py --port 18188`): only its `/system_stats` is probed. */
export const COMFYUI_DEFAULT_URL = 'http://127.0.0.1:18188';
export const COMFYUI_DEFAULT_LOG = '/var/log/portal/api-wrapper.log';

/**
 * The reference's strings. `BACKENDS_READY` is a substring of `BACKENDS_READY_TIMEOUT`: the
 * readiness hook checks the fatal patterns first, so a timeout line is never taken for a load.
 */
export const COMFYUI_LOG_ACTIONS = {
  onLoad: ['BACKENDS_READY'],
  onError: ['BACKENDS_READY_TIMEOUT', 'BACKEND_UNRECOVERABLE', 'Application startup failed'],
  onInfo: [],
} as const satisfies LogActionConfig;

/** The Text2Image workflow's size (modifiers/text2image.py): the benchmark's job, workload 100. */
export const BASE_WIDTH = 512;
export const BASE_HEIGHT = 512;
export const BASE_STEPS = 20;
/** What the reference counts for every job. */
export const COMFYUI_BASE_WORKLOAD = 100;
/** A custom benchmark workflow the Vast image may ship (the reference looks for it too). */
const IMAGE_BENCHMARK_FILE = '/opt/comfyui-api-wrapper/workflows/pyworker_benchmark.json';

// A size or a step count, as a number or a numeric string (ComfyUI converts INT inputs itself).
const positiveNumber = z.union(
  [
    z.number().positive(),
    z
      .string()
      .trim()
      .regex(/^\d+(\.\d+)?$/)
      .transform(Number)
      .pipe(z.number().positive()),
  ],
  { message: 'must be a positive number' },
);

/** The fields of a modifier's `modifications` the workload reads; the rest pass through. */
export const Modifications = z.looseObject({
  prompt: z.string().optional(),
  width: positiveNumber.optional(),
  height: positiveNumber.optional(),
  steps: positiveNumber.optional(),
});

/**
 * The wrapper's `input` (README @381a39f, requestmodels/models.py): `modifier` + `modifications`,
 * or `workflow_json`, plus `s3`, `webhook`, `return_outputs_as_base64`. Accepted bare or as
 * `{"input": {...}}`; the wrapper always receives `{"input": {...}}`.
 */
export const ComfyUIRequest = apiPayload({
  request_id: z.string().optional(),
  modifier: z.string().optional(),
  modifications: Modifications.optional(),
  workflow_json: z.record(z.string(), z.unknown()).optional(),
  s3: z.looseObject({}).nullish(),
  webhook: z.looseObject({ url: z.string().optional() }).nullish(),
  return_outputs_as_base64: z.boolean().optional(),
}).superRefine((input, ctx) => {
  // The wrapper's own rule (Input.validate_workflow_mode), answered here with a 422 naming the field.
  const hasWorkflow =
    input.workflow_json !== undefined && Object.keys(input.workflow_json).length > 0;
  const hasModifier = input.modifier !== undefined && input.modifier !== '';
  if (hasWorkflow && hasModifier) {
    ctx.addIssue({
      code: 'custom',
      path: ['modifier'],
      message: 'give either modifier or workflow_json, not both',
    });
  } else if (!hasWorkflow && !hasModifier) {
    ctx.addIssue({
      code: 'custom',
      path: ['workflow_json'],
      message:
        'missing parameter: give workflow_json, or modifier (e.g. "Text2Image") with modifications',
    });
  } else if (
    !hasModifier &&
    input.modifications !== undefined &&
    Object.keys(input.modifications).length > 0
  ) {
    ctx.addIssue({
      code: 'custom',
      path: ['modifier'],
      message: 'modifications need a modifier',
    });
  }
});
export type ComfyUIRequest = z.output<typeof ComfyUIRequest>;

/**
 * A job's cost: 100 for the benchmark's 512² × 20-step image, scaled by pixels × steps when the
 * request's modifications say them (missing ones count as the workflow's defaults), and 100 for an
 * opaque `workflow_json`. The reference counts 100 for every job. Workload and benchmark use this
 * same function, so `max_perf` is in the unit of `cur_load`.
 */
export function comfyuiWorkload(input: {
  readonly modifier?: string | undefined;
  readonly modifications?:
    | {
        readonly width?: number | undefined;
        readonly height?: number | undefined;
        readonly steps?: number | undefined;
      }
    | undefined;
}): number {
  const m = input.modifications;
  if (input.modifier === undefined || input.modifier === '' || m === undefined) {
    return COMFYUI_BASE_WORKLOAD;
  }
  const width = m.width ?? BASE_WIDTH;
  const height = m.height ?? BASE_HEIGHT;
  const steps = m.steps ?? BASE_STEPS;
  return (COMFYUI_BASE_WORKLOAD * width * height * steps) / (BASE_WIDTH * BASE_HEIGHT * BASE_STEPS);
}

// prettier-ignore
const BENCHMARK_PROMPTS = [
  'a lighthouse on a rocky coast at dusk, oil painting',
  'a red fox in fresh snow, morning light, photograph',
  'a futuristic city skyline at night, neon reflections on wet streets',
  'a bowl of ramen on a wooden table, studio lighting',
  'an astronaut riding a horse across a desert, cinematic',
  'a cozy reading nook with plants and warm lamps, watercolor',
  'a mountain lake surrounded by pine trees, autumn colors',
  'a steampunk airship above the clouds, detailed illustration',
  'a macro photo of a dewdrop on a green leaf',
  'a medieval castle on a hill under a stormy sky',
  'a cat wearing a tiny wizard hat, digital art',
];

/** What the ComfyUI preset reads from the environment, validated together. */
export interface ComfyUISettings {
  /** `COMFYUI_URL`: ComfyUI's own base URL, for the readiness probe. */
  readonly comfyuiUrl: string;
  /** `COMFYUI_READY_POLL_SECONDS`. @default 2 (the wrapper's own poll) */
  readonly readyPollSeconds: number;
  /** `COMFYUI_READY_TIMEOUT_SECONDS`. @default 600 (the reference's shim and the wrapper's own) */
  readonly readyTimeoutSeconds: number;
  /** `BENCHMARK_TEST_WIDTH`, `BENCHMARK_TEST_HEIGHT`, `BENCHMARK_TEST_STEPS`. */
  readonly benchmarkSize: {
    readonly width: number;
    readonly height: number;
    readonly steps: number;
  };
  /** `BENCHMARK_JSON_PATH` (or the image's benchmark workflow): a custom benchmark job. */
  readonly benchmarkJob: Record<string, unknown> | undefined;
  /** `BENCHMARK_RUNS`. @default 3 */
  readonly benchmarkRuns: number;
}

const positiveSeconds = z.coerce
  .number({ message: 'must be a positive number of seconds' })
  .positive({ message: 'must be a positive number of seconds' });
const httpBase = z
  .string()
  .trim()
  .regex(/^https?:\/\/[^/]/i, { message: 'must be an absolute http(s) URL' })
  .transform((value) => trimTrailingSlashes(value));

/** A benchmark file: a whole `{"input": {...}}` body, or a bare API-format workflow. */
function readBenchmarkFile(path: string): Record<string, unknown> {
  const parsed: unknown = JSON.parse(readFileSync(path, 'utf8'));
  if (!isRecord(parsed)) throw new Error('must hold a JSON object');
  return isRecord(parsed['input']) ? parsed['input'] : { workflow_json: parsed };
}

export function readComfyUISettings(env: WorkerEnv, problems: EnvProblems): ComfyUISettings {
  let benchmarkJob: Record<string, unknown> | undefined;
  const explicit = env['BENCHMARK_JSON_PATH'];
  if (explicit !== undefined && explicit !== '') {
    try {
      benchmarkJob = readBenchmarkFile(explicit);
    } catch (error) {
      problems.add(
        'BENCHMARK_JSON_PATH',
        `cannot read a benchmark job from ${explicit}: ${errorMessage(error)}`,
      );
    }
  } else if (existsSync(IMAGE_BENCHMARK_FILE)) {
    // As the reference: the image's file is used when it loads, skipped when it does not.
    try {
      benchmarkJob = readBenchmarkFile(IMAGE_BENCHMARK_FILE);
    } catch {
      benchmarkJob = undefined;
    }
  }
  return {
    comfyuiUrl: problems.read(env, 'COMFYUI_URL', httpBase, COMFYUI_DEFAULT_URL),
    readyPollSeconds: problems.read(env, 'COMFYUI_READY_POLL_SECONDS', positiveSeconds, 2),
    readyTimeoutSeconds: problems.read(env, 'COMFYUI_READY_TIMEOUT_SECONDS', positiveSeconds, 600),
    benchmarkSize: {
      width: problems.read(env, 'BENCHMARK_TEST_WIDTH', positiveInteger, BASE_WIDTH),
      height: problems.read(env, 'BENCHMARK_TEST_HEIGHT', positiveInteger, BASE_HEIGHT),
      steps: problems.read(env, 'BENCHMARK_TEST_STEPS', positiveInteger, BASE_STEPS),
    },
    benchmarkJob,
    benchmarkRuns: problems.read(env, 'BENCHMARK_RUNS', positiveInteger, 3),
  };
}

const randomId = (): string => Math.random().toString(36).slice(2, 10);
const pick = <T>(items: readonly T[]): T => items[Math.floor(Math.random() * items.length)] as T;

/** The reference's fallback benchmark job: Text2Image, a random prompt and seed. */
export function text2imageSample(
  size: ComfyUISettings['benchmarkSize'] = {
    width: BASE_WIDTH,
    height: BASE_HEIGHT,
    steps: BASE_STEPS,
  },
): { input: Record<string, unknown> } {
  return {
    input: {
      request_id: `test-${randomId()}`,
      modifier: 'Text2Image',
      modifications: {
        prompt: pick(BENCHMARK_PROMPTS),
        width: size.width,
        height: size.height,
        steps: size.steps,
        seed: Math.floor(Math.random() * Number.MAX_SAFE_INTEGER),
      },
    },
  };
}

function benchmarkGenerator(settings: ComfyUISettings): () => { input: Record<string, unknown> } {
  const job = settings.benchmarkJob;
  if (job === undefined) return () => text2imageSample(settings.benchmarkSize);
  // A fresh request_id each time, or the wrapper would treat the runs as one job.
  return () => ({ input: { ...job, request_id: `test-${randomId()}` } });
}

export const COMFYUI_ROUTES = ['/generate/sync', '/generate/stream'] as const;
export type ComfyUIRoute = (typeof COMFYUI_ROUTES)[number];

/**
 * One wrapper route. Both share the worker's FIFO (ComfyUI runs one job at a time) and the
 * reference's 10 s of queue; the wrapper needs its `{"input": ...}` envelope back.
 */
export function comfyuiHandler(
  route: ComfyUIRoute,
  benchmark: { readonly generator: () => unknown; readonly runs: number } | undefined,
): ResolvedHandler {
  return defineHandler({
    route,
    payload: ComfyUIRequest,
    workload: comfyuiWorkload,
    allowParallel: false,
    maxQueueTime: 10,
    transformRequest: (input) => ({ input }),
    ...(benchmark !== undefined && {
      benchmark: { generator: benchmark.generator, runs: benchmark.runs, concurrency: 1 },
    }),
  });
}

// ---------------------------------------------------------------------------------------------
// Readiness: the reference's shim (probe both servers), plus the wrapper's own log lines

export interface ComfyUIReadinessOptions {
  /** ComfyUI's base URL; `/system_stats` is probed. */
  readonly comfyuiUrl: string;
  /** The wrapper's health URL, absolute. */
  readonly healthUrl: string;
  /** The wrapper's log, tailed for its load and fatal lines; undefined probes only. */
  readonly modelLog: string | undefined;
  readonly logActions: LogActionConfig;
  readonly pollMs: number;
  readonly timeoutMs: number;
  /** Per probe. @default 5000 (the reference's shim) */
  readonly probeTimeoutMs?: number;
}

interface Probe {
  readonly ok: boolean;
  readonly detail: string;
}

async function probe(url: string, dispatcher: Agent, timeoutMs: number): Promise<Probe> {
  try {
    const response = await request(url, {
      method: 'GET',
      dispatcher,
      signal: AbortSignal.timeout(timeoutMs),
    });
    await response.body.dump();
    const ok = response.statusCode >= 200 && response.statusCode < 300;
    return { ok, detail: `status ${response.statusCode}` };
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    return { ok: false, detail: typeof code === 'string' ? code : errorMessage(error) };
  }
}

/**
 * Resolves when ComfyUI's `/system_stats` and the wrapper's health route both answer 2xx, or when
 * the log shows a load line; rejects on a fatal log line, or when the timeout passes (naming what
 * each probe last saw). Fatal patterns are checked before load patterns on every line.
 */
export function comfyuiLifecycle(options: ComfyUIReadinessOptions): Lifecycle {
  let stopped = false;
  let startup: ComfyUIStartup | undefined;
  return {
    start: () => {
      startup = new ComfyUIStartup(options, () => stopped);
      return startup.done;
    },
    stop: async () => {
      stopped = true;
      await startup?.cleanup();
    },
  };
}

/** One start-up: the log watcher and the probe loop, whichever settles it first. */
class ComfyUIStartup {
  /** Resolves when the model is loaded; rejects on a fatal log line or the timeout. */
  readonly done: Promise<void>;
  readonly #options: ComfyUIReadinessOptions;
  /** Once the lifecycle is stopped, probing stops (and stays stopped). */
  readonly #stopped: () => boolean;
  readonly #statsUrl: string;
  readonly #deadline: number;
  #settled = false;
  #resolve: () => void = () => undefined;
  #reject: (error: Error) => void = () => undefined;
  #timer: NodeJS.Timeout | undefined;
  #watcher: LogWatcher | undefined;
  #dispatcher: Agent | undefined;

  constructor(options: ComfyUIReadinessOptions, stopped: () => boolean) {
    this.#options = options;
    this.#stopped = stopped;
    this.#statsUrl = `${options.comfyuiUrl}/system_stats`;
    this.done = new Promise<void>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    const agent = new Agent({ keepAliveTimeout: 1_000, connections: 2 });
    this.#dispatcher = agent;
    if (options.modelLog !== undefined) this.#watcher = this.#watchLog(options.modelLog);
    this.#deadline = performance.now() + options.timeoutMs;
    void this.#poll(agent);
  }

  /** Stops the probes and the log watcher; resolves once they are closed. */
  async cleanup(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const [watcher, dispatcher] = [this.#watcher, this.#dispatcher];
    this.#watcher = undefined;
    this.#dispatcher = undefined;
    await Promise.all([watcher?.stop(), dispatcher?.close()]);
  }

  /** Fatal patterns first: `BACKENDS_READY` is a substring of `BACKENDS_READY_TIMEOUT`. */
  #watchLog(path: string): LogWatcher {
    const { logActions } = this.#options;
    return watchModelLog({
      path,
      actions: [
        ...(logActions.onError ?? []).map((pattern) => [LogAction.ModelError, pattern] as const),
        ...(logActions.onLoad ?? []).map((pattern) => [LogAction.ModelLoaded, pattern] as const),
      ],
      onMatch: (match) => {
        if (match.action === LogAction.ModelError) {
          this.#finish(new Error(`${match.pattern}: ${match.line}`.slice(0, 1000)));
        } else if (match.action === LogAction.ModelLoaded) {
          this.#finish();
        }
      },
    });
  }

  /** Probes both servers until both pass, the deadline passes, or the start-up is settled. */
  async #poll(agent: Agent): Promise<void> {
    const { healthUrl, pollMs, timeoutMs } = this.#options;
    const probeMs = this.#options.probeTimeoutMs ?? 5_000;
    this.#timer = undefined;
    const [comfyui, wrapper] = await Promise.all([
      probe(this.#statsUrl, agent, probeMs),
      probe(healthUrl, agent, probeMs),
    ]);
    if (this.#settled || this.#stopped()) return;
    if (comfyui.ok && wrapper.ok) {
      this.#finish();
    } else if (performance.now() >= this.#deadline) {
      const seconds = Math.round(timeoutMs / 100) / 10;
      this.#finish(
        new Error(
          `ComfyUI not ready after ${seconds}s: ComfyUI ${this.#statsUrl}: ${comfyui.detail}; wrapper ${healthUrl}: ${wrapper.detail}`,
        ),
      );
    } else {
      this.#timer = setTimeout(() => void this.#poll(agent), pollMs);
    }
  }

  #finish(error?: Error): void {
    if (this.#settled) return;
    this.#settled = true;
    void this.cleanup();
    if (error === undefined) this.#resolve();
    else this.#reject(error);
  }
}

// ---------------------------------------------------------------------------------------------
// The worker

export interface ComfyUIEngine extends Partial<
  Pick<EngineDefaults, 'modelServerUrl' | 'healthPath' | 'modelLog' | 'logActions'>
> {
  /** @default 'comfyui' */
  readonly name?: string;
}

/**
 * A worker for ComfyUI behind the API wrapper: `/generate/sync` (carrying the benchmark) and
 * `/generate/stream`, FIFO, readiness through `comfyuiLifecycle`.
 *
 * @example
 * export default comfyuiWorker();
 */
export function comfyuiWorker(engine: ComfyUIEngine = {}): WorkerFactory {
  const defaults: EngineDefaults = {
    name: engine.name ?? 'comfyui',
    modelServerUrl: engine.modelServerUrl ?? COMFYUI_WRAPPER_URL,
    modelLog: engine.modelLog ?? COMFYUI_DEFAULT_LOG,
    logActions: engine.logActions ?? COMFYUI_LOG_ACTIONS,
    ...(engine.healthPath !== undefined && { healthPath: engine.healthPath }),
  };
  return defineWorkerFactory(defaults.name, (env) => {
    const problems = new EnvProblems();
    const settings = readEngineSettings(env, defaults, problems);
    const comfy = readComfyUISettings(env, problems);
    problems.throwIfAny();
    // loadConfig applies MODEL_SERVER_URL and MODEL_LOG to the proxy; the hook needs them too.
    const wrapperUrl = trimTrailingSlashes(env['MODEL_SERVER_URL'] || settings.modelServerUrl);
    const health = settings.modelHealthcheckPath;
    const healthUrl = /^https?:\/\//i.test(health) ? health : `${wrapperUrl}${health}`;
    return {
      name: defaults.name,
      modelServerUrl: settings.modelServerUrl,
      modelLog: settings.modelLog,
      modelHealthcheckPath: health,
      handlers: [
        comfyuiHandler('/generate/sync', {
          generator: benchmarkGenerator(comfy),
          runs: comfy.benchmarkRuns,
        }),
        comfyuiHandler('/generate/stream', undefined),
      ],
      // The log actions feed the hook below (a lifecycle replaces the framework's log watcher).
      lifecycle: comfyuiLifecycle({
        comfyuiUrl: comfy.comfyuiUrl,
        healthUrl,
        modelLog: env['MODEL_LOG'] || settings.modelLog,
        logActions: settings.logActions,
        pollMs: comfy.readyPollSeconds * 1000,
        timeoutMs: comfy.readyTimeoutSeconds * 1000,
      }),
    };
  });
}

// ---------------------------------------------------------------------------------------------
// test_load

type LoadPayload = { input: Record<string, unknown> };

const OUTPUT_FIELDS = ['filename', 'local_path', 'type', 'subfolder', 'node_id', 'output_type'];

/** A completed Result: `status: "completed"` and a non-empty `output` of described files. */
function checkResult(result: unknown): string | undefined {
  if (!isRecord(result)) return 'the Result is not a JSON object';
  if (result['status'] !== 'completed') {
    return `the Result's status is ${JSON.stringify(result['status'])}, not "completed" (${String(result['message'])})`;
  }
  const output = result['output'];
  if (!Array.isArray(output) || output.length === 0) return 'the Result has no output';
  for (const entry of output) {
    if (!isRecord(entry)) return 'an output entry is not an object';
    for (const field of OUTPUT_FIELDS) {
      if (typeof entry[field] !== 'string') return `an output entry has no ${field}`;
    }
  }
  return undefined;
}

/** Progress events carry `request_id` and `status`; the last one is `final_result` with the Result. */
function verifyStream(answer: Answer<LoadPayload>): string | undefined {
  const events = answer.events ?? [];
  if (events.length === 0) return 'the stream carried no event';
  for (const event of events) {
    if (!isRecord(event) || typeof event['request_id'] !== 'string') {
      return 'an event has no request_id';
    }
    if (typeof event['status'] !== 'string') return 'an event has no status';
  }
  const last = events.at(-1) as Record<string, unknown>;
  if (last['status'] !== 'final_result') return 'the stream did not end with a final_result event';
  return checkResult(last['result']);
}

/** Images produced: a Result's output entries (the final event's, for a stream). */
function countOutputs(value: unknown, kind: 'event' | 'body'): number {
  if (!isRecord(value)) return 0;
  const result =
    kind === 'body' ? value : value['status'] === 'final_result' ? value['result'] : undefined;
  return isRecord(result) && Array.isArray(result['output']) ? result['output'].length : 0;
}

/** `test_load` for a ComfyUI worker: Text2Image jobs of the benchmark's size on both routes. */
export function comfyuiLoadTest(name = 'comfyui'): LoadTestDefinition {
  const route = {
    payload: (): LoadPayload => text2imageSample(),
    cost: (payload: LoadPayload) => comfyuiWorkload(ComfyUIRequest.parse(payload)),
    tokens: countOutputs,
  };
  return defineLoadTest<LoadPayload>({
    name,
    routes: {
      '/generate/sync': { ...route, verify: (answer) => checkResult(answer.json) },
      '/generate/stream': { ...route, verify: verifyStream },
    },
  });
}
