/**
 * npm run bench [-- --quick] [--profile] | -- --stall | -- --soak
 *
 * What tsworker costs next to the Node floor, in one run on loopback against the example model
 * server in zero-latency mode. Five targets are measured in interleaved rounds (the machine is small
 * and noisy) and reported as medians and as ratios to the floor taken in the same run:
 *
 * - direct: the model server itself;
 * - nginx: one worker process, keep-alive upstream, buffering off;
 * - floor: bench/floor-proxy.ts, the least a Node proxy does for the autoscaler's traffic;
 * - tsworker at LOG_LEVEL=info (its default, a JSON line per request) and at warn;
 * - tsworker at info running bench/flat-worker: hello_world without its tokenizer (the default
 *   workload for every request), to show what the framework costs apart from counting tokens.
 *
 * Traffic: a pool of distinct prompts of 30–300 words (100,000 by default), walked through by wrk's
 * Lua script, signed bodies for the floor and the workers; 256-token answers and 16-token ones at
 * concurrency 1 and 64 (wrk, one thread, its own process); 256-event streams at concurrency 16
 * (wrk) and their time to first byte one at a time (our engine, its own process). CPU per request
 * and RSS come from /proc/<pid> of each proxy process (nginx: its worker process).
 *
 * --stall (bench/stall.ts) and --soak (bench/soak.ts) are commands of their own.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { startLocalAutoscaler, type LocalAutoscaler } from '../src/stand-ins/local-autoscaler.ts';
import {
  log,
  MB,
  median,
  rotate,
  signedFor,
  startLoadClient,
  waitForSignedOk,
  type LoadClient,
} from './common.ts';
import type { LoadJobResult, SignedFields } from './load-client.ts';
import { analyseProfile, type ProfileReport } from './profile.ts';
import {
  buildBench,
  ensureCommand,
  flatWorkerFolder,
  nginxWorkerPid,
  probeWorker,
  procStats,
  REPO_ROOT,
  startFloorProxy,
  startModelServer,
  startNginx,
  startWorkerProcess,
  type BuiltBench,
  type Child,
  type Nginx,
} from './processes.ts';
import { runSoak } from './soak.ts';
import { runStall } from './stall.ts';
import { writePromptPool, type PromptPool, type StallPrompt } from './traffic.ts';
import { poolScript, runWrk, wrkVersion, type WrkResult } from './wrk.ts';

type TargetId = 'direct' | 'nginx' | 'floor' | 'info' | 'warn' | 'flat';
const LABELS: Record<TargetId, string> = {
  direct: 'direct',
  nginx: 'nginx',
  floor: 'floor',
  info: 'tsworker (info)',
  warn: 'tsworker (warn)',
  flat: 'tsworker (info, no tokenizer)',
};

interface Target {
  readonly id: TargetId;
  readonly url: string;
  /** The proxy process whose CPU and RSS count; none for direct. */
  readonly pid: number | undefined;
  readonly signed: SignedFields | undefined;
  readonly worker: Child | undefined;
}

/** A throughput cell: /generate at a concurrency and answer length, or 256-event streams. */
interface Cell {
  readonly key: string;
  readonly path: '/generate' | '/generate_stream';
  readonly tokens: number;
  readonly concurrency: number;
}

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean' },
    rounds: { type: 'string' },
    duration: { type: 'string' },
    pool: { type: 'string' },
    'stream-concurrency': { type: 'string' },
    'stream-requests': { type: 'string' },
    'log-level': { type: 'string' },
    profile: { type: 'boolean' },
    'profile-only': { type: 'boolean' },
    'profile-seconds': { type: 'string' },
    stall: { type: 'boolean' },
    'stall-words': { type: 'string' },
    'stall-prompt': { type: 'string' },
    'stall-concurrency': { type: 'string' },
    'stall-token-ms': { type: 'string' },
    soak: { type: 'boolean' },
    'soak-requests': { type: 'string' },
    'soak-interval': { type: 'string' },
    'no-nginx': { type: 'boolean' },
    'no-flat': { type: 'boolean' },
    'from-source': { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  },
});

if (flags.help === true) {
  process.stdout.write(`npm run bench -- [flags]
  (none)                    6 targets × {c=1, c=64} × {256, 16 tokens} + 256-event streams,
                            3 interleaved rounds of 5 s per cell, 100,000 distinct prompts (~10 minutes)
  --quick                   2 rounds of 1 s per cell, 10,000 prompts, 100 streams per TTFB round
  --rounds <n>              interleaved rounds (default 3)
  --duration <s>            seconds per cell and round (default 5)
  --pool <n>                distinct prompts (default 100000)
  --stream-concurrency <n>  wrk connections for streams/s (default 16)
  --stream-requests <n>     streams per target and round for TTFB, one at a time (default 300)
  --profile                 also profile a worker and the floor with node --cpu-prof under wrk c=64
  --profile-only            only the profile (with the same processes and prompt pool)
  --profile-seconds <s>     length of the profiled load (default 10, 3 with --quick)
  --log-level <level>       the profiled, stalled and soaked worker's LOG_LEVEL (default info)
  --stall                   only the large-prompt stall test (bench/stall.ts)
  --stall-words <n>         words in the large prompt (default 500000)
  --stall-prompt <kind>     distinct | common | repeat ('a' × n, one piece) (default distinct)
  --stall-concurrency <n>   streaming clients (default 8)
  --stall-token-ms <ms>     the model's delay per token during the stall test (default 5)
  --soak                    only the soak (bench/soak.ts)
  --soak-requests <n>       requests in the soak (default 1000000)
  --soak-interval <s>       seconds between samples (default 10)
  --no-nginx                skip nginx
  --no-flat                 skip the worker without a tokenizer (bench/flat-worker)
  --from-source             run the worker and the floor through tsx instead of compiled JavaScript
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
  poolSize: num(flags.pool, quick ? 10_000 : 100_000),
  streamConcurrency: num(flags['stream-concurrency'], 16),
  streamRequests: num(flags['stream-requests'], quick ? 100 : 300),
  logLevel: flags['log-level'] ?? 'info',
  profile: flags.profile === true || flags['profile-only'] === true,
  profileOnly: flags['profile-only'] === true,
  profileSeconds: num(flags['profile-seconds'], quick ? 3 : 10),
  fromSource: flags['from-source'] === true,
};

const CELLS: readonly Cell[] = [
  { key: 'c1-256', path: '/generate', tokens: 256, concurrency: 1 },
  { key: 'c64-256', path: '/generate', tokens: 256, concurrency: 64 },
  { key: 'c1-16', path: '/generate', tokens: 16, concurrency: 1 },
  { key: 'c64-16', path: '/generate', tokens: 16, concurrency: 64 },
  {
    key: 'streams',
    path: '/generate_stream',
    tokens: 256,
    concurrency: settings.streamConcurrency,
  },
];

function stallKind(raw: string): StallPrompt {
  if (raw === 'distinct' || raw === 'common' || raw === 'repeat') return raw;
  throw new Error(`bench: --stall-prompt is distinct, common or repeat, not ${raw}`);
}

function writeResults(name: string, text: string, json: unknown): void {
  const dir = join(REPO_ROOT, 'bench/results');
  mkdirSync(dir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const body = `${JSON.stringify(json, null, 2)}\n`;
  writeFileSync(join(dir, `${name}-${stamp}.json`), body);
  writeFileSync(join(dir, `${name}-latest.json`), body);
  writeFileSync(join(dir, `${name}-latest.md`), text);
  log(`wrote bench/results/${name}-${stamp}.json (and ${name}-latest.json, ${name}-latest.md)`);
}

async function main(): Promise<void> {
  const mode =
    flags.stall === true
      ? 'stall'
      : flags.soak === true
        ? 'soak'
        : settings.profileOnly
          ? 'profile'
          : 'bench';
  const useWrk = ensureCommand('wrk', 'wrk', log);
  if (!useWrk) throw new Error('wrk is missing and apt-get could not install it');
  if (!settings.fromSource)
    log('compiling the worker and the floor (tsc) into bench/results/build');
  const built = settings.fromSource ? undefined : buildBench();
  const scratch = mkdtempSync(join(tmpdir(), 'tsworker-bench-'));
  let autoscaler: LocalAutoscaler | undefined;
  let client: LoadClient | undefined;
  try {
    autoscaler = await startLocalAutoscaler();
    client = startLoadClient();
    if (mode === 'stall') {
      const report = await runStall(
        {
          words: num(flags['stall-words'], 500_000),
          kind: stallKind(flags['stall-prompt'] ?? 'distinct'),
          concurrency: num(flags['stall-concurrency'], 8),
          tokens: 256,
          tokenDelayMs: num(flags['stall-token-ms'], 5),
          beforeS: 3,
          afterS: 1,
          logLevel: settings.logLevel,
          builtCli: built?.cli,
        },
        { client, autoscaler, scratch },
      );
      process.stdout.write(report.text);
      writeResults('stall', report.text, report.json);
    } else if (mode === 'soak') {
      const report = await runSoak(
        {
          requests: num(flags['soak-requests'], 1_000_000),
          intervalS: num(flags['soak-interval'], 10),
          concurrency: 64,
          poolSize: settings.poolSize,
          logLevel: settings.logLevel,
          builtCli: built?.cli,
        },
        { autoscaler, scratch },
      );
      process.stdout.write(report.text);
      writeResults('soak', report.text, report.json);
    } else if (mode === 'profile') {
      const model = await startModelServer();
      try {
        const pool = await writePromptPool(settings.poolSize, join(scratch, 'prompts.jsonl'));
        const profiles = await profileBoth(model.url, autoscaler, pool, scratch, built);
        if (profiles !== undefined) {
          const text = `${profileText(profiles).join('\n')}\n`;
          process.stdout.write(text);
          writeResults('profile', text, profiles);
        }
      } finally {
        await model.stop();
      }
    } else {
      await bench(built, autoscaler, client, scratch);
    }
  } finally {
    client?.stop();
    await autoscaler?.close();
    rmSync(scratch, { recursive: true, force: true });
  }
}

async function bench(
  built: BuiltBench | undefined,
  autoscaler: LocalAutoscaler,
  client: LoadClient,
  scratch: string,
): Promise<void> {
  const useNginx = flags['no-nginx'] !== true && ensureCommand('nginx', 'nginx-light', log);
  if (!useNginx && flags['no-nginx'] !== true) log('nginx could not be installed: skipping it');
  const children: Child[] = [];
  try {
    const model = await startModelServer();
    children.push(model);
    const startWorker = async (level: string, folder?: string) => {
      const worker = await startWorkerProcess({
        modelUrl: model.url,
        autoscalerUrl: autoscaler.url,
        logLevel: level,
        logFile: join(scratch, `worker-${level}${folder === undefined ? '' : '-flat'}.log`),
        ...(built === undefined ? {} : { builtCli: built.cli }),
        ...(folder === undefined ? {} : { worker: folder }),
      });
      children.push(worker);
      return worker;
    };
    const floor = await startFloorProxy({
      modelUrl: model.url,
      autoscalerUrl: autoscaler.url,
      ...(built === undefined ? {} : { built: built.floor }),
    });
    children.push(floor);
    const info = await startWorker('info');
    const warn = await startWorker('warn');
    const flat =
      flags['no-flat'] === true ? undefined : await startWorker('info', flatWorkerFolder(built));
    let nginx: Nginx | undefined;
    if (useNginx) {
      nginx = await startNginx(model.url);
      children.push(nginx);
    }
    const targets: Target[] = [
      { id: 'direct', url: model.url, pid: undefined, signed: undefined, worker: undefined },
    ];
    if (nginx !== undefined)
      targets.push({
        id: 'nginx',
        url: nginx.url,
        pid: nginxWorkerPid(nginx.pid),
        signed: undefined,
        worker: undefined,
      });
    for (const [id, child] of [
      ['floor', floor],
      ['info', info],
      ['warn', warn],
      ...(flat === undefined ? [] : ([['flat', flat]] as const)),
    ] as const)
      targets.push({
        id,
        url: child.url,
        pid: child.pid,
        signed: signedFor(autoscaler, child.url),
        worker: id === 'floor' ? undefined : child,
      });
    for (const t of targets) if (t.signed !== undefined) await waitForSignedOk(t.signed);

    const idle: Partial<Record<TargetId, { rssMB: number; heapMB?: number }>> = {};
    for (const t of targets) {
      if (t.pid === undefined) continue;
      const heap = t.worker === undefined ? undefined : await probeWorker(t.worker);
      idle[t.id] = {
        rssMB: procStats(t.pid).rss / MB,
        ...(heap === undefined ? {} : { heapMB: heap.heapUsed / MB }),
      };
    }
    log(
      `idle RSS: ${targets
        .filter((t) => idle[t.id] !== undefined)
        .map((t) => `${LABELS[t.id]} ${idle[t.id]?.rssMB.toFixed(1)} MB`)
        .join(', ')}`,
    );

    log(`writing ${settings.poolSize} distinct prompts of 30–300 words`);
    const pool = await writePromptPool(settings.poolSize, join(scratch, 'prompts.jsonl'));
    log(
      `prompt pool: ${pool.prompts.length} prompts, ${pool.meanWords.toFixed(0)} words and ${pool.meanBytes.toFixed(0)} bytes on average`,
    );
    const scripts = new Map<string, string>();
    for (const t of targets)
      for (const cell of CELLS) {
        const name = `${t.id}-${cell.path.slice(1)}-${cell.tokens}`;
        if (!scripts.has(name))
          scripts.set(
            name,
            poolScript(scratch, name, {
              pool: pool.file,
              path: cell.path,
              tokens: cell.tokens,
              ...(t.signed === undefined ? {} : { signed: t.signed }),
            }),
          );
      }
    let offset = 0;
    const wrk = async (t: Target, cell: Cell, seconds: number): Promise<WrkResult> => {
      const script = scripts.get(`${t.id}-${cell.path.slice(1)}-${cell.tokens}`) as string;
      const r = await runWrk(t.url, script, cell.concurrency, seconds, [String(offset)]);
      offset += r.requests;
      return r;
    };
    let promptOffset = 0;
    const prompts = (count: number): string[] => {
      const out: string[] = [];
      for (let i = 0; i < count; i++)
        out.push(pool.prompts[(promptOffset + i) % pool.prompts.length] as string);
      promptOffset += count;
      return out;
    };
    const ids = targets.map((t) => t.id);
    const byId = (id: TargetId): Target => targets.find((t) => t.id === id) as Target;

    log(`warm-up: ${ids.join(', ')}`);
    for (const t of targets) {
      await wrk(t, { key: 'warm', path: '/generate', tokens: 256, concurrency: 16 }, 1);
      await wrk(t, { key: 'warm', path: '/generate_stream', tokens: 256, concurrency: 16 }, 1);
    }

    const results: Record<string, WrkResult[]> = {};
    const cpu: Record<string, { ms: number; requests: number }> = {};
    const ttfb: Record<string, LoadJobResult[]> = {};
    for (let round = 0; round < settings.rounds; round++) {
      for (const [ci, cell] of CELLS.entries()) {
        for (const id of rotate(ids, round + ci)) {
          const t = byId(id);
          const before = t.pid === undefined ? 0 : procStats(t.pid).cpuMs;
          const r = await wrk(t, cell, settings.durationS);
          const key = `${cell.key} ${id}`;
          if (t.pid !== undefined) {
            const c = (cpu[key] ??= { ms: 0, requests: 0 });
            c.ms += procStats(t.pid).cpuMs - before;
            c.requests += r.requests;
          }
          (results[key] ??= []).push(r);
          if (r.errors > 0) log(`warning: ${LABELS[id]} ${cell.key}: ${r.errors} errors`);
          log(
            `round ${round + 1}/${settings.rounds} ${cell.key} ${LABELS[id]}: ${r.rps.toFixed(0)} req/s, p50 ${r.p50.toFixed(3)} ms, p99 ${r.p99.toFixed(3)} ms`,
          );
        }
      }
      for (const id of rotate(ids, round)) {
        const t = byId(id);
        const r = await client.run({
          url: t.url,
          route: '/generate_stream',
          prompts: prompts(settings.streamRequests + 20),
          tokens: 256,
          envelope: t.signed ?? 'raw',
          count: settings.streamRequests,
          concurrency: 1,
          warmup: 20,
        });
        if (r.failed > 0)
          log(`warning: ${LABELS[id]} streams: ${r.failed} failed (${String(r.firstError)})`);
        (ttfb[id] ??= []).push(r);
        log(
          `round ${round + 1}/${settings.rounds} TTFB ${LABELS[id]}: p50 ${r.ttfbMs?.p50.toFixed(3) ?? '-'} ms`,
        );
      }
    }

    log('streaming: 16 tokens at 5 ms each (chunks must not be held back)');
    await setTokenDelay(model.url, 5);
    const delayed: Partial<Record<TargetId, LoadJobResult>> = {};
    for (const t of targets)
      delayed[t.id] = await client.run({
        url: t.url,
        route: '/generate_stream',
        prompts: prompts(quick ? 12 : 32),
        tokens: 16,
        envelope: t.signed ?? 'raw',
        count: quick ? 10 : 30,
        concurrency: 1,
        warmup: 2,
      });
    await setTokenDelay(model.url, 0);

    const after: Partial<Record<TargetId, number>> = {};
    for (const t of targets) if (t.pid !== undefined) after[t.id] = procStats(t.pid).rss / MB;

    let profile: Profiles | undefined;
    if (settings.profile) profile = await profileBoth(model.url, autoscaler, pool, scratch, built);

    const report = buildReport({
      ids,
      results,
      cpu,
      ttfb,
      delayed,
      idle,
      after,
      pool,
      nginx,
      profile,
    });
    process.stdout.write(report.text);
    writeResults('bench', report.text, report.json);
  } finally {
    await Promise.all(children.map((c) => c.stop()));
  }
}

async function setTokenDelay(modelUrl: string, tokenDelayMs: number): Promise<void> {
  const response = await request(`${modelUrl}/_control`, {
    method: 'POST',
    body: JSON.stringify({ tokenDelayMs }),
  });
  await response.body.dump();
}

/** The worker's profile and the floor's, taken under the same load one after the other. */
interface Profiles {
  readonly worker: ProfiledRun;
  readonly floor: ProfiledRun | undefined;
}

interface ProfiledRun {
  readonly report: ProfileReport;
  /** Requests wrk completed in the profiled window. */
  readonly requests: number;
}

async function profileBoth(
  modelUrl: string,
  autoscaler: LocalAutoscaler,
  pool: PromptPool,
  scratch: string,
  built: BuiltBench | undefined,
): Promise<Profiles | undefined> {
  const worker = await profileProcess('worker', modelUrl, autoscaler, pool, scratch, built);
  if (worker === undefined) return undefined;
  const floor = await profileProcess('floor', modelUrl, autoscaler, pool, scratch, built);
  return { worker, floor };
}

/**
 * A fresh worker (or floor) under --cpu-prof, loaded by wrk at c=64 with the pool, then stopped so it
 * writes its profile.
 */
async function profileProcess(
  which: 'worker' | 'floor',
  modelUrl: string,
  autoscaler: LocalAutoscaler,
  pool: PromptPool,
  scratch: string,
  built: BuiltBench | undefined,
): Promise<ProfiledRun | undefined> {
  const dir = join(scratch, `profile-${which}`);
  mkdirSync(dir);
  const nodeFlags = ['--cpu-prof', '--cpu-prof-dir', dir];
  const spawnedAt = Date.now();
  let loadAt = spawnedAt;
  let loadEnd = Infinity;
  let requests = 0;
  const child =
    which === 'worker'
      ? await startWorkerProcess({
          modelUrl,
          autoscalerUrl: autoscaler.url,
          logLevel: settings.logLevel,
          logFile: join(scratch, 'profile-worker.log'),
          nodeFlags,
          ...(built === undefined ? {} : { builtCli: built.cli }),
        })
      : await startFloorProxy({
          modelUrl,
          autoscalerUrl: autoscaler.url,
          nodeFlags,
          ...(built === undefined ? {} : { built: built.floor }),
        });
  try {
    const signed = signedFor(autoscaler, child.url);
    await waitForSignedOk(signed);
    const script = poolScript(dir, 'profile', {
      pool: pool.file,
      path: '/generate',
      tokens: 256,
      signed,
    });
    log(`profile: wrk c=64 for ${settings.profileSeconds} s against the ${which} under --cpu-prof`);
    await runWrk(child.url, script, 16, 1, ['0']);
    loadAt = Date.now();
    requests = (await runWrk(child.url, script, 64, settings.profileSeconds, ['50000'])).requests;
    loadEnd = Date.now();
  } finally {
    await child.stop(10_000);
  }
  const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
  if (file === undefined) {
    log(`profile: the ${which} wrote no .cpuprofile`);
    return undefined;
  }
  const name = which === 'worker' ? 'profile-latest.cpuprofile' : 'profile-floor-latest.cpuprofile';
  const keep = join(REPO_ROOT, 'bench/results', name);
  mkdirSync(join(REPO_ROOT, 'bench/results'), { recursive: true });
  copyFileSync(join(dir, file), keep);
  log(`profile: kept as bench/results/${name} (open it in Chrome DevTools)`);
  // Start-up, the worker's model benchmark, the warm-up and the shutdown are left out.
  return { report: analyseProfile(keep, 20, loadAt - spawnedAt, loadEnd - spawnedAt), requests };
}

function profileText(profiles: Profiles): string[] {
  const { report: profile } = profiles.worker;
  const lines = [
    `Profile of a worker (LOG_LEVEL=${settings.logLevel}) under wrk c=64, /generate with 256 tokens, the pool's distinct prompts (${profile.busyMs.toFixed(0)} ms busy of ${profile.windowMs.toFixed(0)} ms; self time):`,
    '',
    mdTable(
      ['function', 'where', 'self', 'share', 'mostly called from'],
      profile.functions.map((f) => [
        f.name,
        f.where,
        `${f.selfMs.toFixed(0)} ms`,
        `${(f.share * 100).toFixed(1)}%`,
        f.caller,
      ]),
    ),
  ];
  if (profiles.floor !== undefined)
    lines.push('', ...ownersPerRequest(profiles.worker, profiles.floor));
  return lines;
}

/** Busy time per request by owner, the worker's next to the floor's: what the worker does that the floor does not. */
function ownersPerRequest(worker: ProfiledRun, floor: ProfiledRun): string[] {
  const usPerRequest = (run: ProfiledRun, ms: number): number =>
    (ms * 1000) / Math.max(1, run.requests);
  const perRequest = (run: ProfiledRun): Map<string, number> =>
    new Map(run.report.owners.map((o) => [o.owner, usPerRequest(run, o.selfMs)]));
  const [w, f] = [perRequest(worker), perRequest(floor)];
  // The floor's own code shows as the owner `bench` (bench/floor-proxy), which the worker never has.
  const owners = [...new Set([...w.keys(), ...f.keys()])]
    .map((owner) => ({ owner, worker: w.get(owner) ?? 0, floor: f.get(owner) ?? 0 }))
    .filter((row) => Math.max(row.worker, row.floor) >= 0.5)
    .sort((a, b) => b.worker - b.floor - (a.worker - a.floor));
  const us = (v: number): string => v.toFixed(1);
  const row = (owner: string, inWorker: number, inFloor: number): string[] => {
    const difference = inWorker - inFloor;
    return [owner, us(inWorker), us(inFloor), `${difference >= 0 ? '+' : ''}${us(difference)}`];
  };
  return [
    `Busy CPU per request by owner, the worker's and the floor's (each profiled alone under the same load: ${worker.requests} and ${floor.requests} requests), largest difference first (µs; owners under 0.5 µs left out):`,
    '',
    mdTable(
      ['owner', 'worker µs', 'floor µs', 'difference µs'],
      [
        ...owners.map((o) => row(o.owner, o.worker, o.floor)),
        row(
          'all',
          usPerRequest(worker, worker.report.busyMs),
          usPerRequest(floor, floor.report.busyMs),
        ),
      ],
    ),
  ];
}

interface ReportInput {
  ids: TargetId[];
  results: Record<string, WrkResult[]>;
  cpu: Record<string, { ms: number; requests: number }>;
  ttfb: Record<string, LoadJobResult[]>;
  delayed: Partial<Record<TargetId, LoadJobResult>>;
  idle: Partial<Record<TargetId, { rssMB: number; heapMB?: number }>>;
  after: Partial<Record<TargetId, number>>;
  pool: PromptPool;
  nginx: Nginx | undefined;
  profile: Profiles | undefined;
}

const fixed = (v: number | undefined, digits: number): string =>
  v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(digits);
const int = (v: number | undefined): string =>
  v === undefined || !Number.isFinite(v) ? '–' : Math.round(v).toLocaleString('en-US');
const times = (v: number | undefined): string =>
  v === undefined || !Number.isFinite(v) ? '–' : `${v.toFixed(2)}×`;
const plusMs = (v: number | undefined): string =>
  v === undefined || !Number.isFinite(v)
    ? '–'
    : `${v >= 0 ? '+' : '−'}${Math.abs(v).toFixed(3)} ms`;

function mdTable(header: string[], rows: string[][]): string {
  return [
    `| ${header.join(' | ')} |`,
    `|${header.map((_, i) => (i === 0 ? ':--' : '--:')).join('|')}|`,
    ...rows.map((r) => `| ${r.join(' | ')} |`),
  ].join('\n');
}

interface Figures {
  c1Rps: number;
  c1P50: number;
  c64Rps: number;
  c64P99: number;
  streamsPerS: number;
  ttfbP50: number;
  cpuMsPerRequest: number | undefined;
  cpuMsPerStream: number | undefined;
  idleRssMB: number | undefined;
}

function buildReport(input: ReportInput): { text: string; json: unknown } {
  const { ids } = input;
  const cell = (key: string, id: TargetId) => {
    const runs = input.results[`${key} ${id}`] ?? [];
    return {
      rps: median(runs.map((r) => r.rps)),
      p50: median(runs.map((r) => r.p50)),
      p99: median(runs.map((r) => r.p99)),
      errors: runs.reduce((n, r) => n + r.errors, 0),
    };
  };
  const cpuPer = (key: string, id: TargetId): number | undefined => {
    const c = input.cpu[`${key} ${id}`];
    return c === undefined || c.requests === 0 ? undefined : c.ms / c.requests;
  };
  const figures = (id: TargetId, tokens: 256 | 16): Figures => {
    const c1 = cell(`c1-${tokens}`, id);
    const c64 = cell(`c64-${tokens}`, id);
    const streams = cell('streams', id);
    return {
      c1Rps: c1.rps,
      c1P50: c1.p50,
      c64Rps: c64.rps,
      c64P99: c64.p99,
      streamsPerS: streams.rps,
      ttfbP50: median((input.ttfb[id] ?? []).map((r) => r.ttfbMs?.p50 ?? NaN)),
      cpuMsPerRequest: cpuPer(`c64-${tokens}`, id),
      cpuMsPerStream: cpuPer('streams', id),
      idleRssMB: input.idle[id]?.rssMB,
    };
  };
  const ratios = (f: Figures, floor: Figures | undefined, direct: Figures) => {
    if (floor === undefined) return undefined;
    return {
      c64VsFloor: f.c64Rps / floor.c64Rps,
      addedP50VsFloor: (f.c1P50 - direct.c1P50) / (floor.c1P50 - direct.c1P50),
      streamsVsFloor: f.streamsPerS / floor.streamsPerS,
      ttfbMinusFloorMs: f.ttfbP50 - floor.ttfbP50,
      cpuVsFloor:
        f.cpuMsPerRequest === undefined || floor.cpuMsPerRequest === undefined
          ? NaN
          : f.cpuMsPerRequest / floor.cpuMsPerRequest,
    };
  };
  const table = (tokens: 256 | 16) => {
    const direct = figures('direct', tokens);
    const floor = ids.includes('floor') ? figures('floor', tokens) : undefined;
    return ids.map((id) => {
      const f = figures(id, tokens);
      return { target: LABELS[id], id, ...f, ratios: ratios(f, floor, direct) };
    });
  };
  const main = table(256);
  const short = table(16);
  const errors = Object.entries(input.results)
    .map(([key, runs]) => [key, runs.reduce((n, r) => n + r.errors, 0)] as const)
    .filter(([, n]) => n > 0);

  const goals = (['info', 'warn'] as const).flatMap((id) => {
    const row = main.find((r) => r.id === id);
    const r = row?.ratios;
    if (r === undefined) return [];
    return [
      {
        target: LABELS[id],
        goal: 'c=64 throughput ≥ 0.9× floor',
        ok: r.c64VsFloor >= 0.9,
        measured: times(r.c64VsFloor),
      },
      {
        target: LABELS[id],
        goal: 'c=1 added p50 ≤ 1.5× floor’s',
        ok: r.addedP50VsFloor <= 1.5,
        measured: times(r.addedP50VsFloor),
      },
      {
        target: LABELS[id],
        goal: 'streams/s ≥ 0.9× floor',
        ok: r.streamsVsFloor >= 0.9,
        measured: times(r.streamsVsFloor),
      },
      {
        target: LABELS[id],
        goal: 'stream TTFB ≤ floor + 0.3 ms',
        ok: r.ttfbMinusFloorMs <= 0.3,
        measured: plusMs(r.ttfbMinusFloorMs),
      },
      {
        target: LABELS[id],
        goal: 'CPU per request ≤ 1.3× floor',
        ok: r.cpuVsFloor <= 1.3,
        measured: times(r.cpuVsFloor),
      },
    ];
  });

  const lines: string[] = [];
  lines.push(
    `tsworker bench, ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, node ${process.version}, ${availableParallelism()} cores (${cpus()[0]?.model ?? 'unknown CPU'})`,
  );
  lines.push(
    `${quick ? 'quick: ' : ''}${settings.rounds} interleaved rounds, ${settings.durationS} s per cell; wrk ${wrkVersion()} (1 thread); nginx ${input.nginx?.version ?? 'skipped'} (1 worker process); ` +
      `worker and floor ${settings.fromSource ? 'from source (tsx)' : 'compiled'}; ${input.pool.prompts.length.toLocaleString('en-US')} distinct prompts, ` +
      `${input.pool.meanWords.toFixed(0)} words (${input.pool.meanBytes.toFixed(0)} bytes) on average; figures are medians over rounds.`,
  );
  lines.push('');
  lines.push('16-token answers:');
  lines.push('');
  lines.push(
    mdTable(
      [
        'target',
        'c=1 req/s (p50 ms)',
        'c=64 req/s (p99 ms)',
        'CPU ms/request',
        'c=64 ÷ floor',
        'c=1 added p50 ÷ floor’s',
        'CPU ÷ floor',
      ],
      short.map((r) => [
        r.target,
        `${int(r.c1Rps)} (${fixed(r.c1P50, 3)})`,
        `${int(r.c64Rps)} (${fixed(r.c64P99, 2)})`,
        fixed(r.cpuMsPerRequest, 3),
        times(r.ratios?.c64VsFloor),
        r.id === 'direct' ? '' : times(r.ratios?.addedP50VsFloor),
        times(r.ratios?.cpuVsFloor),
      ]),
    ),
  );
  lines.push('');
  lines.push(
    `Streaming 16 tokens at 5 ms each, first token after: ${ids.map((id) => `${LABELS[id]} ${fixed(input.delayed[id]?.ttftMs?.p50, 1)} ms`).join(', ')} ` +
      `(total ${ids.map((id) => fixed(input.delayed[id]?.totalMs?.p50, 1)).join(' / ')} ms): chunks are forwarded as they arrive.`,
  );
  lines.push('');
  lines.push(
    `Memory: RSS after the rounds ${ids
      .filter((id) => input.after[id] !== undefined)
      .map((id) => `${LABELS[id]} ${fixed(input.after[id], 1)} MB`)
      .join(', ')}; idle heap after GC ${(['info', 'warn'] as const)
      .filter((id) => input.idle[id]?.heapMB !== undefined)
      .map((id) => `${LABELS[id]} ${fixed(input.idle[id]?.heapMB, 1)} MB`)
      .join(', ')}. CPU per 256-event stream: ${ids
      .filter((id) => main.find((r) => r.id === id)?.cpuMsPerStream !== undefined)
      .map((id) => `${LABELS[id]} ${fixed(main.find((r) => r.id === id)?.cpuMsPerStream, 3)} ms`)
      .join(', ')}.`,
  );
  if (errors.length > 0) {
    lines.push('');
    lines.push(
      `Errors (non-2xx or socket errors): ${errors.map(([k, n]) => `${k}: ${n}`).join(', ')}.`,
    );
  }
  if (input.profile !== undefined) {
    lines.push('');
    lines.push(...profileText(input.profile));
  }
  lines.push('');
  lines.push(
    `256-token answers, each figure and its ratio to the floor of the same run (c=1 and c=64: /generate; streams: /generate_stream, 256 events, wrk c=${settings.streamConcurrency}; TTFB: one stream at a time; CPU: the proxy process's user+system time over the c=64 cells ÷ requests; RSS: at idle, before any load):`,
  );
  lines.push('');
  lines.push(
    mdTable(
      [
        'target',
        'c=1 req/s (p50 ms)',
        'c=64 req/s',
        'streams/s (TTFB p50 ms)',
        'CPU ms/request',
        'idle RSS MB',
        'c=64 ÷ floor',
        'c=1 added p50 ÷ floor’s',
        'streams/s ÷ floor',
        'TTFB − floor',
        'CPU ÷ floor',
      ],
      main.map((r) => [
        r.target,
        `${int(r.c1Rps)} (${fixed(r.c1P50, 3)})`,
        int(r.c64Rps),
        `${int(r.streamsPerS)} (${fixed(r.ttfbP50, 3)})`,
        fixed(r.cpuMsPerRequest, 3),
        fixed(r.idleRssMB, 1),
        times(r.ratios?.c64VsFloor),
        r.id === 'direct' ? '' : times(r.ratios?.addedP50VsFloor),
        times(r.ratios?.streamsVsFloor),
        plusMs(r.ratios?.ttfbMinusFloorMs),
        times(r.ratios?.cpuVsFloor),
      ]),
    ),
  );
  if (goals.length > 0) {
    lines.push('');
    lines.push(
      mdTable(
        [
          'issue 12 target',
          ...(['info', 'warn'] as const).filter((id) => ids.includes(id)).map((id) => LABELS[id]),
        ],
        [...new Set(goals.map((g) => g.goal))].map((goal) => [
          goal,
          ...goals
            .filter((g) => g.goal === goal)
            .map((g) => `${g.measured} ${g.ok ? 'met' : 'NOT met'}`),
        ]),
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
      settings: { ...settings, quick, wrk: wrkVersion(), nginx: input.nginx?.version ?? null },
      pool: {
        prompts: input.pool.prompts.length,
        meanWords: input.pool.meanWords,
        meanBytes: input.pool.meanBytes,
      },
      answers256: main,
      answers16: short,
      goals,
      rounds: input.results,
      cpuByCell: input.cpu,
      ttfb: Object.fromEntries(
        Object.entries(input.ttfb).map(([id, runs]) => [
          id,
          runs.map((r) => ({ ttfb: r.ttfbMs, total: r.totalMs, failed: r.failed })),
        ]),
      ),
      delayed: input.delayed,
      idle: input.idle,
      rssAfterMB: input.after,
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
