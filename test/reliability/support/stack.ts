/**
 * One stack of real processes on 127.0.0.1 for a scenario: the example model server, the local
 * autoscaler (with the harness's control port) and `tsworker start hello_world`, secured, each
 * in its own process group. `close()` kills all three, whatever state they are in.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AutoscalerSummary, CheckResult, OutageMode } from './autoscaler-process.ts';
import { getText, LOOPBACK, postJson } from './http.ts';
import { freePort, startListeningProcess, startProcess, type ManagedProcess } from './processes.ts';
import { poll } from './timing.ts';

export interface StackOptions {
  /** Names the temporary directory. */
  readonly name: string;
  readonly authMode?: 'current' | 'legacy';
  /** The worker's LOG_LEVEL. @default 'warn' */
  readonly logLevel?: string;
  /** More environment for the worker. */
  readonly workerEnv?: Readonly<Record<string, string>>;
  /** The model URL the worker is given, e.g. that of a fault proxy in front of the model's port. */
  readonly modelUrlForWorker?: (modelPort: number) => Promise<string>;
}

/** What POST /route/ answers; in the current mode one ticket signs every request. */
export interface Ticket {
  readonly endpoint: string;
  readonly url: string;
  readonly cost: number;
  readonly reqnum: number;
  readonly request_idx?: number;
  readonly signature: string;
}

export interface ModelHandle {
  readonly url: string;
  readonly port: number;
  process: ManagedProcess;
  /** POST /_control: token delay, failure injection, health. */
  configure(settings: Record<string, unknown>): Promise<void>;
  stats(): Promise<Record<string, number>>;
  /** Starts a new model process on the same port (no log, so the worker is not disturbed). */
  restart(): Promise<void>;
}

export interface AutoscalerHandle {
  readonly url: string;
  readonly process: ManagedProcess;
  outage(mode: OutageMode): Promise<void>;
  summary(): Promise<AutoscalerSummary>;
  /** Is every request_idx in each [from, to) reported exactly once? */
  check(ranges: readonly (readonly [number, number])[]): Promise<CheckResult>;
  /** A signed ticket from POST /route/. */
  route(cost?: number): Promise<Ticket>;
}

export interface WorkerHandle {
  readonly url: string;
  readonly port: number;
  readonly httpPort: number;
  readonly process: ManagedProcess;
  /** GET /metrics, summed per series name (labels folded). */
  metrics(): Promise<Map<string, number>>;
  /** GET /metrics: the sum of one series over the label sets that match `labels`. */
  metric(name: string, labels?: Readonly<Record<string, string>>): Promise<number>;
  /** Resolves once GET /health/ready answers 200. */
  ready(timeoutMs?: number): Promise<void>;
}

export interface Stack {
  readonly dir: string;
  readonly modelLog: string;
  readonly model: ModelHandle;
  readonly autoscaler: AutoscalerHandle;
  readonly worker: WorkerHandle;
  readonly authMode: 'current' | 'legacy';
  close(): Promise<void>;
}

const STAND_INS = 'src/stand-ins';

/** Starts the model server and the autoscaler, then the worker, and waits until it is ready. */
export async function startStack(options: StackOptions): Promise<Stack> {
  const authMode = options.authMode ?? 'current';
  const dir = mkdtempSync(join(tmpdir(), `tsworker-reliability-${options.name}-`));
  const modelLog = join(dir, 'model.log');
  const started: ManagedProcess[] = [];
  try {
    // All three start at once, on ports picked beforehand: the worker waits for the model's log
    // and retries the public key, so the order does not matter and start-up takes one process's time.
    const modelPort = await freePort();
    const autoscalerPort = await freePort();
    const port = await freePort();
    const httpPort = await freePort();
    const modelStarting = startListeningProcess(
      'model server',
      ['--import', 'tsx', `${STAND_INS}/example-model-server.ts`],
      { MODEL_PORT: String(modelPort), MODEL_LOG: modelLog, TOKEN_DELAY_MS: '0' },
    );
    const autoscalerStarting = startListeningProcess(
      'autoscaler',
      ['--import', 'tsx', 'test/reliability/support/autoscaler-process.ts'],
      { AUTOSCALER_PORT: String(autoscalerPort), AUTH_MODE: authMode },
    );
    void modelStarting.then((s) => started.push(s.process)).catch(() => undefined);
    void autoscalerStarting.then((s) => started.push(s.process)).catch(() => undefined);
    const modelUrl = `http://${LOOPBACK}:${modelPort}`;
    const autoscalerUrl = `http://${LOOPBACK}:${autoscalerPort}`;
    const modelForWorker = (await options.modelUrlForWorker?.(modelPort)) ?? modelUrl;
    const workerProcess = startProcess(
      'worker',
      ['--import', 'tsx', 'src/cli.ts', 'start', 'hello_world'],
      {
        WORKER_PORT: String(port),
        WORKER_HTTP_PORT: String(httpPort),
        WORKER_HOST: LOOPBACK,
        REPORT_ADDR: autoscalerUrl,
        CONTAINER_ID: '1',
        PUBLIC_IPADDR: LOOPBACK,
        MODEL_SERVER_URL: modelForWorker,
        MODEL_LOG: modelLog,
        AUTH_MODE: authMode,
        UNSECURED: 'false',
        LOG_LEVEL: options.logLevel ?? 'warn',
        BENCHMARK_CACHE: join(dir, '.has_benchmark'),
        NO_HEALTHCHECK_WAIT_SECONDS: '0',
        ...options.workerEnv,
      },
    );
    started.push(workerProcess);
    const [modelStart, autoscalerStart] = await Promise.all([modelStarting, autoscalerStarting]);
    const model = modelHandle(modelUrl, modelStart.process);
    const autoscaler = autoscalerHandle(
      autoscalerUrl,
      String(autoscalerStart.listening['control']),
      autoscalerStart.process,
    );
    const worker = workerHandle(`http://${LOOPBACK}:${port}`, port, httpPort, workerProcess);
    await worker.ready(60_000);
    // The worker announces its URL in its reports; /route/ signs for it from then on.
    await poll(async () => (await autoscaler.summary()).workerUrl === worker.url, {
      timeoutMs: 20_000,
      label: 'the autoscaler routing to the worker',
    });
    return {
      dir,
      modelLog,
      model,
      autoscaler,
      worker,
      authMode,
      async close() {
        await Promise.all([worker.process.kill(), model.process.kill(), autoscaler.process.kill()]);
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await Promise.all(started.map((managed) => managed.kill()));
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
}

function modelHandle(url: string, initial: ManagedProcess): ModelHandle {
  const port = Number(new URL(url).port);
  const handle: ModelHandle = {
    url,
    port,
    process: initial,
    async configure(settings) {
      const answer = await postJson(`${url}/_control`, settings);
      if (answer.status !== 200)
        throw new Error(`model /_control: ${answer.status} ${answer.text}`);
    },
    async stats() {
      const answer = await getText(`${url}/_stats`);
      return JSON.parse(answer.text) as Record<string, number>;
    },
    async restart() {
      if (handle.process.alive) await handle.process.kill();
      const restarted = await startListeningProcess(
        'model server',
        ['--import', 'tsx', `${STAND_INS}/example-model-server.ts`],
        { MODEL_PORT: String(port), MODEL_LOG: '', TOKEN_DELAY_MS: '0' },
      );
      handle.process = restarted.process;
    },
  };
  return handle;
}

function autoscalerHandle(url: string, control: string, managed: ManagedProcess): AutoscalerHandle {
  return {
    url,
    process: managed,
    async outage(mode) {
      const answer = await postJson(`${control}/outage`, { mode });
      if (answer.status !== 200) throw new Error(`autoscaler outage: ${answer.text}`);
    },
    async summary() {
      return JSON.parse((await getText(`${control}/summary`)).text) as AutoscalerSummary;
    },
    async check(ranges) {
      const answer = await postJson(`${control}/check`, { ranges });
      if (answer.status !== 200) throw new Error(`autoscaler check: ${answer.text}`);
      return answer.json as CheckResult;
    },
    async route(cost = 1) {
      const answer = await postJson(`${url}/route/`, {
        endpoint: 'reliability',
        api_key: 'local',
        cost,
      });
      const ticket = answer.json as Partial<Ticket> | undefined;
      if (answer.status !== 200 || typeof ticket?.signature !== 'string') {
        throw new Error(`autoscaler /route/: ${answer.status} ${answer.text}`);
      }
      return ticket as Ticket;
    },
  };
}

function workerHandle(
  url: string,
  port: number,
  httpPort: number,
  managed: ManagedProcess,
): WorkerHandle {
  return {
    url,
    port,
    httpPort,
    process: managed,
    async metrics() {
      const { text } = await getText(`${url}/metrics`);
      return parseMetrics(text);
    },
    async metric(name, labels = {}) {
      const { text } = await getText(`${url}/metrics`);
      let sum = 0;
      for (const line of text.split('\n')) {
        const match = /^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{([^}]*)\})?\s+(\S+)/.exec(line);
        if (match === null || match[1] !== name) continue;
        const found = new Map(
          [...(match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]),
        );
        if (Object.entries(labels).every(([key, value]) => found.get(key) === value)) {
          sum += Number(match[3]);
        }
      }
      return sum;
    },
    async ready(timeoutMs = 30_000) {
      await poll(
        async () => {
          if (!managed.alive) throw new Error(`worker exited:\n${managed.output()}`);
          return (await getText(`${url}/health/ready`)).status === 200;
        },
        { timeoutMs, label: 'the worker ready', rethrow: (e) => /worker exited/.test(String(e)) },
      );
    },
  };
}

/** Prometheus text to series name → the sum over its label sets. */
export function parseMetrics(text: string): Map<string, number> {
  const series = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{[^}]*\})?\s+(\S+)/.exec(line);
    if (match === null) continue;
    const [, name = '', raw = ''] = match;
    const value = raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : Number(raw);
    series.set(name, (series.get(name) ?? 0) + value);
  }
  return series;
}

/** The JSON body of a request signed by `ticket`, current mode: only `url` is signed. */
export function signedBody(
  ticket: Ticket,
  requestIdx: number,
  payloadJson: string,
  extra = '',
): string {
  return (
    `{"auth_data":{"cost":${ticket.cost},"endpoint":${JSON.stringify(ticket.endpoint)},` +
    `"reqnum":${requestIdx},"request_idx":${requestIdx},` +
    `"signature":${JSON.stringify(ticket.signature)},"url":${JSON.stringify(ticket.url)}},` +
    `"payload":${payloadJson}${extra}}`
  );
}

/** hello_world's payload. */
export function helloPayload(prompt: string, tokens: number): string {
  return JSON.stringify({ prompt, max_response_tokens: tokens });
}
