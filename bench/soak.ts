/**
 * npm run bench -- --soak: does the worker's memory stay flat across 1,000,000 requests?
 *
 * wrk drives the worker in back-to-back segments of 10 s (c=64, the prompt pool's distinct signed
 * bodies; three in four requests to /generate with 16 tokens, one in four a 256-event stream).
 * After each segment the bench samples the worker's RSS (/proc), its heap in use as /metrics
 * reports it (nodejs_heap_size_used_bytes) and its heap after a full GC (the probe), and at the
 * end prints the samples and each one's slope in MB per 100,000 requests. Not part of the tests.
 */
import { truncateSync } from 'node:fs';
import { join } from 'node:path';
import type { LocalAutoscaler } from '../src/stand-ins/local-autoscaler.ts';
import { log, MB, signedFor, slope, waitForSignedOk } from './common.ts';
import {
  probeWorker,
  procStats,
  scrapeMetrics,
  startModelServer,
  startWorkerProcess,
  type Child,
} from './processes.ts';
import { writePromptPool } from './traffic.ts';
import { poolScript, runWrk } from './wrk.ts';

export interface SoakSettings {
  readonly requests: number;
  readonly intervalS: number;
  readonly concurrency: number;
  readonly poolSize: number;
  readonly logLevel: string;
  readonly builtCli: string | undefined;
}

interface Sample {
  readonly requests: number;
  readonly elapsedS: number;
  readonly rssMB: number;
  readonly heapUsedMB: number;
  readonly heapAfterGcMB: number;
  readonly rps: number;
  readonly errors: number;
}

export async function runSoak(
  settings: SoakSettings,
  deps: { autoscaler: LocalAutoscaler; scratch: string },
): Promise<{ text: string; json: unknown }> {
  const children: Child[] = [];
  try {
    const model = await startModelServer();
    children.push(model);
    const logFile = join(deps.scratch, 'soak-worker.log');
    const worker = await startWorkerProcess({
      modelUrl: model.url,
      autoscalerUrl: deps.autoscaler.url,
      logLevel: settings.logLevel,
      logFile,
      ...(settings.builtCli === undefined ? {} : { builtCli: settings.builtCli }),
    });
    children.push(worker);
    const signed = signedFor(deps.autoscaler, worker.url);
    await waitForSignedOk(signed);
    log(`soak: writing a pool of ${settings.poolSize} distinct prompts`);
    const pool = await writePromptPool(settings.poolSize, join(deps.scratch, 'prompts.jsonl'));
    const script = poolScript(deps.scratch, 'soak', {
      pool: pool.file,
      path: '/generate',
      tokens: 16,
      signed,
      alternate: { path: '/generate_stream', tokens: 256, every: 4 },
    });

    const samples: Sample[] = [];
    const started = Date.now();
    const sample = async (requests: number, rps: number, errors: number): Promise<Sample> => {
      const metrics = await scrapeMetrics(worker.url);
      const afterGc = await probeWorker(worker);
      const s: Sample = {
        requests,
        elapsedS: (Date.now() - started) / 1000,
        rssMB: procStats(worker.pid).rss / MB,
        heapUsedMB: (metrics.get('nodejs_heap_size_used_bytes') ?? NaN) / MB,
        heapAfterGcMB: afterGc.heapUsed / MB,
        rps,
        errors,
      };
      samples.push(s);
      log(
        `soak: ${requests} requests, RSS ${s.rssMB.toFixed(1)} MB, heap ${s.heapUsedMB.toFixed(1)} MB (${s.heapAfterGcMB.toFixed(1)} MB after GC), ${rps.toFixed(0)} req/s`,
      );
      return s;
    };
    await sample(0, 0, 0);
    let total = 0;
    let errors = 0;
    // Bounded: a worker slower than 100 req/s ends the soak early instead of running for hours.
    const maxSegments = Math.ceil(settings.requests / (100 * settings.intervalS)) + 1;
    for (let segment = 0; total < settings.requests && segment < maxSegments; segment++) {
      const r = await runWrk(worker.url, script, settings.concurrency, settings.intervalS, [
        String(total),
      ]);
      total += r.requests;
      errors += r.errors;
      // One JSON line per request at info: keep the disk use bounded (the file is O_APPEND).
      truncateSync(logFile, 0);
      await sample(total, r.rps, r.errors);
    }

    // Sample 0 is the idle worker, before its pools, caches and heap have grown to their working size.
    const fit = (pick: (s: Sample) => number, from = 1) =>
      slope(samples.slice(from).map((s) => [s.requests, pick(s)] as const)) * 100_000;
    const half = Math.max(1, Math.floor(samples.length / 2));
    const slopes = {
      rss: { afterFirst: fit((s) => s.rssMB), secondHalf: fit((s) => s.rssMB, half) },
      heapUsed: {
        afterFirst: fit((s) => s.heapUsedMB),
        secondHalf: fit((s) => s.heapUsedMB, half),
      },
      heapAfterGc: {
        afterFirst: fit((s) => s.heapAfterGcMB),
        secondHalf: fit((s) => s.heapAfterGcMB, half),
      },
    };
    const lines: string[] = [];
    lines.push(
      `Soak: ${total.toLocaleString('en-US')} requests to the worker (LOG_LEVEL=${settings.logLevel}) in ${((Date.now() - started) / 1000).toFixed(0)} s, ` +
        `wrk c=${settings.concurrency} in ${settings.intervalS} s segments, ${pool.prompts.length.toLocaleString('en-US')} distinct prompts; ` +
        `3 in 4 /generate with 16 tokens, 1 in 4 /generate_stream with 256 events; ${errors} errors.`,
    );
    lines.push('');
    lines.push(
      '| requests | elapsed s | req/s | RSS MB | heap used MB (/metrics) | heap after GC MB |',
    );
    lines.push('|--:|--:|--:|--:|--:|--:|');
    for (const s of samples)
      lines.push(
        `| ${s.requests} | ${s.elapsedS.toFixed(0)} | ${s.rps.toFixed(0)} | ${s.rssMB.toFixed(1)} | ${s.heapUsedMB.toFixed(1)} | ${s.heapAfterGcMB.toFixed(1)} |`,
      );
    lines.push('');
    const f = (v: number) =>
      Number.isFinite(v) ? `${v >= 0 ? '+' : '−'}${Math.abs(v).toFixed(2)}` : '-';
    lines.push('| slope, MB per 100,000 requests | after the first segment | second half |');
    lines.push('|:--|--:|--:|');
    lines.push(`| RSS | ${f(slopes.rss.afterFirst)} | ${f(slopes.rss.secondHalf)} |`);
    lines.push(
      `| heap used (/metrics) | ${f(slopes.heapUsed.afterFirst)} | ${f(slopes.heapUsed.secondHalf)} |`,
    );
    lines.push(
      `| heap after GC | ${f(slopes.heapAfterGc.afterFirst)} | ${f(slopes.heapAfterGc.secondHalf)} |`,
    );
    lines.push('');
    return {
      text: lines.join('\n'),
      json: { date: new Date().toISOString(), settings, total, errors, samples, slopes },
    };
  } finally {
    await Promise.all(children.map((c) => c.stop()));
  }
}
