import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { errorMessage } from '../../lib/internal/values.ts';

/**
 * `tsworker init <name> [--preset openai|tgi|comfyui|passthrough]`: writes a worker folder of
 * PyWorker's file names (server.ts, data_types.ts, test_load.ts, README.md) in the current directory.
 * The files import the framework by its package name, `tsworker`, which `tsworker start` and
 * `tsworker test_load` resolve to the framework they run (src/commands/import-worker-file.ts).
 */

export const PRESETS = ['passthrough', 'openai', 'tgi', 'comfyui'] as const;
export type Preset = (typeof PRESETS)[number];

export const INIT_USAGE = `Usage: tsworker init <name> [--preset ${PRESETS.join('|')}]

Writes a worker folder ./<name>/ (server.ts, data_types.ts, test_load.ts, README.md) built on a preset:
  passthrough  any HTTP model server taking JSON: each route forwards the body as it is (default;
               set up for tsworker's example model server, /generate and /generate_stream)
  openai       an OpenAI-compatible server: vLLM, SGLang, llama.cpp's llama-server
  tgi          Hugging Face text-generation-inference
  comfyui      ComfyUI behind the ComfyUI API wrapper

Then:  tsworker start ./<name>       (or BACKEND=/path/to/<name> in start_server.sh)
       tsworker test_load --worker ./<name> -n 20 -rps 5 -k <api key> -e <endpoint> -l --verify
`;

export interface InitIo {
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
  /** Where the folder is written. @default process.cwd() */
  readonly cwd?: string;
}

/** A folder name that is also a fine worker name: no path, no spaces. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/**
 * Runs `tsworker init`. Returns the exit code: 0 written, 1 the folder exists or cannot be
 * written, 2 bad arguments. Never overwrites anything.
 */
export function initCommand(argv: readonly string[], io: InitIo = processIo()): number {
  const fail = (code: number, message: string): number => {
    io.stderr.write(`tsworker init: ${message}\n`);
    return code;
  };
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (error) {
    return fail(2, `${errorMessage(error)}\n\n${INIT_USAGE}`);
  }
  if (parsed.values.help === true) {
    io.stdout.write(INIT_USAGE);
    return 0;
  }
  const [name, ...extra] = parsed.positionals;
  if (name === undefined) return fail(2, `a worker name is required\n\n${INIT_USAGE}`);
  if (extra.length > 0) return fail(2, `unexpected arguments: ${extra.join(' ')}`);
  if (!NAME.test(name)) {
    return fail(
      2,
      `"${name}" is not a folder name: use letters, digits, "_", "-" and ".", starting with a letter or digit`,
    );
  }
  const preset = parsed.values.preset ?? 'passthrough';
  if (!(PRESETS as readonly string[]).includes(preset)) {
    return fail(2, `unknown preset "${preset}": choose one of ${PRESETS.join(', ')}`);
  }
  const folder = resolve(io.cwd ?? process.cwd(), name);
  if (existsSync(folder)) {
    return fail(1, `${folder} already exists; choose another name or remove it first`);
  }
  const files = templates(name, preset as Preset);
  try {
    // Not recursive: the parent must exist, and a folder created meanwhile is an error, not a merge.
    mkdirSync(folder);
    for (const [file, text] of Object.entries(files)) {
      writeFileSync(join(folder, file), text, { flag: 'wx' });
    }
  } catch (error) {
    return fail(1, `cannot write ${folder}: ${errorMessage(error)}`);
  }
  io.stdout.write(
    `Wrote ${folder}/ (${preset} preset): ${Object.keys(files).join(', ')}\n\n` +
      `Start it:      tsworker start ./${name}\n` +
      `Load-test it:  tsworker test_load --worker ./${name} -n 20 -rps 5 -k <api key> -e <endpoint> -l --verify\n` +
      `See ${name}/README.md for its settings.\n`,
  );
  return 0;
}

function parse(argv: readonly string[]) {
  return parseArgs({
    args: [...argv],
    allowPositionals: true,
    strict: true,
    options: {
      preset: { type: 'string', short: 'p' },
      help: { type: 'boolean', short: 'h' },
    },
  });
}

function processIo(): InitIo {
  return { stdout: process.stdout, stderr: process.stderr };
}

type Files = Record<'server.ts' | 'data_types.ts' | 'test_load.ts' | 'README.md', string>;

function templates(name: string, preset: Preset): Files {
  switch (preset) {
    case 'passthrough':
      return passthroughFiles(name);
    case 'openai':
      return openaiFiles(name);
    case 'tgi':
      return tgiFiles(name);
    case 'comfyui':
      return comfyuiFiles(name);
  }
}

/** The test_load.ts tail every template shares: runnable directly as well as through the CLI. */
const ENTRY_POINT = `export default loadTest;

// Run directly (\`npx tsx test_load.ts ...\` inside a tsworker checkout) it is the test_load command.
if (isEntryPoint(import.meta.url)) {
  process.exitCode = await testLoadMain(process.argv.slice(2), loadTest);
}
`;

/** README sections every template shares. */
function readmeCommon(name: string): string {
  return `## Running it

\`\`\`sh
tsworker start ./${name}                 # configured by the environment, as every tsworker worker
tsworker test_load --worker ./${name} -n 20 -rps 5 -k <api key> -e <endpoint> -l --verify
\`\`\`

On a Vast instance, \`start_server.sh\` runs it with \`BACKEND=/path/to/${name}\` (a path, not a name under
tsworker's \`workers/\`). Every variable of tsworker's \`docs/environment-variables.md\` applies
(\`WORKER_PORT\`, \`REPORT_ADDR\`, \`MODEL_LOG\`, \`MODEL_SERVER_URL\`, \`UNSECURED\`, ...).

## How it imports tsworker

The files import the framework by its package name: \`import { ... } from 'tsworker'\` (and the presets' schemas from \`'tsworker/presets'\`). \`tsworker start\`
and \`tsworker test_load\` resolve that name to the framework they run themselves (its TypeScript sources,
or \`dist/\` after \`npm run build\`), wherever this folder is, so nothing needs installing here. Import this
folder's own files by relative path with their \`.ts\` extension (\`./data_types.ts\`). For type checking in an
editor, install tsworker in the surrounding project (\`npm install --save-dev /path/to/tsworker\`), or keep
the folder inside a tsworker checkout, where the name resolves to the checkout itself.
`;
}

// ---------------------------------------------------------------------------------------------
// passthrough

function passthroughFiles(name: string): Files {
  return {
    'data_types.ts': `import { countTokens, randomPrompt, z } from 'tsworker';

/**
 * The model server's API: the fields this worker reads, validated (a bad field gets 422 naming it).
 * \`z.looseObject\` keeps every other field, so the model receives the client's payload as it is.
 *
 * Set up for tsworker's example model server (\`npm start\`): \`{prompt, max_response_tokens}\` on
 * /generate (JSON) and /generate_stream (SSE). Change it for your model server.
 */
export const InputData = z.looseObject({
  prompt: z.string(),
  max_response_tokens: z.number().int().positive().nullable(),
});
export type InputData = z.infer<typeof InputData>;

/**
 * The workload of one request: tokens in the prompt plus tokens asked for. The benchmark measures
 * it per second (max_perf), so use one function for both.
 */
export function countWorkload(payload: InputData): number {
  return countTokens(payload.prompt) + (payload.max_response_tokens ?? 0);
}

/** A benchmark and load-test sample, as PyWorker's \`for_test()\`. */
export function forTest(): InputData {
  return { prompt: randomPrompt(100), max_response_tokens: 50 };
}
`,
    'server.ts': `/**
 * ${name}: a model server behind tsworker, written by \`tsworker init ${name} --preset passthrough\`.
 * Each route forwards the client's payload, as it is, to the same path on the model server, and
 * streams the answer back.
 */
import { passthroughWorker } from 'tsworker';
import { countWorkload, forTest, InputData } from './data_types.ts';

export default passthroughWorker({
  name: '${name}',
  // Where the model server listens; MODEL_SERVER_URL overrides it.
  modelServerUrl: 'http://127.0.0.1:5001',
  routes: ['/generate', '/generate_stream'],
  payload: InputData,
  workload: countWorkload,
  // The model server runs requests concurrently; false queues them in the worker, one at a time.
  allowParallel: true,
  benchmark: { route: '/generate', generator: forTest, runs: 3, concurrency: 10 },
  // Lines of MODEL_LOG: the model is loaded, or broke. MODEL_LOAD_LOG_MSG and MODEL_ERROR_LOG_MSGS
  // override them (one pattern per line).
  logActions: {
    onLoad: ['server has started'],
    onError: ['Exception: corrupted model file'],
  },
  // Polled once loaded; MODEL_HEALTH_ENDPOINT overrides it. Leave it out for no healthcheck.
  healthPath: '/healthcheck',
});
`,
    'test_load.ts': `/**
 * ${name}'s load test. \`--verify\` checks the example model server's answers: /generate's
 * \`{generated_text, tokens}\`, and /generate_stream's events ending in \`{done: true}\`.
 *
 *   tsworker test_load --worker ./${name} -n 20 -rps 5 -k <api key> -e <endpoint> -l --verify
 *   tsworker test_load --worker ./${name} -n 20 -rps 5 -k <api key> -e <endpoint> -l --route /generate_stream
 */
import { defineLoadTest, isEntryPoint, testLoadMain, type Answer } from 'tsworker';
import { countWorkload, forTest, type InputData } from './data_types.ts';

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

function verifyGenerate(answer: Answer<InputData>): string | undefined {
  const body = answer.json;
  if (!isRecord(body)) return 'the answer is not a JSON object';
  if (typeof body['generated_text'] !== 'string') return 'generated_text is missing';
  const asked = answer.payload.max_response_tokens;
  if (asked !== null && body['tokens'] !== asked) {
    return \`asked for \${asked} tokens, got \${String(body['tokens'])}\`;
  }
  return undefined;
}

function verifyStream(answer: Answer<InputData>): string | undefined {
  const last = answer.events?.at(-1);
  if (!isRecord(last) || last['done'] !== true) return 'the stream did not end with a done event';
  return undefined;
}

/** A stream event \`{token}\` is one token; a JSON body says how many in \`tokens\`. */
function countTokens(value: unknown, kind: 'event' | 'body'): number {
  if (!isRecord(value)) return 0;
  if (kind === 'event') return typeof value['token'] === 'string' ? 1 : 0;
  return typeof value['tokens'] === 'number' ? value['tokens'] : 0;
}

const loadTest = defineLoadTest<InputData>({
  name: '${name}',
  routes: {
    '/generate': {
      payload: forTest,
      cost: countWorkload,
      verify: verifyGenerate,
      tokens: countTokens,
    },
    '/generate_stream': {
      payload: forTest,
      cost: countWorkload,
      verify: verifyStream,
      tokens: countTokens,
    },
  },
});

${ENTRY_POINT}`,
    'README.md': `# ${name}

A tsworker worker for a model server that takes JSON, built on the \`passthrough\` preset: each route
forwards the client's payload, as it is, to the same path on the model server, and streams the answer
back (JSON, SSE, NDJSON: bytes unchanged). Written by \`tsworker init ${name}\`.

It is set up for tsworker's example model server (\`npm start\` in a tsworker checkout runs one on
\`http://127.0.0.1:5001\`). For your model server, change:

| file | what |
|---|---|
| \`server.ts\` | \`modelServerUrl\`, \`routes\`, \`allowParallel\`, the benchmark route, \`logActions\` (your server's "loaded" and fatal log lines), \`healthPath\` |
| \`data_types.ts\` | \`InputData\` (the fields you validate), \`countWorkload\` (the cost of a request; 100 per request if you drop it), \`forTest\` (a benchmark sample) |
| \`test_load.ts\` | what \`--verify\` checks in your server's answers |

Readiness: the worker reads \`MODEL_LOG\` from its start and waits for an \`onLoad\` line, runs the
benchmark (\`max_perf\` in \`countWorkload\`'s unit per second), then polls \`healthPath\`.

## Environment

| variable | meaning |
|---|---|
| \`MODEL_SERVER_URL\` | the model server (default \`http://127.0.0.1:5001\`) |
| \`MODEL_LOG\` | the model server's log, required for readiness |
| \`MODEL_LOAD_LOG_MSG\`, \`MODEL_ERROR_LOG_MSGS\`, \`MODEL_INFO_LOG_MSGS\` | replace \`logActions\`' lists, one pattern per line |
| \`MODEL_HEALTH_ENDPOINT\` | replaces \`healthPath\` (a path, or an absolute URL) |

${readmeCommon(name)}`,
  };
}

// ---------------------------------------------------------------------------------------------
// openai

function openaiFiles(name: string): Files {
  return {
    'data_types.ts': `/**
 * The API this worker validates, from tsworker's OpenAI preset: the request fields it reads
 * (everything else reaches the model untouched; \`{"input": {...}}\` is unwrapped), and the workload:
 * \`max_tokens\`, else \`max_completion_tokens\`, else DEFAULT_MAX_TOKENS (500, or the variable of
 * that name). To change a route, build your own handlers in server.ts with \`openaiHandler\` or
 * \`defineHandler\` and these schemas.
 */
export {
  ChatRequest,
  CompletionRequest,
  EmbeddingRequest,
  generationWorkload,
  DEFAULT_MAX_TOKENS,
} from 'tsworker/presets';
`,
    'server.ts': `/**
 * ${name}: an OpenAI-compatible model server behind tsworker, written by
 * \`tsworker init ${name} --preset openai\`. Routes, workload and benchmark come from the OpenAI
 * preset; this file states the engine's log. Set up for vLLM; for SGLang use its log lines
 * (onLoad 'The server is fired up and ready to roll!'), for llama.cpp 'model loaded'.
 */
import { openaiWorker } from 'tsworker';

export default openaiWorker({
  name: '${name}',
  // The engine's log when MODEL_LOG is unset.
  modelLog: '/var/log/portal/vllm.log',
  // The model id the benchmark sends: MODEL_NAME, else these variables.
  modelEnv: ['VLLM_MODEL'],
  logActions: {
    onLoad: ['Application startup complete.'],
    onError: ['INFO exited: vllm', 'RuntimeError: Engine', 'Traceback (most recent call last):'],
    onInfo: ['"message":"Download'],
  },
});
`,
    'test_load.ts': `/**
 * ${name}'s load test: completions and chat; \`--verify\` checks OpenAI's answer shape (choices,
 * usage, a stream ending in \`data: [DONE]\`).
 *
 *   tsworker test_load --worker ./${name} -n 20 -rps 5 -k <api key> -e <endpoint> -l --verify
 *   tsworker test_load --worker ./${name} -n 20 -rps 5 -k <api key> -e <endpoint> -l --route /v1/chat/completions
 */
import { isEntryPoint, openaiLoadTest, testLoadMain } from 'tsworker';

const loadTest = openaiLoadTest('${name}');

${ENTRY_POINT}`,
    'README.md': `# ${name}

A tsworker worker for an OpenAI-compatible model server (vLLM, SGLang, llama.cpp's \`llama-server\`),
built on the \`openai\` preset. Written by \`tsworker init ${name} --preset openai\`; see tsworker's
\`workers/vllm/README.md\` for the preset's full behaviour.

- Routes: \`/v1/completions\` and \`/v1/chat/completions\` (\`OPENAI_ROUTES\` may add \`/v1/embeddings\`),
  forwarded to the same path, streams passed through byte for byte.
- Workload: \`max_tokens\`, else \`max_completion_tokens\`, else \`DEFAULT_MAX_TOKENS\` (500).
- Benchmark: 250 random words, \`max_tokens\` 500, concurrency 10, 3 runs, on \`BENCHMARK_ROUTE\`.
- Readiness: the engine's "loaded" log line in \`MODEL_LOG\` (\`server.ts\`' \`logActions\`), then \`/health\`.

## Environment

| variable | meaning |
|---|---|
| \`MODEL_NAME\` (or \`VLLM_MODEL\`) | the model id the benchmark sends; required |
| \`MODEL_SERVER_URL\` | the engine (default \`http://127.0.0.1:18000\`) |
| \`MODEL_LOG\` | the engine's log (default \`/var/log/portal/vllm.log\`) |
| \`MODEL_LOAD_LOG_MSG\`, \`MODEL_ERROR_LOG_MSGS\`, \`MODEL_INFO_LOG_MSGS\` | replace the log lines, one per line |
| \`MODEL_HEALTH_ENDPOINT\` | the health route (default \`/health\`) |
| \`OPENAI_ROUTES\`, \`BENCHMARK_ROUTE\`, \`DEFAULT_MAX_TOKENS\`, \`BENCHMARK_EMBED_CHARS\` | routes served, the benchmark's route, the default workload, the embeddings benchmark size |

${readmeCommon(name)}`,
  };
}

// ---------------------------------------------------------------------------------------------
// tgi

function tgiFiles(name: string): Files {
  return {
    'data_types.ts': `/**
 * The API this worker validates, from tsworker's TGI preset: \`{inputs, parameters}\` with
 * \`parameters.max_new_tokens\` required (422 naming it otherwise), everything else passed to TGI
 * untouched, and the workload: \`max_new_tokens\`. Build your own handlers in server.ts with
 * \`tgiHandler\` or \`defineHandler\` and these to change a route.
 */
export { TgiRequest, tgiWorkload } from 'tsworker/presets';
`,
    'server.ts': `/**
 * ${name}: Hugging Face text-generation-inference behind tsworker, written by
 * \`tsworker init ${name} --preset tgi\`. Routes, workload, benchmark and TGI's log lines come from
 * the TGI preset; pass \`modelServerUrl\`, \`modelLog\` or \`logActions\` to change them.
 */
import { tgiWorker } from 'tsworker';

export default tgiWorker({ name: '${name}' });
`,
    'test_load.ts': `/**
 * ${name}'s load test; \`--verify\` checks TGI's answer shapes (\`generated_text\`, \`token\` events).
 *
 *   tsworker test_load --worker ./${name} -n 20 -rps 5 -k <api key> -e <endpoint> -l --verify
 *   tsworker test_load --worker ./${name} -n 20 -rps 5 -k <api key> -e <endpoint> -l --route /generate_stream
 */
import { isEntryPoint, testLoadMain, tgiLoadTest } from 'tsworker';

const loadTest = tgiLoadTest('${name}');

${ENTRY_POINT}`,
    'README.md': `# ${name}

A tsworker worker for Hugging Face text-generation-inference (TGI), built on the \`tgi\` preset. Written
by \`tsworker init ${name} --preset tgi\`; see tsworker's \`workers/tgi/README.md\` for the preset's full
behaviour.

- Routes: \`/generate\` and \`/generate_stream\` (\`OPENAI_ROUTES\` may add TGI's OpenAI routes), streams
  passed through byte for byte.
- Workload: \`parameters.max_new_tokens\` (a request without it gets 422 naming the field).
- Benchmark: \`max_new_tokens\` 128, on \`BENCHMARK_ROUTE\` (default \`/generate\`).
- Readiness: TGI's JSON \`Connected\` line in \`MODEL_LOG\`, then \`/health\`.

## Environment

| variable | meaning |
|---|---|
| \`MODEL_SERVER_URL\` | TGI (default \`http://127.0.0.1:5001\`) |
| \`MODEL_LOG\` | TGI's log (default \`/workspace/infer.log\`) |
| \`MODEL_LOAD_LOG_MSG\`, \`MODEL_ERROR_LOG_MSGS\`, \`MODEL_INFO_LOG_MSGS\` | replace the log lines, one per line |
| \`MODEL_HEALTH_ENDPOINT\` | the health route (default \`/health\`) |
| \`BENCHMARK_ROUTE\`, \`OPENAI_ROUTES\` | the benchmark's route, TGI's OpenAI routes to serve |

${readmeCommon(name)}`,
  };
}

// ---------------------------------------------------------------------------------------------
// comfyui

function comfyuiFiles(name: string): Files {
  return {
    'data_types.ts': `/**
 * The API this worker validates, from tsworker's ComfyUI preset: the API wrapper's request
 * (\`{"input": {modifier, modifications} | {workflow_json}}\`), the workload (100 scaled by
 * width × height × steps against 512² × 20, or 100 for an opaque workflow) and the benchmark's
 * Text2Image sample. Build your own handlers in server.ts with \`comfyuiHandler\` and these.
 */
export { ComfyUIRequest, comfyuiWorkload, text2imageSample } from 'tsworker/presets';
`,
    'server.ts': `/**
 * ${name}: ComfyUI behind its API wrapper, behind tsworker, written by
 * \`tsworker init ${name} --preset comfyui\`. Routes, workload, benchmark and readiness (ComfyUI's
 * /system_stats and the wrapper's /health) come from the ComfyUI preset.
 */
import { comfyuiWorker } from 'tsworker';

export default comfyuiWorker({ name: '${name}' });
`,
    'test_load.ts': `/**
 * ${name}'s load test: Text2Image jobs of the benchmark's size. \`--verify\` checks the wrapper's
 * Result (\`status: "completed"\` and its \`output\` list), and that a stream ends in that Result.
 *
 *   tsworker test_load --worker ./${name} -n 10 -rps 1 -k <api key> -e <endpoint> -l --verify
 *   tsworker test_load --worker ./${name} -n 10 -rps 1 -k <api key> -e <endpoint> -l --route /generate/stream
 */
import { comfyuiLoadTest, isEntryPoint, testLoadMain } from 'tsworker';

const loadTest = comfyuiLoadTest('${name}');

${ENTRY_POINT}`,
    'README.md': `# ${name}

A tsworker worker for ComfyUI behind the ComfyUI API wrapper, built on the \`comfyui\` preset. Written
by \`tsworker init ${name} --preset comfyui\`; see tsworker's \`workers/comfyui/README.md\` for the preset's
full behaviour.

- Routes: \`/generate/sync\` (one job at a time, \`maxQueueTime\` 10) and \`/generate/stream\` (the
  wrapper's progress events, ending in the Result).
- Workload: 100 scaled by width × height × steps against the benchmark's 512² × 20; 100 for a
  \`workflow_json\`.
- Benchmark: the Text2Image sample, serially.
- Readiness: ComfyUI's \`/system_stats\` (\`COMFYUI_URL\`) and the wrapper's \`/health\` both answer 2xx.

## Environment

| variable | meaning |
|---|---|
| \`MODEL_SERVER_URL\` | the API wrapper (default \`http://127.0.0.1:18288\`) |
| \`COMFYUI_URL\` | ComfyUI itself (default \`http://127.0.0.1:18188\`) |
| \`MODEL_LOG\` | the wrapper's log (default \`/var/log/portal/api-wrapper.log\`) |
| \`MODEL_LOAD_LOG_MSG\`, \`MODEL_ERROR_LOG_MSGS\`, \`MODEL_INFO_LOG_MSGS\` | replace the log lines, one per line |
| \`MODEL_HEALTH_ENDPOINT\` | the wrapper's health route (default \`/health\`) |

${readmeCommon(name)}`,
  };
}
