/**
 * The npm package as a user gets it: `npm pack`, the tarball installed into an empty folder, and its
 * three entries imported by plain Node (no tsx, no TypeScript), as compiled JavaScript from dist/.
 * Dependencies come from npm's cache, or the registry on a machine that has never fetched them.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { builtCheckout } from '../helpers/built-checkout.ts';

const execFileAsync = promisify(execFile);

/** The environment without the npm_* variables `npm test` sets, which would steer the inner npm. */
function cleanEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(
    Object.entries(process.env).filter(([key]) => !key.toLowerCase().startsWith('npm_')),
  );
}

/** Runs by plain Node in the app folder: a worker defined, started, served, drained. */
const USE_ALL_ENTRIES = `
import { defineHandler, defineWorker, WorkerError, z } from 'tsworker';
import { loadConfig, resolveWorker, startWorker } from 'tsworker/server';
import { directTarget, runLoad, summarize } from 'tsworker/load-test';
import { ChatRequest, DEFAULT_WORKLOAD } from 'tsworker/presets';

const worker = defineWorker({
  name: 'shout',
  modelServerUrl: 'http://127.0.0.1:9',
  handlers: [
    defineHandler({
      route: '/shout',
      payload: z.object({ text: z.string() }),
      predict: ({ text }) => {
        if (text === '') throw new WorkerError({ status: 409, code: 'EMPTY', message: 'nothing to shout' });
        return text.toUpperCase();
      },
    }),
  ],
});
const env = { WORKER_PORT: '0', WORKER_HOST: '127.0.0.1', UNSECURED: 'true', LOG_LEVEL: 'silent',
  BENCHMARK_CACHE: process.env.BENCHMARK_CACHE };
const running = await startWorker(resolveWorker(worker, env), loadConfig(env));
const response = await fetch(running.url + '/shout', {
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ auth_data: {}, payload: { text: 'hello' } }),
});
const body = await response.json();
await running.drain({ gracePeriodMs: 1000 });
console.log(JSON.stringify({
  status: response.status,
  body,
  loadTest: [typeof directTarget, typeof runLoad, typeof summarize],
  presets: [typeof ChatRequest.safeParse, DEFAULT_WORKLOAD],
}));
`;

describe('the npm package', () => {
  let dir: string;
  let app: string;

  beforeAll(async () => {
    const checkout = await builtCheckout();
    dir = mkdtempSync(join(tmpdir(), 'tsworker-package-'));
    // --ignore-scripts: prepack would run `npm run build`, which builtCheckout() has just done.
    const packed = await execFileAsync(
      'npm',
      ['pack', '--ignore-scripts', '--silent', '--pack-destination', dir],
      { cwd: checkout, env: cleanEnv() },
    );
    const tarball = join(dir, packed.stdout.trim().split('\n').at(-1) ?? '');
    app = join(dir, 'app');
    mkdirSync(app);
    await execFileAsync(
      'npm',
      ['install', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts', tarball],
      { cwd: app, env: cleanEnv() },
    );
  }, 300_000);
  afterAll(() => {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('holds compiled JavaScript with types for each entry, and no tests', () => {
    const installed = join(app, 'node_modules', 'tsworker');
    const manifest = JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8')) as {
      exports: Record<string, { types: string; default: string }>;
    };
    expect(Object.keys(manifest.exports)).toEqual([
      '.',
      './server',
      './load-test',
      './presets',
      './package.json',
    ]);
    for (const entry of ['.', './server', './load-test', './presets']) {
      const target = manifest.exports[entry];
      expect(target?.default).toMatch(/^\.\/dist\/.*\.js$/);
      expect(existsSync(join(installed, target?.default ?? ''))).toBe(true);
      expect(existsSync(join(installed, target?.types ?? ''))).toBe(true);
    }
    expect(existsSync(join(installed, 'test'))).toBe(false);
  });

  it('imports its three entries under plain Node and serves a worker defined with them', async () => {
    const { stdout } = await execFileAsync(
      process.execPath,
      ['--input-type=module', '-e', USE_ALL_ENTRIES],
      { cwd: app, env: { ...cleanEnv(), BENCHMARK_CACHE: join(dir, '.has_benchmark') } },
    );
    expect(JSON.parse(stdout)).toEqual({
      status: 200,
      body: { result: 'HELLO' },
      loadTest: ['function', 'function', 'function'],
      presets: ['function', 100],
    });
  }, 60_000);

  it('gives the tsworker command, running the compiled CLI', async () => {
    const { stdout } = await execFileAsync(
      join(app, 'node_modules', '.bin', 'tsworker'),
      ['--version'],
      {
        cwd: app,
        env: cleanEnv(),
      },
    );
    expect(stdout.trim()).toBe('0.1.0');
  }, 60_000);
});
