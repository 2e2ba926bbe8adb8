import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { LoadSummary } from '../../lib/entry-load-test.ts';
import { testLoadCommand } from '../../src/commands/test-load.ts';
import { startStack, type TestStack } from '../helpers/stack.ts';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'tsworker-test-load-'));

interface Captured {
  code: number;
  stdout: string;
  stderr: string;
  summary: LoadSummary | undefined;
}

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

let jsonFiles = 0;
/** Runs `tsworker test_load` in this process, with --json to a fresh file, and reads the summary. */
async function testLoad(...argv: string[]): Promise<Captured> {
  const out = sink();
  const err = sink();
  const json = join(dir, `summary-${++jsonFiles}.json`);
  const code = await testLoadCommand([...argv, '--json', json], {
    stdout: out.stream,
    stderr: err.stream,
    handleSignals: false,
  });
  let summary: LoadSummary | undefined;
  try {
    summary = JSON.parse(readFileSync(json, 'utf8')) as LoadSummary;
  } catch {
    summary = undefined;
  }
  return { code, stdout: out.text(), stderr: err.text(), summary };
}

/** A loopback port nothing listens on: bound, then released. */
async function closedPort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('test_load against the local stack', () => {
  let stack: TestStack;
  let unsecured: TestStack;
  let route: string[];

  beforeAll(async () => {
    [stack, unsecured] = await Promise.all([
      startStack(),
      startStack({ env: { UNSECURED: 'true' } }),
    ]);
    route = ['-k', 'local', '-e', 'hello', '--autoscaler', stack.autoscaler.url];
  });
  afterAll(() => Promise.all([stack.close(), unsecured.close()]));
  afterEach(() => {
    stack.model.configure({ failure: { kind: 'none' } });
    stack.autoscaler.configure({ down: false });
  });

  it('routes every request through /route/ and gets answers from the signed worker', async () => {
    const routesBefore = stack.autoscaler.records.routes.length;
    const result = await testLoad('-n', '6', '-rps', '200', ...route, '--verify');
    expect(result.code).toBe(0);
    const summary = result.summary as LoadSummary;
    expect(summary.requests).toMatchObject({ sent: 6, succeeded: 6, failed: 0 });
    expect(summary.workers.distinct).toBe(1);
    expect(Object.keys(summary.workers.requests)).toEqual([stack.worker.url]);
    const routes = stack.autoscaler.records.routes.slice(routesBefore);
    expect(routes).toHaveLength(6);
    expect(routes[0]?.request).toMatchObject({
      endpoint: 'hello',
      api_key: 'local',
      replay_timeout: 60,
    });
    expect((routes[0]?.request as { cost: unknown }).cost).toBeGreaterThan(0);
    expect(summary.routeMs?.count).toBe(6);
    expect(result.stdout).toContain('test_load summary: hello_world /generate');
  });

  it('writes a JSON summary with latency percentiles, rates, errors and workers', async () => {
    const { summary } = await testLoad('-n', '4', '--concurrency', '2', ...route);
    expect(summary).toMatchObject({
      worker: 'hello_world',
      route: '/generate',
      mode: 'closed',
      concurrency: 2,
      requestedRate: null,
      target: { kind: 'route' },
      requests: { planned: 4, sent: 4, succeeded: 4, failed: 0, warmup: 0 },
      errorRate: 0,
      errors: {
        byCause: { routing: 0, worker: 0, connection: 0, timeout: 0, verify: 0 },
        groups: [],
      },
      retries: { total: 0 },
      workers: { distinct: 1 },
    });
    for (const key of ['count', 'min', 'mean', 'p50', 'p90', 'p99', 'max'] as const) {
      expect(summary?.latencyMs?.[key]).toBeTypeOf('number');
    }
    expect(summary?.ttfbMs?.count).toBe(4);
    expect(summary?.ttftMs).toBeNull();
    expect(summary?.throughput).toBeGreaterThan(0);
    expect(typeof summary?.startedAt).toBe('string');
  });

  it('calls an UNSECURED worker directly with --worker-url, without the autoscaler', async () => {
    const routesBefore = unsecured.autoscaler.records.routes.length;
    const { code, summary } = await testLoad(
      '-n',
      '3',
      '-rps',
      '100',
      '--worker-url',
      unsecured.worker.url,
      '--verify',
    );
    expect(code).toBe(0);
    expect(summary?.target).toEqual({ kind: 'direct', url: unsecured.worker.url });
    expect(summary?.requests.succeeded).toBe(3);
    expect(summary?.routeMs).toBeNull();
    expect(unsecured.autoscaler.records.routes.length).toBe(routesBefore);
  });

  it('times the first token of streams and counts their tokens', async () => {
    const { code, summary } = await testLoad(
      '-n',
      '3',
      '--concurrency',
      '3',
      ...route,
      '--route',
      '/generate_stream',
      '--verify',
    );
    expect(code).toBe(0);
    expect(summary?.streams).toBe(3);
    expect(summary?.ttftMs?.count).toBe(3);
    // hello_world's payloads ask for 300 tokens each.
    expect(summary?.tokens.total).toBe(900);
    expect(summary?.ttftMs?.max).toBeLessThanOrEqual(summary?.latencyMs?.max as number);
    expect(summary?.ttfbMs?.min).toBeLessThanOrEqual(summary?.ttftMs?.min as number);
  });

  it('groups a failing model by status and exits 1 above --max-error-rate', async () => {
    stack.model.configure({ failure: { kind: 'status', status: 500 } });
    const { code, summary, stderr } = await testLoad(
      '-n',
      '4',
      '--concurrency',
      '2',
      ...route,
      '--retries',
      '0',
      '--max-error-rate',
      '0.1',
    );
    expect(code).toBe(1);
    expect(summary?.errorRate).toBe(1);
    expect(summary?.errors.byCause.worker).toBe(4);
    expect(summary?.errors.groups).toEqual([
      { cause: 'worker', detail: '500', count: 4, sample: '{"error":"injected failure (500)"}' },
    ]);
    expect(stderr).toContain('error rate 100.0% is above --max-error-rate 10.0%');
  });

  it('exits 0 with errors under the --max-error-rate threshold', async () => {
    stack.model.configure({ failure: { kind: 'fail-rate', rate: 0.25, status: 400 } });
    const { code, summary } = await testLoad(
      '-n',
      '8',
      '--concurrency',
      '1',
      ...route,
      '--max-error-rate',
      '30%',
    );
    expect(summary?.requests.failed).toBe(2);
    expect(code).toBe(0);
  });

  it('re-routes after a retryable status and counts the request once, as a success', async () => {
    // The model fails its 2nd, 4th, 6th... call with 503 (deterministic error diffusion), so
    // requests 2, 3 and 4 each fail once and succeed through a second /route/.
    stack.model.configure({ failure: { kind: 'fail-rate', rate: 0.5, status: 503 } });
    const routesBefore = stack.autoscaler.records.routes.length;
    const { code, summary } = await testLoad('-n', '4', '--concurrency', '1', ...route);
    expect(code).toBe(0);
    expect(summary?.requests).toMatchObject({ sent: 4, succeeded: 4, failed: 0 });
    expect(summary?.retries).toEqual({ total: 3, byCause: { 'worker 503': 3 } });
    const routes = stack.autoscaler.records.routes.slice(routesBefore);
    expect(routes).toHaveLength(7);
    // The re-route resends the request_idx that the request's first route was given.
    const firstOfSecond = routes[1]?.response as { request_idx: number };
    expect(routes[1]?.request).not.toHaveProperty('request_idx');
    expect(routes[2]?.request).toMatchObject({ request_idx: firstOfSecond.request_idx });
  });

  it('groups /route/ failures as routing errors', async () => {
    stack.autoscaler.configure({ down: true });
    const { code, summary } = await testLoad(
      '-n',
      '2',
      '--concurrency',
      '2',
      ...route,
      '--retries',
      '0',
    );
    expect(code).toBe(0);
    expect(summary?.errors.byCause.routing).toBe(2);
    expect(summary?.errors.groups[0]).toMatchObject({
      cause: 'routing',
      detail: 'status 503',
      count: 2,
    });
    expect(summary?.workers.distinct).toBe(0);
  });

  it('catches a wrong answer with --verify', async () => {
    // A 200 whose body is well-formed but not what was asked for.
    stack.model.configure({
      failure: { kind: 'status', status: 200, body: '{"generated_text":"two words","tokens":2}' },
    });
    const { code, summary } = await testLoad(
      '-n',
      '2',
      '--concurrency',
      '1',
      ...route,
      '--verify',
      '--max-error-rate',
      '0',
    );
    expect(code).toBe(1);
    expect(summary?.errors.groups).toEqual([
      {
        cause: 'verify',
        detail: 'asked for 300 tokens, got 2',
        count: 2,
        sample: '{"generated_text":"two words","tokens":2}',
      },
    ]);
  });

  it('does not check answers without --verify', async () => {
    stack.model.configure({
      failure: { kind: 'status', status: 200, body: '{"generated_text":"two words","tokens":2}' },
    });
    const { summary } = await testLoad('-n', '2', '--concurrency', '1', ...route);
    expect(summary?.requests.succeeded).toBe(2);
  });

  it('sends --warmup requests first and leaves them out of the counts', async () => {
    const modelBefore = stack.model.stats.received;
    const { summary } = await testLoad('-n', '3', '--concurrency', '1', ...route, '--warmup', '2');
    expect(summary?.requests).toMatchObject({ sent: 3, succeeded: 3, warmup: 2, warmupFailed: 0 });
    expect(summary?.latencyMs?.count).toBe(3);
    expect(stack.model.stats.received - modelBefore).toBe(5);
  });

  it('sends the payloads of a JSONL --payload-file in turn', async () => {
    const file = join(dir, 'payloads.jsonl');
    writeFileSync(
      file,
      '{"prompt":"a","max_response_tokens":3}\n{"prompt":"b","max_response_tokens":5}\n',
    );
    const { code, summary } = await testLoad(
      '-n',
      '4',
      '--concurrency',
      '1',
      ...route,
      '--payload-file',
      file,
      '--verify',
    );
    expect(code).toBe(0);
    expect(summary?.tokens.total).toBe(16);
  });

  it('prints plain progress lines when stdout is not a terminal', async () => {
    const out = sink();
    const code = await testLoadCommand(['-n', '2', '--concurrency', '1', ...route], {
      stdout: out.stream,
      stderr: sink().stream,
      handleSignals: false,
      progressIntervalMs: 1,
    });
    expect(code).toBe(0);
    expect(out.text()).toMatch(/^\[\d+:\d\d\] sent \d+\/2 {2}ok/m);
    // No cursor movement or screen clearing on a pipe.
    expect(out.text()).not.toContain('\u001b[');
  });

  it('says once that the autoscaler cannot be reached, and exits 1', async () => {
    const port = await closedPort();
    const result = await testLoad(
      '-n',
      '1',
      '-rps',
      '1',
      '-k',
      'k',
      '-e',
      'e',
      '--autoscaler',
      `http://127.0.0.1:${port}`,
    );
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      `test_load: cannot reach the autoscaler at http://127.0.0.1:${port} (ECONNREFUSED). Check the address and the network.\n`,
    );
    expect(result.summary).toBeUndefined();
  });

  it('answers a bad flag with one message and exit code 2', async () => {
    const result = await testLoad('-n', 'x', '-rps', '1', ...route);
    expect(result.code).toBe(2);
    expect(result.stderr).toBe(
      'test_load: -n must be a whole number >= 1, got "x"\nRun with --help for the flags.\n',
    );
  });

  it('names the routes a worker has when --route is not one of them', async () => {
    const result = await testLoad('-n', '1', '-rps', '1', ...route, '--route', '/nope');
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(
      'makes no payloads for route /nope (it has /generate, /generate_stream)',
    );
  });

  it('exits 2 without a stack trace when the CLI gets an unknown flag', async () => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'src/cli.ts', 'test_load', '--bogus'],
      {
        cwd: REPO_ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const [code] = (await once(child, 'exit')) as [number];
    expect(code).toBe(2);
    expect(stderr).toBe("test_load: Unknown option '--bogus'\nRun with --help for the flags.\n");
  });
});
