/**
 * npm run bench [-- --quick] [--profile]
 *
 * How much tsworker costs next to calling the model server directly, and next to nginx, in one run
 * on loopback against the example model server in zero-latency mode. The three targets are measured
 * in interleaved rounds (the machine is small and noisy) and reported as medians and ratios:
 *
 * - throughput and latency at concurrency 1, 16 and 64 (wrk, one thread, in its own process);
 * - streaming, 256 tokens with no delay: time to first byte and total time (our engine, in its own
 *   process, one request at a time), and 16 tokens at 5 ms each to show chunks are not held back;
 * - the worker process's RSS at idle, after the bench, after N and after another N requests, and its
 *   CPU time per 1,000 requests, from /proc;
 * - with --profile, where the worker's CPU goes (node --cpu-prof), by function and by owner.
 */
import { fork } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { randomPrompt } from '../lib/index.ts';
import { startLocalAutoscaler, type LocalAutoscaler } from '../src/stand-ins/local-autoscaler.ts';
import type { LoadJob, LoadJobResult, SignedFields } from './load-client.ts';
import { analyseProfile, type ProfileReport } from './profile.ts';
import {
  buildCli,
  ensureCommand,
  probeWorker,
  procStats,
  REPO_ROOT,
  startModelServer,
  startNginx,
  startWorkerProcess,
  type Child,
  type Nginx,
} from './processes.ts';
import { runWrk, signedScript, staticScript, wrkVersion, type WrkResult } from './wrk.ts';

type TargetName = 'direct' | 'nginx' | 'tsworker';
const CONCURRENCIES = [1, 16, 64] as const;
const MB = 1024 * 1024;

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean' },
    rounds: { type: 'string' },
    duration: { type: 'string' },
    'stream-requests': { type: 'string' },
    'rss-requests': { type: 'string' },
    'prompt-words': { type: 'string' },
    'log-level': { type: 'string' },
    client: { type: 'string' },
    profile: { type: 'boolean' },
    'no-nginx': { type: 'boolean' },
    'from-source': { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  },
});

if (flags.help === true) {
  process.stdout.write(`npm run bench -- [flags]
  --quick                2 rounds of 1 s per cell, 100 streams per round, RSS runs of 5,000 requests
  --rounds <n>           interleaved rounds (default 3)
  --duration <s>         seconds per cell and round (default 5)
  --stream-requests <n>  streams per target and round (default 300)
  --rss-requests <n>     requests in each of the two RSS runs (default 100000)
  --prompt-words <n>     words in the prompt (default 50)
  --log-level <level>    the worker's LOG_LEVEL (default warn: no line per request)
  --client wrk|engine    throughput load generator (default wrk; engine if wrk cannot be installed)
  --profile              also profile the worker with node --cpu-prof and rank functions
  --no-nginx             skip nginx
  --from-source          run the worker through tsx instead of compiled JavaScript
`);
  process.exit(0);
}

const quick = flags.quick === true;
const num = (raw: string | undefined, fallback: number): number => {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0)
    throw new Error(`bench: expected a positive number, got ${raw}`);
  return n;
};
const settings = {
  rounds: num(flags.rounds, quick ? 2 : 3),
  durationS: num(flags.duration, quick ? 1 : 5),
  streamRequests: num(flags['stream-requests'], quick ? 100 : 300),
  rssRequests: num(flags['rss-requests'], quick ? 5000 : 100_000),
  promptWords: num(flags['prompt-words'], 50),
  logLevel: flags['log-level'] ?? 'warn',
  profile: flags.profile === true,
  fromSource: flags['from-source'] === true,
};

const log = (line: string): void => void process.stderr.write(`[bench] ${line}\n`);

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

function rotate<T>(items: readonly T[], by: number): T[] {
  const k = by % items.length;
  return [...items.slice(k), ...items.slice(0, k)];
}

/** The engine in its own process, one job at a time over IPC. */
function startLoadClient() {
  const child = fork(join(REPO_ROOT, 'bench/load-client.ts'), [], {
    execArgv: ['--import', 'tsx'],
    cwd: REPO_ROOT,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  let nextId = 0;
  return {
    run(job: Omit<LoadJob, 'id'>): Promise<LoadJobResult> {
      const id = ++nextId;
      return new Promise((resolve, reject) => {
        const onMessage = (message: {
          ok: boolean;
          result?: LoadJobResult;
          id?: number;
          error?: string;
        }) => {
          if ((message.result?.id ?? message.id) !== id) return;
          child.off('message', onMessage);
          if (message.ok && message.result !== undefined) resolve(message.result);
          else reject(new Error(`load client: ${String(message.error)}`));
        };
        child.on('message', onMessage);
        child.send({ ...job, id });
      });
    },
    stop: () => child.disconnect(),
  };
}

async function main(): Promise<void> {
  const useWrk = flags.client !== 'engine' && ensureCommand('wrk', 'wrk', log);
  const useNginx = flags['no-nginx'] !== true && ensureCommand('nginx', 'nginx-light', log);
  if (!useNginx && flags['no-nginx'] !== true) log('nginx could not be installed: skipping it');

  const scratch = mkdtempSync(join(tmpdir(), 'tsworker-bench-'));
  if (!settings.fromSource)
    log('compiling the worker (tsc -p tsconfig.build.json) into bench/results/build');
  const builtCli = settings.fromSource ? undefined : buildCli();
  const children: Child[] = [];
  const autoscaler = await startLocalAutoscaler();
  const client = startLoadClient();
  try {
    const model = await startModelServer();
    children.push(model);
    const worker = await startWorkerProcess({
      modelUrl: model.url,
      autoscalerUrl: autoscaler.url,
      logLevel: settings.logLevel,
      ...(builtCli === undefined ? {} : { builtCli }),
    });
    children.push(worker);
    autoscaler.register(worker.url);
    let nginx: Nginx | undefined;
    if (useNginx) {
      nginx = await startNginx(model.url);
      children.push(nginx);
    }

    const prompt = randomPrompt(settings.promptWords);
    const payload = { prompt, max_response_tokens: 16 };
    const streamPayload = { prompt, max_response_tokens: 256 };
    const issued = autoscaler.issueAuthData({ endpoint: 'bench', cost: 100, url: worker.url });
    const signed: SignedFields = {
      cost: 100,
      endpoint: 'bench',
      signature: issued.signature,
      url: worker.url,
    };
    const urls: Record<TargetName, string | undefined> = {
      direct: model.url,
      nginx: nginx?.url,
      tsworker: worker.url,
    };
    const targets = (Object.keys(urls) as TargetName[]).filter((t) => urls[t] !== undefined);
    const envelope = (t: TargetName): LoadJob['envelope'] => (t === 'tsworker' ? signed : 'raw');

    // The worker verifies signatures once it has the key and is ready: wait for a signed 200.
    await waitForSignedOk(worker.url, signed, payload);
    const idle = procStats(worker.pid);
    const idleHeap = await probeWorker(worker);
    log(
      `worker pid ${worker.pid} ready, RSS ${(idle.rss / MB).toFixed(1)} MB, heap after GC ${(idleHeap.heapUsed / MB).toFixed(1)} MB`,
    );

    const scripts: Record<TargetName, string> = {
      direct: staticScript(scratch, 'raw', '/generate', JSON.stringify(payload)),
      nginx: staticScript(scratch, 'raw', '/generate', JSON.stringify(payload)),
      tsworker: signedScript(scratch, '/generate', signed, JSON.stringify(payload)),
    };
    const measure = async (t: TargetName, c: number, seconds: number): Promise<WrkResult> => {
      if (useWrk) return runWrk(`${urls[t] as string}/generate`, scripts[t], c, seconds);
      // Fallback: our engine for a request count that lasts about `seconds`.
      const probe = await client.run({
        url: urls[t] as string,
        route: '/generate',
        payload,
        envelope: envelope(t),
        count: 200 * c,
        concurrency: c,
        warmup: 0,
      });
      const rate = (probe.succeeded * 1000) / probe.durationMs;
      const r = await client.run({
        url: urls[t] as string,
        route: '/generate',
        payload,
        envelope: envelope(t),
        count: Math.max(c, Math.round(rate * seconds)),
        concurrency: c,
        warmup: 0,
      });
      return {
        requests: r.succeeded + r.failed,
        seconds: r.durationMs / 1000,
        rps: ((r.succeeded + r.failed) * 1000) / r.durationMs,
        p50: r.totalMs?.p50 ?? NaN,
        p90: r.totalMs?.p90 ?? NaN,
        p99: r.totalMs?.p99 ?? NaN,
        max: r.totalMs?.max ?? NaN,
        errors: r.failed,
      };
    };

    log(`warm-up: ${targets.join(', ')}`);
    for (const t of targets) await measure(t, 16, 1);

    const cells: Record<string, WrkResult[]> = {};
    let workerCpuMs = 0;
    let workerRequests = 0;
    for (let round = 0; round < settings.rounds; round++) {
      for (const [ci, c] of CONCURRENCIES.entries()) {
        for (const t of rotate(targets, round + ci)) {
          const before = t === 'tsworker' ? procStats(worker.pid).cpuMs : 0;
          const result = await measure(t, c, settings.durationS);
          if (t === 'tsworker') {
            workerCpuMs += procStats(worker.pid).cpuMs - before;
            workerRequests += result.requests;
          }
          if (result.errors > 0)
            log(`warning: ${t} at concurrency ${c} had ${result.errors} errors`);
          (cells[`${c} ${t}`] ??= []).push(result);
          log(
            `round ${round + 1}/${settings.rounds} c=${c} ${t}: ${result.rps.toFixed(0)} req/s, p50 ${result.p50.toFixed(3)} ms, p99 ${result.p99.toFixed(3)} ms`,
          );
        }
      }
    }

    log('streaming: 256 tokens, no delay, one request at a time');
    const streams: Record<string, LoadJobResult[]> = {};
    for (let round = 0; round < settings.rounds; round++) {
      for (const t of rotate(targets, round)) {
        const r = await client.run({
          url: urls[t] as string,
          route: '/generate_stream',
          payload: streamPayload,
          envelope: envelope(t),
          count: settings.streamRequests,
          concurrency: 1,
          warmup: 20,
        });
        if (r.failed > 0)
          log(`warning: ${t} streams: ${r.failed} failed (${String(r.firstError)})`);
        (streams[t] ??= []).push(r);
      }
    }

    log('streaming: 16 tokens, 5 ms each');
    await request(`${model.url}/_control`, {
      method: 'POST',
      body: JSON.stringify({ tokenDelayMs: 5 }),
    }).then((r) => r.body.dump());
    const delayed: Record<string, LoadJobResult> = {};
    for (const t of targets) {
      delayed[t] = await client.run({
        url: urls[t] as string,
        route: '/generate_stream',
        payload: { prompt, max_response_tokens: 16 },
        envelope: envelope(t),
        count: quick ? 10 : 30,
        concurrency: 1,
        warmup: 2,
      });
    }
    await request(`${model.url}/_control`, {
      method: 'POST',
      body: JSON.stringify({ tokenDelayMs: 0 }),
    }).then((r) => r.body.dump());

    const afterBench = procStats(worker.pid);
    const rssRuns: RssRun[] = [];
    for (let run = 1; run <= 2; run++) {
      log(`RSS run ${run}/2: ${settings.rssRequests} requests at concurrency 64`);
      const before = procStats(worker.pid);
      const r = await client.run({
        url: worker.url,
        route: '/generate',
        payload,
        envelope: signed,
        count: settings.rssRequests,
        concurrency: 64,
        warmup: 0,
      });
      const after = procStats(worker.pid);
      const heap = await probeWorker(worker);
      rssRuns.push({
        requests: r.succeeded + r.failed,
        failed: r.failed,
        rssMB: after.rss / MB,
        hwmMB: after.hwm / MB,
        heapAfterGcMB: heap.heapUsed / MB,
        cpuMsPerRequest: (after.cpuMs - before.cpuMs) / (r.succeeded + r.failed),
        seconds: r.durationMs / 1000,
      });
    }

    let profile: ProfileReport | undefined;
    if (settings.profile)
      profile = await profileWorker(model.url, autoscaler, payload, scratch, useWrk, builtCli);

    const report = buildReport({
      cells,
      streams,
      delayed,
      targets,
      idleMB: idle.rss / MB,
      idleHeapMB: idleHeap.heapUsed / MB,
      afterBenchMB: afterBench.rss / MB,
      rssRuns,
      workerCpuMsPerRequest: workerCpuMs / workerRequests,
      profile,
      useWrk,
      nginx,
    });
    process.stdout.write(report.text);
    const dir = join(REPO_ROOT, 'bench/results');
    mkdirSync(dir, { recursive: true });
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    const json = `${JSON.stringify(report.json, null, 2)}\n`;
    writeFileSync(join(dir, `bench-${stamp}.json`), json);
    writeFileSync(join(dir, 'latest.json'), json);
    writeFileSync(join(dir, 'latest.md'), report.text);
    log(`wrote bench/results/bench-${stamp}.json (and latest.json, latest.md)`);
  } finally {
    client.stop();
    await Promise.all(children.map((c) => c.stop()));
    await autoscaler.close();
  }
}

async function waitForSignedOk(url: string, signed: SignedFields, payload: unknown): Promise<void> {
  const deadline = Date.now() + 30_000;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const response = await request(`${url}/generate`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ auth_data: { ...signed, reqnum: 1, request_idx: 1 }, payload }),
      });
      last = `${response.statusCode} ${await response.body.text()}`;
      if (response.statusCode === 200) return;
    } catch (error) {
      last = String(error);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`the worker never answered a signed request with 200 (last: ${last})`);
}

/** A fresh worker under --cpu-prof, loaded by wrk at concurrency 16, then stopped so it writes its profile. */
async function profileWorker(
  modelUrl: string,
  autoscaler: LocalAutoscaler,
  payload: unknown,
  scratch: string,
  useWrk: boolean,
  builtCli: string | undefined,
): Promise<ProfileReport | undefined> {
  const dir = join(scratch, 'profile');
  mkdirSync(dir);
  const worker = await startWorkerProcess({
    modelUrl,
    autoscalerUrl: autoscaler.url,
    logLevel: settings.logLevel,
    nodeFlags: ['--cpu-prof', '--cpu-prof-dir', dir],
    ...(builtCli === undefined ? {} : { builtCli }),
  });
  try {
    // The signature covers the worker's URL, so this worker needs its own.
    const issued = autoscaler.issueAuthData({ endpoint: 'bench', cost: 100, url: worker.url });
    const fields: SignedFields = {
      cost: 100,
      endpoint: 'bench',
      signature: issued.signature,
      url: worker.url,
    };
    await waitForSignedOk(worker.url, fields, payload);
    if (!useWrk) {
      log('profile needs wrk: skipped');
      return undefined;
    }
    const script = signedScript(dir, '/generate', fields, JSON.stringify(payload));
    log('profile: wrk at concurrency 16 against a worker under --cpu-prof');
    await runWrk(`${worker.url}/generate`, script, 16, quick ? 3 : 10);
  } finally {
    await worker.stop(10_000);
  }
  const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
  if (file === undefined) {
    log('profile: the worker wrote no .cpuprofile');
    return undefined;
  }
  return analyseProfile(join(dir, file));
}

interface RssRun {
  requests: number;
  failed: number;
  rssMB: number;
  hwmMB: number;
  /** V8 heap in use after a full GC: what a leak would grow. */
  heapAfterGcMB: number;
  cpuMsPerRequest: number;
  seconds: number;
}

interface ReportInput {
  cells: Record<string, WrkResult[]>;
  streams: Record<string, LoadJobResult[]>;
  delayed: Record<string, LoadJobResult>;
  targets: TargetName[];
  idleMB: number;
  afterBenchMB: number;
  idleHeapMB: number;
  rssRuns: RssRun[];
  workerCpuMsPerRequest: number;
  profile: ProfileReport | undefined;
  useWrk: boolean;
  nginx: Nginx | undefined;
}

const ms = (v: number | undefined): string =>
  v === undefined || !Number.isFinite(v)
    ? '-'
    : v < 10
      ? `${v.toFixed(3)} ms`
      : `${v.toFixed(1)} ms`;
const ratio = (v: number | undefined): string =>
  v === undefined || !Number.isFinite(v) ? '-' : `${v.toFixed(2)}×`;
const signedMs = (v: number | undefined): string =>
  v === undefined || !Number.isFinite(v) ? '-' : `${v >= 0 ? '+' : '−'}${ms(Math.abs(v))}`;

function mdTable(header: string[], rows: string[][]): string {
  return [
    `| ${header.join(' | ')} |`,
    `|${header.map((_, i) => (i === 0 ? ':--' : '--:')).join('|')}|`,
    ...rows.map((r) => `| ${r.join(' | ')} |`),
  ].join('\n');
}

function buildReport(input: ReportInput): { text: string; json: unknown } {
  const { cells, targets } = input;
  const cell = (c: number, t: TargetName) => {
    const runs = cells[`${c} ${t}`];
    if (runs === undefined) return undefined;
    return {
      rps: median(runs.map((r) => r.rps)),
      p50: median(runs.map((r) => r.p50)),
      p99: median(runs.map((r) => r.p99)),
      errors: runs.reduce((n, r) => n + r.errors, 0),
      rounds: runs,
    };
  };
  const throughput = CONCURRENCIES.flatMap((c) =>
    targets.map((t) => {
      const v = cell(c, t);
      const direct = cell(c, 'direct');
      const nginx = cell(c, 'nginx');
      return {
        concurrency: c,
        target: t,
        rps: v?.rps,
        p50Ms: v?.p50,
        p99Ms: v?.p99,
        errors: v?.errors,
        rpsVsDirect: v !== undefined && direct !== undefined ? v.rps / direct.rps : undefined,
        rpsVsNginx: v !== undefined && nginx !== undefined ? v.rps / nginx.rps : undefined,
        addedP50Ms: v !== undefined && direct !== undefined ? v.p50 - direct.p50 : undefined,
        rounds: v?.rounds.map((r) => ({
          rps: r.rps,
          p50Ms: r.p50,
          p99Ms: r.p99,
          requests: r.requests,
          errors: r.errors,
        })),
      };
    }),
  );
  const stream = (t: string) => {
    const runs = input.streams[t];
    if (runs === undefined) return undefined;
    return {
      ttfbMs: median(runs.map((r) => r.ttfbMs?.p50 ?? NaN)),
      ttftMs: median(runs.map((r) => r.ttftMs?.p50 ?? NaN)),
      totalMs: median(runs.map((r) => r.totalMs?.p50 ?? NaN)),
      totalP99Ms: median(runs.map((r) => r.totalMs?.p99 ?? NaN)),
      tokens:
        runs.reduce((n, r) => n + r.tokens, 0) /
        Math.max(
          1,
          runs.reduce((n, r) => n + r.succeeded, 0),
        ),
      failed: runs.reduce((n, r) => n + r.failed, 0),
    };
  };
  const streaming = targets.map((t) => {
    const v = stream(t);
    const d = stream('direct');
    const n = stream('nginx');
    return {
      target: t,
      ...v,
      ttfbVsDirectMs: v !== undefined && d !== undefined ? v.ttfbMs - d.ttfbMs : undefined,
      totalVsDirect: v !== undefined && d !== undefined ? v.totalMs / d.totalMs : undefined,
      totalVsNginx: v !== undefined && n !== undefined ? v.totalMs / n.totalMs : undefined,
    };
  });
  const delayed = targets.map((t) => ({
    target: t,
    ttftMs: input.delayed[t]?.ttftMs?.p50,
    totalMs: input.delayed[t]?.totalMs?.p50,
  }));

  const c1 = { ts: cell(1, 'tsworker'), ng: cell(1, 'nginx'), d: cell(1, 'direct') };
  const c64 = { ts: cell(64, 'tsworker'), ng: cell(64, 'nginx') };
  const sTs = stream('tsworker');
  const sD = stream('direct');
  const lastRss = input.rssRuns.at(-1);
  const firstRss = input.rssRuns[0];
  // wrk leaves the worker more of the two cores than the node client of the RSS runs, so its rounds
  // give the cleaner figure; the RSS runs' is kept in the JSON.
  const cpuPerRequest =
    input.useWrk || input.rssRuns.length === 0
      ? input.workerCpuMsPerRequest
      : median(input.rssRuns.map((r) => r.cpuMsPerRequest));
  const rssRunsCpu =
    input.rssRuns.length > 0 ? median(input.rssRuns.map((r) => r.cpuMsPerRequest)) : NaN;
  const growth =
    lastRss !== undefined && firstRss !== undefined ? lastRss.rssMB - firstRss.rssMB : undefined;
  const heapGrowth =
    lastRss !== undefined && firstRss !== undefined
      ? lastRss.heapAfterGcMB - firstRss.heapAfterGcMB
      : undefined;
  const check = (name: string, ok: boolean | undefined, detail: string) => ({
    name,
    ok: ok ?? null,
    detail,
  });
  const goals = [
    check(
      'c=1 added p50 ≤ nginx’s',
      c1.ts && c1.ng && c1.d ? c1.ts.p50 - c1.d.p50 <= c1.ng.p50 - c1.d.p50 : undefined,
      c1.ts && c1.ng && c1.d
        ? `tsworker ${signedMs(c1.ts.p50 - c1.d.p50)}, nginx ${signedMs(c1.ng.p50 - c1.d.p50)}`
        : 'no nginx',
    ),
    check(
      'c=64 throughput ≥ 0.8× nginx',
      c64.ts && c64.ng ? c64.ts.rps >= 0.8 * c64.ng.rps : undefined,
      c64.ts && c64.ng ? `${ratio(c64.ts.rps / c64.ng.rps)} nginx` : 'no nginx',
    ),
    check(
      'stream TTFB within 1 ms of direct',
      sTs && sD ? sTs.ttfbMs - sD.ttfbMs <= 1 : undefined,
      sTs && sD ? signedMs(sTs.ttfbMs - sD.ttfbMs) : '-',
    ),
    check(
      'chunks forwarded as they arrive',
      input.delayed['tsworker']?.ttftMs !== undefined
        ? (input.delayed['tsworker']?.ttftMs?.p50 ?? Infinity) < 3 * 5 + 2
        : undefined,
      `first of 16 tokens at 5 ms each after ${ms(input.delayed['tsworker']?.ttftMs?.p50)} (direct ${ms(input.delayed['direct']?.ttftMs?.p50)})`,
    ),
    check(
      `RSS < 120 MB after ${firstRss?.requests ?? 0} requests`,
      lastRss ? lastRss.rssMB < 120 : undefined,
      lastRss ? `${lastRss.rssMB.toFixed(1)} MB` : '-',
    ),
    check(
      'no growth from the 1st to the 2nd run (RSS ≤ 5 MB, heap after GC ≤ 1 MB)',
      growth !== undefined && heapGrowth !== undefined ? growth <= 5 && heapGrowth <= 1 : undefined,
      growth !== undefined && heapGrowth !== undefined
        ? `RSS ${growth >= 0 ? '+' : ''}${growth.toFixed(1)} MB, heap ${heapGrowth >= 0 ? '+' : ''}${heapGrowth.toFixed(2)} MB`
        : '-',
    ),
    check('CPU < 0.2 ms per request', cpuPerRequest < 0.2, `${cpuPerRequest.toFixed(3)} ms`),
  ];

  const lines: string[] = [];
  const nodeVersion = process.version;
  const cpuModel = cpus()[0]?.model ?? 'unknown CPU';
  lines.push(
    `tsworker bench, ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, node ${nodeVersion}, ${availableParallelism()} cores (${cpuModel})`,
  );
  lines.push(
    `${quick ? 'quick: ' : ''}${settings.rounds} interleaved rounds, ${settings.durationS} s per cell; load: ${input.useWrk ? `wrk ${wrkVersion()} (1 thread)` : 'our engine (child process)'}; ` +
      `nginx ${input.nginx?.version ?? 'skipped'} (1 worker process); worker ${settings.fromSource ? 'from source (tsx)' : 'compiled'}, LOG_LEVEL=${settings.logLevel}; prompt ${settings.promptWords} words, 16 tokens`,
  );
  lines.push('');
  lines.push(
    mdTable(
      [
        'concurrency',
        'target',
        'req/s',
        'p50',
        'p99',
        '÷ direct',
        '÷ nginx',
        'added p50',
        'errors',
      ],
      throughput.map((r) => [
        String(r.concurrency),
        r.target,
        r.rps === undefined ? '-' : r.rps.toFixed(0),
        ms(r.p50Ms),
        ms(r.p99Ms),
        ratio(r.rpsVsDirect),
        ratio(r.rpsVsNginx),
        r.target === 'direct' ? '' : signedMs(r.addedP50Ms),
        String(r.errors ?? '-'),
      ]),
    ),
  );
  lines.push('');
  lines.push(
    `Streaming, 256 tokens with no delay, one request at a time (${settings.streamRequests} per target and round; medians of per-round p50):`,
  );
  lines.push('');
  lines.push(
    mdTable(
      [
        'target',
        'TTFB',
        'first token',
        'total',
        'total p99',
        'TTFB − direct',
        'total ÷ direct',
        'total ÷ nginx',
      ],
      streaming.map((s) => [
        s.target,
        ms(s.ttfbMs),
        ms(s.ttftMs),
        ms(s.totalMs),
        ms(s.totalP99Ms),
        s.target === 'direct' ? '' : signedMs(s.ttfbVsDirectMs),
        ratio(s.totalVsDirect),
        ratio(s.totalVsNginx),
      ]),
    ),
  );
  lines.push('');
  lines.push(
    `Streaming, 16 tokens at 5 ms each: first token ${delayed.map((d) => `${d.target} ${ms(d.ttftMs)}`).join(', ')}; total ${delayed.map((d) => `${d.target} ${ms(d.totalMs)}`).join(', ')}.`,
  );
  lines.push('');
  lines.push(
    `Worker process: RSS ${input.idleMB.toFixed(1)} MB idle (heap after GC ${input.idleHeapMB.toFixed(1)} MB), ${input.afterBenchMB.toFixed(1)} MB after the rounds; ` +
      input.rssRuns
        .map(
          (r, i) =>
            `${r.rssMB.toFixed(1)} MB after run ${i + 1} of ${r.requests} requests (heap after GC ${r.heapAfterGcMB.toFixed(1)} MB, peak RSS ${r.hwmMB.toFixed(1)} MB, ${r.failed} failed, ${(r.requests / r.seconds).toFixed(0)} req/s)`,
        )
        .join('; ') +
      `. CPU ${(input.workerCpuMsPerRequest * 1000).toFixed(0)} ms per 1,000 requests during the load rounds, ${(rssRunsCpu * 1000).toFixed(0)} ms during the RSS runs (their node client shares the cores).`,
  );
  lines.push('');
  lines.push(
    mdTable(
      ['target', 'met', 'measured'],
      goals.map((g) => [g.name, g.ok === null ? 'n/a' : g.ok ? 'yes' : 'NO', g.detail]),
    ),
  );
  if (input.profile !== undefined) {
    lines.push('');
    lines.push(
      `Profile of the worker under wrk -c16 (${input.profile.busyMs.toFixed(0)} ms busy; self time):`,
    );
    lines.push('');
    lines.push(
      mdTable(
        ['function', 'where', 'self', 'share', 'mostly called from'],
        input.profile.functions.map((f) => [
          f.name,
          f.where,
          `${f.selfMs.toFixed(0)} ms`,
          `${(f.share * 100).toFixed(1)}%`,
          f.caller,
        ]),
      ),
    );
    lines.push('');
    lines.push(
      mdTable(
        ['owner', 'self', 'share'],
        input.profile.owners
          .slice(0, 15)
          .map((o) => [o.owner, `${o.selfMs.toFixed(0)} ms`, `${(o.share * 100).toFixed(1)}%`]),
      ),
    );
  }
  lines.push('');
  return {
    text: lines.join('\n'),
    json: {
      date: new Date().toISOString(),
      node: process.version,
      cores: availableParallelism(),
      cpu: cpus()[0]?.model,
      settings: {
        ...settings,
        quick,
        client: input.useWrk ? `wrk ${wrkVersion()}` : 'engine',
        nginx: input.nginx?.version ?? null,
      },
      throughput,
      streaming,
      streamingDelayed: delayed,
      worker: {
        rssIdleMB: input.idleMB,
        heapIdleAfterGcMB: input.idleHeapMB,
        rssAfterRoundsMB: input.afterBenchMB,
        rssRuns: input.rssRuns,
        cpuMsPerRequest: cpuPerRequest,
        cpuMsPerRequestWrkRounds: input.workerCpuMsPerRequest,
      },
      goals,
      profile: input.profile ?? null,
    },
  };
}

main().catch((error: unknown) => {
  process.stderr.write(
    `bench: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exitCode = 1;
});
