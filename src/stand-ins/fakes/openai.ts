/**
 * The fake of the OpenAI-compatible engines: vLLM, SGLang and llama.cpp's llama-server
 * (model-servers.md §2.1, §3, §4, §5, §10). One wire (`handleOpenAIRequest`, which the Ollama fake
 * reuses for its /v1 routes) and three engine behaviours: load phase, health route, log lines and
 * error shape.
 *
 * Answers are deterministic (token `i` is always the same word, one word a token), so a test can
 * predict every byte but `id` and `created`; `sentAnswers` keeps the exact bytes of recent answers
 * for tests that compare a proxied answer with what the engine wrote.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isEntryPoint } from '../../../lib/index.ts';
import {
  BatchingEngine,
  FakeServer,
  countOverloaded,
  estimateTokens,
  generatedText,
  parseJsonObject,
  startStream,
  tokenText,
} from './common.ts';
import type {
  BatchingOptions,
  EngineBehaviour,
  Exchange,
  FakeServerOptions,
  Generation,
  InjectedError,
} from './common.ts';
import { readBody, sendJson } from '../http.ts';
import { envNumber, runProgram, serveUntilSignal } from '../program.ts';

// ---------------------------------------------------------------------------------------------
// The OpenAI wire, shared by every engine that speaks it

/**
 * What went wrong, in engine-neutral terms; each engine's `sendError` turns it into its own `type`
 * string (vLLM `BadRequestError`, llama.cpp `invalid_request_error`, ...).
 */
export type OpenAIErrorKind = 'invalid_request' | 'not_found' | 'unavailable' | 'server_error';

/** The usual kind for an HTTP status, e.g. for an injected error. */
export function errorKindFor(status: number): OpenAIErrorKind {
  if (status === 404) return 'not_found';
  if (status === 503) return 'unavailable';
  return status >= 500 ? 'server_error' : 'invalid_request';
}

/**
 * How one engine speaks the OpenAI wire. Stable: the Ollama fake builds one for its /v1 routes.
 *
 * - `engine`: generates every answer, so all routes share one tokens/s budget.
 * - `servedModel`: the model id the engine serves; answers name it, /v1/models lists it.
 * - `checkModel`: true answers 404 to a request naming another model (vLLM, SGLang); false
 *   ignores the field and echoes it back (llama.cpp, model-servers.md §5.1).
 * - `sendError(res, status, message, kind)`: writes the engine's error body (its shape, its type
 *   strings, an integer `code`). Used for every 4xx/5xx this wire answers, injected errors included.
 * - `streamHeaders`: extra headers on SSE answers (llama.cpp: `X-Accel-Buffering: no`).
 * - `streamContentType`: @default 'text/event-stream'.
 * - `onOverloaded(res)`: answers a request the engine is too full to queue (and counts it, e.g.
 *   with `countOverloaded`). @default a 503 through `sendError`, not counted.
 * - `modelCard`: fields added to the /v1/models entry (`owned_by`, `max_model_len`, `meta`...).
 * - `stopReason`: adds vLLM's `stop_reason` to each choice. @default false
 * - `maxModelLen`: prompt + generated tokens above it answer 400. @default no limit
 * - `defaultMaxTokens`: tokens generated when the request names no limit. @default
 *   `{ completions: 16, chat: 256 }`: 16 is OpenAI's and vLLM's documented default for completions;
 *   for chat the engines generate until end-of-sequence, which a fake has not, so 256 stands in for
 *   a typical answer.
 * - `onAnswer(path, body)`: receives the exact bytes of each complete answer (JSON or stream).
 */
export interface OpenAIWireContext {
  readonly engine: BatchingEngine;
  readonly servedModel: string;
  readonly checkModel: boolean;
  sendError(res: ServerResponse, status: number, message: string, kind: OpenAIErrorKind): void;
  readonly streamHeaders?: Record<string, string>;
  readonly streamContentType?: string;
  readonly onOverloaded?: (res: ServerResponse) => void;
  readonly modelCard?: Record<string, unknown>;
  readonly stopReason?: boolean;
  readonly maxModelLen?: number;
  readonly defaultMaxTokens?: { readonly completions?: number; readonly chat?: number };
  readonly onAnswer?: (path: string, body: string) => void;
}

/** OpenAI's and vLLM's default `max_tokens` for /v1/completions. */
export const DEFAULT_COMPLETION_TOKENS = 16;
/** Stands in for "until end-of-sequence" on chat, which a fake cannot model. */
export const DEFAULT_CHAT_TOKENS = 256;
/** Embedding vectors are this long: small, since only their shape matters to a worker. */
export const EMBEDDING_DIMENSION = 16;

const OPENAI_PATHS = new Set([
  '/v1/completions',
  '/v1/chat/completions',
  '/v1/embeddings',
  '/v1/models',
]);

/**
 * Serves POST /v1/completions, /v1/chat/completions, /v1/embeddings and GET /v1/models. Returns false
 * for any other path or method (the caller answers its engine's 404); true once it has taken the
 * request. Generation and embedding requests are counted through `exchange` (stats, knobs, abort).
 */
export function handleOpenAIRequest(
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
  exchange: Exchange,
  context: OpenAIWireContext,
): boolean {
  if (!OPENAI_PATHS.has(path)) return false;
  const method = req.method ?? 'GET';
  if (path === '/v1/models') {
    if (method !== 'GET') return false;
    req.resume();
    answerJson(res, path, context, 200, listModels(context));
    return true;
  }
  if (method !== 'POST') return false;
  void readBody(req).then((text = '') => {
    const parsed = parseJsonObject(text);
    exchange.begin(parsed.ok ? parsed.value : text);
    if (res.destroyed) return;
    const injected = exchange.injectedError;
    if (injected !== undefined) {
      sendInjected(res, context, injected);
      return;
    }
    if (!parsed.ok) {
      const message =
        parsed.reason === 'invalid-json'
          ? 'Invalid JSON in the request body'
          : 'The request body must be a JSON object';
      context.sendError(res, 400, message, 'invalid_request');
      return;
    }
    if (path === '/v1/embeddings') void embed(res, path, exchange, context, parsed.value);
    else void generate(res, path, exchange, context, parsed.value);
  });
  return true;
}

/** Answers an injected error in the engine's shape (the `error` knob). */
export function sendInjected(
  res: ServerResponse,
  context: Pick<OpenAIWireContext, 'sendError'>,
  error: InjectedError,
): void {
  const message = error.message ?? `Injected error (${error.status})`;
  context.sendError(res, error.status, message, errorKindFor(error.status));
}

function answerJson(
  res: ServerResponse,
  path: string,
  context: OpenAIWireContext,
  status: number,
  body: unknown,
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': String(Buffer.byteLength(text)),
  });
  res.end(text);
  context.onAnswer?.(path, text);
}

function listModels(context: OpenAIWireContext): unknown {
  return {
    object: 'list',
    data: [
      {
        id: context.servedModel,
        object: 'model',
        created: nowSeconds(),
        owned_by: 'organization-owner',
        ...context.modelCard,
      },
    ],
  };
}

const nowSeconds = (): number => Math.floor(Date.now() / 1000);
const hexId = (): string => randomUUID().replaceAll('-', '');

// --- request validation

type Field<T> = { ok: true; value: T } | { ok: false; message: string };

const ok = <T>(value: T): Field<T> => ({ ok: true, value });
const bad = (message: string): Field<never> => ({ ok: false, message });

/** Absent and null mean "not given" (OpenAI clients send explicit nulls). */
const given = (value: unknown): boolean => value !== undefined && value !== null;

function positiveInt(body: Record<string, unknown>, field: string): Field<number | undefined> {
  const value = body[field];
  if (!given(value)) return ok(undefined);
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    return bad(`${field} must be a positive integer, got ${JSON.stringify(value)}`);
  }
  return ok(value);
}

function numberIn(
  body: Record<string, unknown>,
  field: string,
  valid: (value: number) => boolean,
  range: string,
): Field<undefined> {
  const value = body[field];
  if (!given(value)) return ok(undefined);
  if (typeof value !== 'number' || !Number.isFinite(value) || !valid(value)) {
    return bad(`${field} must be a number ${range}, got ${JSON.stringify(value)}`);
  }
  return ok(undefined);
}

function stopStrings(body: Record<string, unknown>): Field<string[]> {
  const value = body['stop'];
  if (!given(value)) return ok([]);
  if (typeof value === 'string') return ok(value === '' ? [] : [value]);
  if (Array.isArray(value) && value.every((s): s is string => typeof s === 'string')) {
    return ok(value.filter((s) => s !== ''));
  }
  return bad('stop must be a string or a list of strings');
}

/** Prompt tokens of a completions prompt: a string, a list of token ids, or a one-item list. */
function promptTokens(prompt: unknown): Field<number> {
  if (typeof prompt === 'string') return ok(estimateTokens(prompt));
  if (Array.isArray(prompt)) {
    if (prompt.length > 0 && prompt.every((t) => Number.isInteger(t))) return ok(prompt.length);
    const [only] = prompt;
    // Batched prompts (several strings) answer several choices on the real engines; this fake
    // serves one prompt a request, which is what workers and their benchmarks send.
    if (prompt.length === 1 && typeof only === 'string') return ok(estimateTokens(only));
  }
  return bad('prompt must be a string, a list of token ids, or a list of one string');
}

/** Chat prompt tokens, counted over the rendered template as an engine would (ChatML here). */
function chatTokens(messages: unknown): Field<number> {
  if (!Array.isArray(messages) || messages.length === 0) {
    return bad('messages must be a non-empty list of messages');
  }
  let rendered = '';
  for (const message of messages) {
    if (typeof message !== 'object' || message === null || Array.isArray(message)) {
      return bad('each message must be an object with a role');
    }
    const { role, content } = message as Record<string, unknown>;
    if (typeof role !== 'string') return bad('each message must have a string role');
    let text = '';
    if (typeof content === 'string') text = content;
    else if (Array.isArray(content)) {
      for (const part of content) {
        const piece = (part as Record<string, unknown> | null)?.['text'];
        if (typeof piece === 'string') text += piece;
      }
    } else if (given(content)) return bad('message content must be a string or a list of parts');
    rendered += `<|im_start|>${role}\n${text}<|im_end|>\n`;
  }
  return ok(estimateTokens(`${rendered}<|im_start|>assistant\n`));
}

type Route = 'completions' | 'chat';

interface Plan {
  readonly route: Route;
  /** The model named in answers. */
  readonly model: string;
  readonly promptTokens: number;
  /** Tokens the engine generates (fewer than asked when a stop string ends the answer). */
  readonly tokens: number;
  /** Characters of the generated text the client sees (text after a stop string is cut). */
  readonly visibleChars: number;
  readonly finishReason: 'length' | 'stop';
  readonly stopReason: string | null;
  readonly stream: boolean;
  readonly includeUsage: boolean;
}

type Checked = { ok: true; plan: Plan } | { ok: false; status: number; message: string };

function plan(route: Route, body: Record<string, unknown>, context: OpenAIWireContext): Checked {
  const invalid = (message: string): Checked => ({ ok: false, status: 400, message });
  const prompt = route === 'chat' ? chatTokens(body['messages']) : promptTokens(body['prompt']);
  if (!prompt.ok) {
    return invalid(
      given(body[route === 'chat' ? 'messages' : 'prompt'])
        ? prompt.message
        : `${route === 'chat' ? 'messages' : 'prompt'} is required`,
    );
  }
  const maxTokens = positiveInt(body, 'max_tokens');
  if (!maxTokens.ok) return invalid(maxTokens.message);
  const maxCompletion =
    route === 'chat' ? positiveInt(body, 'max_completion_tokens') : ok(undefined);
  if (!maxCompletion.ok) return invalid(maxCompletion.message);
  for (const check of [
    numberIn(body, 'temperature', (t) => t >= 0, 'of at least 0'),
    numberIn(body, 'top_p', (t) => t > 0 && t <= 1, 'in (0, 1]'),
    body['seed'] === undefined || body['seed'] === null || Number.isInteger(body['seed'])
      ? ok(undefined)
      : bad('seed must be an integer'),
  ]) {
    if (!check.ok) return invalid(check.message);
  }
  const stop = stopStrings(body);
  if (!stop.ok) return invalid(stop.message);
  const stream = body['stream'];
  if (given(stream) && typeof stream !== 'boolean') return invalid('stream must be a boolean');
  const options = body['stream_options'];
  let includeUsage = false;
  if (given(options)) {
    if (stream !== true) {
      return invalid('Stream options can only be defined when `stream=True`.');
    }
    const include =
      typeof options === 'object' && !Array.isArray(options)
        ? (options as Record<string, unknown>)['include_usage']
        : 'not-an-object';
    if (given(include) && typeof include !== 'boolean') {
      return invalid('stream_options.include_usage must be a boolean');
    }
    includeUsage = include === true;
  }
  const model = body['model'];
  if (given(model) && typeof model !== 'string') return invalid('model must be a string');
  if (context.checkModel && typeof model === 'string' && model !== context.servedModel) {
    return { ok: false, status: 404, message: `The model \`${model}\` does not exist.` };
  }
  // vLLM reads max_completion_tokens first on chat (it replaces the deprecated max_tokens).
  const defaults = context.defaultMaxTokens;
  const asked =
    maxCompletion.value ??
    maxTokens.value ??
    (route === 'chat'
      ? (defaults?.chat ?? DEFAULT_CHAT_TOKENS)
      : (defaults?.completions ?? DEFAULT_COMPLETION_TOKENS));
  const limit = context.maxModelLen;
  if (limit !== undefined && prompt.value + asked > limit) {
    return invalid(
      `This model's maximum context length is ${limit} tokens. However, you requested ` +
        `${prompt.value + asked} tokens (${prompt.value} in the messages, ${asked} in the ` +
        `completion). Please reduce the length of the messages or completion.`,
    );
  }
  const cut = stopCut(asked, stop.value);
  return {
    ok: true,
    plan: {
      route,
      model: typeof model === 'string' ? model : context.servedModel,
      promptTokens: prompt.value,
      tokens: cut?.tokens ?? asked,
      visibleChars: cut?.chars ?? Number.POSITIVE_INFINITY,
      finishReason: cut === undefined ? 'length' : 'stop',
      stopReason: cut?.stop ?? null,
      stream: stream === true,
      includeUsage,
    },
  };
}

/**
 * Where a stop string ends the deterministic answer: the text before it is shown, and the engine
 * generated tokens up to the one completing it (as real engines count them).
 */
function stopCut(
  maxTokens: number,
  stops: readonly string[],
): { tokens: number; chars: number; stop: string } | undefined {
  if (stops.length === 0) return undefined;
  const full = generatedText(maxTokens);
  let best: { at: number; stop: string } | undefined;
  for (const stop of stops) {
    const at = full.indexOf(stop);
    if (at !== -1 && (best === undefined || at < best.at)) best = { at, stop };
  }
  if (best === undefined) return undefined;
  const end = best.at + best.stop.length;
  let length = 0;
  for (let i = 0; i < maxTokens; i++) {
    length += tokenText(i).length;
    if (length >= end) return { tokens: i + 1, chars: best.at, stop: best.stop };
  }
  return { tokens: maxTokens, chars: best.at, stop: best.stop };
}

/** The part of token `i` the client sees, given where the visible text ends. */
function visibleToken(i: number, start: number, visibleChars: number): string {
  const text = tokenText(i);
  if (start + text.length <= visibleChars) return text;
  return start >= visibleChars ? '' : text.slice(0, visibleChars - start);
}

// --- generation

async function generate(
  res: ServerResponse,
  path: string,
  exchange: Exchange,
  context: OpenAIWireContext,
  body: Record<string, unknown>,
): Promise<void> {
  const route: Route = path === '/v1/chat/completions' ? 'chat' : 'completions';
  const checked = plan(route, body, context);
  if (!checked.ok) {
    const kind = checked.status === 404 ? 'not_found' : 'invalid_request';
    context.sendError(res, checked.status, checked.message, kind);
    return;
  }
  const p = checked.plan;
  if (context.engine.full) {
    overloaded(res, context);
    return;
  }
  const client = watchClient(exchange);
  const id = `${route === 'chat' ? 'chatcmpl' : 'cmpl'}-${hexId()}`;
  const created = nowSeconds();
  const usage = {
    prompt_tokens: p.promptTokens,
    completion_tokens: p.tokens,
    total_tokens: p.promptTokens + p.tokens,
  };
  const choiceTail = (finish: string | null): Record<string, unknown> => ({
    logprobs: null,
    finish_reason: finish,
    ...(context.stopReason && { stop_reason: finish === null ? null : p.stopReason }),
  });

  if (!p.stream) {
    await exchange.released();
    if (client.gone || res.destroyed) return;
    const generation = context.engine.submit(p.promptTokens, p.tokens, {
      onTokens: () => undefined,
      onDone: () => {
        if (res.destroyed) return;
        const text = generatedText(p.tokens).slice(0, p.visibleChars);
        const choice =
          route === 'chat'
            ? { index: 0, message: { role: 'assistant', content: text } }
            : { index: 0, text };
        answerJson(res, path, context, 200, {
          id,
          object: route === 'chat' ? 'chat.completion' : 'text_completion',
          created,
          model: p.model,
          choices: [{ ...choice, ...choiceTail(p.finishReason) }],
          usage,
        });
      },
    });
    client.attach(generation);
    if (generation === undefined) overloaded(res, context);
    return;
  }

  // Headers go out at once (as uvicorn's StreamingResponse does); events follow the tokens.
  startStream(res, context.streamContentType ?? 'text/event-stream', context.streamHeaders ?? {});
  const sent: string[] = [];
  const event = (json: unknown): void => {
    const chunk = `data: ${JSON.stringify(json)}\n\n`;
    sent.push(chunk);
    res.write(chunk);
  };
  const object = route === 'chat' ? 'chat.completion.chunk' : 'text_completion';
  const chunk = (choice: Record<string, unknown>): unknown => ({
    id,
    object,
    created,
    model: p.model,
    choices: [choice],
  });
  await exchange.released();
  if (client.gone || res.destroyed) return;
  let offset = 0;
  const generation = context.engine.submit(p.promptTokens, p.tokens, {
    onTokens: (first, count) => {
      if (res.destroyed) return;
      // vLLM opens a chat stream with the assistant's role, sent with the first output.
      if (first === 0 && route === 'chat') {
        event(chunk({ index: 0, delta: { role: 'assistant', content: '' }, ...choiceTail(null) }));
      }
      // One event per token, each written as it is produced.
      for (let i = first; i < first + count; i++) {
        const text = visibleToken(i, offset, p.visibleChars);
        offset += tokenText(i).length;
        const finish = i === p.tokens - 1 ? p.finishReason : null;
        const body = route === 'chat' ? { delta: { content: text } } : { text };
        event(chunk({ index: 0, ...body, ...choiceTail(finish) }));
      }
    },
    onDone: () => {
      if (res.destroyed) return;
      if (p.includeUsage) {
        event({ id, object, created, model: p.model, choices: [], usage });
      }
      const done = 'data: [DONE]\n\n';
      sent.push(done);
      res.end(done);
      context.onAnswer?.(path, sent.join(''));
    },
  });
  client.attach(generation);
  // Headers are out: a full engine ends the stream with an error event, as vLLM does mid-stream.
  if (generation === undefined) {
    event({ error: { message: 'The server is overloaded', type: 'unavailable', code: 503 } });
    res.end('data: [DONE]\n\n');
  }
}

/** Cancels the generation when the client leaves, whether it left before or after it started. */
function watchClient(exchange: Exchange): {
  readonly gone: boolean;
  attach(generation: Generation | undefined): void;
} {
  let gone = false;
  let current: Generation | undefined;
  exchange.onAbort(() => {
    gone = true;
    current?.cancel();
  });
  return {
    get gone() {
      return gone;
    },
    attach(generation) {
      current = generation;
    },
  };
}

function overloaded(res: ServerResponse, context: OpenAIWireContext): void {
  if (context.onOverloaded !== undefined) context.onOverloaded(res);
  else context.sendError(res, 503, 'The server is overloaded; try again later', 'unavailable');
}

// --- embeddings

function embeddingInputs(input: unknown): Field<{ text: string; tokens: number }[]> {
  if (typeof input === 'string') return ok([{ text: input, tokens: estimateTokens(input) }]);
  if (Array.isArray(input) && input.length > 0) {
    if (input.every((t) => Number.isInteger(t))) {
      return ok([{ text: input.join(','), tokens: input.length }]);
    }
    const items: { text: string; tokens: number }[] = [];
    for (const item of input) {
      if (typeof item === 'string') items.push({ text: item, tokens: estimateTokens(item) });
      else if (Array.isArray(item) && item.length > 0 && item.every((t) => Number.isInteger(t))) {
        items.push({ text: item.join(','), tokens: item.length });
      } else return bad('input must be a string, a list of strings, or token ids');
    }
    return ok(items);
  }
  return bad('input must be a string, a list of strings, or token ids');
}

/** A unit vector derived from the text, so equal inputs embed equally. */
function embeddingOf(text: string): number[] {
  const digest = createHash('sha256').update(text).digest();
  const raw = Array.from({ length: EMBEDDING_DIMENSION }, (_, i) => (digest[i] ?? 0) / 127.5 - 1);
  const norm = Math.hypot(...raw) || 1;
  return raw.map((v) => Math.round((v / norm) * 1e6) / 1e6);
}

async function embed(
  res: ServerResponse,
  path: string,
  exchange: Exchange,
  context: OpenAIWireContext,
  body: Record<string, unknown>,
): Promise<void> {
  const inputs = given(body['input']) ? embeddingInputs(body['input']) : bad('input is required');
  if (!inputs.ok) {
    context.sendError(res, 400, inputs.message, 'invalid_request');
    return;
  }
  const model = body['model'];
  if (given(model) && typeof model !== 'string') {
    context.sendError(res, 400, 'model must be a string', 'invalid_request');
    return;
  }
  if (context.checkModel && typeof model === 'string' && model !== context.servedModel) {
    context.sendError(res, 404, `The model \`${model}\` does not exist.`, 'not_found');
    return;
  }
  const client = watchClient(exchange);
  await exchange.released();
  if (client.gone || res.destroyed) return;
  const promptTokens = inputs.value.reduce((sum, item) => sum + item.tokens, 0);
  // Prefill only: a zero-token generation costs the engine its prompt time.
  const generation = context.engine.submit(promptTokens, 0, {
    onTokens: () => undefined,
    onDone: () => {
      if (res.destroyed) return;
      answerJson(res, path, context, 200, {
        id: `embd-${hexId()}`,
        object: 'list',
        created: nowSeconds(),
        model: typeof model === 'string' ? model : context.servedModel,
        data: inputs.value.map((item, index) => ({
          index,
          object: 'embedding',
          embedding: embeddingOf(item.text),
        })),
        usage: { prompt_tokens: promptTokens, total_tokens: promptTokens, completion_tokens: 0 },
      });
    },
  });
  client.attach(generation);
  if (generation === undefined) overloaded(res, context);
}

// ---------------------------------------------------------------------------------------------
// The three engines

export type OpenAIVariant = 'vllm' | 'sglang' | 'llama';

export interface OpenAIFakeOptions extends FakeServerOptions {
  variant: OpenAIVariant;
  /** The served model id. @default 'Qwen/Qwen3-8B' */
  modelName?: string;
  batching?: BatchingOptions;
}

export const DEFAULT_MODEL_NAME = 'Qwen/Qwen3-8B';

/** Answers kept in `sentAnswers`, newest last. */
const KEPT_ANSWERS = 100;

/** The fake server, plus the exact bytes of its recent answers. */
export class OpenAIFakeServer extends FakeServer {
  readonly variant: OpenAIVariant;
  readonly modelName: string;
  /** The engine generating every answer (its running/waiting counts are observable). */
  readonly engine: BatchingEngine;
  /** The last answers written, whole: `{ path, body }`, newest last. */
  readonly sentAnswers: { path: string; body: string }[] = [];

  constructor(
    behaviour: EngineBehaviour,
    options: OpenAIFakeOptions,
    engine: BatchingEngine,
    modelName: string,
  ) {
    super(behaviour, options);
    this.variant = options.variant;
    this.modelName = modelName;
    this.engine = engine;
  }
}

const pad = (n: number, width = 2): string => String(n).padStart(width, '0');

/** vLLM's logger prefix: `(APIServer pid=N) INFO MM-DD hh:mm:ss [file.py:line]`. */
function vllmLine(process: string, level: string, where: string, message: string): string {
  const d = new Date();
  const stamp = `${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return `(${process}) ${level} ${stamp} [${where}] ${message}`;
}

/** SGLang's logger prefix: `[YYYY-MM-DD hh:mm:ss TP0] `. */
function sglangLine(message: string, rank = ''): string {
  const d = new Date();
  const stamp = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return `[${stamp}${rank === '' ? '' : ` ${rank}`}] ${message}`;
}

const EMPTY_HEADERS = { 'content-length': '0' };

function sendEmpty(res: ServerResponse, status: number): void {
  res.writeHead(status, EMPTY_HEADERS);
  res.end();
}

/** FastAPI's 404 for an unknown route (vLLM, SGLang). */
function fastApiNotFound(res: ServerResponse): void {
  sendJson(res, 404, { detail: 'Not Found' });
}

/** vLLM's `type` strings (`create_error_response(err_type=...)`). */
const VLLM_TYPES: Record<OpenAIErrorKind, string> = {
  invalid_request: 'BadRequestError',
  not_found: 'NotFoundError',
  unavailable: 'ServiceUnavailableError',
  server_error: 'InternalServerError',
};

/** llama.cpp's `type` strings (server-common `format_error_response`). */
const LLAMA_TYPES: Record<OpenAIErrorKind, string> = {
  invalid_request: 'invalid_request_error',
  not_found: 'not_found_error',
  unavailable: 'unavailable_error',
  server_error: 'server_error',
};

/** llama.cpp answers this on every path while it loads (server-http.cpp, model-servers.md §5.2). */
const LLAMA_LOADING = '{"error":{"message":"Loading model","type":"unavailable_error","code":503}}';
const LLAMA_NOT_FOUND =
  '{"error":{"message":"File Not Found","type":"not_found_error","code":404}}';

function sendRawJson(
  res: ServerResponse,
  status: number,
  text: string,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': String(Buffer.byteLength(text)),
    ...headers,
  });
  res.end(text);
}

interface Wire {
  readonly name: string;
  readonly sendError: OpenAIWireContext['sendError'];
}

/**
 * vLLM: the current error shape `{"error":{message,type,param,code:int}}` (§3.2).
 * SGLang: `{"object":"error",message,type,param,code:int}`, flat. model-servers.md §4.2 leaves the
 * shape UNVERIFIED ("OpenAI-style expected"); SGLang's source answers flat: `create_error_response`
 * in sgl-project/sglang python/sglang/srt/entrypoints/openai/serving_base.py builds
 * `ErrorResponse(object="error", message, type, param, code)` and returns its `model_dump()`, and
 * http_server.py's validation handler keeps "legacy format" except on /v1/responses.
 * llama.cpp: `{"error":{code:int,message,type}}` (§5.2).
 */
function wireOf(variant: OpenAIVariant): Wire {
  switch (variant) {
    case 'vllm':
      return {
        name: 'vllm',
        sendError: (res, status, message, kind) =>
          sendJson(res, status, {
            error: { message, type: VLLM_TYPES[kind], param: null, code: status },
          }),
      };
    case 'sglang':
      return {
        name: 'sglang',
        sendError: (res, status, message, kind) =>
          sendJson(res, status, {
            object: 'error',
            message,
            type: VLLM_TYPES[kind],
            param: null,
            code: status,
          }),
      };
    case 'llama':
      return {
        name: 'llama',
        sendError: (res, status, message, kind) =>
          sendRawJson(
            res,
            status,
            JSON.stringify({ error: { code: status, message, type: LLAMA_TYPES[kind] } }),
          ),
      };
  }
}

interface LineSet {
  startup: (port: number) => string[];
  loaded: (port: number) => string[];
  fatal: () => string[];
}

function vllmLines(model: string): LineSet {
  const api = `APIServer pid=${process.pid}`;
  const core = `EngineCore_DP0 pid=${process.pid + 1}`;
  const routes = [
    ['/openapi.json', 'GET, HEAD'],
    ['/docs', 'GET, HEAD'],
    ['/health', 'GET'],
    ['/load', 'GET'],
    ['/tokenize', 'POST'],
    ['/detokenize', 'POST'],
    ['/v1/models', 'GET'],
    ['/version', 'GET'],
    ['/v1/chat/completions', 'POST'],
    ['/v1/completions', 'POST'],
    ['/v1/embeddings', 'POST'],
    ['/metrics', 'GET'],
  ];
  return {
    startup: (port) => [
      vllmLine(api, 'INFO', 'api_server.py:1885', 'vLLM API server version 0.11.0'),
      vllmLine(
        api,
        'INFO',
        'utils.py:328',
        `non-default args: {'model_tag': '${model}', 'host': '127.0.0.1', 'port': ${port}, 'model': '${model}'}`,
      ),
      vllmLine(api, 'INFO', 'model.py:547', 'Resolved architecture: Qwen3ForCausalLM'),
      vllmLine(api, 'INFO', 'model.py:1510', 'Using max model len 40960'),
      vllmLine(core, 'INFO', 'core.py:644', 'Waiting for init message from front-end.'),
      vllmLine(core, 'INFO', 'gpu_model_runner.py:2338', `Starting to load model ${model}...`),
      vllmLine(core, 'INFO', 'default_loader.py:267', 'Loading weights took 3.12 seconds'),
      vllmLine(
        core,
        'INFO',
        'gpu_model_runner.py:2392',
        'Model loading took 15.2683 GiB and 4.021 seconds',
      ),
      vllmLine(core, 'INFO', 'gpu_worker.py:298', 'Available KV cache memory: 52.37 GiB'),
      vllmLine(core, 'INFO', 'kv_cache_utils.py:1087', 'GPU KV cache size: 381,296 tokens'),
      vllmLine(
        core,
        'INFO',
        'core.py:210',
        'init engine (profile, create kv cache, warmup model) took 21.45 seconds',
      ),
    ],
    loaded: (port) => [
      vllmLine(
        api,
        'INFO',
        'api_server.py:1971',
        `Starting vLLM API server 0 on http://127.0.0.1:${port}`,
      ),
      vllmLine(api, 'INFO', 'launcher.py:34', 'Available routes are:'),
      ...routes.map(([route, methods]) =>
        vllmLine(api, 'INFO', 'launcher.py:42', `Route: ${route}, Methods: ${methods}`),
      ),
      `(${api}) INFO:     Started server process [${process.pid}]`,
      `(${api}) INFO:     Waiting for application startup.`,
      // What the vllm worker keys on (model-servers.md §3.1).
      `(${api}) INFO:     Application startup complete.`,
    ],
    fatal: () => [
      vllmLine(core, 'ERROR', 'core.py:708', 'EngineCore failed to start.'),
      vllmLine(core, 'ERROR', 'core.py:708', 'Traceback (most recent call last):'),
      `(${core}) ERROR ... [core.py:708]   File "/usr/local/lib/python3.12/dist-packages/vllm/v1/worker/gpu_worker.py", line 240, in determine_available_memory`,
      `(${core}) ERROR ... [core.py:708] torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.16 GiB. GPU 0 has a total capacity of 79.19 GiB of which 512.00 MiB is free.`,
      `(${api}) RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}`,
    ],
  };
}

function sglangLines(model: string): LineSet {
  return {
    startup: (port) => [
      sglangLine(
        `server_args=ServerArgs(model_path='${model}', tokenizer_path='${model}', host='127.0.0.1', port=${port}, mem_fraction_static=0.871, tp_size=1)`,
      ),
      sglangLine('Attention backend not explicitly specified. Use fa3 backend by default.', 'TP0'),
      sglangLine('Init torch distributed begin.', 'TP0'),
      sglangLine('Load weight begin. avail mem=78.68 GB', 'TP0'),
      sglangLine(
        'Load weight end. type=Qwen3ForCausalLM, dtype=torch.bfloat16, avail mem=63.29 GB, mem usage=15.39 GB.',
        'TP0',
      ),
      sglangLine(
        'KV Cache is allocated. #tokens: 390715, K size: 26.83 GB, V size: 26.83 GB',
        'TP0',
      ),
      sglangLine('INFO:     Started server process [' + String(process.pid) + ']'),
      sglangLine('INFO:     Waiting for application startup.'),
      sglangLine('INFO:     Application startup complete.'),
      sglangLine(`INFO:     Uvicorn running on http://127.0.0.1:${port} (Press CTRL+C to quit)`),
    ],
    loaded: () => [
      sglangLine('INFO:     127.0.0.1:51234 - "GET /get_model_info HTTP/1.1" 200 OK'),
      sglangLine(
        'Prefill batch. #new-seq: 1, #new-token: 7, #cached-token: 0, token usage: 0.00, #running-req: 0, #queue-req: 0',
        'TP0',
      ),
      sglangLine('INFO:     127.0.0.1:51240 - "POST /generate HTTP/1.1" 200 OK'),
      // What the sglang worker keys on (model-servers.md §4.1).
      sglangLine('The server is fired up and ready to roll!'),
    ],
    fatal: () => [
      sglangLine('Scheduler hit an exception: Traceback (most recent call last):', 'TP0'),
      '  File "/sgl-workspace/sglang/python/sglang/srt/managers/scheduler.py", line 2710, in run_scheduler_process',
      '    scheduler = Scheduler(server_args, port_args, gpu_id, tp_rank, moe_ep_rank, pp_rank, dp_rank)',
      '  File "/sgl-workspace/sglang/python/sglang/srt/model_executor/model_runner.py", line 1338, in init_memory_pool',
      '    raise RuntimeError(',
      'RuntimeError: Not enough memory. Please try to increase --mem-fraction-static.',
    ],
  };
}

function llamaLines(model: string): LineSet {
  const file = `/root/.cache/llama.cpp/${model.replaceAll('/', '_')}-Q4_K_M.gguf`;
  return {
    // The HTTP server starts before the model (§5.2); no line here says "listening on".
    startup: (port) => [
      'build: 6892 (00dd081) with cc (Ubuntu 13.3.0-6ubuntu2~24.04) 13.3.0 for x86_64-linux-gnu',
      'system info: n_threads = 8, n_threads_batch = 8, total_threads = 16',
      'main: binding port with default address family',
      `main: HTTP server is listening, hostname: 127.0.0.1, port: ${port}, http threads: 15`,
      'main: loading model',
      `srv    load_model: loading model '${file}'`,
      `llama_model_loader: loaded meta data with 32 key-value pairs and 399 tensors from ${file} (version GGUF V3 (latest))`,
      'print_info: file type   = Q4_K - Medium',
      'load_tensors: offloaded 37/37 layers to GPU',
      'llama_context: n_ctx         = 4096',
    ],
    loaded: (port) => [
      'srv    load_model: initializing slots, n_slots = 4',
      'slot   load_model: id  0 | task -1 | new slot n_ctx_slot = 4096',
      // What the llama worker keys on (model-servers.md §5.1): after /health turned 200.
      'srv    load_model: model loaded',
      `main: server is listening on http://127.0.0.1:${port} - starting the main loop`,
      'srv  update_slots: all slots are idle',
    ],
    fatal: () => [
      `llama_model_load: error loading model: tensor 'blk.12.ffn_down.weight' data is not within the file bounds, model is corrupted or incomplete`,
      'llama_model_load_from_file_impl: failed to load model',
      `common_init_from_params: failed to load model '${file}'`,
      `srv    load_model: failed to load model, '${file}'`,
      'srv   operator(): operator(): cleaning up before exit...',
      'main: exiting due to model loading error',
    ],
  };
}

function behaviourOf(
  variant: OpenAIVariant,
  context: OpenAIWireContext,
  lines: LineSet,
): EngineBehaviour {
  const wire = wireOf(variant);
  const common = {
    name: wire.name,
    startupLines: lines.startup,
    loadedLines: lines.loaded,
    fatalLines: lines.fatal,
    errorResponse: (res: ServerResponse, error: InjectedError) => sendInjected(res, wire, error),
    handle: (req: IncomingMessage, res: ServerResponse, path: string, exchange: Exchange) =>
      handleOpenAIRequest(req, res, path, exchange, context),
  };
  switch (variant) {
    case 'vllm':
      // Refuses connections until loaded; /health 200 with an empty body, 503 once the engine died.
      return {
        ...common,
        loadBehaviour: 'refuse',
        loadingResponse: (res) => sendEmpty(res, 503),
        isHealthPath: (path, method) =>
          path === '/health' && (method === 'GET' || method === 'HEAD'),
        healthyResponse: (res) => sendEmpty(res, 200),
        unhealthyResponse: (res) => sendEmpty(res, 503),
        notFound: fastApiNotFound,
      };
    case 'sglang':
      // Serves at once; /health answers 503 until the warm-up request passed (newer SGLang, §4.2).
      return {
        ...common,
        loadBehaviour: 'health-503',
        loadingResponse: (res) => sendEmpty(res, 503),
        isHealthPath: (path, method) =>
          (path === '/health' || path === '/health_generate') &&
          (method === 'GET' || method === 'HEAD'),
        healthyResponse: (res) => sendEmpty(res, 200),
        unhealthyResponse: (res) => sendEmpty(res, 503),
        notFound: fastApiNotFound,
      };
    case 'llama':
      // Every path answers 503 "Loading model" while loading; then /health is {"status":"ok"}.
      return {
        ...common,
        loadBehaviour: 'unavailable',
        loadingResponse: (res) => sendRawJson(res, 503, LLAMA_LOADING),
        isHealthPath: (path, method) =>
          (path === '/health' || path === '/v1/health') && method === 'GET',
        healthyResponse: (res) => sendRawJson(res, 200, '{"status":"ok"}'),
        unhealthyResponse: (res) => sendRawJson(res, 503, LLAMA_LOADING),
        notFound: (res) => sendRawJson(res, 404, LLAMA_NOT_FOUND),
      };
  }
}

/**
 * Starts a fake vLLM, SGLang or llama-server. vLLM and SGLang queue every request the batch
 * cannot take (a large waiting room, no refusals), as does llama.cpp once its slots are busy.
 */
export async function startOpenAIFake(options: OpenAIFakeOptions): Promise<OpenAIFakeServer> {
  const { variant } = options;
  const modelName = options.modelName ?? DEFAULT_MODEL_NAME;
  const engine = new BatchingEngine({
    // llama-server decodes a few slots at once (-np, 4 here); vLLM and SGLang batch widely.
    maxRunning: variant === 'llama' ? 4 : 64,
    maxWaiting: 100_000,
    ...options.batching,
  });
  // The context's callbacks reach the server, which is built from the context.
  const ref: { server?: OpenAIFakeServer } = {};
  const wire = wireOf(variant);
  const context: OpenAIWireContext = {
    engine,
    servedModel: modelName,
    checkModel: variant !== 'llama',
    sendError: wire.sendError,
    ...(variant === 'llama'
      ? {
          streamHeaders: { 'X-Accel-Buffering': 'no' },
          modelCard: { owned_by: 'llamacpp', meta: { n_ctx_train: 40960, n_embd: 4096 } },
        }
      : {
          // Starlette adds the charset to text/ media types.
          streamContentType: 'text/event-stream; charset=utf-8',
          stopReason: variant === 'vllm',
          maxModelLen: 40960,
          modelCard:
            variant === 'vllm'
              ? { owned_by: 'vllm', root: modelName, parent: null, max_model_len: 40960 }
              : { owned_by: 'sglang', root: modelName, max_model_len: 40960 },
        }),
    onOverloaded: (res) => {
      if (ref.server !== undefined) countOverloaded(ref.server);
      wire.sendError(res, 503, 'The server is overloaded; try again later', 'unavailable');
    },
    onAnswer: (path, body) => {
      const kept = ref.server?.sentAnswers;
      if (kept === undefined) return;
      kept.push({ path, body });
      if (kept.length > KEPT_ANSWERS) kept.shift();
    },
  };
  const lines =
    variant === 'vllm'
      ? vllmLines(modelName)
      : variant === 'sglang'
        ? sglangLines(modelName)
        : llamaLines(modelName);
  const server = new OpenAIFakeServer(
    behaviourOf(variant, context, lines),
    options,
    engine,
    modelName,
  );
  ref.server = server;
  // `tsworker dev` and the test stack give the worker the model id this fake serves.
  server.workerEnv['MODEL_NAME'] = modelName;
  server.onStop = () => engine.stop();
  await server.start();
  return server;
}

const VARIANTS: readonly OpenAIVariant[] = ['vllm', 'sglang', 'llama'];

/**
 * Runs the fake from the environment: VARIANT (vllm | sglang | llama, default vllm), MODEL_HOST,
 * MODEL_PORT (18000), MODEL_LOG, MODEL_NAME, LOAD_DELAY_MS, TOKENS_PER_SECOND (the engine's total;
 * one sequence gets a tenth of it). Prints one JSON line `{"event":"listening","url":...}` at once;
 * the vLLM variant refuses connections on that URL until it has loaded.
 */
export async function main(env: NodeJS.ProcessEnv = process.env): Promise<OpenAIFakeServer> {
  const variant = (env['VARIANT'] || 'vllm') as OpenAIVariant;
  if (!VARIANTS.includes(variant)) {
    throw new Error(`VARIANT must be one of ${VARIANTS.join(', ')}, got "${variant}"`);
  }
  const logFile = env['MODEL_LOG'];
  const modelName = env['MODEL_NAME'];
  const tokensPerSecond = envNumber(env, 'TOKENS_PER_SECOND', 0);
  const server = await startOpenAIFake({
    variant,
    host: env['MODEL_HOST'] || '127.0.0.1',
    port: envNumber(env, 'MODEL_PORT', 18000),
    loadDelayMs: envNumber(env, 'LOAD_DELAY_MS', 0),
    ...(logFile ? { logFile } : {}),
    ...(modelName ? { modelName } : {}),
    ...(tokensPerSecond > 0 && {
      batching: {
        tokensPerSecond,
        tokensPerSecondPerSequence: Math.max(1, tokensPerSecond / 10),
      },
    }),
  });
  return serveUntilSignal(server);
}

if (isEntryPoint(import.meta.url)) runProgram('openai fake', main);
