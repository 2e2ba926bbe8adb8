/**
 * A user's own worker, in a folder outside the checkout, importing the framework as `tsworker`:
 * started by path through the bin from the sources, through the compiled CLI after `npm run build`,
 * and by start_server.sh with TSWORKER_BUILD=true.
 *
 * The sources run from a copy of the checkout (its node_modules linked); the build is another copy's,
 * shared with the other tests of compiled code (test/helpers/built-checkout.ts), never the
 * checkout's own dist/: the bin runs dist/ whenever it exists, which would change every other test.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import {
  appendFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  startExampleModelServer,
  type ExampleModelServer,
} from '../../src/stand-ins/example-model-server.ts';
import {
  startLocalAutoscaler,
  type LocalAutoscaler,
} from '../../src/stand-ins/local-autoscaler.ts';
import { get, post } from '../helpers/request.ts';
import { testPrivateKey } from '../helpers/stack.ts';
import { builtCheckout, copyCheckout } from '../helpers/built-checkout.ts';
import { waitFor } from '../helpers/wait-for.ts';

/** Start-up through tsx compiles the sources on first run: slow on a busy machine. */
const START_TIMEOUT_MS = 60_000;

/** A worker as a user writes it: its own folder, the framework imported by package name. */
const USER_WORKER: Record<string, string> = {
  'data_types.ts': `import { z } from 'tsworker';

export const Prompt = z.object({
  prompt: z.string(),
  max_response_tokens: z.number().int().positive(),
});
`,
  'server.ts': `import { defineHandler, defineWorker } from 'tsworker';
import { summarize } from 'tsworker/load-test';
import { DEFAULT_WORKLOAD } from 'tsworker/presets';
import { silentLogger } from 'tsworker/server';
import { Prompt } from './data_types.ts';

export default defineWorker({
  name: 'my_worker',
  modelServerUrl: 'http://127.0.0.1:5001',
  handlers: [defineHandler({ route: '/generate', payload: Prompt, allowParallel: true })],
  logActions: { onLoad: ['server has started'] },
  extraRoutes: [
    // Which framework module 'tsworker' is, as the worker sees it.
    { method: 'GET', path: '/framework', respond: () => new Response(import.meta.resolve('tsworker')) },
    // The three other entries, imported above: where they resolve to, and that they are the real ones.
    {
      method: 'GET',
      path: '/entries',
      respond: () =>
        Response.json({
          server: import.meta.resolve('tsworker/server'),
          loadTest: import.meta.resolve('tsworker/load-test'),
          presets: import.meta.resolve('tsworker/presets'),
          types: [typeof silentLogger, typeof summarize, typeof DEFAULT_WORKLOAD],
        }),
    },
  ],
});
`,
};

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

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

describe("a user's worker given by path", () => {
  let root: string;
  let checkout: string;
  let project: string;
  let modelLog: string;
  let model: ExampleModelServer;
  let autoscaler: LocalAutoscaler;
  let children: ChildProcess[] = [];
  let pids: number[] = [];

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'tsworker-user-worker-'));
    checkout = copyCheckout(join(root, 'tsworker'));
    // No package.json here: the worker's folder is plain files, as a user would write them.
    project = join(root, 'project');
    mkdirSync(join(project, 'my_worker'), { recursive: true });
    for (const [name, text] of Object.entries(USER_WORKER)) {
      writeFileSync(join(project, 'my_worker', name), text);
    }
    modelLog = join(root, 'model.log');
    writeFileSync(modelLog, 'server has started\n');
    model = await startExampleModelServer({});
    autoscaler = await startLocalAutoscaler({ privateKey: testPrivateKey() });
  }, 60_000);
  afterEach(() => {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
    for (const pid of pids) if (isAlive(pid)) process.kill(pid, 'SIGKILL');
    children = [];
    pids = [];
  });
  afterAll(async () => {
    await Promise.all([model.close(), autoscaler.close()]);
    rmSync(root, { recursive: true, force: true });
  });

  const workerEnv = (): Record<string, string> => ({
    PATH: process.env['PATH'] ?? '/usr/bin:/bin',
    HOME: process.env['HOME'] ?? tmpdir(),
    WORKER_PORT: '0',
    WORKER_HOST: '127.0.0.1',
    REPORT_ADDR: autoscaler.url,
    CONTAINER_ID: '21',
    PUBLIC_IPADDR: '127.0.0.1',
    MODEL_SERVER_URL: model.url,
    MODEL_LOG: modelLog,
    NO_HEALTHCHECK_WAIT_SECONDS: '0',
    BENCHMARK_CACHE: join(root, '.has_benchmark'),
  });

  /** Runs `tsworker start ./my_worker` from the user's project folder through a copy's bin. */
  async function startThroughBin(checkout: string): Promise<string> {
    const child = spawn(
      process.execPath,
      [join(checkout, 'bin', 'tsworker.js'), 'start', './my_worker'],
      {
        cwd: project,
        env: workerEnv(),
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    children.push(child);
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    return waitFor(
      () => {
        if (child.exitCode !== null) throw new Error(`the worker exited:\n${output}`);
        return listeningUrl(output);
      },
      { label: 'worker listening', timeoutMs: START_TIMEOUT_MS, intervalMs: 50 },
    ).catch((error: unknown) => {
      throw new Error(`${String(error)}\noutput:\n${output}`);
    });
  }

  /** The worker becomes ready, and serves a signed request through the model server. */
  async function expectServing(url: string, framework: string): Promise<void> {
    autoscaler.register(url);
    await waitFor(async () => (await get(`${url}/health/ready`)).status === 200, {
      label: 'worker ready',
      timeoutMs: START_TIMEOUT_MS,
      intervalMs: 50,
    });
    const response = await post(`${url}/generate`, {
      auth_data: autoscaler.issueAuthData({ endpoint: 'mine', cost: 10 }),
      payload: { prompt: 'Hello from my worker', max_response_tokens: 3 },
    });
    expect(response.status, response.text).toBe(200);
    expect(response.json()).toMatchObject({ tokens: 3 });
    // One framework in the process: the worker's 'tsworker' is the module the CLI itself runs.
    expect((await get(`${url}/framework`)).text).toBe(pathToFileURL(framework).href);
    const extension = framework.endsWith('.ts') ? '.ts' : '.js';
    expect((await get(`${url}/entries`)).json()).toEqual({
      server: pathToFileURL(framework.replace(/index\.[jt]s$/, `entry-server${extension}`)).href,
      loadTest: pathToFileURL(framework.replace(/index\.[jt]s$/, `entry-load-test${extension}`))
        .href,
      presets: pathToFileURL(framework.replace(/index\.[jt]s$/, `entry-presets${extension}`)).href,
      types: ['function', 'function', 'number'],
    });
  }

  it('starts from the TypeScript sources when dist/ is absent', async () => {
    expect(existsSync(join(checkout, 'dist'))).toBe(false);
    const url = await startThroughBin(checkout);
    await expectServing(url, join(checkout, 'lib', 'index.ts'));
  }, 120_000);

  describe('after npm run build', () => {
    // Another copy, built once for the whole run (test/helpers/built-checkout.ts).
    let built: string;
    beforeAll(async () => {
      built = await builtCheckout();
      expect(existsSync(join(built, 'dist', 'src', 'cli.js'))).toBe(true);
    }, 300_000);

    it('starts through the compiled CLI, which loads the TypeScript worker', async () => {
      const url = await startThroughBin(built);
      await expectServing(url, join(built, 'dist', 'lib', 'index.js'));
    }, 120_000);

    it('runs a path BACKEND from start_server.sh with TSWORKER_BUILD=true', async () => {
      const workspace = join(root, 'workspace');
      mkdirSync(workspace, { recursive: true });
      const launcherLog = join(workspace, 'model.log');
      // dist/ exists, so the script builds nothing: it must never run npm ci over the linked node_modules.
      expect(existsSync(join(built, 'dist', 'src', 'cli.js'))).toBe(true);
      const run = spawn('bash', [join(built, 'start_server.sh')], {
        env: {
          ...workerEnv(),
          WORKSPACE_DIR: workspace,
          TSWORKER_DIR: built,
          TSWORKER_BUILD: 'true',
          BACKEND: join(project, 'my_worker'),
          MODEL_LOG: launcherLog,
          USE_SSL: 'false',
        },
        stdio: 'ignore',
      });
      const [code] = (await once(run, 'exit')) as [number | null];
      expect(code, readFileSync(join(workspace, 'debug.log'), 'utf8')).toBe(0);
      const pid = Number(readFileSync(join(workspace, 'tsworker.pid'), 'utf8').trim());
      pids.push(pid);
      const url = await waitFor(
        () => listeningUrl(readFileSync(join(workspace, 'tsworker.log'), 'utf8')),
        { label: 'worker listening in tsworker.log', timeoutMs: START_TIMEOUT_MS, intervalMs: 50 },
      );
      // The launcher rotated the model log; the model now says it is loaded.
      appendFileSync(launcherLog, 'server has started\n');
      await expectServing(url, join(built, 'dist', 'lib', 'index.js'));
      expect(readFileSync(join(workspace, 'debug.log'), 'utf8')).not.toContain('building tsworker');
      process.kill(pid, 'SIGTERM');
      await waitFor(() => !isAlive(pid), { label: 'worker exit', timeoutMs: 15_000 });
    }, 120_000);
  });
});
