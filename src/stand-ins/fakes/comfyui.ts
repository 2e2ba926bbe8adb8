/**
 * A faithful fake of ComfyUI behind ai-dock's comfyui-api-wrapper (model-servers.md §8): two
 * loopback servers, a minimal ComfyUI that answers `/system_stats` (its readiness probe), and the
 * wrapper, which is what the worker talks to. The wrapper runs one job at a time for
 * steps × pixels, answers the wrapper's Result with `output[]` and its statuses, streams SSE
 * progress, and logs `BACKENDS_READY` only once ComfyUI answers, as the real one does.
 *
 * Simplifications, each harmless to a worker: the wrapper does not drive ComfyUI's /prompt and
 * WebSocket (it generates in-process and checks that ComfyUI is up when a job starts), and
 * "queue full" counts the jobs waiting for ComfyUI (the real wrapper bounds its preprocess queue).
 */
import { randomUUID } from 'node:crypto';
import { get as httpGet } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer } from 'node:http';
import { isEntryPoint } from '../../../lib/index.ts';
import { PyFloat, pythonJsonDumps } from '../../../lib/auth/python-json.ts';
import type { PyJsonValue } from '../../../lib/auth/python-json.ts';
import { FakeServer, parseJsonObject, SerialEngine, startStream } from './common.ts';
import type {
  EngineBehaviour,
  Exchange,
  FakeServerOptions,
  InjectedError,
  LoadBehaviour,
  SerialJob,
} from './common.ts';
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
import { envNumber, runProgram, serveUntilSignal } from '../program.ts';

export interface ComfyUIFakeOptions extends FakeServerOptions {
  /** ComfyUI's own port; 0 picks an ephemeral one. @default 0 */
  comfyPort?: number;
  /** Sampler time per step at 512×512, batch 1: a 512² × 20-step job takes 20 × this. @default 5 */
  msPerStep?: number;
  /** The wrapper's MAX_QUEUE_SIZE: jobs allowed to wait for ComfyUI before 503. @default 100 */
  maxQueueSize?: number;
  /** How often the wrapper probes ComfyUI before BACKENDS_READY (the real one: 2 s). @default 250 */
  backendPollMs?: number;
  /** When the wrapper gives up and logs BACKENDS_READY_TIMEOUT (the real one: 600 s). @default 600000 */
  backendsReadyTimeoutMs?: number;
  /**
   * Start ComfyUI with the wrapper (after `loadDelayMs`, which is ComfyUI's start-up time). False
   * leaves it down until `fake.comfyui.start()`, so tests can watch the wrapper wait for it.
   * @default true
   */
  comfyuiAutoStart?: boolean;
}

// ---------------------------------------------------------------------------------------------
// Wire shapes (WR@e1d04af: responses/result.py, main.py, workers/postprocess_worker.py)

export interface OutputEntry {
  filename: string;
  local_path: string;
  type: string;
  subfolder: string;
  node_id: string;
  output_type: string;
  data?: string;
  mimetype?: string;
}

/** The wrapper's Result, keys in the pydantic model's order. */
export interface Result {
  id: string;
  message: string;
  status:
    'pending' | 'processing' | 'generating' | 'generated' | 'completed' | 'failed' | 'cancelled';
  comfyui_response: Record<string, unknown>;
  output: OutputEntry[];
  timings: Record<string, number>;
}

const TERMINAL = new Set<Result['status']>(['completed', 'failed', 'cancelled']);

/** `_http_status_for` in main.py: the sync route's status mirrors the Result. */
const UPSTREAM_FAIL_HINTS = [
  'cannot connect',
  'failed to post workflow after',
  'network error',
  'connection refused',
  'websocket timeout',
  'websocket failure',
  'timed out',
];
export function httpStatusFor(result: Result): number {
  if (result.status === 'completed') return 200;
  if (result.status === 'cancelled') return 499;
  const message = result.message.toLowerCase();
  return UPSTREAM_FAIL_HINTS.some((hint) => message.includes(hint)) ? 502 : 500;
}

/** The Text2Image workflow's defaults (modifiers/text2image.py, workflows/text2image.json). */
const BASE_PIXELS = 512 * 512;
const BASE_STEPS = 20;
const COMFY_OUTPUT_DIR = '/workspace/ComfyUI/output';
/** A 1×1 PNG, the bytes `return_outputs_as_base64` inlines. */
const TINY_PNG =
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==';
const MODIFIERS = new Set(['Text2Image', 'Image2Image']);

/** Python's `datetime.utcnow().isoformat()`: no zone, microseconds. */
function utcIsoPython(): string {
  return new Date().toISOString().replace('Z', '000');
}

/** A number from a modification, which clients send as numbers or numeric strings. */
function numberField(value: unknown, fallback: number): number {
  const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  return typeof n === 'number' && Number.isFinite(n) && n > 0 ? n : fallback;
}

/** A path segment as an id; a malformed %-escape is kept as it is rather than thrown. */
function safeDecode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

interface ValidationDetail {
  type: string;
  loc: (string | number)[];
  msg: string;
  input: unknown;
  ctx?: Record<string, unknown>;
}

/** FastAPI's validation body. README §Error handling says 400; FastAPI's default would be 422. */
function sendValidation(res: ServerResponse, details: ValidationDetail[]): void {
  sendJson(res, 400, { detail: details });
}

/** What a job costs and produces, read from the request. */
interface JobPlan {
  steps: number;
  width: number;
  height: number;
  batch: number;
  /** Save nodes: [node id, filename prefix]. */
  saves: [string, string][];
  /** ComfyUI rejects the prompt when its turn comes (invalid shape, no outputs). */
  invalid: boolean;
}

/** Reads sampler steps, latent size and save nodes from an API-format workflow. */
function planWorkflow(workflow: Record<string, unknown>): JobPlan {
  const plan: JobPlan = {
    steps: BASE_STEPS,
    width: 512,
    height: 512,
    batch: 1,
    saves: [],
    invalid: false,
  };
  let sawSteps = false;
  for (const [id, node] of Object.entries(workflow)) {
    if (!isRecord(node) || typeof node['class_type'] !== 'string' || !isRecord(node['inputs'])) {
      plan.invalid = true;
      continue;
    }
    const classType = node['class_type'];
    const inputs = node['inputs'];
    if (inputs['steps'] !== undefined) {
      plan.steps = (sawSteps ? plan.steps : 0) + numberField(inputs['steps'], BASE_STEPS);
      sawSteps = true;
    }
    if (inputs['width'] !== undefined && inputs['height'] !== undefined) {
      plan.width = numberField(inputs['width'], 512);
      plan.height = numberField(inputs['height'], 512);
      plan.batch = Math.max(1, Math.floor(numberField(inputs['batch_size'], 1)));
    }
    if (classType.startsWith('Save')) {
      const prefix = inputs['filename_prefix'];
      plan.saves.push([id, typeof prefix === 'string' && prefix !== '' ? prefix : 'ComfyUI']);
    }
  }
  // ComfyUI's "prompt_no_outputs": a prompt with no output node is refused.
  if (plan.saves.length === 0) plan.invalid = true;
  return plan;
}

function planText2Image(modifications: Record<string, unknown>): JobPlan {
  return {
    steps: numberField(modifications['steps'], BASE_STEPS),
    width: numberField(modifications['width'], 512),
    height: numberField(modifications['height'], 512),
    batch: 1,
    saves: [['9', 'image']],
    invalid: false,
  };
}

// ---------------------------------------------------------------------------------------------
// The minimal ComfyUI (CUI@a125cd8 server.py): /system_stats, every route also under /api

export class ComfyUIServer {
  readonly #server: Server;
  readonly #host: string;
  #port: number;
  /** Requests to /system_stats (and /api/system_stats). */
  readonly stats = { systemStats: 0 };

  constructor(host: string, port: number) {
    this.#host = host;
    this.#port = port;
    this.#server = createServer({ noDelay: true }, (req, res) => this.#onRequest(req, res));
  }

  get url(): string {
    return httpUrl({ address: this.#host, port: this.#port, family: 'IPv4' });
  }

  get port(): number {
    return this.#port;
  }

  /** True while ComfyUI serves (the wrapper's probe would get 200). */
  get answering(): boolean {
    return this.#server.listening;
  }

  /** Binds ComfyUI's port (again, after `stop`). */
  async start(): Promise<void> {
    if (this.#server.listening) return;
    const address = await listen(this.#server, this.#port, this.#host);
    this.#port = address.port;
  }

  /** Stops ComfyUI as a crashed process would: the port refuses, every connection drops. */
  stop(): Promise<void> {
    return closeServer(this.#server);
  }

  systemStats(): Record<string, unknown> {
    return {
      system: {
        os: 'posix',
        ram_total: 67_430_350_848,
        ram_free: 51_212_345_344,
        comfyui_version: '0.3.64',
        required_frontend_version: '1.27.10',
        python_version: '3.12.3 (main, Jun 18 2025, 17:59:45) [GCC 13.3.0]',
        pytorch_version: '2.8.0+cu128',
        embedded_python: false,
        argv: [
          'main.py',
          '--disable-auto-launch',
          '--port',
          String(this.#port),
          '--enable-cors-header',
        ],
      },
      devices: [
        {
          name: 'cuda:0 NVIDIA GeForce RTX 4090 : cudaMallocAsync',
          type: 'cuda',
          index: 0,
          vram_total: 25_393_692_672,
          vram_free: 23_817_535_488,
          torch_vram_total: 0,
          torch_vram_free: 0,
        },
      ],
    };
  }

  #onRequest(req: IncomingMessage, res: ServerResponse): void {
    req.resume();
    const path = pathOf(req.url).replace(/^\/api(?=\/)/, '');
    if (path === '/system_stats' && req.method === 'GET') {
      this.stats.systemStats++;
      sendJson(res, 200, this.systemStats());
      return;
    }
    // aiohttp's default 404.
    const body = '404: Not Found';
    res.writeHead(404, {
      'content-type': 'text/plain; charset=utf-8',
      'content-length': String(body.length),
    });
    res.end(body);
  }
}

/** GET `url` without a pooled agent; resolves with the status, or 0 when it cannot connect. */
function probeStatus(url: string, timeoutMs: number): Promise<number> {
  return new Promise((resolve) => {
    const req = httpGet(url, { agent: false, timeout: timeoutMs }, (res) => {
      res.resume();
      res.once('end', () => resolve(res.statusCode ?? 0));
      res.once('error', () => resolve(0));
    });
    req.once('timeout', () => req.destroy());
    req.once('error', () => resolve(0));
  });
}

// ---------------------------------------------------------------------------------------------
// The wrapper's jobs

interface Job {
  readonly id: string;
  readonly result: Result;
  readonly plan: JobPlan;
  readonly base64: boolean;
  /** Set when the modifier is not one the wrapper ships: preprocessing fails. */
  readonly unknownModifier: string | undefined;
  /** Called on every change of the job or of the queue (SSE streams re-read the state). */
  readonly listeners: Set<() => void>;
  serial: SerialJob | undefined;
  stepTimer: NodeJS.Timeout | undefined;
  /** performance.now() when generation started. */
  generationStart: number;
}

interface QueuePosition {
  current_queue: string | null;
  position: number;
  queue_size: number;
  estimated_wait_time: number | null;
}

const MAX_REMEMBERED_RESULTS = 10_000;
const MAX_TRANSCRIPTS = 100;

class WrapperEngine implements EngineBehaviour {
  readonly name = 'comfyui-api-wrapper';
  readonly loadBehaviour: LoadBehaviour = 'health-503';
  readonly #comfyui: ComfyUIServer;
  readonly #engine: SerialEngine;
  readonly #msPerStep: number;
  readonly #maxQueueSize: number;
  readonly #jobs = new Map<string, Job>();
  /** Jobs waiting for ComfyUI, in order (the generation queue). */
  readonly #waiting: Job[] = [];
  /** The bytes of the latest SSE bodies, by request id. */
  readonly #transcripts = new Map<string, string>();
  #fake: ComfyUIFake | undefined;
  #fileCounter = 0;
  backendsReady = false;
  gpuLatch: { unrecoverable: boolean; reason: string } = { unrecoverable: false, reason: '' };

  constructor(comfyui: ComfyUIServer, msPerStep: number, maxQueueSize: number) {
    this.#comfyui = comfyui;
    this.#msPerStep = msPerStep;
    this.#maxQueueSize = maxQueueSize;
    this.#engine = new SerialEngine(maxQueueSize);
  }

  attach(fake: ComfyUIFake): void {
    this.#fake = fake;
  }

  get generationQueueSize(): number {
    return this.#waiting.length;
  }

  transcript(requestId: string): string | undefined {
    return this.#transcripts.get(requestId);
  }

  #log(line: string): void {
    this.#fake?.writeLog(line);
  }

  startupLines(): string[] {
    return [
      `INFO:     Started server process [${process.pid}]`,
      'INFO:     Waiting for application startup.',
      'INFO:main:Workers initialized successfully',
    ];
  }

  /**
   * uvicorn's lines once the port serves. Vast does not key on these (they come before ComfyUI is
   * up); the wrapper's backend announcer writes BACKENDS_READY separately (main.py).
   */
  loadedLines(port: number): string[] {
    return [
      'INFO:     Application startup complete.',
      `INFO:     Uvicorn running on http://127.0.0.1:${port} (Press CTRL+C to quit)`,
    ];
  }

  /**
   * Before BACKENDS_READY the fatal line is the announcer's timeout; afterwards the GPU latch,
   * which also makes /health answer 503 from then on, as the real latch does.
   */
  fatalLines(): string[] {
    if (!this.backendsReady) {
      return ['ERROR:main:BACKENDS_READY_TIMEOUT: not all of 1 backend(s) reachable after 600s'];
    }
    const reason = 'CUDA error: an illegal memory access was encountered';
    this.gpuLatch = { unrecoverable: true, reason };
    return [
      `ERROR:workers.generation_worker:BACKEND_UNRECOVERABLE: GPU on ${this.#comfyui.url} latched: ${reason}`,
    ];
  }

  isHealthPath(path: string, method: string): boolean {
    return path === '/health' && method === 'GET';
  }

  #healthBody(backend: { http_ok: boolean; http_error?: string }): {
    status: number;
    body: Record<string, unknown>;
  } {
    const gpu = { ...this.gpuLatch };
    const info: Record<string, unknown> = { base: this.#comfyui.url, http_ok: backend.http_ok };
    info['websocket_ok'] = backend.http_ok;
    if (backend.http_ok) info['system_stats'] = this.#comfyui.systemStats();
    else {
      info['http_error'] = backend.http_error ?? 'unavailable';
      info['websocket_error'] = `Cannot connect to host ${this.#comfyui.url.slice(7)} ssl:default`;
    }
    info['gpu'] = gpu;
    const healthy = backend.http_ok && !gpu.unrecoverable;
    info['healthy'] = healthy;
    return {
      status: healthy ? 200 : 503,
      body: {
        status: healthy ? 'healthy' : 'unhealthy',
        cache_type: 'memory',
        queues: { preprocess: 0, generation: this.#waiting.length, postprocess: 0 },
        backends_healthy: `${healthy ? 1 : 0}/1`,
        gpu,
        backends: [info],
      },
    };
  }

  #comfyDown(): { http_ok: false; http_error: string } {
    const hostPort = this.#comfyui.url.slice('http://'.length);
    return {
      http_ok: false,
      http_error: `connect failed: Cannot connect to host ${hostPort} ssl:default [Connect call failed ('127.0.0.1', ${this.#comfyui.port})]`,
    };
  }

  loadingResponse(res: ServerResponse): void {
    const { body } = this.#healthBody(this.#comfyDown());
    sendJson(res, 503, body);
  }

  /** The wrapper probes ComfyUI on every /health (here in-process: is it serving?). */
  healthyResponse(res: ServerResponse): void {
    const { status, body } = this.#healthBody(
      this.#comfyui.answering ? { http_ok: true } : this.#comfyDown(),
    );
    sendJson(res, status, body);
  }

  unhealthyResponse(res: ServerResponse): void {
    const { body } = this.#healthBody({ http_ok: false, http_error: 'system_stats returned 500' });
    sendJson(res, 503, body);
  }

  /** An injected error as the sync route answers it: a failed Result with that status. */
  errorResponse(res: ServerResponse, error: InjectedError, requestId: string = randomUUID()): void {
    const result = this.#failedResult(
      requestId,
      `Generation failed: ${error.message ?? 'injected error'}`,
    );
    sendJson(res, error.status, result, error.status === 503 ? { 'retry-after': '5' } : {});
  }

  notFound(res: ServerResponse): void {
    sendJson(res, 404, { detail: 'Not Found' });
  }

  handle(req: IncomingMessage, res: ServerResponse, path: string, exchange: Exchange): boolean {
    const method = req.method ?? 'GET';
    const post = (run: () => void): boolean => {
      if (method !== 'POST') {
        req.resume();
        sendJson(res, 405, { detail: 'Method Not Allowed' });
        return true;
      }
      run();
      return true;
    };
    if (path === '/generate/sync')
      return post(() => void this.#generate(req, res, exchange, 'sync'));
    if (path === '/generate/stream')
      return post(() => void this.#generate(req, res, exchange, 'stream'));
    if (path === '/generate') return post(() => void this.#generate(req, res, exchange, 'async'));
    if (path === '/queue-info' && method === 'GET') {
      req.resume();
      sendJson(res, 200, {
        preprocess_queue_size: 0,
        generation_queue_size: this.#waiting.length,
        postprocess_queue_size: 0,
      });
      return true;
    }
    const resultMatch = /^\/result\/([^/]+)$/.exec(path);
    if (resultMatch?.[1] !== undefined && method === 'GET') {
      req.resume();
      this.#getResult(res, safeDecode(resultMatch[1]));
      return true;
    }
    const cancelMatch = /^\/cancel\/([^/]+)$/.exec(path);
    if (cancelMatch?.[1] !== undefined && method === 'POST') {
      req.resume();
      this.#cancelById(res, safeDecode(cancelMatch[1]));
      return true;
    }
    return false;
  }

  /** Drops every job (the wrapper crashed or closed); their connections are destroyed anyway. */
  stop(): void {
    this.#engine.stop();
    for (const job of this.#jobs.values()) clearTimeout(job.stepTimer);
    this.#waiting.length = 0;
  }

  /** `_new_result`: a pending Result stamped with its queue time. */
  #newResult(id: string): Result {
    return {
      id,
      message: 'Request accepted',
      status: 'pending',
      comfyui_response: {},
      output: [],
      timings: { queued_at_ms: Date.now() },
    };
  }

  /** `Result(id=..., status="failed", message=...)`, built without timings. */
  #failedResult(id: string, message: string): Result {
    return { id, message, status: 'failed', comfyui_response: {}, output: [], timings: {} };
  }

  /** Parses and validates `{"input": {...}}` as the wrapper's pydantic Payload does. */
  #validate(
    text: string,
  ):
    | { ok: true; body: Record<string, unknown>; input: Record<string, unknown> }
    | { ok: false; details: ValidationDetail[] } {
    const parsed = parseJsonObject(text);
    if (!parsed.ok) {
      if (parsed.reason === 'invalid-json') {
        return {
          ok: false,
          details: [
            {
              type: 'json_invalid',
              loc: ['body', 0],
              msg: 'JSON decode error',
              input: {},
              ctx: { error: 'Expecting value' },
            },
          ],
        };
      }
      return {
        ok: false,
        details: [
          {
            type: 'model_attributes_type',
            loc: ['body'],
            msg: 'Input should be a valid dictionary or object to extract fields from',
            input: text,
          },
        ],
      };
    }
    const body = parsed.value;
    const input = body['input'];
    if (input === undefined) {
      return {
        ok: false,
        details: [{ type: 'missing', loc: ['body', 'input'], msg: 'Field required', input: body }],
      };
    }
    if (!isRecord(input)) {
      return {
        ok: false,
        details: [
          {
            type: 'model_attributes_type',
            loc: ['body', 'input'],
            msg: 'Input should be a valid dictionary or object to extract fields from',
            input,
          },
        ],
      };
    }
    const typed: [string, 'string' | 'dict' | 'bool'][] = [
      ['request_id', 'string'],
      ['modifier', 'string'],
      ['modifications', 'dict'],
      ['workflow_json', 'dict'],
      ['return_outputs_as_base64', 'bool'],
    ];
    for (const [field, kind] of typed) {
      const value = input[field];
      if (value === undefined) continue;
      const ok =
        kind === 'string'
          ? typeof value === 'string'
          : kind === 'dict'
            ? isRecord(value)
            : typeof value === 'boolean';
      if (!ok) {
        const msg =
          kind === 'string'
            ? 'Input should be a valid string'
            : kind === 'dict'
              ? 'Input should be a valid dictionary'
              : 'Input should be a valid boolean';
        const type =
          kind === 'string' ? 'string_type' : kind === 'dict' ? 'dict_type' : 'bool_type';
        return {
          ok: false,
          details: [{ type, loc: ['body', 'input', field], msg, input: value }],
        };
      }
    }
    const modifier = typeof input['modifier'] === 'string' ? input['modifier'] : '';
    const workflow = isRecord(input['workflow_json']) ? input['workflow_json'] : {};
    const modifications = isRecord(input['modifications']) ? input['modifications'] : {};
    const hasWorkflow = Object.keys(workflow).length > 0;
    // Input.validate_workflow_mode (requestmodels/models.py).
    let problem: string | undefined;
    if (hasWorkflow && modifier !== '') {
      problem = 'Cannot provide both workflow_json and modifier - they are mutually exclusive';
    } else if (!hasWorkflow && modifier === '') {
      problem = 'Must provide either workflow_json OR modifier';
    } else if (Object.keys(modifications).length > 0 && modifier === '') {
      problem = 'modifications can only be provided when modifier is specified';
    }
    if (problem !== undefined) {
      return {
        ok: false,
        details: [
          {
            type: 'value_error',
            loc: ['body', 'input'],
            msg: `Value error, ${problem}`,
            input,
            ctx: { error: {} },
          },
        ],
      };
    }
    return { ok: true, body, input };
  }

  async #generate(
    req: IncomingMessage,
    res: ServerResponse,
    exchange: Exchange,
    mode: 'sync' | 'stream' | 'async',
  ): Promise<void> {
    const text = (await readBody(req)) ?? '';
    const valid = this.#validate(text);
    exchange.begin(valid.ok ? valid.body : text);
    if (res.destroyed) return;
    if (!valid.ok) {
      sendValidation(res, valid.details);
      return;
    }
    const input = valid.input;
    const requestId =
      typeof input['request_id'] === 'string' && input['request_id'] !== ''
        ? input['request_id']
        : randomUUID();
    const injected = exchange.injectedError;
    if (injected !== undefined) {
      this.#answerInjected(res, mode, requestId, injected);
      return;
    }
    // Backpressure before anything is stored (main.py: preprocess_queue.put_nowait).
    if (this.#engine.full) {
      const message = `Worker at capacity (${this.#maxQueueSize} in flight); retry shortly`;
      this.#log(
        `WARNING:main:Rejecting ${requestId}: preprocess queue full (${this.#maxQueueSize}/${this.#maxQueueSize})`,
      );
      if (mode === 'stream') {
        sendJson(res, 503, { detail: message }, { 'retry-after': '5' });
      } else {
        sendJson(res, 503, this.#failedResult(requestId, message), { 'retry-after': '5' });
      }
      return;
    }
    const job = this.#accept(requestId, input);
    if (mode === 'async') {
      this.#log(`INFO:main:Queued request ${requestId}`);
      sendJson(res, 202, job.result);
      this.#preprocess(job, exchange);
      return;
    }
    exchange.onAbort(() => this.#cancel(job, 'Request cancelled due to client disconnection'));
    if (mode === 'sync') {
      this.#log(`INFO:main:Queued synchronous request ${requestId}`);
      job.listeners.add(() => {
        if (!TERMINAL.has(job.result.status) || res.writableEnded || res.destroyed) return;
        sendJson(res, httpStatusFor(job.result), job.result);
      });
    } else {
      this.#log(`INFO:main:Starting stream for request ${requestId}`);
      this.#stream(res, job);
    }
    this.#preprocess(job, exchange);
  }

  #answerInjected(
    res: ServerResponse,
    mode: 'sync' | 'stream' | 'async',
    requestId: string,
    error: InjectedError,
  ): void {
    if (mode !== 'stream') {
      this.errorResponse(res, error, requestId);
      return;
    }
    if (error.status === 503) {
      // The stream route raises HTTPException before opening the stream.
      sendJson(res, 503, { detail: error.message ?? 'injected error' }, { 'retry-after': '5' });
      return;
    }
    // Otherwise the stream answers 200 and the failed job arrives as the final event.
    const result = this.#failedResult(
      requestId,
      `Generation failed: ${error.message ?? 'injected error'}`,
    );
    startStream(res, 'text/event-stream; charset=utf-8', STREAM_HEADERS);
    res.write(sse(this.#queuedEvent(requestId)));
    res.end(
      sse({
        request_id: requestId,
        status: 'final_result',
        result: toPy(result),
        elapsed_time: new PyFloat(0),
      }),
    );
  }

  #accept(requestId: string, input: Record<string, unknown>): Job {
    const modifier = typeof input['modifier'] === 'string' ? input['modifier'] : '';
    const plan =
      modifier !== ''
        ? planText2Image(isRecord(input['modifications']) ? input['modifications'] : {})
        : planWorkflow(isRecord(input['workflow_json']) ? input['workflow_json'] : {});
    const job: Job = {
      id: requestId,
      result: this.#newResult(requestId),
      plan,
      base64: input['return_outputs_as_base64'] === true,
      unknownModifier: modifier !== '' && !MODIFIERS.has(modifier) ? modifier : undefined,
      listeners: new Set(),
      serial: undefined,
      stepTimer: undefined,
      generationStart: 0,
    };
    // A reused request_id replaces the old job, as the wrapper's store does.
    this.#jobs.delete(requestId);
    this.#jobs.set(requestId, job);
    if (this.#jobs.size > MAX_REMEMBERED_RESULTS) {
      const oldest = this.#jobs.keys().next().value;
      if (oldest !== undefined) this.#jobs.delete(oldest);
    }
    return job;
  }

  #notify(job: Job): void {
    for (const listener of [...job.listeners]) listener();
  }

  #notifyWaiting(): void {
    for (const job of [...this.#waiting]) this.#notify(job);
  }

  #finish(job: Job, status: Result['status'], message: string): void {
    if (TERMINAL.has(job.result.status)) return;
    clearTimeout(job.stepTimer);
    job.result.status = status;
    job.result.message = message;
    const timings = job.result.timings;
    timings['postprocess_ms'] = 0;
    const now = Date.now();
    timings['completed_at_ms'] = now;
    const queued = timings['queued_at_ms'];
    if (queued !== undefined) timings['total_ms'] = now - queued;
    this.#notify(job);
  }

  #preprocess(job: Job, exchange: Exchange): void {
    // preprocess_worker.get_workflow_modifier: an unknown modifier fails before generation.
    const unknown = job.unknownModifier;
    if (unknown !== undefined) {
      this.#log(
        `ERROR:workers.preprocess_worker:PreprocessWorker 1 failed job ${job.id}: Unknown modifier: ${unknown}`,
      );
      this.#finish(job, 'failed', `Preprocessing failed: Unknown modifier: ${unknown}`);
      return;
    }
    job.result.status = 'processing';
    job.result.message = 'Preprocessing complete. Queued for generation.';
    job.result.timings['preprocess_ms'] = 0;
    const plan = job.plan;
    const runMs = plan.invalid
      ? 0
      : (this.#msPerStep * plan.steps * plan.width * plan.height * plan.batch) / BASE_PIXELS;
    this.#waiting.push(job);
    const serial = this.#engine.submit(runMs, {
      onStart: () => {
        const index = this.#waiting.indexOf(job);
        if (index !== -1) this.#waiting.splice(index, 1);
        job.generationStart = performance.now();
        this.#notifyWaiting();
      },
      ready: async () => {
        await exchange.released();
        this.#startGeneration(job, runMs);
      },
      onDone: () => this.#generated(job),
    });
    job.serial = serial;
    this.#notify(job);
  }

  #startGeneration(job: Job, runMs: number): void {
    if (TERMINAL.has(job.result.status)) return;
    if (!this.#comfyui.answering) {
      const hostPort = this.#comfyui.url.slice('http://'.length);
      // The wrapper retries /prompt five times, then fails the job as an upstream error (502).
      this.#failAtGeneration(
        job,
        `Failed to post workflow after 5 attempts: Cannot connect to host ${hostPort} ssl:default [Connect call failed ('127.0.0.1', ${this.#comfyui.port})]`,
      );
      return;
    }
    if (job.plan.invalid) {
      // ComfyUI answered /prompt 400 with {"error", "node_errors": {}}; the wrapper does not retry.
      this.#failAtGeneration(job, 'ComfyUI node errors: {}');
      return;
    }
    const promptId = randomUUID();
    job.result.status = 'generating';
    job.result.message = `Generation started (ComfyUI job: ${promptId})`;
    this.#notify(job);
    const steps = Math.max(1, Math.round(job.plan.steps));
    const perStep = runMs / steps;
    let value = 0;
    const tick = (): void => {
      job.stepTimer = undefined;
      value++;
      if (value >= steps || TERMINAL.has(job.result.status)) return;
      const pct = ((value / steps) * 100).toFixed(1);
      job.result.message = `Progress: ${pct}% (${value}/${steps})`;
      this.#notify(job);
      job.stepTimer = setTimeout(tick, perStep);
    };
    job.stepTimer = setTimeout(tick, perStep);
  }

  #failAtGeneration(job: Job, error: string): void {
    this.#log(`ERROR:workers.generation_worker:GenerationWorker 1 failed job ${job.id}: ${error}`);
    // Free the engine at once: the real worker moves on to the next job.
    job.serial?.cancel();
    this.#finish(job, 'failed', `Generation failed: ${error}`);
  }

  #generated(job: Job): void {
    clearTimeout(job.stepTimer);
    if (TERMINAL.has(job.result.status)) return;
    job.result.timings['generation_ms'] = Math.round(performance.now() - job.generationStart);
    job.result.status = 'generated';
    job.result.message = 'Generation complete. Queued for post-processing.';
    this.#notify(job);
    job.result.output = this.#outputs(job);
    this.#finish(job, 'completed', 'Processing complete.');
  }

  /** ComfyUI's SaveImage names files `<prefix>_<5-digit counter>_.png`; the wrapper moves them. */
  #outputs(job: Job): OutputEntry[] {
    const entries: OutputEntry[] = [];
    for (const [nodeId, prefix] of job.plan.saves) {
      const slash = prefix.lastIndexOf('/');
      const subfolder = slash === -1 ? '' : prefix.slice(0, slash);
      const stem = slash === -1 ? prefix : prefix.slice(slash + 1);
      for (let i = 0; i < job.plan.batch; i++) {
        this.#fileCounter++;
        const filename = `${stem}_${String(this.#fileCounter).padStart(5, '0')}_.png`;
        const entry: OutputEntry = {
          filename,
          local_path: `${COMFY_OUTPUT_DIR}/${job.id}/${filename}`,
          type: 'output',
          subfolder,
          node_id: nodeId,
          output_type: 'images',
        };
        if (job.base64) {
          entry.data = TINY_PNG;
          entry.mimetype = 'image/png';
        }
        entries.push(entry);
      }
    }
    return entries;
  }

  #cancel(job: Job, message: string): void {
    if (TERMINAL.has(job.result.status)) return;
    const index = this.#waiting.indexOf(job);
    if (index !== -1) this.#waiting.splice(index, 1);
    job.serial?.cancel();
    this.#finish(job, 'cancelled', message);
    this.#notifyWaiting();
  }

  #getResult(res: ServerResponse, id: string): void {
    const job = this.#jobs.get(id);
    if (job === undefined) {
      sendJson(res, 404, this.#failedResult(id, 'Request ID not found'));
      return;
    }
    sendJson(res, TERMINAL.has(job.result.status) ? httpStatusFor(job.result) : 200, job.result);
  }

  #cancelById(res: ServerResponse, id: string): void {
    const job = this.#jobs.get(id);
    if (job === undefined) {
      sendJson(res, 404, { error: `Request ${id} not found` });
      return;
    }
    if (TERMINAL.has(job.result.status)) {
      sendJson(res, 200, {
        message: `Request ${id} is already ${job.result.status}`,
        status: job.result.status,
      });
      return;
    }
    this.#cancel(job, 'Request cancelled by client');
    sendJson(res, 200, { message: `Successfully cancelled request ${id}`, status: 'cancelled' });
  }

  #queuePosition(job: Job): QueuePosition {
    const index = this.#waiting.indexOf(job);
    if (index === -1) {
      return { current_queue: 'processing', position: 0, queue_size: 0, estimated_wait_time: 0 };
    }
    const position = index + 1;
    return {
      current_queue: 'generation',
      position,
      queue_size: this.#waiting.length,
      estimated_wait_time: position * 120,
    };
  }

  #queuedEvent(requestId: string): PyJsonValue {
    return {
      request_id: requestId,
      status: 'queued',
      message: 'Request queued',
      timestamp: utcIsoPython(),
    };
  }

  /** main.py `_stream_status_updates`: an event whenever status, message or position changes. */
  #stream(res: ServerResponse, job: Job): void {
    startStream(res, 'text/event-stream; charset=utf-8', STREAM_HEADERS);
    // Every byte of the body is kept, so tests can check a proxy passed the stream unchanged.
    let transcript = '';
    const record = (text: string): string => {
      transcript += text;
      this.#transcripts.delete(job.id);
      this.#transcripts.set(job.id, transcript);
      if (this.#transcripts.size > MAX_TRANSCRIPTS) {
        const oldest = this.#transcripts.keys().next().value;
        if (oldest !== undefined) this.#transcripts.delete(oldest);
      }
      return text;
    };
    res.write(record(sse(this.#queuedEvent(job.id))));
    const start = performance.now();
    const elapsed = (): PyFloat => new PyFloat(Math.round((performance.now() - start) / 100) / 10);
    let last = '';
    const update = (): void => {
      if (res.writableEnded || res.destroyed) return;
      const result = job.result;
      const position = this.#queuePosition(job);
      const key = `${result.status}\u0000${result.message}\u0000${JSON.stringify(position)}`;
      if (key !== last) {
        last = key;
        const event: Record<string, PyJsonValue> = {
          request_id: job.id,
          status: result.status,
          message: result.message,
          timestamp: utcIsoPython(),
          elapsed_time: elapsed(),
          queue_info: {
            preprocess_queue_size: 0,
            generation_queue_size: this.#waiting.length,
            postprocess_queue_size: 0,
          },
          queue_position: { ...position },
        };
        if (result.output.length > 0) event['output_count'] = result.output.length;
        res.write(record(sse(event)));
      }
      if (TERMINAL.has(result.status)) {
        job.listeners.delete(update);
        res.end(
          record(
            sse({
              request_id: job.id,
              status: 'final_result',
              result: toPy(result),
              elapsed_time: elapsed(),
            }),
          ),
        );
      }
    };
    job.listeners.add(update);
    res.once('close', () => job.listeners.delete(update));
  }
}

const STREAM_HEADERS = { connection: 'keep-alive', 'x-accel-buffering': 'no' } as const;

/** One SSE event as the wrapper writes it: `json.dumps` (Python separators), `data: …\n\n`. */
function sse(value: PyJsonValue): string {
  return `data: ${pythonJsonDumps(value)}\n\n`;
}

function toPy(result: Result): PyJsonValue {
  return JSON.parse(JSON.stringify(result)) as PyJsonValue;
}

// ---------------------------------------------------------------------------------------------
// The fake: the wrapper (a FakeServer) plus ComfyUI and the backend announcer

export class ComfyUIFake extends FakeServer {
  readonly comfyui: ComfyUIServer;
  readonly #engine: WrapperEngine;
  readonly #pollMs: number;
  readonly #timeoutMs: number;
  #pollTimer: NodeJS.Timeout | undefined;
  #readyWaiters: (() => void)[] = [];
  /** Failed probes of ComfyUI before BACKENDS_READY. */
  backendProbes = 0;

  /** Use `startComfyUIFake`. `comfyPort` must be a concrete port so ComfyUI's URL is known. */
  constructor(options: ComfyUIFakeOptions & { comfyPort: number }) {
    const host = options.host ?? '127.0.0.1';
    const comfyui = new ComfyUIServer(host, options.comfyPort);
    const engine = new WrapperEngine(comfyui, options.msPerStep ?? 5, options.maxQueueSize ?? 100);
    // ComfyUI's start-up is the slow part (`loadDelayMs`); the wrapper itself binds at once.
    super(engine, { ...options, loadDelayMs: 0 });
    this.#engine = engine;
    this.comfyui = comfyui;
    this.#pollMs = options.backendPollMs ?? 250;
    this.#timeoutMs = options.backendsReadyTimeoutMs ?? 600_000;
    engine.attach(this);
    this.workerEnv['COMFYUI_URL'] = comfyui.url;
    this.onStop = () => {
      clearTimeout(this.#pollTimer);
      this.#pollTimer = undefined;
      engine.stop();
    };
  }

  get comfyuiUrl(): string {
    return this.comfyui.url;
  }

  /** True once BACKENDS_READY was logged. */
  get backendsReady(): boolean {
    return this.#engine.backendsReady;
  }

  /** Jobs waiting for ComfyUI (`/queue-info` generation_queue_size). */
  get generationQueueSize(): number {
    return this.#engine.generationQueueSize;
  }

  /** Every byte the wrapper wrote in the SSE body of `requestId`'s stream (the latest 100). */
  streamTranscript(requestId: string): string | undefined {
    return this.#engine.transcript(requestId);
  }

  whenBackendsReady(): Promise<void> {
    if (this.#engine.backendsReady) return Promise.resolve();
    return new Promise((resolve) => this.#readyWaiters.push(resolve));
  }

  /** main.py `_announce_backends_ready`: probe at once, then every poll interval, until the deadline. */
  startAnnouncer(): void {
    const deadline = performance.now() + this.#timeoutMs;
    const poll = async (): Promise<void> => {
      this.#pollTimer = undefined;
      const status = await probeStatus(`${this.comfyui.url}/system_stats`, 5_000);
      if (this.#engine.backendsReady) return;
      if (status === 200) {
        this.#engine.backendsReady = true;
        this.writeLog('INFO:main:BACKENDS_READY: 1 backend(s) reachable, ready to serve');
        const waiters = this.#readyWaiters;
        this.#readyWaiters = [];
        for (const resolve of waiters) resolve();
        return;
      }
      this.backendProbes++;
      if (performance.now() >= deadline) {
        const seconds = Math.round(this.#timeoutMs / 1000);
        this.writeLog(
          `ERROR:main:BACKENDS_READY_TIMEOUT: not all of 1 backend(s) reachable after ${seconds}s`,
        );
        return;
      }
      this.#pollTimer = setTimeout(() => void poll(), this.#pollMs);
    };
    this.#pollTimer = setTimeout(() => void poll(), 0);
  }

  override async close(): Promise<void> {
    await super.close();
    await this.comfyui.stop();
  }
}

/**
 * Starts ComfyUI (after `loadDelayMs`, unless `comfyuiAutoStart` is false or `failLoad` is set)
 * and the wrapper. The returned fake is the wrapper; `workerEnv.COMFYUI_URL` is ComfyUI's URL.
 */
export async function startComfyUIFake(options: ComfyUIFakeOptions = {}): Promise<ComfyUIFake> {
  const host = options.host ?? '127.0.0.1';
  const comfyPort = options.comfyPort || (await reservePort(host));
  const fake = new ComfyUIFake({ ...options, comfyPort });
  const comfyui = fake.comfyui;
  const autoStart = (options.comfyuiAutoStart ?? true) && options.failLoad !== true;
  const delay = options.loadDelayMs ?? 0;
  if (autoStart && delay === 0) await comfyui.start();
  await fake.start();
  if (autoStart && delay > 0) {
    const timer = setTimeout(() => {
      void comfyui.start().catch((error: unknown) => {
        fake.writeLog(`comfyui: could not bind port ${comfyPort}: ${String(error)}`);
      });
    }, delay);
    const stop = fake.onStop;
    fake.onStop = () => {
      clearTimeout(timer);
      stop?.();
    };
  }
  // With failLoad the FakeServer writes the fatal line itself; no announcer runs.
  if (options.failLoad !== true) fake.startAnnouncer();
  return fake;
}

/**
 * Runs both servers from the environment (MODEL_HOST, MODEL_PORT=18288 for the wrapper,
 * COMFYUI_PORT=18188, MODEL_LOG, LOAD_DELAY_MS, MS_PER_STEP, MAX_QUEUE_SIZE) and prints one JSON
 * line `{"event":"listening","url":...,"comfyuiUrl":...}` for a parent process.
 */
export async function main(): Promise<ComfyUIFake> {
  const env = process.env;
  const logFile = env['MODEL_LOG'];
  const fake = await startComfyUIFake({
    host: env['MODEL_HOST'] || '127.0.0.1',
    port: envNumber(env, 'MODEL_PORT', 18288),
    comfyPort: envNumber(env, 'COMFYUI_PORT', 18188),
    ...(logFile ? { logFile } : {}),
    loadDelayMs: envNumber(env, 'LOAD_DELAY_MS', 0),
    msPerStep: envNumber(env, 'MS_PER_STEP', 5),
    maxQueueSize: envNumber(env, 'MAX_QUEUE_SIZE', 100),
  });
  return serveUntilSignal(fake, { comfyuiUrl: fake.comfyuiUrl });
}

if (isEntryPoint(import.meta.url)) runProgram('comfyui fake', main);
