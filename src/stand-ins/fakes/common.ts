/**
 * What every faithful fake model server shares: a believable throughput model (continuous batching
 * for LLM engines, one job at a time for ComfyUI), the engine's load phase, its log, and the knobs
 * tests and test_load use to make it fail. Each engine's fake adds only its routes and wire shapes.
 */
import { EventEmitter } from 'node:events';
import { appendFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { z } from 'zod';
import {
  closeServer,
  httpUrl,
  isRecord,
  listen,
  pathOf,
  readBody,
  reservePort,
  sendJson,
} from '../http.ts';

export type JsonBody =
  | { ok: true; value: Record<string, unknown> }
  | { ok: false; reason: 'invalid-json' | 'not-an-object' };

export function parseJsonObject(text: string): JsonBody {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, reason: 'invalid-json' };
  }
  return isRecord(value) ? { ok: true, value } : { ok: false, reason: 'not-an-object' };
}

/** Roughly four characters a token, like English under a BPE tokenizer; at least 1 for any text. */
export function estimateTokens(text: string): number {
  return text.length === 0 ? 0 : Math.max(1, Math.ceil(text.length / 4));
}

// prettier-ignore
const WORDS = [
  'the', 'quick', 'brown', 'fox', 'jumps', 'over', 'lazy', 'dog', 'a', 'model', 'serves',
  'tokens', 'one', 'at', 'time', 'while', 'workers', 'scale', 'up', 'and', 'down', 'with',
  'load', 'cats', 'sleep', 'in', 'warm', 'light', 'rivers', 'run', 'to', 'sea', 'stars',
  'shine', 'quiet', 'hills', 'bright', 'morning', 'comes', 'again', 'soon', 'after',
];

/** Token `i` of every answer is always the same word, so answers are deterministic. */
export function tokenText(i: number): string {
  return (i === 0 ? '' : ' ') + (WORDS[(i * 31 + 7) % WORDS.length] ?? 'word');
}

export function generatedText(tokens: number): string {
  let text = '';
  for (let i = 0; i < tokens; i++) text += tokenText(i);
  return text;
}

// ---------------------------------------------------------------------------------------------
// Throughput: continuous batching

export interface BatchingOptions {
  /** Tokens per second one sequence gets when it runs alone. @default 400 */
  tokensPerSecondPerSequence?: number;
  /** Tokens per second the whole engine can produce, shared among running sequences. @default 4000 */
  tokensPerSecond?: number;
  /** Prefill time per prompt token, in milliseconds, paid before the first token. @default 0.02 */
  prefillMsPerToken?: number;
  /** Sequences decoded at once; later ones wait in the engine's queue. @default 64 */
  maxRunning?: number;
  /** Sequences allowed to wait; beyond it the fake answers its engine's "overloaded" error. @default 256 */
  maxWaiting?: number;
}

export interface GenerationCallbacks {
  /** `count` new tokens, starting at token index `first`. */
  onTokens: (first: number, count: number) => void;
  /** Every token was produced. */
  onDone: () => void;
}

export interface Generation {
  /** Stops producing tokens (the client left); frees the slot. */
  cancel(): void;
}

interface Sequence {
  readonly maxTokens: number;
  readonly prefillMs: number;
  readonly callbacks: GenerationCallbacks;
  /** performance.now() at which prefill ends. */
  readyAt: number;
  produced: number;
  credit: number;
  cancelled: boolean;
}

const TICK_MS = 5;

/**
 * An engine that decodes up to `maxRunning` sequences at once. Each gets
 * min(per-sequence rate, engine rate ÷ running) tokens per second after its prefill, so a benchmark
 * sees throughput grow with concurrency until the engine saturates, as with vLLM or TGI.
 */
export class BatchingEngine {
  readonly #perSequence: number;
  readonly #total: number;
  readonly #prefillMsPerToken: number;
  readonly #maxRunning: number;
  readonly #maxWaiting: number;
  readonly #running = new Set<Sequence>();
  readonly #waiting: Sequence[] = [];
  #timer: NodeJS.Timeout | undefined;
  #lastTick = 0;

  constructor(options: BatchingOptions = {}) {
    this.#perSequence = options.tokensPerSecondPerSequence ?? 400;
    this.#total = options.tokensPerSecond ?? 4000;
    this.#prefillMsPerToken = options.prefillMsPerToken ?? 0.02;
    this.#maxRunning = options.maxRunning ?? 64;
    this.#maxWaiting = options.maxWaiting ?? 256;
  }

  get running(): number {
    return this.#running.size;
  }

  get waiting(): number {
    return this.#waiting.length;
  }

  /** True when a new request would be refused as overloaded. */
  get full(): boolean {
    return this.#running.size >= this.#maxRunning && this.#waiting.length >= this.#maxWaiting;
  }

  /** Starts (or queues) a generation. Returns undefined when the engine is full. */
  submit(
    promptTokens: number,
    maxTokens: number,
    callbacks: GenerationCallbacks,
  ): Generation | undefined {
    if (this.full) return undefined;
    const sequence: Sequence = {
      maxTokens,
      prefillMs: promptTokens * this.#prefillMsPerToken,
      callbacks,
      readyAt: 0,
      produced: 0,
      credit: 0,
      cancelled: false,
    };
    if (this.#running.size < this.#maxRunning) this.#admit(sequence);
    else this.#waiting.push(sequence);
    this.#ensureTicking();
    return {
      cancel: () => {
        if (sequence.cancelled) return;
        sequence.cancelled = true;
        this.#finish(sequence);
      },
    };
  }

  /** Drops every sequence without calling back (the fake crashed or closed). */
  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    for (const s of this.#running) s.cancelled = true;
    for (const s of this.#waiting) s.cancelled = true;
    this.#running.clear();
    this.#waiting.length = 0;
  }

  #admit(sequence: Sequence): void {
    sequence.readyAt = performance.now() + sequence.prefillMs;
    this.#running.add(sequence);
  }

  #finish(sequence: Sequence): void {
    if (this.#running.delete(sequence)) {
      const next = this.#waiting.shift();
      if (next !== undefined) this.#admit(next);
    } else {
      const index = this.#waiting.indexOf(sequence);
      if (index !== -1) this.#waiting.splice(index, 1);
    }
    if (this.#running.size === 0 && this.#waiting.length === 0) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }

  #ensureTicking(): void {
    if (this.#timer !== undefined) return;
    this.#lastTick = performance.now();
    this.#timer = setInterval(() => this.#tick(), TICK_MS);
  }

  #tick(): void {
    const now = performance.now();
    const elapsedSeconds = (now - this.#lastTick) / 1000;
    this.#lastTick = now;
    const decoding = [...this.#running].filter((s) => s.readyAt <= now);
    if (decoding.length === 0) return;
    const rate = Math.min(this.#perSequence, this.#total / decoding.length);
    for (const sequence of decoding) {
      if (sequence.cancelled) continue;
      sequence.credit += rate * elapsedSeconds;
      const count = Math.min(Math.floor(sequence.credit), sequence.maxTokens - sequence.produced);
      if (count > 0) {
        sequence.credit -= count;
        const first = sequence.produced;
        sequence.produced += count;
        sequence.callbacks.onTokens(first, count);
      }
      if (sequence.produced >= sequence.maxTokens && !sequence.cancelled) {
        sequence.cancelled = true;
        this.#finish(sequence);
        sequence.callbacks.onDone();
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Serial jobs (ComfyUI)

export interface SerialJob {
  cancel(): void;
}

/** One job at a time, FIFO, as ComfyUI executes prompts. `durationMs` is the job's run time. */
interface QueuedJob {
  readonly durationMs: number;
  readonly onStart: () => void;
  readonly onDone: () => void;
  /**
   * Awaited after `onStart`, before the run time starts (the `hold` knob): a held job keeps the
   * engine busy, so later jobs wait behind it as they would behind a running prompt.
   */
  readonly ready?: () => Promise<void>;
}

export class SerialEngine {
  readonly #queue: QueuedJob[] = [];
  #current: QueuedJob | undefined;
  #busy = false;
  #timer: NodeJS.Timeout | undefined;
  readonly #maxQueue: number;

  constructor(maxQueue = 100) {
    this.#maxQueue = maxQueue;
  }

  get queued(): number {
    return this.#queue.length;
  }

  get busy(): boolean {
    return this.#busy;
  }

  get full(): boolean {
    return this.#queue.length >= this.#maxQueue;
  }

  submit(
    durationMs: number,
    callbacks: { onStart: () => void; onDone: () => void; ready?: () => Promise<void> },
  ): SerialJob | undefined {
    if (this.full) return undefined;
    const job = { durationMs, ...callbacks };
    this.#queue.push(job);
    this.#next();
    let cancelled = false;
    return {
      cancel: () => {
        if (cancelled) return;
        cancelled = true;
        const index = this.#queue.indexOf(job);
        if (index !== -1) this.#queue.splice(index, 1);
        else if (this.#current === job) {
          clearTimeout(this.#timer);
          this.#current = undefined;
          this.#busy = false;
          this.#next();
        }
      },
    };
  }

  #next(): void {
    if (this.#busy) return;
    const job = this.#queue.shift();
    if (job === undefined) return;
    this.#busy = true;
    this.#current = job;
    job.onStart();
    const run = (): void => {
      // Cancelled (or the engine stopped) while it was held.
      if (this.#current !== job) return;
      this.#timer = setTimeout(() => {
        this.#current = undefined;
        this.#busy = false;
        job.onDone();
        this.#next();
      }, job.durationMs);
    };
    if (job.ready === undefined) run();
    else void job.ready().then(run);
  }

  stop(): void {
    clearTimeout(this.#timer);
    this.#queue.length = 0;
    this.#current = undefined;
    this.#busy = false;
  }
}

// ---------------------------------------------------------------------------------------------
// The fake server: load phase, log, knobs

/**
 * How the engine behaves while it loads (model-servers.md §10.1):
 * - `refuse`: the port refuses connections until loaded (vLLM, TGI);
 * - `unavailable`: every path answers the engine's 503 (llama.cpp);
 * - `health-503`: requests are served but the health route answers 503 (new SGLang, the ComfyUI wrapper);
 * - `immediate`: up at once (Ollama, ComfyUI itself).
 */
export type LoadBehaviour = 'refuse' | 'unavailable' | 'health-503' | 'immediate';

export interface FakeServerOptions {
  /** @default '127.0.0.1' */
  host?: string;
  /** 0 picks an ephemeral port. @default 0 */
  port?: number;
  /** MODEL_LOG: the engine's start-up, load and fatal lines go here. */
  logFile?: string;
  /** Time from start to loaded. @default 0 */
  loadDelayMs?: number;
  /** Start failing: write the engine's fatal lines instead of loading. @default false */
  failLoad?: boolean;
}

/** A failure every generation request answers with, instead of generating. */
export interface InjectedError {
  status: number;
  /** The engine's error message; the fake wraps it in the engine's error shape. */
  message?: string;
}

export const controlSchema = z.strictObject({
  /** Appends the engine's fatal lines to the log (the model died). */
  fatal: z.literal(true).exactOptional(),
  /** Appends any line to the log. */
  logLine: z.string().exactOptional(),
  /** Closes the port and every connection at once, as a crashed process would. */
  crash: z.literal(true).exactOptional(),
  /** Every generation request answers this error until set to null. */
  error: z
    .object({ status: z.number().int().min(400).max(599), message: z.string().exactOptional() })
    .nullable()
    .exactOptional(),
  /** The health route answers 503 while false. */
  healthy: z.boolean().exactOptional(),
  /** Holds every generation before its first token until set to false. */
  hold: z.boolean().exactOptional(),
});
export type ControlCommand = z.infer<typeof controlSchema>;

export interface FakeStats {
  /** Generation requests whose body arrived. */
  received: number;
  completed: number;
  /** The client left before its answer was complete. */
  aborted: number;
  inFlight: number;
  healthchecks: number;
  /** Requests refused as overloaded. */
  overloaded: number;
}

export interface FakeEvents {
  request: [{ path: string; body: unknown }];
  completed: [{ path: string; status: number }];
  aborted: [{ path: string }];
  loaded: [];
  healthcheck: [{ status: number }];
}

/** What an engine's fake implements on top of `FakeServer`. */
export interface EngineBehaviour {
  /** The engine's name in messages. */
  readonly name: string;
  readonly loadBehaviour: LoadBehaviour;
  /** Lines written when the process starts, before loading. */
  startupLines(port: number): string[];
  /** Lines written once the port serves real requests. The last one is what Vast keys on. */
  loadedLines(port: number): string[];
  /** The fatal lines of a failed load or a dead engine. */
  fatalLines(): string[];
  /** The engine's answer while loading, for `unavailable` and `health-503`. */
  loadingResponse(res: ServerResponse): void;
  /** True for the engine's health route (answered 503 while loading or unhealthy). */
  isHealthPath(path: string, method: string): boolean;
  /** Answers a healthy health check. */
  healthyResponse(res: ServerResponse): void;
  /** Answers an unhealthy health check. */
  unhealthyResponse(res: ServerResponse): void;
  /** The engine's error shape for an injected error. */
  errorResponse(res: ServerResponse, error: InjectedError): void;
  /** Everything else. Returns false for an unknown route (the fake answers the engine's 404). */
  handle(req: IncomingMessage, res: ServerResponse, path: string, exchange: Exchange): boolean;
  notFound(res: ServerResponse, path: string): void;
}

/** One request the fake is answering: count it, watch its end, and let knobs reach it. */
export interface Exchange {
  readonly path: string;
  /** Registers the request as a generation (counted in stats, subject to knobs). */
  begin(body: unknown): void;
  /** The injected error, if any: the engine answers it instead of generating. */
  readonly injectedError: InjectedError | undefined;
  /** Resolves when generation may start (see the `hold` knob). */
  released(): Promise<void>;
  /** Called when the client goes away before the answer is complete. */
  onAbort(cancel: () => void): void;
}

export class FakeServer extends EventEmitter<FakeEvents> {
  readonly #engine: EngineBehaviour;
  readonly #options: FakeServerOptions;
  readonly #server: Server;
  #port = 0;
  #host = '127.0.0.1';
  #loaded = false;
  #healthy = true;
  #hold = false;
  #holdWaiters: (() => void)[] = [];
  #injected: InjectedError | undefined;
  #loadTimer: NodeJS.Timeout | undefined;
  #closed = false;
  readonly stats: FakeStats = {
    received: 0,
    completed: 0,
    aborted: 0,
    inFlight: 0,
    healthchecks: 0,
    overloaded: 0,
  };
  /** Called by `crash` and `close` so the engine can drop its work. */
  onStop: (() => void) | undefined;
  /**
   * Extra worker environment this fake needs beyond MODEL_SERVER_URL and MODEL_LOG (e.g. the
   * ComfyUI fake's COMFYUI_URL); `tsworker dev` and the test stack pass it to the worker.
   */
  readonly workerEnv: Record<string, string> = {};

  constructor(engine: EngineBehaviour, options: FakeServerOptions = {}) {
    super();
    this.#engine = engine;
    this.#options = options;
    this.#server = createServer({ noDelay: true }, (req, res) => this.#onRequest(req, res));
    this.#server.keepAliveTimeout = 65_000;
  }

  get url(): string {
    return httpUrl({ address: this.#host, port: this.#port, family: 'IPv4' });
  }

  get port(): number {
    return this.#port;
  }

  get loaded(): boolean {
    return this.#loaded;
  }

  /** Binds (or, for `refuse`, reserves) the port and starts loading. */
  async start(): Promise<void> {
    this.#host = this.#options.host ?? '127.0.0.1';
    const refuse = this.#engine.loadBehaviour === 'refuse';
    if (refuse) {
      this.#port = this.#options.port || (await reservePort(this.#host));
    } else {
      const address = await listen(this.#server, this.#options.port ?? 0, this.#host);
      this.#port = address.port;
    }
    this.#log(this.#engine.startupLines(this.#port));
    const finish = (): void => {
      this.#loadTimer = undefined;
      if (this.#closed) return;
      if (this.#options.failLoad) {
        this.#log(this.#engine.fatalLines());
        return;
      }
      const loaded = async (): Promise<void> => {
        if (refuse) await listen(this.#server, this.#port, this.#host);
        this.#loaded = true;
        // The load line goes out only once the port serves (model-servers.md §10.2).
        this.#log(this.#engine.loadedLines(this.#port));
        this.emit('loaded');
      };
      loaded().catch((error: unknown) => {
        this.#log([`${this.#engine.name}: could not bind port ${this.#port}: ${String(error)}`]);
      });
    };
    const delay = this.#options.loadDelayMs ?? 0;
    if (delay > 0) this.#loadTimer = setTimeout(finish, delay);
    else finish();
  }

  /** Appends lines to MODEL_LOG (no-op without a log file). */
  writeLog(line: string): void {
    this.#log([line]);
  }

  control(command: ControlCommand): void {
    if (command.logLine !== undefined) this.#log([command.logLine]);
    if (command.fatal) this.#log(this.#engine.fatalLines());
    if (command.error !== undefined) this.#injected = command.error ?? undefined;
    if (command.healthy !== undefined) this.#healthy = command.healthy;
    if (command.hold !== undefined) {
      this.#hold = command.hold;
      if (!command.hold) {
        const waiters = this.#holdWaiters;
        this.#holdWaiters = [];
        for (const release of waiters) release();
      }
    }
    if (command.crash) this.#crash();
  }

  close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#loadTimer);
    this.onStop?.();
    return closeServer(this.#server);
  }

  #crash(): void {
    this.#closed = true;
    this.#loaded = false;
    this.onStop?.();
    void closeServer(this.#server);
  }

  #log(lines: readonly string[]): void {
    const file = this.#options.logFile;
    if (file === undefined || lines.length === 0) return;
    appendFileSync(file, lines.map((l) => `${l}\n`).join(''));
  }

  #onRequest(req: IncomingMessage, res: ServerResponse): void {
    const path = pathOf(req.url);
    const method = req.method ?? 'GET';
    if (path === '/_control' && method === 'POST') {
      void readBody(req).then((text = '') => {
        const parsed = parseJsonObject(text);
        const command = parsed.ok ? controlSchema.safeParse(parsed.value) : undefined;
        if (command === undefined || !command.success) {
          sendJson(res, 400, { error: 'invalid control command' });
          return;
        }
        sendJson(res, 200, { ok: true });
        this.control(command.data);
      });
      return;
    }
    if (path === '/_stats' && method === 'GET') {
      sendJson(res, 200, { ...this.stats, loaded: this.#loaded });
      return;
    }
    const engine = this.#engine;
    if (!this.#loaded && engine.loadBehaviour === 'unavailable') {
      req.resume();
      engine.loadingResponse(res);
      return;
    }
    if (engine.isHealthPath(path, method)) {
      this.stats.healthchecks++;
      let status: number;
      if (!this.#loaded && engine.loadBehaviour === 'health-503') {
        engine.loadingResponse(res);
        status = 503;
      } else if (!this.#healthy) {
        engine.unhealthyResponse(res);
        status = 503;
      } else {
        engine.healthyResponse(res);
        status = 200;
      }
      this.emit('healthcheck', { status });
      return;
    }
    const exchange = this.#exchange(path, res);
    if (!engine.handle(req, res, path, exchange)) {
      req.resume();
      engine.notFound(res, path);
    }
  }

  #exchange(path: string, res: ServerResponse): Exchange {
    let begun = false;
    let abortHandler: (() => void) | undefined;
    const stats = this.stats;
    const injected = (): InjectedError | undefined => this.#injected;
    return {
      path,
      get injectedError() {
        return injected();
      },
      begin: (body) => {
        if (begun) return;
        begun = true;
        stats.received++;
        stats.inFlight++;
        this.emit('request', { path, body });
        res.once('close', () => {
          stats.inFlight--;
          if (res.writableFinished) {
            stats.completed++;
            this.emit('completed', { path, status: res.statusCode });
          } else {
            stats.aborted++;
            abortHandler?.();
            this.emit('aborted', { path });
          }
        });
      },
      released: () =>
        this.#hold
          ? new Promise<void>((resolve) => this.#holdWaiters.push(resolve))
          : Promise.resolve(),
      onAbort: (cancel) => {
        abortHandler = cancel;
      },
    };
  }
}

/** Counts a request the engine refused as overloaded. */
export function countOverloaded(server: FakeServer): void {
  server.stats.overloaded++;
}

// ---------------------------------------------------------------------------------------------
// Server-sent events and NDJSON writers

/** Writes one SSE event per call, as the engine frames it (`data: ` or TGI's `data:`). */
export function sseWriter(res: ServerResponse, prefix: 'data: ' | 'data:'): (json: string) => void {
  return (json) => {
    res.write(`${prefix}${json}\n\n`);
  };
}

export function startStream(
  res: ServerResponse,
  contentType: string,
  extra: Record<string, string> = {},
): void {
  res.writeHead(200, { 'content-type': contentType, 'cache-control': 'no-cache', ...extra });
  res.flushHeaders();
}

export function nowIso(): string {
  return new Date().toISOString();
}
