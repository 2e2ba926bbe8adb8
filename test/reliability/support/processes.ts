/**
 * The processes the reliability harness starts: each one leads its own process group (so a kill
 * reaches anything it started), is recorded in a registry, and is killed when the harness exits,
 * whatever way it exits.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** Keeps the last this many characters of a process's output, for failure messages. */
const OUTPUT_TAIL_CHARS = 20_000;

export interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface ManagedProcess {
  readonly name: string;
  readonly pid: number;
  readonly child: ChildProcess;
  /** Resolves when the process has exited. */
  readonly exited: Promise<Exit>;
  readonly alive: boolean;
  /** The tail of stdout and stderr, interleaved. */
  output(): string;
  /** Calls `listener` with every complete stdout line, from now on. */
  onLine(listener: (line: string) => void): () => void;
  signal(signal: NodeJS.Signals): void;
  /** SIGTERM to the process, SIGKILL to its group after `graceMs`; resolves once it has exited. */
  stop(graceMs?: number): Promise<Exit>;
  /** SIGKILL to the whole process group. */
  kill(): Promise<Exit>;
}

const running = new Set<ManagedProcess>();

function killGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}

/** Kills every process still running, synchronously: safe in an 'exit' handler. */
export function killAll(): void {
  for (const managed of running) killGroup(managed.pid);
  running.clear();
}

let exitHooksInstalled = false;
function installExitHooks(): void {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  process.on('exit', killAll);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      killAll();
      process.exit(128 + (signal === 'SIGINT' ? 2 : signal === 'SIGTERM' ? 15 : 1));
    });
  }
}

/** Starts `node <args>` in the repository, as the leader of a new process group. */
export function startProcess(
  name: string,
  args: readonly string[],
  env: Record<string, string>,
): ManagedProcess {
  installExitHooks();
  const child = spawn(process.execPath, args, {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  if (child.pid === undefined) throw new Error(`${name}: could not start`);
  const pid = child.pid;
  let tail = '';
  const keep = (chunk: string): void => {
    tail += chunk;
    if (tail.length > 2 * OUTPUT_TAIL_CHARS) tail = tail.slice(-OUTPUT_TAIL_CHARS);
  };
  const lineListeners = new Set<(line: string) => void>();
  let partial = '';
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    keep(chunk);
    if (lineListeners.size === 0) {
      partial = '';
      return;
    }
    partial += chunk;
    let newline: number;
    while ((newline = partial.indexOf('\n')) !== -1) {
      const line = partial.slice(0, newline);
      partial = partial.slice(newline + 1);
      for (const listener of lineListeners) listener(line);
    }
    // A line longer than this is not one the harness waits for.
    if (partial.length > 1_000_000) partial = '';
  });
  child.stderr.on('data', keep);
  let alive = true;
  const exited = new Promise<Exit>((resolve) => {
    child.once('exit', (code, signal) => {
      alive = false;
      resolve({ code, signal });
    });
    child.once('error', () => {
      alive = false;
      resolve({ code: child.exitCode, signal: child.signalCode });
    });
  });
  const managed: ManagedProcess = {
    name,
    pid,
    child,
    exited,
    get alive() {
      return alive;
    },
    output: () => tail.slice(-OUTPUT_TAIL_CHARS),
    onLine(listener) {
      lineListeners.add(listener);
      return () => lineListeners.delete(listener);
    },
    signal(signal) {
      if (alive) child.kill(signal);
    },
    async stop(graceMs = 5_000) {
      if (alive) child.kill('SIGTERM');
      const timer = setTimeout(() => killGroup(pid), graceMs);
      const exit = await exited;
      clearTimeout(timer);
      // Anything it started goes too.
      killGroup(pid);
      running.delete(managed);
      return exit;
    },
    async kill() {
      killGroup(pid);
      const exit = await exited;
      running.delete(managed);
      return exit;
    },
  };
  running.add(managed);
  void exited.then(() => {
    if (!alive) running.delete(managed);
    // The group may outlive its leader; a dead leader's group is killed too.
    killGroup(pid);
  });
  return managed;
}

/**
 * Starts a process that prints one JSON line `{"event":"listening","url":...}` (the stand-ins do)
 * and resolves with that line once it arrives.
 */
export async function startListeningProcess(
  name: string,
  args: readonly string[],
  env: Record<string, string>,
  timeoutMs = 30_000,
): Promise<{ process: ManagedProcess; listening: Record<string, unknown> }> {
  const managed = startProcess(name, args, env);
  try {
    const listening = await new Promise<Record<string, unknown>>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${name}: no "listening" line within ${timeoutMs} ms`)),
        timeoutMs,
      );
      const off = managed.onLine((line) => {
        let message: unknown;
        try {
          message = JSON.parse(line);
        } catch {
          return;
        }
        if (
          typeof message === 'object' &&
          message !== null &&
          (message as Record<string, unknown>)['event'] === 'listening'
        ) {
          clearTimeout(timer);
          off();
          resolve(message as Record<string, unknown>);
        }
      });
      void managed.exited.then((exit) => {
        clearTimeout(timer);
        reject(
          new Error(
            `${name}: exited before listening (code ${String(exit.code)}, signal ` +
              `${String(exit.signal)})\n${managed.output()}`,
          ),
        );
      });
    });
    return { process: managed, listening };
  } catch (error) {
    await managed.kill();
    throw error;
  }
}

/** A port that was free a moment ago on 127.0.0.1. */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

export interface ProcStats {
  /** Resident set size, bytes. */
  readonly rss: number;
  /** User + system CPU time, milliseconds. */
  readonly cpuMs: number;
  /** Open file descriptors. */
  readonly fds: number;
}

const CLOCK_TICKS =
  Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** RSS from /proc/<pid>/status, CPU from /proc/<pid>/stat, descriptors from /proc/<pid>/fd. */
export function procStats(pid: number): ProcStats {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rssKb = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? 0);
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The fields after the command name (which may hold spaces) start at field 3.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  let fds = -1;
  try {
    fds = readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    // The process is gone, or its descriptors are not ours to read.
  }
  return { rss: rssKb * 1024, cpuMs: (ticks * 1000) / CLOCK_TICKS, fds };
}

export const MB = 1024 * 1024;
