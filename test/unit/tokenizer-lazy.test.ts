/**
 * tiktoken's WebAssembly (~40 MB resident) is loaded only by a worker that counts tokens. A child
 * process imports the public API, runs the vllm worker against its engine's fake (start-up,
 * benchmark, a completion and a chat request, each measured by the preset's workload; no test
 * helper, since test/helpers/stack.ts imports hello_world, which warms the tokenizer), and lists
 * the tiktoken modules Node has loaded; then it imports hello_world's data_types, which warms the
 * tokenizer on purpose, and lists them again: the probe's proof that it sees a load.
 *
 * Under Node every tiktoken entry point (`tiktoken`, `tiktoken/lite`, `/init`, `/load`) resolves to
 * a CommonJS file, which lands in the CommonJS module cache whether it was imported or required:
 * the cache is where a load shows.
 */
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { expect, it } from 'vitest';

const here = (path: string) => JSON.stringify(new URL(path, import.meta.url).href);

const script = `
  import { createRequire } from 'node:module';
  import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
  import { tmpdir } from 'node:os';
  import { join } from 'node:path';
  const loadedTiktoken = () =>
    Object.keys(createRequire(import.meta.url).cache).filter((file) => /[\\\\/]tiktoken[\\\\/]/.test(file));
  const lib = { ...(await import(${here('../../lib/index.ts')})), ...(await import(${here('../../lib/entry-server.ts')})) };
  const { startOpenAIFake } = await import(${here('../../src/stand-ins/fakes/openai.ts')});
  const { default: vllm } = await import(${here('../../workers/vllm/server.ts')});
  const dir = mkdtempSync(join(tmpdir(), 'tsworker-lazy-'));
  const logFile = join(dir, 'vllm.log');
  writeFileSync(logFile, '');
  const fake = await startOpenAIFake({
    variant: 'vllm', logFile,
    batching: { tokensPerSecondPerSequence: 4000, tokensPerSecond: 400000, prefillMsPerToken: 0, maxRunning: 64 },
  });
  const env = {
    WORKER_PORT: '0', WORKER_HOST: '127.0.0.1', UNSECURED: 'true', MODEL_SERVER_URL: fake.url,
    MODEL_LOG: logFile, BENCHMARK_CACHE: join(dir, 'benchmark'), ...fake.workerEnv,
  };
  const worker = await lib.startWorker(lib.resolveWorker(vllm, env), lib.loadConfig(env), {
    logger: lib.silentLogger(),
  });
  // Ready once the fake's load line is read and the benchmark has run (its samples measured too).
  for (const deadline = Date.now() + 15000; !worker.readiness.isReady; ) {
    if (Date.now() > deadline) throw new Error('the vllm worker never became ready');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const call = (route, payload) =>
    fetch(worker.url + route, { method: 'POST', body: JSON.stringify({ payload }) }).then((r) => r.status);
  const served = {
    ready: worker.readiness.isReady,
    completion: await call('/v1/completions', { prompt: 'Hello there', max_tokens: 4 }),
    chat: await call('/v1/chat/completions', { messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4 }),
    workload: worker.inspect().totals.served,
  };
  await worker.close();
  await fake.close();
  rmSync(dir, { recursive: true, force: true });
  const vllmLoaded = loadedTiktoken();
  await import(${here('../../workers/hello_world/data_types.ts')});
  console.log(JSON.stringify({ served, exported: typeof lib.countTokens, vllmLoaded, helloWorldLoaded: loadedTiktoken() }));
`;

it('a vllm worker serving requests never loads tiktoken; hello_world loads it at import', async () => {
  const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
  const child = spawn(process.execPath, ['--import', tsx, '--input-type=module', '-e', script], {
    cwd: fileURLToPath(new URL('../..', import.meta.url)),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const deadline = setTimeout(() => child.kill('SIGKILL'), 50_000);
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  clearTimeout(deadline);
  expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
  const result = JSON.parse(stdout) as {
    served: { ready: boolean; completion: number; chat: number; workload: number };
    exported: string;
    vllmLoaded: string[];
    helloWorldLoaded: string[];
  };
  // Ready: the benchmark measured its samples' workload; then two requests were measured and served.
  expect(result.served).toMatchObject({ ready: true, completion: 200, chat: 200 });
  expect(result.served.workload).toBeGreaterThan(0);
  expect(result.exported).toBe('function');
  expect(result.vllmLoaded).toEqual([]);
  expect(result.helloWorldLoaded.some((file) => /tiktoken_bg\.c?js$/.test(file))).toBe(true);
}, 60_000);
