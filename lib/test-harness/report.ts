/**
 * The end-of-run summary: one JSON-ready object (for `--json` and scripts) built from the engine's
 * records, its table for people, and the one-line progress the live view prints.
 */
import type { ErrorCause, LoadResult, Progress } from './load-types.ts';
import { distribution, type Distribution } from './stats.ts';

export interface RunDescription {
  readonly worker: string | undefined;
  readonly route: string;
  readonly target: { readonly kind: 'route' | 'direct'; readonly description: string };
  readonly mode: 'open' | 'closed';
  readonly arrivals: 'poisson' | 'uniform' | undefined;
  readonly requestedRate: number | undefined;
  readonly concurrency: number | undefined;
  readonly rampSeconds: number;
}

export interface ErrorGroup {
  readonly cause: ErrorCause;
  readonly detail: string;
  readonly count: number;
  /** The start of one failed answer's body. */
  readonly sample: string | undefined;
}

export interface LoadSummary {
  readonly worker: string | null;
  readonly route: string;
  readonly target: { readonly kind: 'route' | 'direct'; readonly url: string };
  readonly mode: 'open' | 'closed';
  readonly arrivals: 'poisson' | 'uniform' | null;
  readonly requestedRate: number | null;
  readonly concurrency: number | null;
  readonly rampSeconds: number;
  readonly startedAt: string;
  readonly durationSeconds: number;
  readonly stopped: boolean;
  readonly requests: {
    readonly planned: number;
    readonly sent: number;
    readonly succeeded: number;
    readonly failed: number;
    readonly warmup: number;
    readonly warmupFailed: number;
  };
  /** failed / sent; 0 when nothing was sent. */
  readonly errorRate: number;
  /** Requests started per second over the sending span. */
  readonly achievedRate: number | null;
  /** Successful requests per second over the whole run. */
  readonly throughput: number;
  /** Latencies of successful requests, in milliseconds, from each request's start (routing included). */
  readonly latencyMs: Distribution | null;
  readonly ttfbMs: Distribution | null;
  /** Streams only: time to the first `data:` or JSONL line. */
  readonly ttftMs: Distribution | null;
  readonly routeMs: Distribution | null;
  readonly streams: number;
  readonly tokens: {
    readonly total: number;
    /** Tokens of successful requests per second of the run. */
    readonly perSecond: number;
    /** Each successful request's tokens ÷ its duration. */
    readonly perRequestPerSecond: Distribution | null;
  };
  readonly errors: {
    readonly byCause: Readonly<Record<ErrorCause, number>>;
    readonly groups: readonly ErrorGroup[];
  };
  readonly retries: { readonly total: number; readonly byCause: Readonly<Record<string, number>> };
  readonly workers: {
    readonly distinct: number;
    readonly requests: Readonly<Record<string, number>>;
  };
  /** Open loop: the worst delay of a start behind its schedule (the load generator's own lag). */
  readonly maxClientLagMs: number;
}

function dist(values: number[]): Distribution | null {
  return distribution(values) ?? null;
}

/** Failures by cause and by "cause detail" group (most frequent first), and answers per worker. */
function tally(records: LoadResult['records']) {
  const byCause: Record<ErrorCause, number> = {
    routing: 0,
    worker: 0,
    connection: 0,
    timeout: 0,
    verify: 0,
  };
  const groups = new Map<
    string,
    { cause: ErrorCause; detail: string; count: number; sample: string | undefined }
  >();
  const workerRequests: Record<string, number> = {};
  for (const record of records) {
    if (record.status > 0 && record.workerUrl !== undefined) {
      workerRequests[record.workerUrl] = (workerRequests[record.workerUrl] ?? 0) + 1;
    }
    if (record.cause === undefined) continue;
    byCause[record.cause]++;
    const detail = record.detail ?? 'unknown';
    const key = `${record.cause}\u0000${detail}`;
    const group = groups.get(key);
    if (group === undefined)
      groups.set(key, { cause: record.cause, detail, count: 1, sample: record.sample });
    else group.count++;
  }
  const sorted = [...groups.values()].sort((a, b) => b.count - a.count);
  return { byCause, groups: sorted, workerRequests };
}

/** The latency distributions of the successful requests. */
function timings(
  ok: LoadResult['records'],
  run: RunDescription,
): Pick<LoadSummary, 'latencyMs' | 'ttfbMs' | 'ttftMs' | 'routeMs'> {
  return {
    latencyMs: dist(ok.map((r) => r.totalMs)),
    ttfbMs: dist(ok.flatMap((r) => (r.ttfbMs === undefined ? [] : [r.ttfbMs]))),
    ttftMs: dist(ok.flatMap((r) => (r.ttftMs === undefined ? [] : [r.ttftMs]))),
    routeMs: run.target.kind === 'route' ? dist(ok.map((r) => r.routeMs)) : null,
  };
}

function runFields(run: RunDescription) {
  return {
    worker: run.worker ?? null,
    route: run.route,
    target: { kind: run.target.kind, url: run.target.description },
    mode: run.mode,
    arrivals: run.mode === 'open' ? (run.arrivals ?? 'poisson') : null,
    requestedRate: run.requestedRate ?? null,
    concurrency: run.concurrency ?? null,
    rampSeconds: run.rampSeconds,
  };
}

export function summarize(result: LoadResult, run: RunDescription, planned: number): LoadSummary {
  const records = result.records;
  const ok = records.filter((r) => r.ok);
  const seconds = result.durationMs / 1000;
  const { byCause, groups, workerRequests } = tally(records);
  const tokens = ok.reduce((sum, r) => sum + r.tokens, 0);
  const retriedTotal = Object.values(result.retried).reduce((sum, n) => sum + n, 0);
  const sent = records.length;
  return {
    ...runFields(run),
    startedAt: new Date(result.startedAt).toISOString(),
    durationSeconds: seconds,
    stopped: result.stopped,
    requests: {
      planned,
      sent,
      succeeded: ok.length,
      failed: sent - ok.length,
      warmup: result.warmup.sent,
      warmupFailed: result.warmup.failed,
    },
    errorRate: sent === 0 ? 0 : (sent - ok.length) / sent,
    achievedRate:
      sent > 1 && result.sendSpanMs > 0 ? ((sent - 1) * 1000) / result.sendSpanMs : null,
    throughput: seconds > 0 ? ok.length / seconds : 0,
    ...timings(ok, run),
    streams: ok.filter((r) => r.streamed).length,
    tokens: {
      total: tokens,
      perSecond: seconds > 0 ? tokens / seconds : 0,
      perRequestPerSecond: dist(
        ok.flatMap((r) => (r.tokens > 0 && r.totalMs > 0 ? [(r.tokens * 1000) / r.totalMs] : [])),
      ),
    },
    errors: { byCause, groups },
    retries: { total: retriedTotal, byCause: { ...result.retried } },
    workers: { distinct: Object.keys(workerRequests).length, requests: workerRequests },
    maxClientLagMs: result.maxLagMs,
  };
}

/** 0.123 ms, 4.56 ms, 78.9 ms, 1234 ms. */
export function formatMs(ms: number | undefined | null): string {
  if (ms === undefined || ms === null || !Number.isFinite(ms)) return '-';
  if (ms < 1) return `${ms.toFixed(3)} ms`;
  if (ms < 10) return `${ms.toFixed(2)} ms`;
  if (ms < 100) return `${ms.toFixed(1)} ms`;
  return `${Math.round(ms)} ms`;
}

export function formatRate(value: number | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return '-';
  return value >= 100 ? value.toFixed(0) : value.toFixed(value >= 10 ? 1 : 2);
}

export function formatPercent(fraction: number): string {
  return `${(fraction * 100).toFixed(fraction > 0 && fraction < 0.001 ? 3 : 1)}%`;
}

export function formatDuration(ms: number): string {
  const total = Math.max(0, Math.floor(ms / 1000));
  const minutes = Math.floor(total / 60);
  return `${minutes}:${String(total % 60).padStart(2, '0')}`;
}

/** Left-aligned first column, right-aligned others. */
export function table(
  rows: readonly (readonly string[])[],
  indent = '  ',
  alignLeft = false,
): string {
  const widths: number[] = [];
  for (const row of rows)
    row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows
    .map(
      (row) =>
        indent +
        row
          .map((cell, i) =>
            i === 0 || alignLeft ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0),
          )
          .join('   ')
          .trimEnd(),
    )
    .join('\n');
}

function describeLoad(
  summary: Pick<LoadSummary, 'mode' | 'arrivals' | 'requestedRate' | 'concurrency' | 'rampSeconds'>,
): string {
  const ramp = summary.rampSeconds > 0 ? `, ramp ${summary.rampSeconds} s` : '';
  return summary.mode === 'open'
    ? `open loop (${summary.arrivals ?? 'poisson'}) at ${formatRate(summary.requestedRate)} req/s${ramp}`
    : `closed loop, ${String(summary.concurrency)} concurrent users${ramp}`;
}

/** The summary as people read it. */
export function formatSummary(summary: LoadSummary): string {
  const who = summary.worker === null ? summary.route : `${summary.worker} ${summary.route}`;
  const lines: string[] = [
    `test_load summary: ${who}, ${describeLoad(summary)}`,
    `  via ${summary.target.url}${summary.stopped ? '   (stopped early)' : ''}`,
    '',
    overviewTable(summary),
    '',
    latencyTable(summary),
  ];
  if (summary.tokens.total > 0) lines.push('', tokenLine(summary));
  if (summary.errors.groups.length > 0) {
    const rows = summary.errors.groups.map((g) => [
      `${g.cause} ${g.detail}`.slice(0, 60),
      String(g.count),
      g.sample === undefined || g.sample === '' ? '' : oneLine(g.sample, 70),
    ]);
    lines.push('', '  errors', table(rows, '    '));
  }
  if (summary.retries.total > 0) {
    const rows = Object.entries(summary.retries.byCause).map(([k, n]) => [k, String(n)]);
    lines.push('', '  retried (then re-routed)', table(rows, '    '));
  }
  return lines.join('\n') + '\n';
}

/** Requests, rates, workers, re-routes and the client's own lag. */
function overviewTable(summary: LoadSummary): string {
  const { requests } = summary;
  const rateLine =
    `${formatRate(summary.achievedRate)} req/s sent` +
    (summary.requestedRate === null ? '' : ` (requested ${formatRate(summary.requestedRate)})`) +
    `, ${formatRate(summary.throughput)} req/s succeeded, over ${summary.durationSeconds.toFixed(1)} s`;
  const rows: string[][] = [
    [
      'requests',
      `${requests.sent} sent, ${requests.succeeded} succeeded, ${requests.failed} failed (${formatPercent(summary.errorRate)})` +
        (requests.warmup > 0 ? `; ${requests.warmup} warm-up not counted` : ''),
    ],
    ['rate', rateLine],
    ['workers', `${summary.workers.distinct} distinct`],
  ];
  if (summary.retries.total > 0) rows.push(['re-routed', `${summary.retries.total} attempts`]);
  if (summary.maxClientLagMs > 50) {
    rows.push([
      'client lag',
      `requests started up to ${formatMs(summary.maxClientLagMs)} behind schedule (a busy load generator)`,
    ]);
  }
  return table(rows, '  ', true);
}

function latencyTable(summary: LoadSummary): string {
  const rows: string[][] = [['', 'p50', 'p90', 'p99', 'max', 'mean']];
  const add = (label: string, d: Distribution | null): void => {
    if (d === null) return;
    rows.push([label, ...[d.p50, d.p90, d.p99, d.max, d.mean].map((ms) => formatMs(ms))]);
  };
  add('latency', summary.latencyMs);
  add('first byte', summary.ttfbMs);
  add('first token', summary.ttftMs);
  add('routing', summary.routeMs);
  return rows.length > 1 ? table(rows) : '  latency: no successful request';
}

function tokenLine(summary: LoadSummary): string {
  const perRequest = summary.tokens.perRequestPerSecond;
  return (
    `  tokens       ${summary.tokens.total}: ${formatRate(summary.tokens.perSecond)}/s overall` +
    (perRequest === null ? '' : `, ${formatRate(perRequest.p50)}/s per request (p50)`) +
    (summary.streams > 0 ? `; ${summary.streams} streamed answers` : '')
  );
}

function oneLine(text: string, max: number): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

/** The live view: a few lines, redrawn in place on a terminal. */
export function formatProgress(progress: Progress, run: RunDescription): string {
  const elapsed = progress.elapsedMs / 1000;
  const done = progress.succeeded + progress.failed;
  const errorRate = done === 0 ? 0 : progress.failed / done;
  const achieved = elapsed > 0 ? progress.started / elapsed : 0;
  const recent = progress.recent;
  const header = `test_load ${run.worker === undefined ? '' : `${run.worker} `}${run.route}  ${describeLoad(
    {
      mode: run.mode,
      arrivals: run.arrivals ?? null,
      requestedRate: run.requestedRate ?? null,
      concurrency: run.concurrency ?? null,
      rampSeconds: run.rampSeconds,
    },
  )}`;
  if (progress.phase === 'warmup') {
    return `${header}\n  warming up: ${progress.warmupDone} done`;
  }
  const errorParts = (Object.entries(progress.errors) as [ErrorCause, number][])
    .filter(([, n]) => n > 0)
    .map(([cause, n]) => `${cause} ${n}`);
  return [
    header,
    `  ${formatDuration(progress.elapsedMs)}  sent ${progress.started}/${progress.total}  routing ${progress.routing}  ` +
      `waiting ${progress.waiting}  receiving ${progress.receiving}  backoff ${progress.backoff}  ` +
      `ok ${progress.succeeded}  failed ${progress.failed} (${formatPercent(errorRate)})`,
    `  ${formatRate(achieved)} req/s sent` +
      (run.requestedRate === undefined ? '' : ` of ${formatRate(run.requestedRate)}`) +
      `, ${formatRate(elapsed > 0 ? progress.succeeded / elapsed : 0)} ok/s  ` +
      `latency p50 ${formatMs(recent?.p50)}  p90 ${formatMs(recent?.p90)}  p99 ${formatMs(recent?.p99)}  ` +
      `workers ${progress.workers}`,
    ...(errorParts.length > 0 ? [`  errors: ${errorParts.join(', ')}`] : []),
  ].join('\n');
}

/** One plain progress line, for logs and pipes. */
export function formatProgressLine(progress: Progress): string {
  const elapsed = progress.elapsedMs / 1000;
  if (progress.phase === 'warmup') return `[warm-up] ${progress.warmupDone} done`;
  const done = progress.succeeded + progress.failed;
  const inFlight = progress.routing + progress.waiting + progress.receiving + progress.backoff;
  const recent = progress.recent;
  return (
    `[${formatDuration(progress.elapsedMs)}] sent ${progress.started}/${progress.total}  ok ${progress.succeeded}  ` +
    `failed ${progress.failed} (${formatPercent(done === 0 ? 0 : progress.failed / done)})  in flight ${inFlight}  ` +
    `${formatRate(elapsed > 0 ? progress.started / elapsed : 0)} req/s  ` +
    `p50 ${formatMs(recent?.p50)}  p99 ${formatMs(recent?.p99)}  workers ${progress.workers}`
  );
}
