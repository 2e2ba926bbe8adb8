import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import {
  createServer as createNetServer,
  type AddressInfo,
  type Server as NetServer,
} from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  ENVIRONMENT_VARIABLE_DOCS,
  ENVIRONMENT_VARIABLES,
  PUBLIC_PORT_VARIABLE_DOC,
} from '../../lib/config.ts';
import {
  startLocalAutoscaler,
  type LocalAutoscaler,
} from '../../src/stand-ins/local-autoscaler.ts';
import { builtCheckout } from '../helpers/built-checkout.ts';
import { testPrivateKey } from '../helpers/stack.ts';
import { waitFor } from '../helpers/wait-for.ts';

const ROOT = resolve(import.meta.dirname, '..', '..');
/**
 * The CLI compiled from these sources, in the copy of the checkout the run builds once
 * (test/helpers/built-checkout.ts): each of this file's two dozen processes then starts without
 * compiling TypeScript. The CLI from the sources is spawned by user-worker.test.ts and init.test.ts.
 */
let CLI: string;
beforeAll(async () => {
  CLI = join(await builtCheckout(), 'dist', 'src', 'cli.js');
}, 300_000);

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Spawns `tsworker <argv>` with only `env` (and PATH), collecting its output as it comes. */
function spawnCli(
  argv: readonly string[],
  env: Record<string, string> = {},
  cwd = ROOT,
): { child: ChildProcess; output: { stdout: string; stderr: string } } {
  const child = spawn(process.execPath, [CLI, ...argv], {
    cwd,
    env: { PATH: process.env['PATH'] ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = { stdout: '', stderr: '' };
  child.stdout?.on('data', (chunk: Buffer) => (output.stdout += chunk.toString('utf8')));
  child.stderr?.on('data', (chunk: Buffer) => (output.stderr += chunk.toString('utf8')));
  return { child, output };
}

/** Runs `tsworker <argv>` to its end. A command that starts a server never ends: the test times out. */
async function cli(
  argv: readonly string[],
  env: Record<string, string> = {},
  cwd = ROOT,
): Promise<Run> {
  const { child, output } = spawnCli(argv, env, cwd);
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, ...output };
}

/** An HTTP server counting every request it gets: nothing should reach it. */
let tripwire: Server;
let tripwireUrl: string;
const tripped: string[] = [];
beforeAll(async () => {
  tripwire = createServer((request, response) => {
    tripped.push(`${request.method} ${request.url}`);
    response.end('{}');
  });
  tripwire.listen(0, '127.0.0.1');
  await once(tripwire, 'listening');
  tripwireUrl = `http://127.0.0.1:${(tripwire.address() as AddressInfo).port}`;
});
afterAll(() => {
  tripwire.close();
});

const dirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'tsworker-cli-help-'));
  dirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe('tsworker --help', () => {
  it('answers --help and -h for every command with its usage on stdout, exit 0, and starts nothing', async () => {
    const cwd = tempDir();
    const modelLog = join(cwd, 'model.log');
    // Everything a started command would touch: the autoscaler (the public key, reports, /route/),
    // the model log dev creates, the folder init writes.
    const env = {
      REPORT_ADDR: tripwireUrl,
      CONTAINER_ID: '5',
      PUBLIC_IPADDR: '127.0.0.1',
      WORKER_HOST: '127.0.0.1',
      WORKER_PORT: '0',
      AUTOSCALER_PORT: '0',
      MODEL_PORT: '0',
      MODEL_LOG: modelLog,
    };
    const cases: [string[], RegExp][] = [
      [['start', '--help'], /^Usage: tsworker start <worker>\n/],
      [['start', 'hello_world', '-h'], /^Usage: tsworker start <worker>\n/],
      [['dev', '--help'], /^Usage: tsworker dev \[worker\]/],
      [['dev', 'vllm', '-h'], /^Usage: tsworker dev \[worker\]/],
      [['init', '--help'], /^Usage: tsworker init <name>/],
      [['init', 'w', '-h'], /^Usage: tsworker init <name>/],
      [
        ['test_load', '-n', '1', '-rps', '1', '--worker-url', tripwireUrl, '--help'],
        /^Usage: tsworker test_load /,
      ],
      [['test_load', '-h', '-l', '-n', '1', '-rps', '1'], /^Usage: tsworker test_load /],
      [['help', '--help'], /^Usage: tsworker <command>/],
      [['help', 'start'], /^Usage: tsworker start <worker>\n/],
      [['help', 'dev'], /^Usage: tsworker dev \[worker\]/],
      [['--help'], /^Usage: tsworker <command>/],
      [['-h'], /^Usage: tsworker <command>/],
    ];
    const runs = await Promise.all(cases.map(([argv]) => cli(argv, env, cwd)));
    runs.forEach((run, i) => {
      const [argv, usage] = cases[i]!;
      const label = `tsworker ${argv.join(' ')}`;
      expect(run.code, `${label}: ${run.stderr}`).toBe(0);
      expect(run.stdout, label).toMatch(usage);
      expect(run.stderr, label).toBe('');
      // Usage only: no log line of a worker or stack that started.
      expect(run.stdout, label).not.toMatch(/^\{"level"/m);
    });
    expect(tripped).toEqual([]);
    expect(existsSync(modelLog)).toBe(false);
    expect(readdirSync(cwd)).toEqual([]);
  }, 120_000);

  it('lists every environment variable the worker reads, each with its meaning, in start --help', async () => {
    const run = await cli(['start', '--help']);
    expect(run.code).toBe(0);
    const docs: [string, string][] = [
      ...(Object.entries(ENVIRONMENT_VARIABLE_DOCS) as [string, string][]),
      [...PUBLIC_PORT_VARIABLE_DOC],
    ];
    expect(docs.map(([name]) => name).sort()).toEqual(
      [...ENVIRONMENT_VARIABLES, 'VAST_TCP_PORT_<WORKER_PORT>'].sort(),
    );
    for (const [name, meaning] of docs) {
      expect(run.stdout).toMatch(new RegExp(`^  ${escape(name)} +${escape(meaning)}$`, 'm'));
    }
    // The shipped workers are named too.
    expect(run.stdout).toContain('hello_world');
  }, 60_000);

  it('prints the package version for --version and -v', async () => {
    const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
      version: string;
    };
    const [long, short] = await Promise.all([cli(['--version']), cli(['-v'])]);
    expect(long).toEqual({ code: 0, stdout: `${version}\n`, stderr: '' });
    expect(short).toEqual({ code: 0, stdout: `${version}\n`, stderr: '' });
  }, 60_000);

  it('refuses unknown options, extra arguments and a missing worker with one line and exit 2', async () => {
    const [unknown, extra, missing, command] = await Promise.all([
      cli(['start', '--bogus']),
      cli(['start', 'a', 'b']),
      cli(['start']),
      cli(['strat']),
    ]);
    expect(unknown).toMatchObject({ code: 2, stdout: '' });
    expect(unknown.stderr).toBe("tsworker: Unknown option '--bogus' (tsworker start --help)\n");
    expect(extra).toMatchObject({
      code: 2,
      stdout: '',
      stderr: 'tsworker: unexpected arguments: b (tsworker start --help)\n',
    });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^tsworker: start needs a worker name or path.*\n$/);
    expect(command.code).toBe(2);
    expect(command.stderr).toMatch(/^tsworker: unknown command "strat"\n/);
  }, 60_000);
});

describe('start-up errors', () => {
  let blocker: NetServer;
  let busyPort: number;
  beforeAll(async () => {
    blocker = createNetServer();
    blocker.listen(0, '127.0.0.1');
    await once(blocker, 'listening');
    busyPort = (blocker.address() as AddressInfo).port;
  });
  afterAll(() => {
    blocker.close();
  });

  const local = { UNSECURED: 'true', WORKER_HOST: '127.0.0.1', WORKER_PORT: '0' };

  it('names WORKER_PORT when the main port is in use, in one line, nothing else printed', async () => {
    const run = await cli(['start', 'hello_world'], { ...local, WORKER_PORT: String(busyPort) });
    expect(run).toEqual({
      code: 1,
      stdout: '',
      stderr: `tsworker: port ${busyPort} on 127.0.0.1 is in use (EADDRINUSE): set WORKER_PORT to a free port\n`,
    });
  }, 60_000);

  it('names WORKER_HTTP_PORT when the plain listener port is in use', async () => {
    const run = await cli(['start', 'hello_world'], {
      ...local,
      WORKER_HTTP_PORT: String(busyPort),
    });
    expect(run).toEqual({
      code: 1,
      stdout: '',
      stderr:
        `tsworker: port ${busyPort} on 127.0.0.1 is in use (EADDRINUSE): ` +
        'set WORKER_HTTP_PORT (default WORKER_PORT + 1) to a free port\n',
    });
  }, 60_000);

  it('prints a bad variable in one line with its value, and an unknown worker in one line', async () => {
    const [config, worker] = await Promise.all([
      cli(['start', 'hello_world'], { ...local, WORKER_PORT: 'abc' }),
      cli(['start', 'no_such_worker'], local),
    ]);
    expect(config).toEqual({
      code: 1,
      stdout: '',
      stderr:
        'tsworker: invalid configuration: WORKER_PORT: must be a port number (0-65535), got "abc"\n',
    });
    expect(worker.code).toBe(1);
    expect(worker.stdout).toBe('');
    expect(worker.stderr).toMatch(/^tsworker: no worker "no_such_worker": [^\n]*\n$/);
  }, 60_000);

  it("names AUTOSCALER_PORT when tsworker dev's local autoscaler cannot bind", async () => {
    const cwd = tempDir();
    const run = await cli(['dev'], {
      AUTOSCALER_PORT: String(busyPort),
      MODEL_PORT: '0',
      WORKER_PORT: '0',
      MODEL_LOG: join(cwd, 'model.log'),
    });
    expect(run).toEqual({
      code: 1,
      stdout: '',
      stderr: `tsworker: port ${busyPort} is in use (EADDRINUSE): set AUTOSCALER_PORT to a free port\n`,
    });
  }, 60_000);

  describe('with an autoscaler to tell', () => {
    let autoscaler: LocalAutoscaler;
    let child: ChildProcess | undefined;
    beforeAll(async () => {
      autoscaler = await startLocalAutoscaler({ privateKey: testPrivateKey() });
    });
    afterEach(async () => {
      if (child !== undefined && child.exitCode === null && child.signalCode === null) {
        const exited = once(child, 'exit');
        child.kill('SIGKILL');
        await exited;
      }
    });
    afterAll(() => autoscaler.close());

    it('prints the failure once while the error beacon keeps reporting it', async () => {
      const started = spawnCli(['start', 'hello_world'], {
        ...local,
        WORKER_PORT: String(busyPort),
        UNSECURED: 'false',
        REPORT_ADDR: autoscaler.url,
        CONTAINER_ID: '77',
        PUBLIC_IPADDR: '127.0.0.1',
        ERROR_BEACON_INTERVAL_SECONDS: '0.05',
        LOG_LEVEL: 'info',
      });
      child = started.child;
      const reason = `port ${busyPort} on 127.0.0.1 is in use (EADDRINUSE): set WORKER_PORT to a free port`;
      await waitFor(
        () =>
          autoscaler.records.workerStatus.filter((r) => r.body.id === 77 && r.body.error_msg !== '')
            .length >= 3,
        { label: 'three beacon reports', timeoutMs: 30_000 },
      );
      const report = autoscaler.records.workerStatus.find((r) => r.body.id === 77);
      expect(report?.body.error_msg).toBe(`Worker Server failed to launch: ${reason}`);
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      const [code] = (await exited) as [number | null];
      expect(code).toBe(1);
      const { stdout, stderr } = started.output;
      expect(stderr).toBe(`tsworker: ${reason} (reported to the autoscaler until stopped)\n`);
      // No fatal log line repeating it (with its cause) on stdout.
      expect(stdout).not.toContain('"level":"fatal"');
      expect(stdout).not.toContain('caused by');
    }, 60_000);
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
