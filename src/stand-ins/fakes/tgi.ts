/**
 * A faithful fake of Hugging Face text-generation-inference (model-servers.md §7.2, TGI@db931fc):
 * POST /generate (JSON, with the x-* timing headers), POST /generate_stream (SSE framed `data:{json}`
 * with no space and no `[DONE]`), GET /health, GET /info. It refuses connections while it loads, as
 * TGI's router starts only once its shards are ready, and writes TGI's `--json-output` log (§7.1).
 *
 * Choices where TGI's behaviour is not a single wire fact:
 * - A request without `max_new_tokens` gets what the router gives it, `max_total_tokens` minus the
 *   prompt's tokens (validation.rs), not the schema's documented 1024.
 * - The body's rejections by axum's `Json` extractor (plain text in TGI) answer in TGI's JSON error
 *   shape with axum's status and serde's message: a type error 422, malformed JSON 400, a body not
 *   declared `application/json` 415. So a client always gets `{error, error_type}`.
 * - `/generate_stream` answers 200 at once and reports later errors (overloaded, validation, an
 *   injected error) as one `data:{"error":…,"error_type":…}` event, exactly as TGI does.
 * - `best_of` > 1 is validated but answered with one sequence (no `best_of_sequences`).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isEntryPoint } from '../../../lib/index.ts';
import {
  BatchingEngine,
  countOverloaded,
  estimateTokens,
  FakeServer,
  generatedText,
  parseJsonObject,
  sseWriter,
  startStream,
  tokenText,
} from './common.ts';
import type {
  BatchingOptions,
  EngineBehaviour,
  Exchange,
  FakeServerOptions,
  InjectedError,
} from './common.ts';
import { readBody, sendJson } from '../http.ts';
import { envNumber, runProgram, serveUntilSignal } from '../program.ts';

export interface TgiFakeOptions extends FakeServerOptions {
  /** MODEL_ID: the model in /info and the log. @default 'meta-llama/Llama-3.1-8B-Instruct' */
  modelId?: string;
  batching?: BatchingOptions;
  /** TGI's `--max-concurrent-requests`: more requests in flight answer 429 overloaded. @default 128 */
  maxConcurrentRequests?: number;
  /** TGI's `--max-total-tokens`: prompt + new tokens per request. @default 8192 */
  maxTotalTokens?: number;
  /** TGI's `--max-input-tokens`. @default maxTotalTokens - 1 */
  maxInputTokens?: number;
  /** Interval of the SSE keep-alive comment (`:`), axum's `KeepAlive::default()`. @default 15000 */
  keepAliveMs?: number;
}

const DEFAULT_MODEL_ID = 'meta-llama/Llama-3.1-8B-Instruct';
const MAX_BEST_OF = 2;
const MAX_STOP_SEQUENCES = 4;
const MAX_TOP_N_TOKENS = 5;
const COMPUTE_TYPE = 'gpu+optimized';
const TGI_VERSION = '3.3.6';
const ROUTER_FILE = 'router/src/server.rs';
// Where the newer router logs "Connected" (TGI@db931fc server.rs:2302; model-servers.md §7.1).
const CONNECTED_LINE = 2302;

// ---------------------------------------------------------------------------------------------
// Wire shapes (router/src/lib.rs)

interface Token {
  id: number;
  text: string;
  logprob: number;
  special: boolean;
}

type FinishReason = 'length' | 'eos_token' | 'stop_sequence';

/** TGI's `{error, error_type}` with the status `InferError` maps to (server.rs). */
interface TgiError {
  status: number;
  body: { error: string; error_type: string };
}

const validation = (message: string): TgiError => ({
  status: 422,
  body: { error: `Input validation error: ${message}`, error_type: 'validation' },
});
const OVERLOADED: TgiError = {
  status: 429,
  body: { error: 'Model is overloaded', error_type: 'overloaded' },
};

/** An injected error in TGI's shape; its message is used verbatim when given. */
function injectedError(error: InjectedError): TgiError {
  const byStatus: Record<number, { error: string; error_type: string }> = {
    422: { error: 'Input validation error: injected', error_type: 'validation' },
    424: {
      error:
        'Request failed during generation: CUDA error: an illegal memory access was encountered',
      error_type: 'generation',
    },
    429: OVERLOADED.body,
    500: { error: 'Incomplete generation', error_type: 'incomplete_generation' },
  };
  const fallback = byStatus[error.status] ?? {
    error: 'Request failed during generation: injected',
    error_type: 'generation',
  };
  return {
    status: error.status,
    body: { error: error.message ?? fallback.error, error_type: fallback.error_type },
  };
}

/** A deterministic id and logprob per answer token, so equal requests get equal answers. */
function answerToken(i: number): Token {
  const text = tokenText(i);
  let id = 7;
  for (let c = 0; c < text.length; c++) id = (id * 31 + text.charCodeAt(c)) % 32_000;
  // Multiples of 1/16 print exactly in JSON, as f32 logprobs do.
  return { id, text, logprob: -(((i * 7) % 13) + 1) / 16, special: false };
}

// ---------------------------------------------------------------------------------------------
// Request parsing: serde's types first (a type error is the extractor's rejection), then TGI's
// validation (validation.rs), which runs after the request holds its concurrency permit.

interface GenerateParameters {
  best_of: number | null;
  temperature: number | null;
  repetition_penalty: number | null;
  frequency_penalty: number | null;
  top_k: number | null;
  top_p: number | null;
  typical_p: number | null;
  do_sample: boolean;
  max_new_tokens: number | null;
  return_full_text: boolean | null;
  stop: string[];
  truncate: number | null;
  watermark: boolean;
  details: boolean;
  decoder_input_details: boolean;
  seed: number | null;
  top_n_tokens: number | null;
}

interface GenerateRequest {
  inputs: string;
  parameters: GenerateParameters;
}

type Parsed<T> = { ok: true; value: T } | { ok: false; message: string };

/** serde's description of an unexpected JSON value. */
function unexpected(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'string') return `string ${JSON.stringify(value)}`;
  if (typeof value === 'boolean') return `boolean \`${String(value)}\``;
  if (typeof value === 'number') {
    return Number.isInteger(value)
      ? `integer \`${String(value)}\``
      : `floating point \`${String(value)}\``;
  }
  return Array.isArray(value) ? 'sequence' : 'map';
}

type FieldKind = 'u32' | 'u64' | 'usize' | 'f32' | 'bool' | 'string';

const EXPECTED: Record<FieldKind, string> = {
  u32: 'u32',
  u64: 'u64',
  usize: 'usize',
  f32: 'f32',
  bool: 'a boolean',
  string: 'a string',
};

/** Checks one value against a Rust type; returns serde's complaint, or undefined. */
function typeError(value: unknown, kind: FieldKind): string | undefined {
  const wrong = `invalid type: ${unexpected(value)}, expected ${EXPECTED[kind]}`;
  switch (kind) {
    case 'bool':
      return typeof value === 'boolean' ? undefined : wrong;
    case 'string':
      return typeof value === 'string' ? undefined : wrong;
    case 'f32':
      return typeof value === 'number' ? undefined : wrong;
    default: {
      if (typeof value !== 'number' || !Number.isInteger(value)) return wrong;
      const max = kind === 'u32' ? 0xffff_ffff : Number.MAX_SAFE_INTEGER;
      return value < 0 || value > max
        ? `invalid value: ${unexpected(value)}, expected ${kind}`
        : undefined;
    }
  }
}

const OPTIONAL_FIELDS = {
  best_of: 'usize',
  temperature: 'f32',
  repetition_penalty: 'f32',
  frequency_penalty: 'f32',
  top_k: 'u32',
  top_p: 'f32',
  typical_p: 'f32',
  max_new_tokens: 'u32',
  return_full_text: 'bool',
  truncate: 'usize',
  seed: 'u64',
  top_n_tokens: 'u32',
} as const satisfies Record<string, FieldKind>;

// `#[serde(default)]` fields that are not `Option`: absent is fine, null is a type error.
const DEFAULTED_FLAGS = ['do_sample', 'watermark', 'details', 'decoder_input_details'] as const;

function parseRequest(body: Record<string, unknown>): Parsed<GenerateRequest> {
  const fail = (path: string, why: string): Parsed<GenerateRequest> => ({
    ok: false,
    message: `Failed to deserialize the JSON body into the target type: ${path}${why}`,
  });
  if (!('inputs' in body)) return fail('', 'missing field `inputs`');
  const inputsError = typeError(body['inputs'], 'string');
  if (inputsError !== undefined) return fail('inputs: ', inputsError);
  const raw = body['parameters'] ?? {};
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    return fail(
      'parameters: ',
      `invalid type: ${unexpected(raw)}, expected struct GenerateParameters`,
    );
  }
  const p = raw as Record<string, unknown>;
  for (const [name, kind] of Object.entries(OPTIONAL_FIELDS)) {
    const value = p[name];
    if (value === undefined || value === null) continue;
    const error = typeError(value, kind);
    if (error !== undefined) return fail(`parameters.${name}: `, error);
  }
  for (const name of DEFAULTED_FLAGS) {
    const value = p[name];
    if (value === undefined) continue;
    const error = typeError(value, 'bool');
    if (error !== undefined) return fail(`parameters.${name}: `, error);
  }
  const stop = p['stop'] ?? [];
  if (!Array.isArray(stop)) {
    return fail('parameters.stop: ', `invalid type: ${unexpected(stop)}, expected a sequence`);
  }
  for (const [i, s] of stop.entries()) {
    const error = typeError(s, 'string');
    if (error !== undefined) return fail(`parameters.stop[${i}]: `, error);
  }
  const num = (name: string): number | null => (p[name] as number | null | undefined) ?? null;
  const flag = (name: string): boolean => (p[name] as boolean | undefined) ?? false;
  return {
    ok: true,
    value: {
      inputs: body['inputs'] as string,
      parameters: {
        best_of: num('best_of'),
        temperature: num('temperature'),
        repetition_penalty: num('repetition_penalty'),
        frequency_penalty: num('frequency_penalty'),
        top_k: num('top_k'),
        top_p: num('top_p'),
        typical_p: num('typical_p'),
        do_sample: flag('do_sample'),
        max_new_tokens: num('max_new_tokens'),
        return_full_text: (p['return_full_text'] as boolean | null | undefined) ?? null,
        stop: stop as string[],
        truncate: num('truncate'),
        watermark: flag('watermark'),
        details: flag('details'),
        decoder_input_details: flag('decoder_input_details'),
        seed: num('seed'),
        top_n_tokens: num('top_n_tokens'),
      },
    },
  };
}

interface Limits {
  maxTotalTokens: number;
  maxInputTokens: number;
}

/** What validation decides: how long the answer may be, and the prompt's length in tokens. */
interface Plan {
  inputTokens: number;
  maxNewTokens: number;
  /** The answer's length: max_new_tokens, or fewer when a stop sequence appears. */
  tokens: number;
  finishReason: FinishReason;
  /** Sampling decides whether TGI reports a seed. */
  seed: number | null;
}

function sampling(p: GenerateParameters): boolean {
  return (
    p.do_sample ||
    (p.temperature !== null && p.temperature !== 1) ||
    (p.top_k !== null && p.top_k !== 0) ||
    (p.top_p !== null && p.top_p < 1) ||
    (p.typical_p !== null && p.typical_p < 1)
  );
}

/** TGI's `Validation::validate`, in its order; the message is ValidationError's text. */
function validate(request: GenerateRequest, limits: Limits): Parsed<Plan> {
  const p = request.parameters;
  const no = (message: string): Parsed<Plan> => ({ ok: false, message });
  const bestOf = p.best_of ?? 1;
  if (p.best_of !== null && (bestOf === 0 || bestOf > MAX_BEST_OF)) {
    return no(`\`best_of\` must be > 0 and <= ${MAX_BEST_OF}. Given: ${bestOf}`);
  }
  if (bestOf > 1 && !sampling(p)) return no('you must use sampling when `best_of` is > 1');
  if (p.temperature !== null && p.temperature <= 0) {
    return no('`temperature` must be strictly positive');
  }
  if (p.repetition_penalty !== null && p.repetition_penalty <= 0) {
    return no('`repetition_penalty` must be strictly positive');
  }
  if (p.frequency_penalty !== null && (p.frequency_penalty < -2 || p.frequency_penalty > 2)) {
    return no('`frequency_penalty` must be >= -2.0 and <= 2.0');
  }
  if (p.top_p !== null && (p.top_p <= 0 || p.top_p >= 1)) {
    return no('`top_p` must be > 0.0 and < 1.0');
  }
  if (p.typical_p !== null && (p.typical_p <= 0 || p.typical_p >= 1)) {
    return no('`typical_p` must be > 0.0 and < 1.0');
  }
  if (p.top_k === 0) return no('`top_k` must be strictly positive');
  if (p.max_new_tokens === 0) return no('`max_new_tokens` must be strictly positive');
  if (p.stop.length > MAX_STOP_SEQUENCES) {
    return no(
      `\`stop\` supports up to ${MAX_STOP_SEQUENCES} stop sequences. Given: ${p.stop.length}`,
    );
  }
  if (bestOf > 1 && p.seed !== null) return no('`seed` must not be set when `best_of` > 1');
  const topN = p.top_n_tokens ?? 0;
  if (topN > MAX_TOP_N_TOKENS) {
    return no(`\`top_n_tokens\` must be >= 0 and <= ${MAX_TOP_N_TOKENS}. Given: ${topN}`);
  }
  if (request.inputs.length === 0) return no('`inputs` cannot be empty');
  if (p.truncate !== null && (p.truncate === 0 || p.truncate > limits.maxInputTokens)) {
    return no(
      `\`truncate\` must be strictly positive and less than ${limits.maxInputTokens}. Given: ${p.truncate}`,
    );
  }
  const promptTokens = estimateTokens(request.inputs);
  const inputTokens = p.truncate === null ? promptTokens : Math.min(promptTokens, p.truncate);
  const maxNewTokens = p.max_new_tokens ?? Math.max(0, limits.maxTotalTokens - inputTokens);
  if (inputTokens + maxNewTokens > limits.maxTotalTokens) {
    return no(
      `\`inputs\` tokens + \`max_new_tokens\` must be <= ${limits.maxTotalTokens}. Given: ${inputTokens} \`inputs\` tokens and ${maxNewTokens} \`max_new_tokens\``,
    );
  }
  if (inputTokens > limits.maxInputTokens) {
    return no(
      `\`inputs\` must have less than ${limits.maxInputTokens} tokens. Given: ${inputTokens}`,
    );
  }
  let tokens = maxNewTokens;
  let finishReason: FinishReason = 'length';
  if (p.stop.length > 0) {
    let text = '';
    for (let i = 0; i < maxNewTokens; i++) {
      text += tokenText(i);
      if (p.stop.some((s) => s.length > 0 && text.endsWith(s))) {
        tokens = i + 1;
        finishReason = 'stop_sequence';
        break;
      }
    }
  }
  const seed = sampling(p) ? (p.seed ?? Math.floor(Math.random() * Number.MAX_SAFE_INTEGER)) : null;
  return { ok: true, value: { inputTokens, maxNewTokens, tokens, finishReason, seed } };
}

// ---------------------------------------------------------------------------------------------
// Log lines (`--json-output`): the launcher logs with `fields.message` nested; the router's lines
// are flattened (`json().flatten_event(true)`, router/src/logging.rs), which is what Vast keys on.

/** Rust's tracing timestamps carry microseconds. */
function timestamp(): string {
  const ms = performance.timeOrigin + performance.now();
  const iso = new Date(Math.floor(ms)).toISOString();
  const micros = String(Math.floor((ms % 1) * 1000)).padStart(3, '0');
  return `${iso.slice(0, -1)}${micros}Z`;
}

interface Span {
  name: string;
  rank?: number;
}

function launcherLine(level: 'INFO' | 'ERROR', message: string, span?: Span): string {
  return JSON.stringify({
    timestamp: timestamp(),
    level,
    fields: { message },
    target: 'text_generation_launcher',
    ...(span === undefined ? {} : { span, spans: [span] }),
  });
}

function routerLine(message: string, target: string, filename: string, line: number): string {
  return JSON.stringify({
    timestamp: timestamp(),
    level: 'INFO',
    message,
    target,
    filename,
    line_number: line,
  });
}

const DOWNLOAD: Span = { name: 'download' };
const SHARD: Span = { rank: 0, name: 'shard-manager' };
const SHARD_FILES = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];

// ---------------------------------------------------------------------------------------------
// The engine

class TgiEngine implements EngineBehaviour {
  readonly name = 'tgi';
  readonly loadBehaviour = 'refuse' as const;
  readonly #modelId: string;
  readonly #maxConcurrent: number;
  readonly #limits: Limits;
  readonly #keepAliveMs: number;
  readonly #batch: BatchingEngine;
  readonly #startedAt = performance.now();
  /** Requests holding one of TGI's `max_concurrent_requests` permits. */
  #permits = 0;
  server: FakeServer | undefined;

  constructor(options: TgiFakeOptions) {
    this.#modelId = options.modelId ?? DEFAULT_MODEL_ID;
    this.#maxConcurrent = options.maxConcurrentRequests ?? 128;
    const maxTotalTokens = options.maxTotalTokens ?? 8192;
    this.#limits = { maxTotalTokens, maxInputTokens: options.maxInputTokens ?? maxTotalTokens - 1 };
    this.#keepAliveMs = options.keepAliveMs ?? 15_000;
    // TGI queues everything that holds a permit, so only the permits refuse work.
    this.#batch = new BatchingEngine({
      maxWaiting: Math.max(256, this.#maxConcurrent),
      ...options.batching,
    });
  }

  stop(): void {
    this.#batch.stop();
  }

  get #snapshot(): string {
    return `/data/hub/models--${this.#modelId.replace('/', '--')}/snapshots/0e9e39f249a16976918f6564b8830bc894c89659`;
  }

  startupLines(port: number): string[] {
    const id = this.#modelId;
    return [
      launcherLine(
        'INFO',
        `Args { model_id: "${id}", revision: None, validation_workers: 2, sharded: None, num_shard: None, quantize: None, max_concurrent_requests: ${this.#maxConcurrent}, max_best_of: ${MAX_BEST_OF}, max_stop_sequences: ${MAX_STOP_SEQUENCES}, max_top_n_tokens: ${MAX_TOP_N_TOKENS}, max_input_tokens: Some(${this.#limits.maxInputTokens}), max_total_tokens: Some(${this.#limits.maxTotalTokens}), hostname: "0.0.0.0", port: ${port}, huggingface_hub_cache: Some("/data"), json_output: true, .. }`,
      ),
      launcherLine('INFO', `Starting check and download process for ${id}`, DOWNLOAD),
      ...SHARD_FILES.flatMap((file, i) => [
        launcherLine('INFO', `Download file: ${file}`, DOWNLOAD),
        launcherLine('INFO', `Downloaded ${this.#snapshot}/${file} in 0:00:2${i + 1}.`, DOWNLOAD),
        launcherLine(
          'INFO',
          `Download: [${i + 1}/${SHARD_FILES.length}] -- ETA: 0:00:${i === 0 ? '21' : '00'}`,
          DOWNLOAD,
        ),
      ]),
      launcherLine('INFO', `Successfully downloaded weights for ${id}`, DOWNLOAD),
      launcherLine('INFO', 'Starting shard', SHARD),
      launcherLine('INFO', 'Waiting for shard to be ready...', SHARD),
    ];
  }

  loadedLines(): string[] {
    const seconds = ((performance.now() - this.#startedAt) / 1000).toFixed(6);
    return [
      launcherLine('INFO', `Shard ready in ${seconds}s`, SHARD),
      launcherLine('INFO', 'Starting Webserver'),
      routerLine('Using backend V3', 'text_generation_router_v3', 'backends/v3/src/main.rs', 96),
      routerLine('Warming up model', 'text_generation_router_v3', 'backends/v3/src/lib.rs', 125),
      routerLine(
        'Setting max batch total tokens to 133696',
        'text_generation_router_v3',
        'backends/v3/src/lib.rs',
        137,
      ),
      routerLine(
        `Serving revision 0e9e39f249a16976918f6564b8830bc894c89659 of model ${this.#modelId}`,
        'text_generation_router::server',
        ROUTER_FILE,
        1818,
      ),
      // The line Vast's worker keys on (model-servers.md §7.1); written once the port serves.
      routerLine('Connected', 'text_generation_router::server', ROUTER_FILE, CONNECTED_LINE),
    ];
  }

  fatalLines(): string[] {
    // The launcher's exit for a shard that dies while loading: main returns Err, Rust prints
    // `Error: <Variant>` (launcher/src/main.rs), one of the strings Vast marks errored on.
    return [
      launcherLine(
        'ERROR',
        'Shard complete standard error output:\n\nTraceback (most recent call last):\n  File "/opt/conda/bin/text-generation-server", line 8, in <module>\n    sys.exit(app())\n  File "/opt/conda/lib/python3.11/site-packages/text_generation_server/server.py", line 268, in serve_inner\n    model = get_model_with_lora_adapters(\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 224.00 MiB. GPU 0 has a total capacity of 23.55 GiB of which 40.81 MiB is free.',
        SHARD,
      ),
      launcherLine('ERROR', 'Shard 0 failed to start'),
      launcherLine('INFO', 'Shutting down shards'),
      'Error: ShardCannotStart',
    ];
  }

  loadingResponse(res: ServerResponse): void {
    // Never called for `refuse`: the port is closed while loading.
    res.writeHead(503).end();
  }

  isHealthPath(path: string, method: string): boolean {
    return path === '/health' && (method === 'GET' || method === 'HEAD');
  }

  healthyResponse(res: ServerResponse): void {
    // axum's `Ok(())`: 200 with an empty body.
    res.writeHead(200, { 'content-length': '0' }).end();
  }

  unhealthyResponse(res: ServerResponse): void {
    sendJson(res, 503, { error: 'unhealthy', error_type: 'healthcheck' });
  }

  errorResponse(res: ServerResponse, error: InjectedError): void {
    const tgi = injectedError(error);
    sendJson(res, tgi.status, tgi.body);
  }

  notFound(res: ServerResponse): void {
    // axum's fallback: 404, empty body.
    res.writeHead(404, { 'content-length': '0' }).end();
  }

  handle(req: IncomingMessage, res: ServerResponse, path: string, exchange: Exchange): boolean {
    const method = req.method ?? 'GET';
    if (path === '/info') {
      req.resume();
      if (method !== 'GET') methodNotAllowed(res, 'GET,HEAD');
      else sendJson(res, 200, this.#info());
      return true;
    }
    if (path === '/health') {
      req.resume();
      methodNotAllowed(res, 'GET,HEAD');
      return true;
    }
    if (path !== '/generate' && path !== '/generate_stream') return false;
    if (method !== 'POST') {
      req.resume();
      methodNotAllowed(res, 'POST');
      return true;
    }
    void readBody(req).then((text = '') =>
      this.#generation(path === '/generate_stream', text, req, res, exchange),
    );
    return true;
  }

  #info(): Record<string, unknown> {
    return {
      model_id: this.#modelId,
      model_sha: '0e9e39f249a16976918f6564b8830bc894c89659',
      model_pipeline_tag: 'text-generation',
      max_concurrent_requests: this.#maxConcurrent,
      max_best_of: MAX_BEST_OF,
      max_stop_sequences: MAX_STOP_SEQUENCES,
      max_input_tokens: this.#limits.maxInputTokens,
      max_total_tokens: this.#limits.maxTotalTokens,
      validation_workers: 2,
      max_client_batch_size: 4,
      router: 'text-generation-router',
      version: TGI_VERSION,
      sha: null,
      docker_label: null,
    };
  }

  async #generation(
    stream: boolean,
    text: string,
    req: IncomingMessage,
    res: ServerResponse,
    exchange: Exchange,
  ): Promise<void> {
    const receivedAt = performance.now();
    const json = parseJsonObject(text);
    exchange.begin(json.ok ? json.value : text);
    let gone = false;
    res.once('close', () => {
      gone = true;
    });
    const type = req.headers['content-type'] ?? '';
    if (!/^application\/(?:[^;]*\+)?json\s*(?:;|$)/i.test(type)) {
      // axum's `Json` extractor refuses a body that is not declared as JSON.
      sendJson(res, 415, {
        error: 'Expected request with `Content-Type: application/json`',
        error_type: 'validation',
      });
      return;
    }
    if (!json.ok) {
      const message =
        json.reason === 'invalid-json'
          ? 'Failed to parse the request body as JSON'
          : 'Failed to deserialize the JSON body into the target type: invalid type: expected struct GenerateRequest';
      sendJson(res, json.reason === 'invalid-json' ? 400 : 422, {
        error: message,
        error_type: 'validation',
      });
      return;
    }
    const parsed = parseRequest(json.value);
    if (!parsed.ok) {
      sendJson(res, 422, { error: parsed.message, error_type: 'validation' });
      return;
    }
    const request = parsed.value;
    const p = request.parameters;
    const characters = String([...request.inputs].length);

    // From here on a stream has answered 200, and reports failures as one error event.
    let fail: (error: TgiError) => void;
    let stopKeepAlive = (): void => undefined;
    if (stream) {
      startStream(res, 'text/event-stream', {
        'x-compute-type': COMPUTE_TYPE,
        'x-compute-characters': characters,
        'x-accel-buffering': 'no',
      });
      const timer = setInterval(() => res.write(':\n\n'), this.#keepAliveMs);
      timer.unref();
      stopKeepAlive = () => clearInterval(timer);
      res.once('close', stopKeepAlive);
      fail = (error) => {
        stopKeepAlive();
        res.end(`data:${JSON.stringify(error.body)}\n\n`);
      };
      if (p.best_of !== null && p.best_of !== 1) {
        fail(validation('`best_of` != 1 is not supported when streaming tokens'));
        return;
      }
      if (p.decoder_input_details) {
        fail(validation('`decoder_input_details` == true is not supported when streaming tokens'));
        return;
      }
    } else {
      fail = (error) => sendJson(res, error.status, error.body);
    }

    // TGI takes a concurrency permit before validating (infer/mod.rs) and keeps it to the end.
    if (this.#permits >= this.#maxConcurrent) {
      if (this.server !== undefined) countOverloaded(this.server);
      fail(OVERLOADED);
      return;
    }
    this.#permits++;
    res.once('close', () => this.#permits--);

    const checked = validate(request, this.#limits);
    if (!checked.ok) {
      fail(validation(checked.message));
      return;
    }
    const plan = checked.value;
    const injected = exchange.injectedError;
    if (injected !== undefined) {
      fail(injectedError(injected));
      return;
    }
    const queuedAt = performance.now();
    await exchange.released();
    if (gone) return;
    const startedAt = performance.now();
    const prefix = p.return_full_text === true ? request.inputs : '';
    const answer = (): string => prefix + generatedText(plan.tokens);
    const topTokens = (i: number): Token[] =>
      Array.from({ length: p.top_n_tokens ?? 0 }, (_, k) =>
        k === 0 ? answerToken(i) : { ...answerToken(i + k * 7), logprob: -1 - k },
      );

    if (stream) {
      const send = sseWriter(res, 'data:');
      const generation = this.#batch.submit(plan.inputTokens, plan.tokens, {
        onTokens: (first, count) => {
          for (let i = first; i < first + count; i++) {
            const last = i === plan.tokens - 1;
            const top = topTokens(i);
            send(
              JSON.stringify({
                index: i + 1,
                token: answerToken(i),
                ...(top.length > 0 ? { top_tokens: top } : {}),
                generated_text: last ? answer() : null,
                details:
                  last && p.details
                    ? {
                        finish_reason: plan.finishReason,
                        generated_tokens: plan.tokens,
                        seed: plan.seed,
                        input_length: plan.inputTokens,
                      }
                    : null,
              }),
            );
          }
        },
        onDone: () => {
          stopKeepAlive();
          res.end();
        },
      });
      if (generation === undefined) fail(OVERLOADED);
      else exchange.onAbort(() => generation.cancel());
      return;
    }

    const generation = this.#batch.submit(plan.inputTokens, plan.tokens, {
      onTokens: () => undefined,
      onDone: () => {
        const doneAt = performance.now();
        const tokens = Array.from({ length: plan.tokens }, (_, i) => answerToken(i));
        const details = p.details || p.decoder_input_details;
        const top = Array.from({ length: plan.tokens }, (_, i) => topTokens(i));
        const body = {
          generated_text: answer(),
          ...(details
            ? {
                details: {
                  finish_reason: plan.finishReason,
                  generated_tokens: plan.tokens,
                  seed: plan.seed,
                  prefill: p.decoder_input_details ? prefillTokens(request.inputs) : [],
                  tokens,
                  ...((p.top_n_tokens ?? 0) > 0 ? { top_tokens: top } : {}),
                },
              }
            : {}),
        };
        const ms = (from: number, to: number): string => String(Math.floor(to - from));
        sendJson(res, 200, body, {
          'x-compute-type': COMPUTE_TYPE,
          // Rust prints a Duration's f64 seconds with at most nanosecond digits.
          'x-compute-time': String(Math.round((doneAt - receivedAt) * 1e6) / 1e9),
          'x-compute-characters': characters,
          'x-total-time': ms(receivedAt, doneAt),
          'x-validation-time': ms(receivedAt, queuedAt),
          'x-queue-time': ms(queuedAt, startedAt),
          'x-inference-time': ms(startedAt, doneAt),
          'x-time-per-token': String(Math.floor((doneAt - startedAt) / plan.tokens)),
          'x-prompt-tokens': String(plan.inputTokens),
          'x-generated-tokens': String(plan.tokens),
        });
      },
    });
    if (generation === undefined) fail(OVERLOADED);
    else exchange.onAbort(() => generation.cancel());
  }
}

/** The prompt's tokens as `decoder_input_details` returns them; the first has no logprob. */
function prefillTokens(inputs: string): { id: number; text: string; logprob: number | null }[] {
  const pieces = inputs.match(/\s*\S+/g) ?? [inputs];
  return pieces.map((text, i) => ({
    id: 1000 + (i % 30_000),
    text,
    logprob: i === 0 ? null : -(((i * 5) % 11) + 1) / 8,
  }));
}

function methodNotAllowed(res: ServerResponse, allow: string): void {
  res.writeHead(405, { allow, 'content-length': '0' }).end();
}

export async function startTgiFake(options: TgiFakeOptions = {}): Promise<FakeServer> {
  const engine = new TgiEngine(options);
  const server = new FakeServer(engine, options);
  engine.server = server;
  server.onStop = () => engine.stop();
  await server.start();
  return server;
}

/**
 * Runs the fake from the environment (MODEL_HOST, MODEL_PORT=5001, MODEL_LOG, MODEL_ID,
 * LOAD_DELAY_MS, TOKENS_PER_SECOND = one sequence's decode rate, the engine's being ten times it,
 * MAX_CONCURRENT_REQUESTS=128) and prints `{"event":"listening","url":...}` once the port is
 * reserved; the port itself serves after the load delay, as TGI's does.
 */
export async function main(env: NodeJS.ProcessEnv = process.env): Promise<FakeServer> {
  const logFile = env['MODEL_LOG'];
  const modelId = env['MODEL_ID'];
  const perSequence = envNumber(env, 'TOKENS_PER_SECOND', 400);
  const server = await startTgiFake({
    host: env['MODEL_HOST'] || '127.0.0.1',
    port: envNumber(env, 'MODEL_PORT', 5001),
    ...(logFile ? { logFile } : {}),
    ...(modelId ? { modelId } : {}),
    loadDelayMs: envNumber(env, 'LOAD_DELAY_MS', 0),
    maxConcurrentRequests: envNumber(env, 'MAX_CONCURRENT_REQUESTS', 128),
    batching: { tokensPerSecondPerSequence: perSequence, tokensPerSecond: perSequence * 10 },
  });
  return serveUntilSignal(server);
}

if (isEntryPoint(import.meta.url)) runProgram('tgi fake', main);
