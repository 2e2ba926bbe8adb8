/**
 * npm run bench -- --stall: does one large prompt stall everyone else's streams?
 *
 * Clients stream through the target in a closed loop (c=8 by default, 256 tokens at 5 ms each, so
 * each stream lasts about 1.3 s and a chunk is due every 5 ms); after a few seconds one request
 * with a 500,000-word prompt of distinct words arrives. The clients time every chunk; the report
 * gives the inter-chunk gaps before the large request and while it is handled, and the worker's
 * event-loop lag from its /metrics (prom-client resets its histogram at each scrape, so each
 * scrape covers the time since the previous one). The same run against the model server directly
 * shows the model server's own share (it parses the large body too).
 */
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import type { LocalAutoscaler } from '../src/stand-ins/local-autoscaler.ts';
import {
  log,
  percentile,
  signedBody,
  signedFor,
  waitForSignedOk,
  type LoadClient,
} from './common.ts';
import type { GapsResult, SignedFields } from './load-client.ts';
import {
  procStats,
  scrapeMetrics,
  startModelServer,
  startWorkerProcess,
  type Child,
} from './processes.ts';
import { stallPrompt, writePromptPool, type StallPrompt } from './traffic.ts';

export interface StallSettings {
  readonly words: number;
  readonly kind: StallPrompt;
  readonly concurrency: number;
  readonly tokens: number;
  readonly tokenDelayMs: number;
  /** Streaming before the large request, seconds. */
  readonly beforeS: number;
  /** Streaming after the large request's answer, seconds. */
  readonly afterS: number;
  readonly logLevel: string;
  readonly builtCli: string | undefined;
}

const LAG_METRICS = ['p50', 'p90', 'p99', 'max', 'mean'] as const;

interface GapStats {
  readonly count: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}

interface Phase {
  readonly target: string;
  readonly before: GapStats;
  readonly during: GapStats;
  readonly ttfbDuringMaxMs: number;
  readonly bigStatus: number;
  readonly bigMs: number;
  readonly bigAnswer: string;
  readonly workerCpuMs: number | undefined;
  readonly lagBefore: Record<string, number> | undefined;
  readonly lagAfter: Record<string, number> | undefined;
  readonly streams: number;
  readonly failed: number;
  readonly firstError: string | undefined;
}

const now = (): number => performance.timeOrigin + performance.now();

function stats(values: readonly number[]): GapStats {
  return {
    count: values.length,
    p50: percentile(values, 50),
    p99: percentile(values, 99),
    max: values.length === 0 ? NaN : Math.max(...values),
  };
}

async function lag(url: string): Promise<Record<string, number>> {
  const metrics = await scrapeMetrics(url);
  return Object.fromEntries(
    LAG_METRICS.map((m) => [m, (metrics.get(`nodejs_eventloop_lag_${m}_seconds`) ?? NaN) * 1000]),
  );
}

async function setTokenDelay(modelUrl: string, tokenDelayMs: number): Promise<void> {
  const response = await request(`${modelUrl}/_control`, {
    method: 'POST',
    body: JSON.stringify({ tokenDelayMs }),
  });
  await response.body.dump();
}

async function phase(
  target: string,
  url: string,
  signed: SignedFields | undefined,
  worker: Child | undefined,
  prompts: readonly string[],
  bigPrompt: string,
  settings: StallSettings,
  client: LoadClient,
): Promise<Phase> {
  const bigPayload = { prompt: bigPrompt, max_response_tokens: 16 };
  const bigBody =
    signed === undefined ? JSON.stringify(bigPayload) : signedBody(signed, bigPayload);
  log(
    `stall, ${target}: ${settings.concurrency} streaming clients, then one ${(Buffer.byteLength(bigBody) / 1e6).toFixed(1)} MB request`,
  );
  if (worker !== undefined) await lag(url); // starts the lag histogram's window
  const started = now();
  const stop = await client.startGaps({
    url,
    route: '/generate_stream',
    prompts,
    tokens: settings.tokens,
    envelope: signed ?? 'raw',
    concurrency: settings.concurrency,
    maxSeconds: settings.beforeS + settings.afterS + 600,
  });
  let result: GapsResult | undefined;
  try {
    await sleep(settings.beforeS * 1000);
    const lagBefore = worker === undefined ? undefined : await lag(url);
    const cpuBefore = worker === undefined ? undefined : procStats(worker.pid).cpuMs;
    const bigSent = now();
    const response = await request(`${url}/generate`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: bigBody,
      headersTimeout: 600_000,
      bodyTimeout: 600_000,
    });
    const answer = await response.body.text();
    const bigDone = now();
    const workerCpuMs =
      worker === undefined || cpuBefore === undefined
        ? undefined
        : procStats(worker.pid).cpuMs - cpuBefore;
    await sleep(settings.afterS * 1000);
    const lagAfter = worker === undefined ? undefined : await lag(url);
    result = await stop();
    // The first half second of streaming is connection set-up and warm-up.
    const before = result.gaps.filter(([at]) => at >= started + 500 && at < bigSent);
    const during = result.gaps.filter(([at]) => at >= bigSent && at <= bigDone + 100);
    const ttfbDuring = result.ttfb.filter(([at]) => at >= bigSent && at <= bigDone + 100);
    return {
      target,
      before: stats(before.map(([, gap]) => gap)),
      during: stats(during.map(([, gap]) => gap)),
      ttfbDuringMaxMs: ttfbDuring.length === 0 ? NaN : Math.max(...ttfbDuring.map(([, t]) => t)),
      bigStatus: response.statusCode,
      bigMs: bigDone - bigSent,
      bigAnswer: answer.slice(0, 200),
      workerCpuMs,
      lagBefore,
      lagAfter,
      streams: result.streams,
      failed: result.failed,
      firstError: result.firstError,
    };
  } finally {
    if (result === undefined) await stop().catch(() => undefined);
  }
}

const ms = (v: number | undefined): string =>
  v === undefined || !Number.isFinite(v) ? '-' : v < 100 ? v.toFixed(2) : v.toFixed(0);

export async function runStall(
  settings: StallSettings,
  deps: { client: LoadClient; autoscaler: LocalAutoscaler; scratch: string },
): Promise<{ text: string; json: unknown }> {
  const children: Child[] = [];
  try {
    const model = await startModelServer();
    children.push(model);
    const worker = await startWorkerProcess({
      modelUrl: model.url,
      autoscalerUrl: deps.autoscaler.url,
      logLevel: settings.logLevel,
      logFile: join(deps.scratch, 'stall-worker.log'),
      ...(settings.builtCli === undefined ? {} : { builtCli: settings.builtCli }),
    });
    children.push(worker);
    const signed = signedFor(deps.autoscaler, worker.url);
    await waitForSignedOk(signed);
    const pool = await writePromptPool(2000, join(deps.scratch, 'stall-prompts.jsonl'));
    log(`stall: building a prompt of ${settings.words} ${settings.kind} words`);
    const bigPrompt = stallPrompt(settings.kind, settings.words);
    await setTokenDelay(model.url, settings.tokenDelayMs);
    const phases: Phase[] = [];
    phases.push(
      await phase(
        'direct',
        model.url,
        undefined,
        undefined,
        pool.prompts,
        bigPrompt,
        settings,
        deps.client,
      ),
    );
    phases.push(
      await phase(
        `tsworker (${settings.logLevel})`,
        worker.url,
        signed,
        worker,
        pool.prompts,
        bigPrompt,
        settings,
        deps.client,
      ),
    );
    await setTokenDelay(model.url, 0);

    const lines: string[] = [];
    lines.push(
      `Large-prompt stall: ${settings.concurrency} clients streaming ${settings.tokens} tokens at ${settings.tokenDelayMs} ms each, ` +
        `then one /generate with ${settings.words.toLocaleString('en-US')} ${settings.kind} words (${(Buffer.byteLength(bigPrompt) / 1e6).toFixed(1)} MB prompt). ` +
        `Inter-chunk gaps of the streaming clients in ms, before it (${settings.beforeS} s) and from its arrival until 100 ms after its answer:`,
    );
    lines.push('');
    lines.push(
      '| target | before p50 | before p99 | during p50 | during p99 | during max | p99 rise | max TTFB of streams started during | large request | worker CPU for it | streams (failed) |',
    );
    lines.push('|:--|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|');
    for (const p of phases) {
      lines.push(
        `| ${p.target} | ${ms(p.before.p50)} | ${ms(p.before.p99)} | ${ms(p.during.p50)} | ${ms(p.during.p99)} | ${ms(p.during.max)} | ` +
          `${ms(p.during.p99 - p.before.p99)} | ${ms(p.ttfbDuringMaxMs)} | ${p.bigStatus}, ${ms(p.bigMs)} ms | ` +
          `${p.workerCpuMs === undefined ? '-' : `${ms(p.workerCpuMs)} ms`} | ${p.streams} (${p.failed}) |`,
      );
    }
    const ts = phases.find((p) => p.lagBefore !== undefined);
    if (ts?.lagBefore !== undefined && ts.lagAfter !== undefined) {
      lines.push('');
      lines.push(
        `Worker event-loop lag (nodejs_eventloop_lag_*_seconds, ms): "before" covers the ${settings.beforeS} s of streaming alone, "after" the large request and ${settings.afterS} s after it.`,
      );
      lines.push('');
      lines.push(`| window | ${LAG_METRICS.join(' | ')} |`);
      lines.push(`|:--|${LAG_METRICS.map(() => '--:').join('|')}|`);
      for (const [name, values] of [
        ['before', ts.lagBefore],
        ['after', ts.lagAfter],
      ] as const)
        lines.push(`| ${name} | ${LAG_METRICS.map((m) => ms(values[m])).join(' | ')} |`);
    }
    for (const p of phases) {
      if (p.bigStatus !== 200)
        lines.push(`\n${p.target}: the large request answered ${p.bigStatus}: ${p.bigAnswer}`);
      if (p.failed > 0)
        lines.push(`\n${p.target}: ${p.failed} streams failed (${String(p.firstError)})`);
    }
    lines.push('');
    const text = lines.join('\n');
    return { text, json: { date: new Date().toISOString(), settings, phases } };
  } finally {
    await Promise.all(children.map((c) => c.stop()));
  }
}
