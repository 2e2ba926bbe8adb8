/**
 * The example model server: what a real LLM server on port 5001 does for hello_world (seed 002).
 * POST /generate answers JSON, POST /generate_stream answers SSE token by token, GET /healthcheck.
 * It writes a realistic MODEL_LOG and can be told to fail in every way a model server fails.
 *
 * A hold (`configure({ hold })`, `waitForHeld`, `release`) keeps generations in flight at a known
 * point until a test lets them go, so tests wait on an event rather than on a token delay.
 *
 * It is both a test fixture (in process, or spawned and steered through /_control and /_stats)
 * and the "direct" target of the bench, so the zero-latency path does no timers and no allocations
 * beyond the response itself.
 */
import { EventEmitter } from 'node:events';
import { appendFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { z } from 'zod';
import { isEntryPoint } from '../../lib/index.ts';
import { closeServer, httpUrl, listen, onBody, pathOf, sendJson } from './http.ts';
import { envNumber, runProgram, serveUntilSignal } from './program.ts';

export type FailureInjection =
  | { kind: 'none' }
  /** Answer every generation request with this status (and body, JSON error by default). */
  | { kind: 'status'; status: number; body?: string }
  /** Accept the request, never answer. */
  | { kind: 'hang-headers' }
  /** Send the headers and `afterTokens` tokens (half the JSON body for /generate), then close. */
  | { kind: 'drop-mid-stream'; afterTokens: number }
  /** Reset the connection as soon as the request body has arrived. */
  | { kind: 'reset' }
  /** Fail a fraction of requests, deterministically: rate 0.5 fails the 2nd, 4th, 6th... */
  | { kind: 'fail-rate'; rate: number; status: number };

/**
 * Where a generation waits while a hold is set, so a test can keep requests "running" for as long
 * as it needs and synchronise on `waitForHeld` instead of on a token delay.
 */
export type HoldPoint =
  /** Before the response's headers (both routes). */
  | { at: 'headers' }
  /** /generate_stream: after the headers and this many tokens. /generate: before the headers. */
  | { at: 'tokens'; afterTokens: number };

export interface ExampleModelServerOptions {
  /** @default '127.0.0.1' */
  host?: string;
  /** 0 picks an ephemeral port. @default 0 */
  port?: number;
  /** MODEL_LOG: start-up lines go here, and `writeLog` appends to it. */
  logFile?: string;
  /** Time between the first log line and "server has started"; requests get 503 until then. @default 0 */
  loadDelayMs?: number;
  /** Generation time per token; 0 answers at once (zero-latency mode). @default 0 */
  tokenDelayMs?: number;
  /** @default { kind: 'none' } */
  failure?: FailureInjection;
  /** /healthcheck answers 503 when false. @default true */
  healthy?: boolean;
  /** Generations that arrive wait at this point until `release()` (or a new hold). @default null */
  hold?: HoldPoint | null;
}

/** What can change while the server runs (`configure`, POST /_control). */
export type ExampleModelServerSettings = Pick<
  ExampleModelServerOptions,
  'tokenDelayMs' | 'failure' | 'healthy' | 'hold'
>;

export interface ExampleModelServerStats {
  /** Generation requests (and 400/404s) whose body arrived. Healthchecks and /_ routes not counted. */
  received: number;
  /** Responses fully written. */
  completed: number;
  /** The client went away before its response was finished. */
  aborted: number;
  /** Connections the server itself cut (failure injection 'reset' or 'drop-mid-stream'). */
  dropped: number;
  inFlight: number;
  /** Generations waiting at the hold point now (also counted in `inFlight`). */
  held: number;
  healthchecks: number;
}

export interface ExampleModelServerEvents {
  /** A request body arrived; `body` is the parsed JSON, or the raw text when it is not JSON. */
  request: [{ path: string; body: unknown }];
  completed: [{ path: string; status: number }];
  aborted: [{ path: string }];
  dropped: [{ path: string }];
  healthcheck: [{ status: number }];
  /** A generation reached the hold point and waits. */
  held: [{ path: string }];
  /** "server has started" was logged: the model is loaded. */
  loaded: [];
}

const MAX_TOKENS = 4096;
const DEFAULT_TOKENS = 16;

// prettier-ignore
const WORDS = [
  'the', 'quick', 'brown', 'fox', 'jumps', 'over', 'lazy', 'dog', 'a', 'model', 'serves',
  'tokens', 'one', 'at', 'time', 'while', 'workers', 'scale', 'up', 'and', 'down', 'with',
  'load', 'cats', 'sleep', 'in', 'warm', 'light', 'rivers', 'run', 'to', 'sea', 'stars',
  'shine', 'over', 'quiet', 'hills', 'bright', 'morning', 'comes', 'again', 'soon', 'after',
  'long', 'night', 'of', 'rain', 'green', 'fields', 'grow',
];

// Token i is always the same word, so responses are deterministic and cacheable.
const tokenText = (i: number): string =>
  (i === 0 ? '' : ' ') + (WORDS[(i * 31 + 7) % WORDS.length] ?? 'word');

const textCache = new Map<number, string>();
function generatedText(n: number): string {
  let text = textCache.get(n);
  if (text === undefined) {
    text = '';
    for (let i = 0; i < n; i++) text += tokenText(i);
    textCache.set(n, text);
  }
  return text;
}

const sseCache: string[] = [];
function sseToken(i: number): string {
  let line = sseCache[i];
  if (line === undefined) {
    line = `data: ${JSON.stringify({ token: tokenText(i), index: i })}\n\n`;
    sseCache[i] = line;
  }
  return line;
}

const failureSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('none') }),
  z.object({
    kind: z.literal('status'),
    status: z.number().int().min(100).max(599),
    body: z.string().exactOptional(),
  }),
  z.object({ kind: z.literal('hang-headers') }),
  z.object({ kind: z.literal('drop-mid-stream'), afterTokens: z.number().int().min(0) }),
  z.object({ kind: z.literal('reset') }),
  z.object({
    kind: z.literal('fail-rate'),
    rate: z.number().min(0).max(1),
    status: z.number().int().min(100).max(599),
  }),
]);

const holdSchema = z.discriminatedUnion('at', [
  z.strictObject({ at: z.literal('headers') }),
  z.strictObject({ at: z.literal('tokens'), afterTokens: z.number().int().min(0) }),
]);

const settingsSchema = z.strictObject({
  tokenDelayMs: z.number().min(0).exactOptional(),
  failure: failureSchema.exactOptional(),
  healthy: z.boolean().exactOptional(),
  hold: holdSchema.nullable().exactOptional(),
});

type GenerationPath = '/generate' | '/generate_stream';

interface Exchange {
  readonly path: string;
  /** Set when the server cuts the connection on purpose, so it is not counted as a client abort. */
  deliberate: boolean;
  timer: NodeJS.Timeout | undefined;
}

const JSON_HEADERS = { 'content-type': 'application/json' } as const;

type Parsed =
  { ok: true; prompt: string; tokens: number } | { ok: false; error: string; body: unknown };

function parseGenerateBody(text: string): Parsed {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return { ok: false, error: 'invalid JSON', body: text };
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    return { ok: false, error: 'request body must be a JSON object', body };
  }
  const record = body as Record<string, unknown>;
  const prompt = record['prompt'];
  if (typeof prompt !== 'string') {
    return { ok: false, error: 'field "prompt" is required and must be a string', body };
  }
  const max = record['max_response_tokens'];
  if (max !== undefined && max !== null && (!Number.isInteger(max) || (max as number) < 0)) {
    return { ok: false, error: 'field "max_response_tokens" must be a non-negative integer', body };
  }
  const tokens = Math.min(typeof max === 'number' ? max : DEFAULT_TOKENS, MAX_TOKENS);
  return { ok: true, prompt, tokens };
}

export class ExampleModelServer extends EventEmitter<ExampleModelServerEvents> {
  #server: Server;
  #url = '';
  #port = 0;
  readonly #logFile: string | undefined;
  readonly #loadDelayMs: number;
  #tokenDelayMs: number;
  #failure: FailureInjection;
  #healthy: boolean;
  #loaded = false;
  #loadTimer: NodeJS.Timeout | undefined;
  #closing: Promise<void> | undefined;
  // Error diffusion for 'fail-rate': exact, repeatable failure counts instead of dice.
  #failDebt = 0;
  #hold: HoldPoint | null;
  // Bumped by every release: a request that arrived under an older hold does not wait.
  #holdEpoch = 0;
  readonly #held = new Set<() => void>();
  readonly #stats: ExampleModelServerStats = {
    received: 0,
    completed: 0,
    aborted: 0,
    dropped: 0,
    inFlight: 0,
    held: 0,
    healthchecks: 0,
  };

  /** Use `startExampleModelServer`; the constructor does not listen. */
  constructor(options: ExampleModelServerOptions = {}) {
    super();
    this.#logFile = options.logFile;
    this.#loadDelayMs = options.loadDelayMs ?? 0;
    this.#tokenDelayMs = options.tokenDelayMs ?? 0;
    this.#failure = options.failure ?? { kind: 'none' };
    this.#healthy = options.healthy ?? true;
    this.#hold = options.hold ?? null;
    this.#server = createServer({ noDelay: true }, (req, res) => this.#onRequest(req, res));
    // Longer than undici's default so pooled proxy connections are not closed under them.
    this.#server.keepAliveTimeout = 65_000;
    this.#server.headersTimeout = 66_000;
  }

  get url(): string {
    return this.#url;
  }

  get port(): number {
    return this.#port;
  }

  get loaded(): boolean {
    return this.#loaded;
  }

  /** A snapshot; read it again after waiting. */
  get stats(): Readonly<ExampleModelServerStats> {
    return { ...this.#stats };
  }

  get settings(): Readonly<Required<ExampleModelServerSettings>> {
    return {
      tokenDelayMs: this.#tokenDelayMs,
      failure: this.#failure,
      healthy: this.#healthy,
      hold: this.#hold,
    };
  }

  /** Applies to requests that arrive afterwards. */
  configure(patch: ExampleModelServerSettings): void {
    if (patch.tokenDelayMs !== undefined) this.#tokenDelayMs = patch.tokenDelayMs;
    if (patch.failure !== undefined) {
      this.#failure = patch.failure;
      this.#failDebt = 0;
    }
    if (patch.healthy !== undefined) this.#healthy = patch.healthy;
    if (patch.hold !== undefined) {
      // A new hold (or none) lets every request held under the old one go on.
      this.#releaseHeld();
      this.#hold = patch.hold;
    }
  }

  /** Lets every held generation go on and stops holding: `configure({ hold: null })`. */
  release(): void {
    this.configure({ hold: null });
  }

  /** Resolves once at least `count` generations wait at the hold point; rejects after `timeoutMs`. */
  waitForHeld(count: number, timeoutMs = 10_000): Promise<void> {
    if (this.#stats.held >= count) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const onHeld = (): void => {
        if (this.#stats.held < count) return;
        clearTimeout(timer);
        this.off('held', onHeld);
        resolve();
      };
      const timer = setTimeout(() => {
        this.off('held', onHeld);
        const held = this.#stats.held;
        reject(
          new Error(
            `example model server: ${held} of ${count} requests held after ${timeoutMs} ms`,
          ),
        );
      }, timeoutMs);
      this.on('held', onHeld);
    });
  }

  /** Appends one line to the log file, as the model server itself would. */
  writeLog(line: string): void {
    if (this.#logFile === undefined) throw new Error('example model server: no logFile configured');
    appendFileSync(this.#logFile, line.endsWith('\n') ? line : `${line}\n`);
  }

  async listen(host = '127.0.0.1', port = 0): Promise<void> {
    const address = await listen(this.#server, port, host);
    this.#port = address.port;
    this.#url = httpUrl(address);
    this.#startLoading();
  }

  /** Stops listening and destroys every open connection, hung or streaming ones included. */
  close(): Promise<void> {
    clearTimeout(this.#loadTimer);
    this.#closing ??= closeServer(this.#server);
    return this.#closing;
  }

  #startLoading(): void {
    if (this.#logFile === undefined) {
      this.#markLoaded();
      return;
    }
    const now = (): string => new Date().toISOString();
    const progress = (pct: number): string =>
      JSON.stringify({
        timestamp: now(),
        level: 'INFO',
        message: `Download hello-world/model.safetensors: ${pct}%`,
        target: 'hello_world::download',
      });
    this.writeLog(`${now()} INFO  Loading model weights from /models/hello-world ...`);
    this.writeLog(progress(0));
    this.writeLog(progress(50));
    const finish = (): void => {
      this.#loadTimer = undefined;
      if (this.#closing !== undefined) return;
      this.writeLog(progress(100));
      this.writeLog(`${now()} INFO  Model weights loaded (2 shards, 1.3 GiB)`);
      this.writeLog(`${now()} INFO  server has started on port ${this.#port}`);
      this.#markLoaded();
    };
    if (this.#loadDelayMs > 0) this.#loadTimer = setTimeout(finish, this.#loadDelayMs);
    else finish();
  }

  #markLoaded(): void {
    this.#loaded = true;
    this.emit('loaded');
  }

  #onRequest(req: IncomingMessage, res: ServerResponse): void {
    const path = pathOf(req.url);
    if (path === '/generate' || path === '/generate_stream') {
      if (req.method !== 'POST') return this.#methodNotAllowed(res, 'POST');
      onBody(req, (text) => this.#onGeneration(path, req, res, text));
      return;
    }
    if (path === '/healthcheck') {
      if (req.method !== 'GET' && req.method !== 'HEAD') return this.#methodNotAllowed(res, 'GET');
      this.#stats.healthchecks++;
      const status = !this.#loaded ? 503 : this.#healthy ? 200 : 503;
      sendJson(res, status, {
        status: !this.#loaded ? 'loading' : this.#healthy ? 'ok' : 'unhealthy',
      });
      this.emit('healthcheck', { status });
      return;
    }
    if (path === '/_stats' && req.method === 'GET') {
      sendJson(res, 200, { ...this.#stats, loaded: this.#loaded });
      return;
    }
    if (path === '/_control' && req.method === 'POST') {
      onBody(req, (text) => this.#onControl(res, text));
      return;
    }
    // Any other path is counted like a request a proxy forwarded to the wrong place.
    onBody(req, (text) => {
      const exchange = this.#begin(path, res, text);
      if (exchange !== undefined) sendJson(res, 404, { error: `not found: ${path}` });
    });
  }

  #methodNotAllowed(res: ServerResponse, allow: string): void {
    res.setHeader('allow', allow);
    sendJson(res, 405, { error: 'method not allowed' });
  }

  #onControl(res: ServerResponse, text: string): void {
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch {
      sendJson(res, 400, { error: 'invalid JSON' });
      return;
    }
    const parsed = settingsSchema.safeParse(raw);
    if (!parsed.success) {
      sendJson(res, 400, { error: 'invalid settings', issues: parsed.error.issues });
      return;
    }
    this.configure(parsed.data);
    sendJson(res, 200, this.settings);
  }

  /** Counts the request and watches how its response ends. */
  #begin(path: string, res: ServerResponse, text: string, parsed?: unknown): Exchange | undefined {
    const exchange: Exchange = { path, deliberate: false, timer: undefined };
    const stats = this.#stats;
    stats.received++;
    stats.inFlight++;
    res.on('close', () => {
      stats.inFlight--;
      clearTimeout(exchange.timer);
      if (res.writableFinished) {
        stats.completed++;
        this.emit('completed', { path, status: res.statusCode });
      } else if (exchange.deliberate || this.#closing !== undefined) {
        stats.dropped++;
        this.emit('dropped', { path });
      } else {
        stats.aborted++;
        this.emit('aborted', { path });
      }
    });
    if (this.listenerCount('request') > 0) {
      let body = parsed;
      if (body === undefined) {
        try {
          body = JSON.parse(text);
        } catch {
          body = text;
        }
      }
      this.emit('request', { path, body });
    }
    // The client may already be gone (e.g. it reset the connection while we emitted).
    return res.destroyed ? undefined : exchange;
  }

  #onGeneration(
    path: GenerationPath,
    req: IncomingMessage,
    res: ServerResponse,
    text: string,
  ): void {
    const parsed = parseGenerateBody(text);
    const exchange = this.#begin(path, res, text, parsed.ok ? undefined : parsed.body);
    if (exchange === undefined) return;
    if (!this.#loaded) {
      sendJson(res, 503, { error: 'model is loading' });
      return;
    }
    const failure = this.#failure;
    let dropAfter: number | undefined;
    switch (failure.kind) {
      case 'none':
        break;
      case 'status':
        if (failure.body === undefined) {
          sendJson(res, failure.status, { error: `injected failure (${failure.status})` });
        } else {
          res.writeHead(failure.status, {
            'content-type': looksLikeJson(failure.body) ? 'application/json' : 'text/plain',
            'content-length': Buffer.byteLength(failure.body),
          });
          res.end(failure.body);
        }
        return;
      case 'hang-headers':
        return;
      case 'reset':
        exchange.deliberate = true;
        req.socket.resetAndDestroy();
        return;
      case 'fail-rate':
        this.#failDebt += failure.rate;
        if (this.#failDebt >= 1 - 1e-9) {
          this.#failDebt -= 1;
          sendJson(res, failure.status, { error: `injected failure (${failure.status})` });
          return;
        }
        break;
      case 'drop-mid-stream':
        dropAfter = failure.afterTokens;
        break;
    }
    if (!parsed.ok) {
      sendJson(res, 400, { error: parsed.error });
      return;
    }
    this.#startGeneration(path, res, exchange, parsed, dropAfter);
  }

  /** Generates now, or waits at the hold point first (before the headers or after N tokens). */
  #startGeneration(
    path: GenerationPath,
    res: ServerResponse,
    exchange: Exchange,
    input: { prompt: string; tokens: number },
    dropAfter: number | undefined,
  ): void {
    const hold = this.#hold;
    const epoch = this.#holdEpoch;
    const pauseAfter =
      hold?.at === 'tokens' && path === '/generate_stream' ? hold.afterTokens : undefined;
    const generate = (): void => {
      if (path === '/generate') this.#generate(res, exchange, input, dropAfter);
      else this.#stream(res, exchange, input.tokens, dropAfter, pauseAfter, epoch);
    };
    if (hold !== null && pauseAfter === undefined) this.#pause(path, res, epoch, generate);
    else generate();
  }

  /** Waits at the hold point until released; goes on at once if released since `epoch`. */
  #pause(path: string, res: ServerResponse, epoch: number, resume: () => void): void {
    if (epoch !== this.#holdEpoch || res.destroyed) {
      if (!res.destroyed) resume();
      return;
    }
    const stats = this.#stats;
    const release = (): void => {
      this.#held.delete(release);
      stats.held--;
      res.off('close', leave);
      if (!res.destroyed) resume();
    };
    // A client that leaves while held is no longer held.
    const leave = (): void => {
      if (this.#held.delete(release)) stats.held--;
    };
    this.#held.add(release);
    stats.held++;
    res.once('close', leave);
    this.emit('held', { path });
  }

  #releaseHeld(): void {
    this.#holdEpoch++;
    for (const release of [...this.#held]) release();
  }

  #generate(
    res: ServerResponse,
    exchange: Exchange,
    input: { prompt: string; tokens: number },
    dropAfter: number | undefined,
  ): void {
    const send = (): void => {
      exchange.timer = undefined;
      const text = JSON.stringify({
        generated_text: generatedText(input.tokens),
        tokens: input.tokens,
        // Roughly four characters a token, like English under a BPE tokenizer.
        prompt_tokens: Math.ceil(input.prompt.length / 4),
      });
      if (dropAfter === undefined) {
        res.writeHead(200, { ...JSON_HEADERS, 'content-length': Buffer.byteLength(text) });
        res.end(text);
        return;
      }
      const bytes = Buffer.from(text);
      res.writeHead(200, { ...JSON_HEADERS, 'content-length': bytes.length });
      res.write(bytes.subarray(0, Math.floor(bytes.length / 2)));
      this.#cut(res, exchange);
    };
    const delay = this.#tokenDelayMs * input.tokens;
    if (delay > 0) exchange.timer = setTimeout(send, delay);
    else send();
  }

  #stream(
    res: ServerResponse,
    exchange: Exchange,
    tokens: number,
    dropAfter: number | undefined,
    pauseAfter: number | undefined,
    epoch: number,
  ): void {
    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
    });
    res.flushHeaders();
    const delay = this.#tokenDelayMs;
    let i = 0;
    let paused = false;
    const step = (): void => {
      exchange.timer = undefined;
      // Zero-latency mode writes every token in this one tick (still one SSE event per write).
      do {
        if (res.destroyed) return;
        if (i === pauseAfter && !paused) {
          paused = true;
          this.#pause(exchange.path, res, epoch, step);
          return;
        }
        if (dropAfter !== undefined && i >= dropAfter) {
          this.#cut(res, exchange);
          return;
        }
        if (i >= tokens) {
          res.end(`data: {"done":true,"tokens":${tokens}}\n\n`);
          return;
        }
        res.write(sseToken(i));
        i++;
      } while (delay <= 0);
      exchange.timer = setTimeout(step, delay);
    };
    // Each token takes tokenDelayMs to "generate", the first one included.
    if (delay > 0) exchange.timer = setTimeout(step, delay);
    else step();
  }

  /** Closes the connection after what was written so far has been flushed: a crash mid-body. */
  #cut(res: ServerResponse, exchange: Exchange): void {
    exchange.deliberate = true;
    const socket = res.socket;
    if (socket === null) return;
    socket.end(() => socket.destroy());
  }
}

function looksLikeJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

export async function startExampleModelServer(
  options: ExampleModelServerOptions = {},
): Promise<ExampleModelServer> {
  const server = new ExampleModelServer(options);
  await server.listen(options.host ?? '127.0.0.1', options.port ?? 0);
  return server;
}

/**
 * Runs the server from the environment (MODEL_HOST, MODEL_PORT=5001, MODEL_LOG, TOKEN_DELAY_MS,
 * LOAD_DELAY_MS) and prints one JSON line `{"event":"listening","url":...}` for a parent process.
 */
export async function main(): Promise<ExampleModelServer> {
  const logFile = process.env['MODEL_LOG'];
  const server = await startExampleModelServer({
    host: process.env['MODEL_HOST'] || '127.0.0.1',
    port: envNumber(process.env, 'MODEL_PORT', 5001),
    ...(logFile ? { logFile } : {}),
    tokenDelayMs: envNumber(process.env, 'TOKEN_DELAY_MS', 0),
    loadDelayMs: envNumber(process.env, 'LOAD_DELAY_MS', 0),
  });
  return serveUntilSignal(server);
}

if (isEntryPoint(import.meta.url)) runProgram('example model server', main);
