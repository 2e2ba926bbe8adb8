import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import type { Dispatcher } from 'undici';
import type { HandlerContext, ResolvedBenchmark, ResolvedHandler } from '../handler.ts';
import type { Logger } from '../log.ts';
import { measureWorkload } from '../pipeline/workload.ts';
import { callModel } from '../proxy/index.ts';
import { errorMessage } from '../internal/values.ts';

export class BenchmarkError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BenchmarkError';
  }
}

export interface BenchmarkOptions {
  readonly handler: ResolvedHandler & { readonly benchmark: ResolvedBenchmark };
  readonly dispatcher: Dispatcher;
  /** Path prefix of the model server's base URL. */
  readonly modelBasePath: string;
  readonly modelServerUrl: string;
  /** Where the result is cached (`.has_benchmark`); the cache carries a fingerprint of this setup. */
  readonly cacheFile: string;
  readonly logger: Logger;
  readonly signal?: AbortSignal;
}

/**
 * What the cached result depends on: a different handler, run shape or model server re-runs the
 * benchmark instead of reusing a stale number (the reference never invalidates it, §12.6).
 */
export function benchmarkFingerprint(options: BenchmarkOptions): string {
  const { handler } = options;
  const shape = {
    route: handler.route,
    modelPath: handler.modelPath,
    allowParallel: handler.allowParallel,
    runs: handler.benchmark.runs,
    concurrency: handler.benchmark.concurrency,
    warmup: handler.benchmark.warmup,
    predict: handler.predict !== undefined,
    modelServerUrl: options.modelServerUrl,
  };
  return createHash('sha256').update(JSON.stringify(shape)).digest('hex').slice(0, 32);
}

/**
 * The cache keeps the reference's first line (the throughput as a decimal float, so PyWorker can read
 * it too) and adds the fingerprint on the second. Anything unreadable counts as no cache.
 */
export async function readBenchmarkCache(
  file: string,
  fingerprint: string,
): Promise<number | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return undefined;
  }
  const [first, second] = text.split('\n');
  const value = Number(first);
  if (first === undefined || first.trim() === '' || !Number.isFinite(value) || value <= 0)
    return undefined;
  if (second?.trim() !== `fingerprint=${fingerprint}`) return undefined;
  return value;
}

async function writeBenchmarkCache(
  file: string,
  value: number,
  fingerprint: string,
): Promise<void> {
  await writeFile(file, `${value}\nfingerprint=${fingerprint}\n`);
}

/**
 * Measures the model's capacity in workload per second (protocol §7): an optional warm-up, then
 * `runs` rounds of `concurrency` parallel requests (1 for FIFO handlers), each response read to
 * its end so streaming endpoints are timed honestly. Only 200s count; the result is the best round.
 */
export async function runBenchmark(options: BenchmarkOptions): Promise<number> {
  const { handler, logger } = options;
  const log = logger.child({ component: 'benchmark', route: handler.route });
  const fingerprint = benchmarkFingerprint(options);
  const cached = await readBenchmarkCache(options.cacheFile, fingerprint);
  if (cached !== undefined) {
    log.info({ maxPerf: cached, cacheFile: options.cacheFile }, 'benchmark result read from cache');
    return cached;
  }

  const { runs, concurrency, warmup } = handler.benchmark;
  const perRound = handler.allowParallel ? concurrency : 1;
  if (warmup) {
    await sendSample(options);
    log.info('benchmark warm-up done');
  }
  let best = 0;
  let sum = 0;
  for (let round = 1; round <= runs; round++) {
    options.signal?.throwIfAborted();
    const startedAt = performance.now();
    const results = await Promise.all(Array.from({ length: perRound }, () => sendSample(options)));
    const seconds = (performance.now() - startedAt) / 1000;
    const succeeded = results.filter((r) => r.ok);
    if (succeeded.length === 0) {
      const statuses = [...new Set(results.map((r) => r.status))].join(', ');
      throw new BenchmarkError(
        `No successful responses from benchmark (round ${round}, statuses ${statuses})`,
      );
    }
    const workload = succeeded.reduce((total, r) => total + r.workload, 0);
    const throughput = workload / seconds;
    best = Math.max(best, throughput);
    sum += throughput;
    log.info(
      {
        round,
        of: runs,
        requests: perRound,
        succeeded: succeeded.length,
        workload,
        seconds: round3(seconds),
        throughput: round3(throughput),
      },
      'benchmark round',
    );
  }
  log.info({ maxPerf: round3(best), averagePerf: round3(sum / runs) }, 'benchmark finished');
  await writeBenchmarkCache(options.cacheFile, best, fingerprint).catch((error: unknown) =>
    log.warn({ err: error, cacheFile: options.cacheFile }, 'could not cache the benchmark result'),
  );
  return best;
}

interface SampleResult {
  readonly ok: boolean;
  readonly status: number;
  readonly workload: number;
}

async function sendSample(options: BenchmarkOptions): Promise<SampleResult> {
  const { handler } = options;
  let sample: unknown;
  try {
    sample = handler.benchmark.sample();
  } catch (error) {
    throw new BenchmarkError(
      `Error generating benchmark data for "${handler.route}" handler: ${String(error)}`,
      { cause: error },
    );
  }
  const parsed = handler.payload.safeParse(sample);
  if (!parsed.success) {
    throw new BenchmarkError(
      `benchmark payload for "${handler.route}" does not match its schema: ${parsed.error.message}`,
    );
  }
  const payload = parsed.data;
  const workload = await measureWorkload(handler, payload, options.logger);
  const signal = options.signal ?? new AbortController().signal;
  if (handler.predict !== undefined) {
    const context: HandlerContext = { signal, route: handler.route, requestId: 'benchmark' };
    try {
      const result: unknown = await handler.predict(payload, context);
      if (result instanceof Response) {
        await result.arrayBuffer();
        return { ok: result.status === 200, status: result.status, workload };
      }
      return { ok: true, status: 200, workload };
    } catch (error) {
      throw new BenchmarkError(`predict failed during the benchmark: ${String(error)}`, {
        cause: error,
      });
    }
  }
  const body = JSON.stringify(
    handler.transformRequest === undefined ? payload : handler.transformRequest(payload),
  );
  let response: Dispatcher.ResponseData;
  try {
    response = await callModel(options.dispatcher, {
      path: options.modelBasePath + handler.modelPath,
      body,
      signal,
      headersTimeoutMs: handler.headersTimeoutMs,
      bodyTimeoutMs: handler.bodyTimeoutMs,
    });
    // Read to the end: timing stops when the answer is complete, not when headers arrive (§12.6).
    for await (const chunk of response.body) void chunk;
  } catch (error) {
    const detail = errorMessage(error);
    throw new BenchmarkError(`model request failed during the benchmark: ${detail}`, {
      cause: error,
    });
  }
  return { ok: response.statusCode === 200, status: response.statusCode, workload };
}

function round3(value: number): number {
  return Math.round(value * 1000) / 1000;
}
