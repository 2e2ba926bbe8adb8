import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defineHandler, z } from '../../lib/index.ts';
import { silentLogger } from '../../lib/entry-server.ts';
import type { ResolvedBenchmark, ResolvedHandler } from '../../lib/handler.ts';
import { runBenchmark, type BenchmarkOptions } from '../../lib/readiness/benchmark.ts';
import {
  startExampleModelServer,
  type ExampleModelServer,
} from '../../src/stand-ins/example-model-server.ts';

type BenchmarkHandler = ResolvedHandler & { readonly benchmark: ResolvedBenchmark };

function handler(
  options: { runs?: number; concurrency?: number; allowParallel?: boolean } = {},
): BenchmarkHandler {
  return defineHandler({
    route: '/generate',
    payload: z.object({ prompt: z.string(), max_response_tokens: z.number() }),
    workload: () => 10,
    allowParallel: options.allowParallel ?? true,
    benchmark: {
      generator: () => ({ prompt: 'benchmark me', max_response_tokens: 20 }),
      runs: options.runs ?? 2,
      concurrency: options.concurrency ?? 4,
    },
  }) as BenchmarkHandler;
}

describe('the start-up benchmark', () => {
  let model: ExampleModelServer;
  let pool: Pool;
  let dir: string;
  beforeAll(async () => {
    model = await startExampleModelServer();
    pool = new Pool(model.url);
    dir = mkdtempSync(join(tmpdir(), 'tsworker-benchmark-'));
  });
  afterAll(async () => {
    await pool.close();
    await model.close();
  });

  function options(target: BenchmarkHandler, cacheFile: string): BenchmarkOptions {
    return {
      handler: target,
      dispatcher: pool,
      modelBasePath: '',
      modelServerUrl: model.url,
      cacheFile,
      logger: silentLogger(),
    };
  }

  it('sends a warm-up and runs x concurrency requests, reads each body, and returns workload per second', async () => {
    const before = model.stats.completed;
    const cacheFile = join(dir, 'fresh');
    const maxPerf = await runBenchmark(options(handler({ runs: 3, concurrency: 4 }), cacheFile));
    expect(maxPerf).toBeGreaterThan(0);
    expect(model.stats.completed - before).toBe(1 + 3 * 4);
    expect(model.stats.aborted).toBe(0);
    const [first, second] = readFileSync(cacheFile, 'utf8').split('\n');
    expect(Number(first)).toBe(maxPerf);
    expect(second).toMatch(/^fingerprint=[0-9a-f]{32}$/);
  });

  it('sends one request per round for a FIFO handler', async () => {
    const before = model.stats.completed;
    await runBenchmark(
      options(handler({ runs: 2, concurrency: 8, allowParallel: false }), join(dir, 'fifo')),
    );
    expect(model.stats.completed - before).toBe(1 + 2);
  });

  it('reuses a cached result for the same configuration without calling the model', async () => {
    const cacheFile = join(dir, 'reuse');
    const first = await runBenchmark(options(handler(), cacheFile));
    const before = model.stats.received;
    const second = await runBenchmark(options(handler(), cacheFile));
    expect(second).toBe(first);
    expect(model.stats.received).toBe(before);
  });

  it('re-runs when the benchmark configuration changed', async () => {
    const cacheFile = join(dir, 'invalidate');
    await runBenchmark(options(handler({ runs: 2 }), cacheFile));
    const before = model.stats.received;
    await runBenchmark(options(handler({ runs: 3 }), cacheFile));
    expect(model.stats.received - before).toBe(1 + 3 * 4);
  });

  it.each([['garbage\n'], [''], ['-5\nfingerprint=x\n'], ['12.5\n']])(
    'ignores a corrupt or foreign cache file (%j) and re-runs',
    async (content) => {
      const cacheFile = join(dir, `corrupt-${content.length}`);
      writeFileSync(cacheFile, content);
      const before = model.stats.received;
      const maxPerf = await runBenchmark(options(handler(), cacheFile));
      expect(maxPerf).toBeGreaterThan(0);
      expect(model.stats.received).toBeGreaterThan(before);
    },
  );

  it('fails clearly, never with max_perf 0, when no request succeeds', async () => {
    model.configure({ failure: { kind: 'status', status: 500 } });
    try {
      await expect(runBenchmark(options(handler(), join(dir, 'failing')))).rejects.toThrow(
        /No successful responses from benchmark/,
      );
    } finally {
      model.configure({ failure: { kind: 'none' } });
    }
  });

  it('rejects runs: 0 when the handler is defined', () => {
    expect(() =>
      defineHandler({
        route: '/x',
        payload: z.object({}),
        benchmark: { generator: () => ({}), runs: 0 },
      }),
    ).toThrow(/handler \/x: benchmark.runs/);
  });
});
