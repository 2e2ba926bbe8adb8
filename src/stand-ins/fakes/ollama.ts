/**
 * A faithful fake of Ollama (`ollama serve`) as Vast's Ollama image runs it (model-servers.md §6).
 *
 * - Native API (§6.2): `GET|HEAD /` → `Ollama is running`, `GET|HEAD /api/version`, `GET /api/tags`,
 *   `GET /api/ps`, `POST /api/generate` and `POST /api/chat`, streaming NDJSON
 *   (`application/x-ndjson`, one JSON object per token, a last line with `done: true` and the
 *   metrics) unless `stream: false`. Errors are `{"error": "<text>"}`. There is no `/health`.
 * - OpenAI-compatible `/v1/chat/completions`, `/v1/completions`, `/v1/models`, answered by the
 *   shared OpenAI wire handler with Ollama's error object (`code` a string or null).
 * - Load behaviour `immediate`: the server answers at once; the image then pulls the model and
 *   logs `Model pull complete: <model>` (§6.1). Until then the model is not in `/api/tags` and a
 *   generation answers 404 `model "x" not found, try pulling it first`, as a real Ollama would.
 *   Ollama loads the model lazily, on the first generation (`modelLoadMs`).
 * - Throughput: one `BatchingEngine`, with Ollama's defaults of OLLAMA_NUM_PARALLEL=1 sequence at
 *   a time and OLLAMA_MAX_QUEUE=512 waiting, beyond which it answers 503 `server busy`.
 *
 * Fake-only choices: `num_predict` absent or ≤ 0 ("until the model stops") generates
 * `OLLAMA_FAKE_DEFAULT_NUM_PREDICT` (128) tokens and ends with `done_reason: "stop"`; a positive
 * `num_predict` generates exactly that many and ends with `"length"`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isEntryPoint } from '../../../lib/index.ts';
import {
  BatchingEngine,
  countOverloaded,
  estimateTokens,
  FakeServer,
  nowIso,
  parseJsonObject,
  tokenText,
} from './common.ts';
import type {
  BatchingOptions,
  EngineBehaviour,
  Exchange,
  FakeServerOptions,
  InjectedError,
} from './common.ts';
import { handleOpenAIRequest } from './openai.ts';
import type { OpenAIWireContext } from './openai.ts';
import { readBody } from '../http.ts';
import { envNumber, runProgram, serveUntilSignal } from '../program.ts';

/** The version `/api/version` reports and the start-up line names. */
export const OLLAMA_FAKE_VERSION = '0.12.6';
/** Tokens generated when `num_predict` is absent or ≤ 0 (Ollama's -1: until the model stops). */
export const OLLAMA_FAKE_DEFAULT_NUM_PREDICT = 128;
const DEFAULT_MODEL = 'qwen3:32b';
/**
 * The throughput `tsworker dev ollama` runs with: an Ollama started with OLLAMA_NUM_PARALLEL=4 on a
 * fast GPU, so the local benchmark takes seconds. The default (`startOllamaFake` without `batching`)
 * is Ollama's own: one sequence at a time.
 */
export const OLLAMA_DEV_BATCHING: BatchingOptions = {
  maxRunning: 4,
  tokensPerSecondPerSequence: 1000,
  tokensPerSecond: 4000,
};
/** Ollama's OLLAMA_MAX_QUEUE error (envconfig default 512), answered with 503. */
const SERVER_BUSY = 'server busy, please try again.  maximum pending requests exceeded';

export interface OllamaFakeOptions extends FakeServerOptions {
  /** OLLAMA_MODEL: the one model the image pulls. @default 'qwen3:32b' */
  model?: string;
  /** The throughput model. Defaults to Ollama's: `maxRunning` 1, `maxWaiting` 512. */
  batching?: BatchingOptions;
  /** Time the first generation waits while Ollama loads the model into memory. @default 0 */
  modelLoadMs?: number;
}

type NativeRoute = '/api/generate' | '/api/chat';

/** Answers kept in `sentAnswers`, newest last. */
const KEPT_ANSWERS = 100;

/** The fake server, plus its engine and the exact bytes of its recent answers. */
export class OllamaFakeServer extends FakeServer {
  readonly modelName: string;
  /** Generates every answer, native and /v1 alike (one tokens/s budget). */
  readonly engine: BatchingEngine;
  /** The last generation answers written, whole (NDJSON, JSON or SSE): newest last. */
  readonly sentAnswers: { path: string; body: string }[] = [];

  constructor(
    behaviour: EngineBehaviour,
    options: FakeServerOptions,
    engine: BatchingEngine,
    modelName: string,
  ) {
    super(behaviour, options);
    this.engine = engine;
    this.modelName = modelName;
  }

  /** Keeps one answer's bytes for tests that compare a proxied answer with the original. */
  keepAnswer(path: string, body: string): void {
    this.sentAnswers.push({ path, body });
    if (this.sentAnswers.length > KEPT_ANSWERS) this.sentAnswers.shift();
  }
}

/** A validated native request: what the generation needs. */
interface NativeRequest {
  readonly model: string;
  readonly stream: boolean;
  readonly promptTokens: number;
  /** Nothing to generate: Ollama only loads the model and answers `done_reason: "load"`. */
  readonly loadOnly: boolean;
  readonly tokens: number;
  readonly doneReason: 'stop' | 'length';
}

type Checked<T> = { ok: true; value: T } | { ok: false; status: number; error: string };

// ---------------------------------------------------------------------------------------------
// Request validation, with the messages Go's encoding/json and api.Options.FromMap produce

function jsonKind(value: unknown): string {
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'boolean') return 'bool';
  if (typeof value === 'object') return 'object';
  return typeof value;
}

function unmarshalError(value: unknown, field: string, goType: string): string {
  return `json: cannot unmarshal ${jsonKind(value)} into Go struct field ${field} of type ${goType}`;
}

/** Go's syntax error for a body that is not JSON (gin answers it with 400). */
function syntaxError(text: string): string {
  const first = text.trimStart()[0];
  if (first === undefined) return 'missing request body';
  if (!'{["tfn-0123456789'.includes(first)) {
    return `invalid character '${first}' looking for beginning of value`;
  }
  return 'unexpected EOF';
}

const INTEGER_OPTIONS = new Set([
  'num_keep',
  'seed',
  'num_predict',
  'top_k',
  'repeat_last_n',
  'num_ctx',
  'num_batch',
  'num_gpu',
  'main_gpu',
  'num_thread',
]);
const FLOAT_OPTIONS = new Set([
  'top_p',
  'min_p',
  'typical_p',
  'temperature',
  'repeat_penalty',
  'presence_penalty',
  'frequency_penalty',
]);

/**
 * api.Options.FromMap: a wrongly typed option fails the request (scheduleRunner's error, which
 * handleScheduleError answers with 500); an unknown one is only logged.
 */
function checkOptions(
  options: Record<string, unknown>,
  warn: (line: string) => void,
): Checked<number | undefined> {
  for (const [key, value] of Object.entries(options)) {
    if (value === null) continue;
    if (INTEGER_OPTIONS.has(key)) {
      if (typeof value !== 'number') {
        return { ok: false, status: 500, error: `option "${key}" must be of type integer` };
      }
    } else if (FLOAT_OPTIONS.has(key)) {
      if (typeof value !== 'number') {
        return { ok: false, status: 500, error: `option "${key}" must be of type float32` };
      }
    } else if (key === 'use_mmap') {
      if (typeof value !== 'boolean') {
        return { ok: false, status: 500, error: `option "${key}" must be of type boolean` };
      }
    } else if (key === 'stop') {
      if (!Array.isArray(value) || !value.every((s) => typeof s === 'string')) {
        return { ok: false, status: 500, error: `option "${key}" must be of type array` };
      }
    } else {
      warn(slogLine('WARN', 'types.go:654', 'invalid option provided', `option=${key}`));
    }
  }
  const numPredict = options['num_predict'];
  // Go converts the JSON float64 to int by truncation.
  return { ok: true, value: typeof numPredict === 'number' ? Math.trunc(numPredict) : undefined };
}

function parseNative(
  route: NativeRoute,
  body: Record<string, unknown>,
  warn: (line: string) => void,
): Checked<NativeRequest> {
  const struct = route === '/api/generate' ? 'GenerateRequest' : 'ChatRequest';
  const fail = (error: string): Checked<NativeRequest> => ({ ok: false, status: 400, error });
  const model = body['model'] ?? '';
  if (typeof model !== 'string') return fail(unmarshalError(model, `${struct}.model`, 'string'));
  const stream = body['stream'] ?? true;
  if (typeof stream !== 'boolean') {
    return fail(unmarshalError(stream, `${struct}.stream`, 'bool'));
  }
  const options = body['options'] ?? {};
  if (typeof options !== 'object' || Array.isArray(options)) {
    return fail(unmarshalError(options, `${struct}.options`, 'map[string]interface {}'));
  }

  let promptTokens: number;
  let loadOnly: boolean;
  if (route === '/api/generate') {
    const prompt = body['prompt'] ?? '';
    if (typeof prompt !== 'string') {
      return fail(unmarshalError(prompt, 'GenerateRequest.prompt', 'string'));
    }
    loadOnly = prompt === '';
    promptTokens = estimateTokens(prompt);
  } else {
    const messages = body['messages'] ?? [];
    if (!Array.isArray(messages)) {
      return fail(unmarshalError(messages, 'ChatRequest.messages', '[]api.Message'));
    }
    promptTokens = 0;
    for (const message of messages) {
      if (typeof message !== 'object' || message === null || Array.isArray(message)) {
        return fail(unmarshalError(message, 'ChatRequest.messages', 'api.Message'));
      }
      const record = message as Record<string, unknown>;
      for (const field of ['role', 'content'] as const) {
        const value = record[field] ?? '';
        if (typeof value !== 'string') {
          return fail(unmarshalError(value, `Message.messages.${field}`, 'string'));
        }
      }
      // The chat template adds a few tokens of its own around each message.
      promptTokens += estimateTokens(String(record['content'] ?? '')) + 4;
    }
    loadOnly = messages.length === 0;
  }
  if (model === '') return fail('model is required');

  const checked = checkOptions(options as Record<string, unknown>, warn);
  if (!checked.ok) return checked;
  const numPredict = checked.value;
  const limited = numPredict !== undefined && numPredict > 0;
  return {
    ok: true,
    value: {
      model,
      stream,
      promptTokens: Math.max(1, promptTokens),
      loadOnly,
      tokens: limited ? numPredict : OLLAMA_FAKE_DEFAULT_NUM_PREDICT,
      doneReason: limited ? 'length' : 'stop',
    },
  };
}

/** Ollama's name matching: case-insensitive, `:latest` when no tag, the default registry implied. */
function canonicalName(name: string): string {
  let n = name
    .toLowerCase()
    .replace(/^registry\.ollama\.ai\//, '')
    .replace(/^library\//, '');
  if (!n.slice(n.lastIndexOf('/') + 1).includes(':')) n += ':latest';
  return n;
}

// ---------------------------------------------------------------------------------------------
// Log lines (Go slog text format, and the image's own lines)

function slogLine(
  level: 'INFO' | 'WARN' | 'ERROR',
  source: string,
  msg: string,
  extra = '',
): string {
  const tail = extra === '' ? '' : ` ${extra}`;
  return `time=${nowIso()} level=${level} source=${source} msg=${JSON.stringify(msg)}${tail}`;
}

// ---------------------------------------------------------------------------------------------
// The engine

const nsSince = (start: bigint): number => Number(process.hrtime.bigint() - start);

/** Token ids for the deprecated `context` field: deterministic, in a Qwen-sized vocabulary. */
function contextIds(count: number): number[] {
  const ids = new Array<number>(count);
  for (let i = 0; i < count; i++) ids[i] = (i * 7919 + 151) % 151_936;
  return ids;
}

function injectedMessage(error: InjectedError, model: string): string {
  if (error.message !== undefined) return error.message;
  switch (error.status) {
    case 404:
      return `model "${model}" not found, try pulling it first`;
    case 503:
      return SERVER_BUSY;
    case 500:
      return 'llama runner process has terminated: exit status 2';
    default:
      return `injected error (${error.status})`;
  }
}

/** Ollama's OpenAI error object (openai.NewError): `type` from the status, `code` null. */
function sendOpenAIError(res: ServerResponse, status: number, message: string): void {
  const type =
    status === 400 ? 'invalid_request_error' : status === 404 ? 'not_found_error' : 'api_error';
  sendGinJson(res, status, { error: { message, type, param: null, code: null } });
}

/** Never equal to a model a request names: the /v1 wire then answers 404 before the pull. */
const NOT_PULLED = '\u0000not pulled';

class OllamaEngine implements EngineBehaviour {
  readonly name = 'ollama';
  readonly loadBehaviour = 'immediate' as const;
  readonly #model: string;
  readonly #batching: BatchingEngine;
  readonly #modelLoadMs: number;
  readonly #openai: OpenAIWireContext;
  /** Set once the server exists: the pull is done when it reports loaded. */
  server: OllamaFakeServer | undefined;
  /** Ollama loads the model on the first request; the promise is shared by concurrent ones. */
  #modelLoad: Promise<void> | undefined;
  #running = false;

  constructor(model: string, batching: BatchingEngine, modelLoadMs: number) {
    this.#model = model;
    this.#modelLoadMs = modelLoadMs;
    this.#batching = batching;
    const pulled = (): boolean => this.#pulled();
    this.#openai = {
      engine: batching,
      // The /v1 routes serve the pulled model; ChatMiddleware turns the native 404 into OpenAI's.
      get servedModel() {
        return pulled() ? model : NOT_PULLED;
      },
      checkModel: true,
      sendError: (res, status, message) => {
        const unknown = /^The model `(.*)` does not exist\.$/s.exec(message);
        sendOpenAIError(
          res,
          status,
          unknown === null
            ? message
            : `model "${unknown[1] ?? ''}" not found, try pulling it first`,
        );
      },
      onOverloaded: (res) => {
        if (this.server !== undefined) countOverloaded(this.server);
        sendOpenAIError(res, 503, SERVER_BUSY);
      },
      modelCard: { owned_by: 'library' },
      // No max_tokens leaves num_predict at -1 ("until the model stops"): the fake's default.
      defaultMaxTokens: {
        completions: OLLAMA_FAKE_DEFAULT_NUM_PREDICT,
        chat: OLLAMA_FAKE_DEFAULT_NUM_PREDICT,
      },
      onAnswer: (path, body) => this.server?.keepAnswer(path, body),
    };
  }

  startupLines(port: number): string[] {
    const host = `127.0.0.1:${port}`;
    return [
      slogLine(
        'INFO',
        'routes.go:1475',
        'server config',
        `env="map[OLLAMA_HOST:http://${host} OLLAMA_MAX_QUEUE:512 OLLAMA_MODELS:/workspace/ollama/models OLLAMA_NUM_PARALLEL:1]"`,
      ),
      slogLine('INFO', 'images.go:518', 'total blobs: 0'),
      slogLine('INFO', 'routes.go:1528', `Listening on ${host} (version ${OLLAMA_FAKE_VERSION})`),
      slogLine(
        'INFO',
        'types.go:131',
        'inference compute',
        'id=GPU-0 library=CUDA compute=8.9 name=CUDA0 description="NVIDIA GeForce RTX 4090" total="23.6 GiB" available="23.2 GiB"',
      ),
      // The image's script (§6.1): GET /api/tags answered, so it starts `ollama pull`.
      'Ollama server is ready',
      'pulling manifest',
    ];
  }

  loadedLines(): string[] {
    return [
      'pulling 3291abe70f16: 100% ▕██████████████████▏  20 GB',
      'verifying sha256 digest',
      'writing manifest',
      'success',
      `Model pull complete: ${this.#model}`,
    ];
  }

  fatalLines(): string[] {
    return [
      'Error: pull model manifest: file does not exist',
      `Failed to pull model: ${this.#model}`,
    ];
  }

  loadingResponse(res: ServerResponse): void {
    // Never used: Ollama answers every route at once ('immediate').
    this.notFound(res);
  }

  isHealthPath(path: string, method: string): boolean {
    return path === '/api/version' && (method === 'GET' || method === 'HEAD');
  }

  healthyResponse(res: ServerResponse): void {
    sendGinJson(res, 200, { version: OLLAMA_FAKE_VERSION });
  }

  unhealthyResponse(res: ServerResponse): void {
    // A real Ollama has no unhealthy answer here; the knob plays a server that stopped serving.
    sendGinJson(res, 503, { error: 'ollama server unavailable' });
  }

  errorResponse(res: ServerResponse, error: InjectedError): void {
    sendGinJson(res, error.status, { error: injectedMessage(error, this.#model) });
  }

  notFound(res: ServerResponse): void {
    // gin's answer for an unknown route or method.
    const text = '404 page not found';
    res.writeHead(404, {
      'content-type': 'text/plain',
      'content-length': String(Buffer.byteLength(text)),
    });
    res.end(text);
  }

  handle(req: IncomingMessage, res: ServerResponse, path: string, exchange: Exchange): boolean {
    const method = req.method ?? 'GET';
    if (path === '/' && (method === 'GET' || method === 'HEAD')) {
      req.resume();
      const text = 'Ollama is running';
      res.writeHead(200, {
        'content-type': 'text/plain; charset=utf-8',
        'content-length': String(Buffer.byteLength(text)),
      });
      res.end(text);
      return true;
    }
    if (method === 'GET' && path === '/api/tags') {
      req.resume();
      sendGinJson(res, 200, { models: this.#pulled() ? [this.#tagEntry()] : [] });
      return true;
    }
    if (method === 'GET' && path === '/api/ps') {
      req.resume();
      sendGinJson(res, 200, { models: this.#running ? [this.#psEntry()] : [] });
      return true;
    }
    if (method === 'POST' && (path === '/api/generate' || path === '/api/chat')) {
      void this.#native(req, res, path, exchange);
      return true;
    }
    if (method === 'GET' && path === '/v1/models' && !this.#pulled()) {
      req.resume();
      sendGinJson(res, 200, { object: 'list', data: [] });
      return true;
    }
    // The injected-error knob answers /v1 in the OpenAI shape through the same context.
    return handleOpenAIRequest(req, res, path, exchange, this.#openai);
  }

  #pulled(): boolean {
    return this.server?.loaded ?? false;
  }

  #details(): Record<string, unknown> {
    return {
      parent_model: '',
      format: 'gguf',
      family: 'qwen3',
      families: ['qwen3'],
      parameter_size: '32.8B',
      quantization_level: 'Q4_K_M',
    };
  }

  #tagEntry(): Record<string, unknown> {
    return {
      name: this.#model,
      model: this.#model,
      modified_at: nowIso(),
      size: 20_201_253_588,
      digest: '030ee887880f6e1c3b1e0d5d4e2e6bbd4a9b1c2f3e4d5c6b7a8f9e0d1c2b3a4f',
      details: this.#details(),
    };
  }

  #psEntry(): Record<string, unknown> {
    return {
      name: this.#model,
      model: this.#model,
      size: 22_801_940_480,
      digest: '030ee887880f6e1c3b1e0d5d4e2e6bbd4a9b1c2f3e4d5c6b7a8f9e0d1c2b3a4f',
      details: this.#details(),
      expires_at: new Date(Date.now() + 5 * 60_000).toISOString(),
      size_vram: 22_801_940_480,
      context_length: 4096,
    };
  }

  /** Checks that `model` names the pulled model; the 404 of handleScheduleError otherwise. */
  #knows(model: string): boolean {
    return this.#pulled() && canonicalName(model) === canonicalName(this.#model);
  }

  /** Loads the model into memory on first use (Ollama's lazy load) and logs it. */
  #ensureRunning(): Promise<void> {
    this.#modelLoad ??= new Promise<void>((resolve) => {
      const started = performance.now();
      const done = (): void => {
        this.#running = true;
        const seconds = ((performance.now() - started) / 1000).toFixed(2);
        this.server?.writeLog(
          slogLine('INFO', 'server.go:1289', `llama-server started in ${seconds} seconds`),
        );
        resolve();
      };
      if (this.#modelLoadMs > 0) setTimeout(done, this.#modelLoadMs);
      else done();
    });
    return this.#modelLoad;
  }

  async #native(
    req: IncomingMessage,
    res: ServerResponse,
    route: NativeRoute,
    exchange: Exchange,
  ): Promise<void> {
    const arrived = process.hrtime.bigint();
    const text = (await readBody(req)) ?? '';
    const parsed = parseJsonObject(text);
    exchange.begin(parsed.ok ? parsed.value : text);
    if (res.destroyed) return;
    const injected = exchange.injectedError;
    if (injected !== undefined) {
      this.errorResponse(res, injected);
      return;
    }
    if (!parsed.ok) {
      const error =
        parsed.reason === 'invalid-json'
          ? syntaxError(text)
          : `json: cannot unmarshal ${jsonKind(JSON.parse(text))} into Go value of type api.${route === '/api/generate' ? 'GenerateRequest' : 'ChatRequest'}`;
      sendGinJson(res, 400, { error });
      return;
    }
    const checked = parseNative(route, parsed.value, (line) => this.server?.writeLog(line));
    if (!checked.ok) {
      sendGinJson(res, checked.status, { error: checked.error });
      return;
    }
    const request = checked.value;
    if (!this.#knows(request.model)) {
      sendGinJson(res, 404, {
        error: `model ${JSON.stringify(request.model)} not found, try pulling it first`,
      });
      return;
    }

    let cancelled = false;
    exchange.onAbort(() => {
      cancelled = true;
    });
    await this.#ensureRunning();
    if (cancelled || res.destroyed) return;
    if (request.loadOnly) {
      // An empty prompt (or no messages) only loads the model; `stream` does not apply.
      const base = { model: request.model, created_at: nowIso() };
      sendGinJson(
        res,
        200,
        route === '/api/generate'
          ? { ...base, response: '', done: true, done_reason: 'load' }
          : {
              ...base,
              message: { role: 'assistant', content: '' },
              done: true,
              done_reason: 'load',
            },
      );
      return;
    }
    await exchange.released();
    if (cancelled || res.destroyed) return;

    const loadNs = nsSince(arrived);
    const submitted = process.hrtime.bigint();
    let firstToken: bigint | undefined;
    let produced = 0;
    let whole = '';
    const sent: string[] = [];
    const line = (piece: string): Record<string, unknown> => {
      const base = { model: request.model, created_at: nowIso() };
      return route === '/api/generate'
        ? { ...base, response: piece, done: false }
        : { ...base, message: { role: 'assistant', content: piece }, done: false };
    };
    const final = (piece: string): Record<string, unknown> => {
      const now = process.hrtime.bigint();
      const first = firstToken ?? now;
      const metrics = {
        total_duration: nsSince(arrived),
        load_duration: loadNs,
        prompt_eval_count: request.promptTokens,
        prompt_eval_duration: Number(first - submitted),
        eval_count: produced,
        eval_duration: Number(now - first),
      };
      const base = { model: request.model, created_at: nowIso() };
      return route === '/api/generate'
        ? {
            ...base,
            response: piece,
            done: true,
            done_reason: request.doneReason,
            context: contextIds(request.promptTokens + produced),
            ...metrics,
          }
        : {
            ...base,
            message: { role: 'assistant', content: piece },
            done: true,
            done_reason: request.doneReason,
            ...metrics,
          };
    };

    const generation = this.#batching.submit(request.promptTokens, request.tokens, {
      onTokens: (first, count) => {
        if (res.destroyed) return;
        firstToken ??= process.hrtime.bigint();
        produced += count;
        if (!request.stream) {
          for (let i = first; i < first + count; i++) whole += tokenText(i);
          return;
        }
        if (!res.headersSent) {
          // gin sends the headers with the first line (streamResponse).
          res.writeHead(200, { 'content-type': 'application/x-ndjson' });
        }
        let chunk = '';
        for (let i = first; i < first + count; i++) {
          chunk += `${JSON.stringify(line(tokenText(i)))}\n`;
        }
        sent.push(chunk);
        res.write(chunk);
      },
      onDone: () => {
        if (res.destroyed) return;
        if (!request.stream) {
          const body = JSON.stringify(final(whole));
          sendGinJson(res, 200, body);
          this.server?.keepAnswer(route, body);
          return;
        }
        if (!res.headersSent) res.writeHead(200, { 'content-type': 'application/x-ndjson' });
        const last = `${JSON.stringify(final(''))}\n`;
        sent.push(last);
        res.end(last);
        this.server?.keepAnswer(route, sent.join(''));
      },
    });
    if (generation === undefined) {
      if (this.server !== undefined) countOverloaded(this.server);
      sendGinJson(res, 503, { error: SERVER_BUSY });
      return;
    }
    // The client leaving mid-generation frees the engine's slot, as Ollama cancels the context.
    exchange.onAbort(() => generation.cancel());
  }
}

/** gin's c.JSON: `application/json; charset=utf-8`. A string body is sent as it is. */
function sendGinJson(res: ServerResponse, status: number, body: unknown): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': String(Buffer.byteLength(text)),
  });
  res.end(text);
}

export async function startOllamaFake(options: OllamaFakeOptions = {}): Promise<OllamaFakeServer> {
  const { model = DEFAULT_MODEL, batching = {}, modelLoadMs = 0, ...serverOptions } = options;
  // Ollama's defaults: OLLAMA_NUM_PARALLEL=1 sequence decoding, OLLAMA_MAX_QUEUE=512 waiting.
  const engine = new BatchingEngine({ maxRunning: 1, maxWaiting: 512, ...batching });
  const behaviour = new OllamaEngine(model, engine, modelLoadMs);
  const server = new OllamaFakeServer(behaviour, serverOptions, engine, model);
  behaviour.server = server;
  server.onStop = () => engine.stop();
  // The worker needs the model id (MODEL_NAME / OLLAMA_MODEL) to build its benchmark.
  server.workerEnv['OLLAMA_MODEL'] = model;
  await server.start();
  return server;
}

/**
 * Runs the fake from the environment (MODEL_HOST, MODEL_PORT=11434, MODEL_LOG,
 * OLLAMA_MODEL=qwen3:32b, LOAD_DELAY_MS = the pull's duration, TOKENS_PER_SECOND = one sequence's
 * decode rate (400), OLLAMA_NUM_PARALLEL=1) and prints `{"event":"listening","url":...}`.
 */
export async function main(env: NodeJS.ProcessEnv = process.env): Promise<OllamaFakeServer> {
  const logFile = env['MODEL_LOG'];
  const perSequence = envNumber(env, 'TOKENS_PER_SECOND', 400);
  const parallel = Math.max(1, envNumber(env, 'OLLAMA_NUM_PARALLEL', 1));
  const server = await startOllamaFake({
    host: env['MODEL_HOST'] || '127.0.0.1',
    port: envNumber(env, 'MODEL_PORT', 11434),
    ...(logFile ? { logFile } : {}),
    model: env['OLLAMA_MODEL'] || DEFAULT_MODEL,
    loadDelayMs: envNumber(env, 'LOAD_DELAY_MS', 0),
    batching: {
      tokensPerSecondPerSequence: perSequence,
      tokensPerSecond: perSequence * parallel,
      maxRunning: parallel,
    },
  });
  return serveUntilSignal(server);
}

if (isEntryPoint(import.meta.url)) runProgram('ollama fake', main);
