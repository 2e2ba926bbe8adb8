/**
 * The processes the bench runs: the example model server and the worker as separate node processes
 * (so the worker's RSS and CPU are its own, read from /proc), and nginx.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../', import.meta.url));

export interface Child {
  readonly name: string;
  readonly url: string;
  readonly pid: number;
  readonly process: ChildProcess;
  output(): string;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when it has exited. */
  stop(graceMs?: number): Promise<void>;
}

export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function waitForPort(
  port: number,
  child: ChildProcess,
  name: string,
  output: () => string,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${name} exited before listening:\n${output()}`);
    }
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`${name} did not listen on ${port} within ${timeoutMs} ms:\n${output()}`);
}

function track(name: string, child: ChildProcess, url: string): Child {
  let output = '';
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-20_000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = once(child, 'exit').catch(() => undefined);
  return {
    name,
    url,
    pid: child.pid as number,
    process: child,
    output: () => output,
    async stop(graceMs = 5000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** The example model server in zero-latency mode, as its own process. */
export async function startModelServer(): Promise<Child> {
  const port = await freePort();
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'src/stand-ins/example-model-server.ts'],
    {
      cwd: REPO_ROOT,
      env: { ...process.env, MODEL_PORT: String(port), TOKEN_DELAY_MS: '0', MODEL_LOG: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const tracked = track('model server', child, `http://127.0.0.1:${port}`);
  await waitForPort(port, child, 'model server', tracked.output);
  return tracked;
}

export interface WorkerProcessOptions {
  readonly modelUrl: string;
  readonly autoscalerUrl: string;
  readonly logLevel: string;
  /** e.g. ['--cpu-prof', '--cpu-prof-dir', dir] */
  readonly nodeFlags?: readonly string[];
  /** The compiled CLI (production); undefined runs src/cli.ts through tsx. */
  readonly builtCli?: string;
  /**
   * Where the worker's stdout (its log lines) goes: a file, as a log collector would take it. The
   * bench process does not read it, so a line per request costs the worker, not the bench.
   */
  readonly logFile?: string;
  /** A worker name under workers/ or a folder path. @default 'hello_world' */
  readonly worker?: string;
}

export interface BuiltBench {
  /** The compiled CLI. */
  readonly cli: string;
  /** The compiled floor proxy (bench/floor-proxy.ts). */
  readonly floor: string;
  /** The compiled bench/flat-worker folder. */
  readonly flatWorker: string;
}

/** hello_world without a tokenizer (bench/flat-worker), from source or compiled. */
export function flatWorkerFolder(built: BuiltBench | undefined): string {
  return built?.flatWorker ?? join(REPO_ROOT, 'bench/flat-worker');
}

const TSC = join(REPO_ROOT, 'node_modules/typescript/bin/tsc');

/**
 * Compiles lib, src and workers as `npm run build` does, and the floor proxy with the same options,
 * into bench/results/build (ignored by git, and inside the checkout so node_modules resolve). The
 * worker and the floor then run as in production: no tsx loader thread, no transpiling.
 */
export function buildBench(): BuiltBench {
  const outDir = join(REPO_ROOT, 'bench/results/build');
  const result = spawnSync(
    process.execPath,
    [TSC, '-p', 'tsconfig.build.json', '--outDir', outDir, '--declaration', 'false'],
    { cwd: REPO_ROOT, encoding: 'utf8' },
  );
  const cli = join(outDir, 'src/cli.js');
  // Type errors elsewhere in the tree still emit JavaScript; only a missing output is fatal.
  if (!existsSync(cli)) throw new Error(`build failed:\n${result.stdout}${result.stderr}`);
  // tsconfig.build.json does not include bench/: the floor (and the lib files it imports, which
  // compile to the same output) gets the same compiler options on the command line.
  const floorResult = spawnSync(
    process.execPath,
    [
      TSC,
      'bench/floor-proxy.ts',
      'bench/flat-worker/server.ts',
      '--ignoreConfig',
      '--outDir',
      outDir,
      '--rootDir',
      '.',
      '--target',
      'ES2022',
      '--module',
      'NodeNext',
      '--moduleResolution',
      'NodeNext',
      '--types',
      'node',
      '--strict',
      '--skipLibCheck',
      '--allowImportingTsExtensions',
      '--rewriteRelativeImportExtensions',
      '--verbatimModuleSyntax',
      '--sourceMap',
    ],
    { cwd: REPO_ROOT, encoding: 'utf8' },
  );
  const floor = join(outDir, 'bench/floor-proxy.js');
  if (!existsSync(floor))
    throw new Error(`floor build failed:\n${floorResult.stdout}${floorResult.stderr}`);
  return { cli, floor, flatWorker: join(outDir, 'bench/flat-worker') };
}

export interface FloorOptions {
  readonly modelUrl: string;
  readonly autoscalerUrl: string;
  /** The compiled floor; undefined runs bench/floor-proxy.ts through tsx. */
  readonly built?: string;
  /** Flags for node itself (`--cpu-prof`). */
  readonly nodeFlags?: readonly string[];
}

/** The floor proxy (bench/floor-proxy.ts) as its own process. */
export async function startFloorProxy(options: FloorOptions): Promise<Child> {
  const port = await freePort();
  const entry =
    options.built === undefined ? ['--import', 'tsx', 'bench/floor-proxy.ts'] : [options.built];
  const child = spawn(process.execPath, [...(options.nodeFlags ?? []), ...entry], {
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      FLOOR_PORT: String(port),
      MODEL_SERVER_URL: options.modelUrl,
      REPORT_ADDR: options.autoscalerUrl,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const tracked = track('floor proxy', child, `http://127.0.0.1:${port}`);
  await waitForPort(port, child, 'floor proxy', tracked.output);
  return tracked;
}

/** hello_world as `tsworker start hello_world`, secured, with its key from the local autoscaler. */
export async function startWorkerProcess(options: WorkerProcessOptions): Promise<Child> {
  const [port, httpPort] = [await freePort(), await freePort()];
  const scratch = mkdtempSync(join(tmpdir(), 'tsworker-bench-worker-'));
  const entry =
    options.builtCli === undefined ? ['--import', 'tsx', 'src/cli.ts'] : [options.builtCli];
  const probe = ['--expose-gc', '--import', join(REPO_ROOT, 'bench/worker-probe.mjs')];
  const logFd = options.logFile === undefined ? undefined : openSync(options.logFile, 'a');
  const child = spawn(
    process.execPath,
    [...(options.nodeFlags ?? []), ...probe, ...entry, 'start', options.worker ?? 'hello_world'],
    {
      cwd: REPO_ROOT,
      env: {
        ...process.env,
        WORKER_PORT: String(port),
        WORKER_HTTP_PORT: String(httpPort),
        WORKER_HOST: '127.0.0.1',
        REPORT_ADDR: options.autoscalerUrl,
        CONTAINER_ID: '1',
        PUBLIC_IPADDR: '127.0.0.1',
        MODEL_SERVER_URL: options.modelUrl,
        UNSECURED: 'false',
        LOG_LEVEL: options.logLevel,
        BENCHMARK_CACHE: join(scratch, '.has_benchmark'),
        TERMINATION_GRACE_PERIOD_SECONDS: '2',
      },
      stdio: ['ignore', logFd ?? 'pipe', 'pipe', 'ipc'],
    },
  );
  if (logFd !== undefined) closeSync(logFd);
  const tracked = track('worker', child, `http://127.0.0.1:${port}`);
  const output = (): string =>
    `${tracked.output()}${options.logFile === undefined ? '' : tail(options.logFile)}`;
  await waitForPort(port, child, 'worker', output);
  return { ...tracked, output };
}

export interface Nginx extends Child {
  readonly version: string;
}

/** Installs nginx from Debian's packages when it is missing. Returns false when that fails. */
export function ensureCommand(command: string, pkg: string, log: (line: string) => void): boolean {
  if (spawnSync('sh', ['-c', `command -v ${command}`]).status === 0) return true;
  log(`${command} is missing: apt-get install -y ${pkg}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  let result = spawnSync('apt-get', ['install', '-y', '--no-install-recommends', pkg], {
    env,
    stdio: 'ignore',
  });
  if (result.status !== 0) {
    spawnSync('apt-get', ['update'], { env, stdio: 'ignore' });
    result = spawnSync('apt-get', ['install', '-y', '--no-install-recommends', pkg], {
      env,
      stdio: 'ignore',
    });
  }
  // Debian starts the packaged nginx service; the bench runs its own, so stop that one.
  if (pkg.startsWith('nginx'))
    spawnSync('sh', ['-c', 'service nginx stop >/dev/null 2>&1 || true']);
  return spawnSync('sh', ['-c', `command -v ${command}`]).status === 0;
}

/**
 * nginx as the best a general-purpose proxy does: one worker process (as one node process), upstream
 * keep-alive, buffering off both ways, no access log.
 */
export async function startNginx(modelUrl: string): Promise<Nginx> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'tsworker-bench-nginx-'));
  // nginx's worker runs as nobody: it must be able to enter the directory.
  chmodSync(dir, 0o755);
  const upstream = new URL(modelUrl).host;
  const conf = join(dir, 'nginx.conf');
  writeFileSync(
    conf,
    `worker_processes 1;
daemon off;
master_process on;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 65s;
  upstream model {
    server ${upstream};
    keepalive 128;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://model;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_request_buffering off;
    }
  }
}
`,
  );
  const version = spawnSync('nginx', ['-v'], { encoding: 'utf8' })
    .stderr.trim()
    .replace(/^nginx version: /, '');
  const child = spawn('nginx', ['-p', dir, '-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
  const tracked = track('nginx', child, `http://127.0.0.1:${port}`);
  try {
    await waitForPort(
      port,
      child,
      'nginx',
      () => `${tracked.output()}${safeRead(join(dir, 'error.log'))}`,
    );
  } catch (error) {
    await tracked.stop();
    throw error;
  }
  return { ...tracked, version, stop: (graceMs) => tracked.stop(graceMs) };
}

function tail(file: string, chars = 20_000): string {
  const text = safeRead(file);
  return text.length > chars ? text.slice(-chars) : text;
}

function safeRead(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

export interface ProcStats {
  /** Resident set size, bytes. */
  readonly rss: number;
  /** Peak RSS, bytes. */
  readonly hwm: number;
  /** User + system CPU, milliseconds. */
  readonly cpuMs: number;
}

const CLOCK_TICKS =
  Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** RSS from /proc/<pid>/status, CPU (utime + stime) from /proc/<pid>/stat. */
export function procStats(pid: number): ProcStats {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) =>
    Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024;
  // Fields after the command name (which may hold spaces) start at field 3.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return { rss: kb('VmRSS'), hwm: kb('VmHWM'), cpuMs: (ticks * 1000) / CLOCK_TICKS };
}

export interface HeapProbe {
  /** Bytes of V8 heap in use, after a full GC when asked for. */
  readonly heapUsed: number;
  readonly rss: number;
  readonly external: number;
}

let probeId = 0;

/** Asks the worker's preloaded probe (bench/worker-probe.mjs) for its memory, after a full GC. */
export function probeWorker(worker: Child, gc = true): Promise<HeapProbe> {
  const id = ++probeId;
  const child = worker.process;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.off('message', onMessage);
      reject(new Error('the worker probe did not answer'));
    }, 10_000);
    const onMessage = (message: { type?: string; id?: number; memory?: NodeJS.MemoryUsage }) => {
      if (message.type !== 'probe' || message.id !== id || message.memory === undefined) return;
      clearTimeout(timer);
      child.off('message', onMessage);
      resolve({
        heapUsed: message.memory.heapUsed,
        rss: message.memory.rss,
        external: message.memory.external,
      });
    };
    child.on('message', onMessage);
    child.send({ type: 'probe', id, gc });
  });
}

/** nginx's worker process (the one that proxies), a child of the master the bench started. */
export function nginxWorkerPid(masterPid: number): number | undefined {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue;
    }
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(fields[1]) === masterPid) return Number(entry);
  }
  return undefined;
}

/** One Prometheus scrape of a worker's /metrics, as name{labels} → value (unlabelled: name). */
export async function scrapeMetrics(workerUrl: string): Promise<Map<string, number>> {
  const response = await fetch(`${workerUrl}/metrics`, { signal: AbortSignal.timeout(10_000) });
  const text = await response.text();
  if (!response.ok)
    throw new Error(`GET /metrics answered ${response.status}: ${text.slice(0, 200)}`);
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    values.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return values;
}
