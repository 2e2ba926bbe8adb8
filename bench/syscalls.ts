/**
 * tsx bench/syscalls.ts [--strace] [seconds]: system calls per request of the floor proxy and of
 * tsworker (info and warn), under the same load (wrk, c=64, /generate, 256-token answers, the
 * bench's distinct prompts). `perf stat` counts the calls of each proxy process (every thread)
 * through the syscall tracepoints, at little cost, so the event loop batches as it does unobserved;
 * `--strace` uses `strace -c -f` instead, which names every call but slows the process several
 * times (more work per loop turn, so fewer epoll waits per request). Counts are divided by the
 * requests wrk completed meanwhile; throughput here means nothing.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLocalAutoscaler } from '../src/stand-ins/local-autoscaler.ts';
import { signedFor, waitForSignedOk } from './common.ts';
import { startFloorProxy, startModelServer, startWorkerProcess, type Child } from './processes.ts';
import { writePromptPool } from './traffic.ts';
import { poolScript, runWrk } from './wrk.ts';

const useStrace = process.argv.includes('--strace');
const seconds = Number(process.argv.slice(2).find((arg) => /^\d/.test(arg)) ?? 4);
const PERF_CALLS = [
  'read',
  'readv',
  'write',
  'writev',
  'epoll_wait',
  'epoll_pwait',
  'futex',
  'getpid',
];
const scratch = mkdtempSync(join(tmpdir(), 'tsworker-syscalls-'));

/** Runs wrk while strace counts `pid`'s calls; returns calls per request by name. */
async function countCalls(target: Child, script: string): Promise<Map<string, number>> {
  await runWrk(target.url, script, 64, 1, ['0']);
  const events = [
    ...PERF_CALLS.map((name) => `syscalls:sys_enter_${name}`),
    'raw_syscalls:sys_enter',
  ];
  const strace = useStrace
    ? spawn('strace', ['-c', '-f', '-p', String(target.pid)], {
        stdio: ['ignore', 'ignore', 'pipe'],
      })
    : spawn('perf', ['stat', '-x,', '-e', events.join(','), '-p', String(target.pid)], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
  let report = '';
  strace.stderr.setEncoding('utf8').on('data', (chunk: string) => (report += chunk));
  await new Promise((resolve) => setTimeout(resolve, 500)); // attached to every thread
  const result = await runWrk(target.url, script, 64, seconds, ['70000']);
  strace.kill('SIGINT');
  await new Promise((resolve) => strace.on('exit', resolve));
  const perRequest = new Map<string, number>();
  if (!useStrace) {
    // CSV: count,unit,event,...
    for (const line of report.split('\n')) {
      const [count, , event] = line.split(',');
      if (event === undefined || !/^\d+$/.test(count ?? '')) continue;
      const name = event === 'raw_syscalls:sys_enter' ? 'all calls' : event.replace(/.*enter_/, '');
      perRequest.set(name, Number(count) / result.requests);
    }
    return perRequest;
  }
  for (const line of report.split('\n')) {
    const fields = line.trim().split(/\s+/);
    // % time, seconds, usecs/call, calls, [errors], syscall
    if (fields.length < 5 || !/^\d/.test(fields[0] ?? '')) continue;
    const name = fields.at(-1) ?? '';
    if (name === 'total') continue;
    perRequest.set(name, Number(fields[3]) / result.requests);
  }
  return perRequest;
}

const model = await startModelServer();
const autoscaler = await startLocalAutoscaler();
const children: Child[] = [model];
try {
  const pool = await writePromptPool(20_000, join(scratch, 'prompts.jsonl'));
  const floor = await startFloorProxy({ modelUrl: model.url, autoscalerUrl: autoscaler.url });
  children.push(floor);
  const targets: [string, Child][] = [['floor', floor]];
  for (const level of ['info', 'warn']) {
    const worker = await startWorkerProcess({
      modelUrl: model.url,
      autoscalerUrl: autoscaler.url,
      logLevel: level,
      logFile: join(scratch, `worker-${level}.log`),
    });
    children.push(worker);
    targets.push([`tsworker (${level})`, worker]);
  }
  const results = new Map<string, Map<string, number>>();
  for (const [name, target] of targets) {
    const signed = signedFor(autoscaler, target.url);
    await waitForSignedOk(signed);
    const script = poolScript(scratch, name.replace(/\W+/g, '-'), {
      pool: pool.file,
      path: '/generate',
      tokens: 256,
      signed,
    });
    results.set(name, await countCalls(target, script));
  }
  const names = [...new Set([...results.values()].flatMap((calls) => [...calls.keys()]))];
  const total = (calls: Map<string, number>) =>
    calls.get('all calls') ?? [...calls.values()].reduce((a, b) => a + b, 0);
  names.splice(names.indexOf('all calls') >>> 0, names.includes('all calls') ? 1 : 0);
  const info = results.get('tsworker (info)');
  names.sort((a, b) => (info?.get(b) ?? 0) - (info?.get(a) ?? 0));
  console.log(`| syscall | ${targets.map(([name]) => name).join(' | ')} |`);
  console.log(`|---|${targets.map(() => '---:').join('|')}|`);
  for (const name of names) {
    const row = targets.map(([target]) => (results.get(target)?.get(name) ?? 0).toFixed(2));
    if (row.every((cell) => cell === '0.00')) continue;
    console.log(`| ${name} | ${row.join(' | ')} |`);
  }
  console.log(
    `| **total** | ${targets.map(([target]) => total(results.get(target)!).toFixed(2)).join(' | ')} |`,
  );
} finally {
  for (const child of children.reverse()) await child.stop();
  await autoscaler.close();
  rmSync(scratch, { recursive: true, force: true });
}
