import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { get } from '../helpers/request.ts';
import { waitFor } from '../helpers/wait-for.ts';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const START_TIMEOUT_MS = 45_000;

/** The PIDs of every live process in a process group, read from /proc. */
function groupMembers(pgid: number): number[] {
  const members: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    // "pid (comm) state ppid pgrp …": comm may hold spaces and parentheses.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[0] !== 'Z' && Number(fields[2]) === pgid) members.push(Number(entry));
  }
  return members;
}

/** Resolves true once nothing accepts connections on the port (ECONNREFUSED). */
function portRefuses(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code === 'ECONNREFUSED'));
  });
}

interface Started {
  readonly child: ChildProcess;
  readonly url: string;
  output(): string;
}

describe.concurrent('every documented way of starting a worker drains on SIGTERM', () => {
  let dir: string;
  const started: ChildProcess[] = [];
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'tsworker-signals-'));
  });
  afterAll(() => {
    // A failed test must not leave a worker behind: end each spawned group (the tests run
    // concurrently, so not before all of them are done).
    for (const child of started) {
      if (child.pid === undefined) continue;
      if (groupMembers(child.pid).length > 0) process.kill(-child.pid, 'SIGKILL');
    }
    rmSync(dir, { recursive: true, force: true });
  });

  /** The environment a user's shell would have: no npm_* variables from the test runner's npm. */
  function userEnv(extra: Record<string, string>): Record<string, string> {
    const env: Record<string, string> = {};
    for (const [key, value] of Object.entries(process.env)) {
      if (value !== undefined && !/^npm_/i.test(key)) env[key] = value;
    }
    return { ...env, LOG_LEVEL: 'info', ...extra };
  }

  /** A `tsworker start hello_world` environment: ephemeral ports, no model, no autoscaler. */
  function startEnv(name: string): Record<string, string> {
    const modelLog = join(dir, `${name}.model.log`);
    writeFileSync(modelLog, '');
    return userEnv({
      WORKER_PORT: '0',
      WORKER_HOST: '127.0.0.1',
      UNSECURED: 'true',
      MODEL_SERVER_URL: 'http://127.0.0.1:9',
      MODEL_LOG: modelLog,
      BENCHMARK_CACHE: join(dir, `${name}.benchmark`),
    });
  }

  /** Spawns the command as a process manager would (its own process group); resolves when it serves. */
  async function start(
    command: string,
    args: readonly string[],
    env: Record<string, string>,
  ): Promise<Started> {
    const child = spawn(command, args, {
      cwd: REPO_ROOT,
      env,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    started.push(child);
    let output = '';
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    const url = await waitFor(
      () => {
        if (child.exitCode !== null) throw new Error(`exited with ${child.exitCode}:\n${output}`);
        for (const text of output.split('\n')) {
          if (!text.includes('"worker listening"')) continue;
          return String((JSON.parse(text) as Record<string, unknown>)['url']);
        }
        return undefined;
      },
      { label: `${command} ${args.join(' ')}: worker listening`, timeoutMs: START_TIMEOUT_MS },
    ).catch((error: unknown) => {
      throw new Error(`${String(error)}\noutput:\n${output}`);
    });
    expect((await get(`${url}/health/live`)).status).toBe(200);
    return { child, url, output: () => output };
  }

  /** SIGTERM to the spawned PID only; then the whole group drains, exits and frees the port. */
  async function expectDrainOnSigterm({ child, url, output }: Started): Promise<void> {
    const pid = child.pid;
    if (pid === undefined) throw new Error('not spawned');
    process.kill(pid, 'SIGTERM');
    await waitFor(() => groupMembers(pid).length === 0, {
      label: 'every process of the group exited',
      timeoutMs: 30_000,
      intervalMs: 50,
    }).catch((error: unknown) => {
      throw new Error(`${String(error)}: ${groupMembers(pid).join(', ')}\noutput:\n${output()}`);
    });
    const port = Number(new URL(url).port);
    expect(await portRefuses(port)).toBe(true);
    expect(output()).toMatch(/"component":"shutdown".*"message":"drained"/);
  }

  it('npm start', async () => {
    const run = await start(
      'npm',
      ['start'],
      userEnv({ WORKER_PORT: '0', AUTOSCALER_PORT: '0', MODEL_PORT: '0' }),
    );
    await expectDrainOnSigterm(run);
  }, 90_000);

  it('npm run tsworker -- start hello_world', async () => {
    const run = await start(
      'npm',
      ['run', 'tsworker', '--', 'start', 'hello_world'],
      startEnv('npm-run'),
    );
    await expectDrainOnSigterm(run);
  }, 90_000);

  it('npx tsworker start hello_world', async () => {
    const run = await start('npx', ['tsworker', 'start', 'hello_world'], startEnv('npx'));
    await expectDrainOnSigterm(run);
  }, 90_000);

  it('node bin/tsworker.js start hello_world (what a process manager or a container runs)', async () => {
    const run = await start(
      process.execPath,
      ['bin/tsworker.js', 'start', 'hello_world'],
      startEnv('node'),
    );
    const exited = once(run.child, 'exit');
    await expectDrainOnSigterm(run);
    expect(await exited).toEqual([0, null]);
  }, 90_000);
});
