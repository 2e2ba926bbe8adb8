/**
 * What the bench's commands share: the load client process, signed fields, waiting for a proxy to
 * accept signed requests, and small statistics.
 */
import { fork } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import type { LocalAutoscaler } from '../src/stand-ins/local-autoscaler.ts';
import type {
  GapsResult,
  GapsStartJob,
  LoadJob,
  LoadJobResult,
  SignedFields,
} from './load-client.ts';
import { REPO_ROOT } from './processes.ts';

export const MB = 1024 * 1024;

export const log = (line: string): void => void process.stderr.write(`[bench] ${line}\n`);

export function median(values: readonly number[]): number {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** Nearest-rank percentile of unsorted values; NaN when there are none. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank] as number;
}

export function rotate<T>(items: readonly T[], by: number): T[] {
  const k = by % items.length;
  return [...items.slice(k), ...items.slice(0, k)];
}

/** Least-squares slope of y over x. */
export function slope(points: readonly (readonly [number, number])[]): number {
  const n = points.length;
  if (n < 2) return NaN;
  const mx = points.reduce((s, [x]) => s + x, 0) / n;
  const my = points.reduce((s, [, y]) => s + y, 0) / n;
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  }
  return den === 0 ? NaN : num / den;
}

/** The auth_data fields every request to `url` carries (current mode signs the url alone). */
export function signedFor(autoscaler: LocalAutoscaler, url: string): SignedFields {
  const issued = autoscaler.issueAuthData({ endpoint: 'bench', cost: 100, url });
  return { cost: 100, endpoint: 'bench', signature: issued.signature, url };
}

export function signedBody(signed: SignedFields, payload: unknown, reqnum = 1): string {
  return JSON.stringify({
    auth_data: { ...signed, reqnum, request_idx: reqnum },
    payload,
  });
}

/** A worker verifies signatures once it has the key and is ready: wait for a signed 200. */
export async function waitForSignedOk(signed: SignedFields, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const response = await request(`${signed.url}/generate`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: signedBody(signed, { prompt: 'hello there', max_response_tokens: 4 }),
      });
      last = `${response.statusCode} ${await response.body.text()}`;
      if (response.statusCode === 200) return;
    } catch (error) {
      last = String(error);
    }
    await sleep(100);
  }
  throw new Error(`${signed.url} never answered a signed request with 200 (last: ${last})`);
}

type Reply = { ok: boolean; id?: number; result?: unknown; error?: string };

export interface LoadClient {
  run(job: Omit<LoadJob, 'id' | 'kind'>): Promise<LoadJobResult>;
  startGaps(job: Omit<GapsStartJob, 'id' | 'kind'>): Promise<() => Promise<GapsResult>>;
  stop(): void;
}

/** The load client (bench/load-client.ts) in its own process, one job at a time over IPC. */
export function startLoadClient(): LoadClient {
  const child = fork(join(REPO_ROOT, 'bench/load-client.ts'), [], {
    execArgv: ['--import', 'tsx'],
    cwd: REPO_ROOT,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  let nextId = 0;
  const ask = <T>(message: { id: number; kind: string } & Record<string, unknown>): Promise<T> =>
    new Promise((resolve, reject) => {
      const onMessage = (reply: Reply) => {
        if (reply.id !== message.id) return;
        child.off('message', onMessage);
        if (reply.ok) resolve(reply.result as T);
        else reject(new Error(`load client: ${String(reply.error)}`));
      };
      child.on('message', onMessage);
      child.send(message);
    });
  return {
    run: (job) => ask<LoadJobResult>({ ...job, kind: 'load', id: ++nextId }),
    async startGaps(job) {
      const id = ++nextId;
      await ask({ ...job, kind: 'gaps-start', id });
      return () => ask<GapsResult>({ kind: 'gaps-stop', id });
    },
    stop: () => child.disconnect(),
  };
}
