/**
 * `tsworker init`: the folder it writes for each preset, its refusals, and that each generated
 * worker starts by path against its model server's fake and passes its own test_load --verify.
 * The generated files import 'tsworker', so they run the way a user runs them: through the bin, of
 * the compiled copy of the checkout that the run builds once (test/helpers/built-checkout.ts), and
 * they type-check against its declarations, as against an installed package. The bin from the
 * sources is the subject of user-worker.test.ts.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import type { LoadSummary } from '../../lib/entry-load-test.ts';
import { initCommand, PRESETS, type Preset } from '../../src/commands/init.ts';
import { startExampleModelServer } from '../../src/stand-ins/example-model-server.ts';
import { startComfyUIFake } from '../../src/stand-ins/fakes/comfyui.ts';
import { FAKES } from '../../src/stand-ins/fakes/index.ts';
import { startOpenAIFake } from '../../src/stand-ins/fakes/openai.ts';
import { startTgiFake } from '../../src/stand-ins/fakes/tgi.ts';
import { startLocalAutoscaler } from '../../src/stand-ins/local-autoscaler.ts';
import { builtCheckout } from '../helpers/built-checkout.ts';
import { get } from '../helpers/request.ts';
import { testPrivateKey } from '../helpers/stack.ts';
import { waitFor } from '../helpers/wait-for.ts';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BIN = join(REPO_ROOT, 'bin', 'tsworker.js');
const FILES = ['README.md', 'data_types.ts', 'server.ts', 'test_load.ts'];
/** A cold start on a busy machine. */
const START_TIMEOUT_MS = 60_000;
/** The run's compiled checkout, built by its first user (up to minutes on a loaded machine). */
const BUILD_TIMEOUT_MS = 300_000;

const dir = mkdtempSync(join(tmpdir(), 'tsworker-init-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function sink(): { stream: Writable; text: () => string } {
  let text = '';
  const stream = new Writable({
    write(chunk: Buffer | string, _encoding, callback) {
      text += chunk.toString();
      callback();
    },
  });
  return { stream, text: () => text };
}

/** `tsworker init ...argv` in this process, in `cwd`. */
function init(cwd: string, ...argv: string[]): { code: number; stdout: string; stderr: string } {
  const stdout = sink();
  const stderr = sink();
  const code = initCommand(argv, { cwd, stdout: stdout.stream, stderr: stderr.stream });
  return { code, stdout: stdout.text(), stderr: stderr.text() };
}

interface ModelStandIn {
  readonly url: string;
  readonly workerEnv: Readonly<Record<string, string>>;
  close(): Promise<void>;
}

// Fast throughput, so each benchmark and load test takes a moment.
const BATCHING = { tokensPerSecondPerSequence: 4_000, tokensPerSecond: 400_000 };

/** Each preset's model server: the example model server, or the engine's fake from FAKES. */
const MODEL_SERVERS: Record<
  Preset,
  { fake?: string; start(logFile: string): Promise<ModelStandIn> }
> = {
  passthrough: {
    start: async (logFile) => {
      const model = await startExampleModelServer({ logFile });
      return { url: model.url, workerEnv: {}, close: () => model.close() };
    },
  },
  openai: {
    fake: 'openai',
    start: (logFile) => startOpenAIFake({ logFile, variant: 'vllm', batching: BATCHING }),
  },
  tgi: { fake: 'tgi', start: (logFile) => startTgiFake({ logFile, batching: BATCHING }) },
  comfyui: {
    fake: 'comfyui',
    start: async (logFile) => {
      const fake = await startComfyUIFake({ logFile, msPerStep: 0.5, backendPollMs: 5 });
      return {
        url: fake.url,
        workerEnv: { ...fake.workerEnv, COMFYUI_READY_POLL_SECONDS: '0.02' },
        close: () => fake.close(),
      };
    },
  },
};

/** The URL in the worker's 'worker listening' JSON log line, if it has written it. */
function listeningUrl(output: string): string | undefined {
  for (const text of output.split('\n')) {
    try {
      const line = JSON.parse(text) as Record<string, unknown>;
      if (line['message'] === 'worker listening') return String(line['url']);
    } catch {
      // Not a JSON line.
    }
  }
  return undefined;
}

const execFileAsync = promisify(execFile);

describe('tsworker init', () => {
  it('writes server.ts, data_types.ts, test_load.ts and README.md importing the framework as tsworker', () => {
    const cwd = join(dir, 'files');
    mkdirSync(cwd);
    for (const preset of PRESETS) {
      const result = init(cwd, `w_${preset}`, '--preset', preset);
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout).toContain(`tsworker start ./w_${preset}`);
      const folder = join(cwd, `w_${preset}`);
      expect(readdirSync(folder).sort()).toEqual(FILES);
      const server = readFileSync(join(folder, 'server.ts'), 'utf8');
      expect(server).toContain("from 'tsworker'");
      expect(server).toContain(`'w_${preset}'`);
      expect(readFileSync(join(folder, 'test_load.ts'), 'utf8')).toContain("from 'tsworker'");
      expect(readFileSync(join(folder, 'README.md'), 'utf8')).toMatch(
        new RegExp(`^# w_${preset}\n`),
      );
    }
    // Without --preset: passthrough.
    expect(init(cwd, 'plain').code).toBe(0);
    expect(readFileSync(join(cwd, 'plain', 'server.ts'), 'utf8')).toContain('passthroughWorker(');
  });

  it('refuses to overwrite an existing folder and leaves it as it was', () => {
    const cwd = join(dir, 'existing');
    mkdirSync(join(cwd, 'mine'), { recursive: true });
    writeFileSync(join(cwd, 'mine', 'server.ts'), '// mine\n');
    const result = init(cwd, 'mine', '--preset', 'tgi');
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`${join(cwd, 'mine')} already exists`);
    expect(readdirSync(join(cwd, 'mine'))).toEqual(['server.ts']);
    expect(readFileSync(join(cwd, 'mine', 'server.ts'), 'utf8')).toBe('// mine\n');
  });

  it('rejects an unknown preset, a missing name and a name that is a path, writing nothing', () => {
    const cwd = join(dir, 'bad');
    mkdirSync(cwd);
    const unknown = init(cwd, 'w', '--preset', 'vllm');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain(
      'unknown preset "vllm": choose one of passthrough, openai, tgi, comfyui',
    );
    expect(init(cwd).stderr).toContain('a worker name is required');
    expect(init(cwd, '../escape').stderr).toContain('"../escape" is not a folder name');
    expect(readdirSync(cwd)).toEqual([]);
  });

  it('is a command of the tsworker bin, exiting 1 on an existing folder', async () => {
    const cwd = join(dir, 'bin');
    mkdirSync(join(cwd, 'taken'), { recursive: true });
    const run = (...argv: string[]) =>
      execFileAsync(process.execPath, [BIN, 'init', ...argv], { cwd }).then(
        (ok) => ({ code: 0, ...ok }),
        (error: { code: number; stdout: string; stderr: string }) => error,
      );
    const [written, refused] = await Promise.all([run('fresh'), run('taken')]);
    expect(written.code, written.stderr).toBe(0);
    expect(readdirSync(join(cwd, 'fresh')).sort()).toEqual(FILES);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('already exists');
  }, 120_000);

  it(
    "writes files that type-check under tsworker's strict compiler settings",
    async () => {
      const cwd = join(dir, 'typecheck');
      mkdirSync(cwd);
      for (const preset of PRESETS)
        expect(init(cwd, `w_${preset}`, '--preset', preset).code).toBe(0);
      // An ESM project where 'tsworker' resolves to the compiled checkout's declarations, as an
      // install would make it.
      const built = await builtCheckout();
      writeFileSync(join(cwd, 'package.json'), '{ "type": "module" }\n');
      writeFileSync(
        join(cwd, 'tsconfig.json'),
        JSON.stringify({
          extends: join(REPO_ROOT, 'tsconfig.json'),
          compilerOptions: {
            paths: {
              tsworker: [join(built, 'dist', 'lib', 'index.d.ts')],
              'tsworker/presets': [join(built, 'dist', 'lib', 'entry-presets.d.ts')],
            },
            typeRoots: [join(REPO_ROOT, 'node_modules', '@types')],
          },
          include: PRESETS.map((preset) => `w_${preset}`),
        }),
      );
      const tsc = join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
      const output = await execFileAsync(
        process.execPath,
        [tsc, '--noEmit', '--listFiles', '-p', cwd],
        { cwd, maxBuffer: 64 * 1024 * 1024 },
      ).then(
        (ok) => ok.stdout,
        (error: { stdout: string }) => error.stdout,
      );
      const lines = output.split('\n');
      for (const preset of PRESETS) expect(lines).toContain(join(cwd, `w_${preset}`, 'server.ts'));
      expect(lines).toContain(join(built, 'dist', 'lib', 'index.d.ts'));
      // Errors of the generated files and of the set-up; the framework's own (under ../) are
      // `npm run typecheck`'s business.
      const errors = lines.filter((line) => /error TS\d+/.test(line) && !line.startsWith('../'));
      expect(errors).toEqual([]);
    },
    BUILD_TIMEOUT_MS,
  );

  describe.concurrent.each(PRESETS)('the %s preset', (preset) => {
    it(
      'starts by path against its model server and passes its test_load --verify',
      async () => {
        const cwd = join(dir, `run-${preset}`);
        mkdirSync(cwd);
        const name = `my_${preset}`;
        expect(init(cwd, name, '--preset', preset).code).toBe(0);
        const bin = join(await builtCheckout(), 'bin', 'tsworker.js');
        const server = MODEL_SERVERS[preset];
        if (server.fake !== undefined) expect(FAKES[server.fake]).toBeTypeOf('function');

        const modelLog = join(cwd, 'model.log');
        writeFileSync(modelLog, '');
        const model = await server.start(modelLog);
        const autoscaler = await startLocalAutoscaler({ privateKey: testPrivateKey() });
        let worker: ChildProcess | undefined;
        try {
          worker = spawn(process.execPath, [bin, 'start', `./${name}`], {
            cwd,
            env: {
              PATH: process.env['PATH'] ?? '/usr/bin:/bin',
              HOME: process.env['HOME'] ?? tmpdir(),
              WORKER_PORT: '0',
              WORKER_HOST: '127.0.0.1',
              REPORT_ADDR: autoscaler.url,
              CONTAINER_ID: '31',
              PUBLIC_IPADDR: '127.0.0.1',
              MODEL_LOG: modelLog,
              BENCHMARK_CACHE: join(cwd, '.has_benchmark'),
              NO_HEALTHCHECK_WAIT_SECONDS: '0',
              HEALTHCHECK_INTERVAL_SECONDS: '0.2',
              ...model.workerEnv,
              MODEL_SERVER_URL: model.url,
            },
            stdio: ['ignore', 'pipe', 'pipe'],
          });
          let output = '';
          worker.stdout?.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
          worker.stderr?.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
          const running = worker;
          const url = await waitFor(
            () => {
              if (running.exitCode !== null) throw new Error('the worker exited');
              return listeningUrl(output);
            },
            { label: `${name} listening`, timeoutMs: START_TIMEOUT_MS, intervalMs: 50 },
          ).catch((error: unknown) => {
            throw new Error(`${String(error)}\n${output}`);
          });
          autoscaler.register(url);
          await waitFor(async () => (await get(`${url}/health/ready`)).status === 200, {
            label: `${name} ready`,
            timeoutMs: START_TIMEOUT_MS,
            intervalMs: 50,
          }).catch((error: unknown) => {
            throw new Error(`${String(error)}\n${output}`);
          });

          const json = join(cwd, 'summary.json');
          const loadTest = await execFileAsync(
            process.execPath,
            [
              ...[bin, 'test_load', '--worker', `./${name}`, '-n', '6', '-rps', '50'],
              ...['-k', 'local', '-e', name, '--autoscaler', autoscaler.url],
              ...['--verify', '-q', '--json', json],
            ],
            { cwd },
          ).then(
            () => ({ code: 0, stderr: '' }),
            (error: { code: number; stderr: string; stdout: string }) => ({
              code: error.code,
              stderr: `${error.stdout}\n${error.stderr}`,
            }),
          );
          expect(loadTest.code, loadTest.stderr).toBe(0);
          const summary = JSON.parse(readFileSync(json, 'utf8')) as LoadSummary;
          expect(summary.worker).toBe(name);
          expect(summary.requests).toMatchObject({ sent: 6, succeeded: 6, failed: 0 });
          expect(summary.errors.byCause.verify).toBe(0);
        } finally {
          if (worker !== undefined && worker.exitCode === null) {
            worker.kill('SIGKILL');
            await once(worker, 'exit');
          }
          await Promise.all([model.close(), autoscaler.close()]);
        }
      },
      BUILD_TIMEOUT_MS,
    );
  });
});
