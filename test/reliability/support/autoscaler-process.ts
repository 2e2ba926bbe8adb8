/**
 * The local autoscaler (src/stand-ins/local-autoscaler.ts) as its own process, for the reliability
 * harness, plus a control listener on a second port:
 *
 *   POST /outage {"mode":"up"|"503"|"refused"}  503: every route answers 503 (the stand-in's `down`);
 *                                               refused: the port is closed, then reopened on "up"
 *   GET  /summary                               compact figures of everything received
 *   POST /check {"ranges":[[from,to],...]}      each request_idx in [from, to) reported exactly once?
 *
 * It keeps compact indexes instead of the stand-in's records: a soak sends a million
 * /delete_requests/ entries, which `/_records` could not carry. Environment: AUTH_MODE,
 * AUTOSCALER_PORT (0).
 */
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { isEntryPoint } from '../../../lib/index.ts';
import {
  startLocalAutoscaler,
  type AuthMode,
  type LocalAutoscaler,
} from '../../../src/stand-ins/local-autoscaler.ts';

export type OutageMode = 'up' | '503' | 'refused';

export interface WorkerStatusSummary {
  /** Posts the autoscaler accepted. */
  readonly posts: number;
  /** Posts that did not match the 17-field contract, and the first problems. */
  readonly nonconforming: number;
  readonly problems: readonly string[];
  /** Numbers out of range: not finite, negative, or beyond 2^53. The first few. */
  readonly violations: readonly string[];
  readonly violationCount: number;
  /** The largest value seen per numeric field. */
  readonly maxima: Readonly<Record<string, number>>;
  readonly last: Readonly<Record<string, unknown>> | undefined;
  /** Epoch milliseconds of the last accepted post. */
  readonly lastAt: number;
}

export interface AutoscalerSummary {
  readonly outage: OutageMode;
  readonly deletePosts: number;
  readonly deleteEntries: number;
  /** Entries by `status` (Success, Error, Cancelled, Rejected). */
  readonly entryStatuses: Readonly<Record<string, number>>;
  /** Entries whose request_idx is not a non-negative safe integer, and the first few. */
  readonly invalidIdx: number;
  readonly invalidIdxSample: readonly unknown[];
  readonly nonconformingDeletes: number;
  readonly deleteProblems: readonly string[];
  readonly workerStatus: WorkerStatusSummary;
  /** The worker /route/ sends clients to. */
  readonly workerUrl: string | undefined;
}

export interface CheckResult {
  readonly expected: number;
  readonly missing: number;
  readonly missingSample: readonly number[];
  readonly duplicated: number;
  readonly duplicatedSample: readonly number[];
  /** Entries whose request_idx is outside every range given. */
  readonly outside: number;
}

/** Idx below this are counted in a growable byte array, the rest in a Map. */
const DENSE_LIMIT = 64 * 1024 * 1024;
const SAMPLE = 10;
const MAX_SAFE = Number.MAX_SAFE_INTEGER;
/** Fields that may legitimately be negative (a disk delta). */
const SIGNED_FIELDS = new Set(['additional_disk_usage']);

class IdxCounts {
  #dense = new Uint8Array(1 << 20);
  readonly #sparse = new Map<number, number>();

  add(idx: number): void {
    if (idx < DENSE_LIMIT) {
      if (idx >= this.#dense.length) {
        let size = this.#dense.length;
        while (size <= idx) size *= 2;
        const grown = new Uint8Array(Math.min(size, DENSE_LIMIT));
        grown.set(this.#dense);
        this.#dense = grown;
      }
      const current = this.#dense[idx] ?? 0;
      if (current < 255) this.#dense[idx] = current + 1;
    } else {
      this.#sparse.set(idx, (this.#sparse.get(idx) ?? 0) + 1);
    }
  }

  count(idx: number): number {
    if (idx < DENSE_LIMIT) return idx < this.#dense.length ? (this.#dense[idx] ?? 0) : 0;
    return this.#sparse.get(idx) ?? 0;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

class Recorder {
  readonly idx = new IdxCounts();
  deletePosts = 0;
  deleteEntries = 0;
  readonly entryStatuses: Record<string, number> = {};
  invalidIdx = 0;
  readonly invalidIdxSample: unknown[] = [];
  nonconformingDeletes = 0;
  readonly deleteProblems: string[] = [];
  statusPosts = 0;
  nonconformingStatus = 0;
  readonly statusProblems: string[] = [];
  violationCount = 0;
  readonly violations: string[] = [];
  readonly maxima: Record<string, number> = {};
  lastStatus: Record<string, unknown> | undefined;
  lastStatusAt = 0;

  attach(autoscaler: LocalAutoscaler): void {
    autoscaler.on('delete_requests', (record) => {
      // The stand-in keeps every record; this process keeps indexes instead.
      autoscaler.records.deleteRequests.length = 0;
      if (record.status !== 200) return;
      this.deletePosts++;
      if (!record.conforms) {
        this.nonconformingDeletes++;
        if (this.deleteProblems.length < SAMPLE) this.deleteProblems.push(...record.problems);
      }
      const requests: unknown = isRecord(record.body) ? record.body['requests'] : undefined;
      if (!Array.isArray(requests)) return;
      for (const entry of requests as unknown[]) {
        this.deleteEntries++;
        const idx = isRecord(entry) ? entry['request_idx'] : undefined;
        const status = isRecord(entry) ? String(entry['status']) : 'malformed';
        this.entryStatuses[status] = (this.entryStatuses[status] ?? 0) + 1;
        if (typeof idx === 'number' && Number.isSafeInteger(idx) && idx >= 0) this.idx.add(idx);
        else {
          this.invalidIdx++;
          if (this.invalidIdxSample.length < SAMPLE) this.invalidIdxSample.push(idx);
        }
      }
    });
    autoscaler.on('worker_status', (record) => {
      autoscaler.records.workerStatus.length = 0;
      if (record.status !== 200) return;
      this.statusPosts++;
      if (!record.conforms) {
        this.nonconformingStatus++;
        if (this.statusProblems.length < SAMPLE) this.statusProblems.push(...record.problems);
      }
      const body: unknown = record.body;
      if (!isRecord(body)) return;
      this.lastStatus = body;
      this.lastStatusAt = record.at;
      const check = (field: string, value: unknown): void => {
        if (typeof value !== 'number') return;
        const bad =
          !Number.isFinite(value) ||
          Math.abs(value) > MAX_SAFE ||
          (value < 0 && !SIGNED_FIELDS.has(field));
        if (bad) {
          this.violationCount++;
          if (this.violations.length < SAMPLE) this.violations.push(`${field}=${value}`);
        }
        if (!(value <= (this.maxima[field] ?? -Infinity))) this.maxima[field] = value;
      };
      for (const [field, value] of Object.entries(body)) {
        if (Array.isArray(value)) for (const item of value as unknown[]) check(field, item);
        else check(field, value);
      }
    });
    autoscaler.on('route', () => {
      autoscaler.records.routes.length = 0;
    });
  }

  check(ranges: readonly (readonly [number, number])[]): CheckResult {
    let expected = 0;
    let missing = 0;
    let duplicated = 0;
    let matched = 0;
    const missingSample: number[] = [];
    const duplicatedSample: number[] = [];
    for (const [from, to] of ranges) {
      for (let idx = from; idx < to; idx++) {
        expected++;
        const count = this.idx.count(idx);
        matched += count;
        if (count === 0) {
          missing++;
          if (missingSample.length < SAMPLE) missingSample.push(idx);
        } else if (count > 1) {
          duplicated++;
          if (duplicatedSample.length < SAMPLE) duplicatedSample.push(idx);
        }
      }
    }
    const outside = this.deleteEntries - this.invalidIdx - matched;
    return { expected, missing, missingSample, duplicated, duplicatedSample, outside };
  }

  summary(outage: OutageMode, workerUrl: string | undefined): AutoscalerSummary {
    return {
      outage,
      deletePosts: this.deletePosts,
      deleteEntries: this.deleteEntries,
      entryStatuses: this.entryStatuses,
      invalidIdx: this.invalidIdx,
      invalidIdxSample: this.invalidIdxSample,
      nonconformingDeletes: this.nonconformingDeletes,
      deleteProblems: this.deleteProblems,
      workerStatus: {
        posts: this.statusPosts,
        nonconforming: this.nonconformingStatus,
        problems: this.statusProblems,
        violations: this.violations,
        violationCount: this.violationCount,
        maxima: this.maxima,
        last: this.lastStatus,
        lastAt: this.lastStatusAt,
      },
      workerUrl,
    };
  }
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  return text === '' ? {} : (JSON.parse(text) as unknown);
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(text);
}

function isRanges(value: unknown): value is [number, number][] {
  return (
    Array.isArray(value) &&
    value.every(
      (range) =>
        Array.isArray(range) &&
        range.length === 2 &&
        range.every((n) => Number.isSafeInteger(n) && (n as number) >= 0),
    )
  );
}

async function main(): Promise<void> {
  const authMode: AuthMode = process.env['AUTH_MODE'] === 'legacy' ? 'legacy' : 'current';
  const privateKey: KeyObject = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const recorder = new Recorder();
  const open = async (port: number): Promise<LocalAutoscaler> => {
    const autoscaler = await startLocalAutoscaler({ privateKey, authMode, port });
    recorder.attach(autoscaler);
    return autoscaler;
  };
  let autoscaler: LocalAutoscaler | undefined = await open(
    Number(process.env['AUTOSCALER_PORT'] ?? 0),
  );
  const port = autoscaler.port;
  const url = autoscaler.url;
  let workerUrl: string | undefined;
  let outage: OutageMode = 'up';

  const setOutage = async (mode: OutageMode): Promise<void> => {
    if (mode === outage) return;
    if (mode === 'refused') {
      workerUrl = autoscaler?.workerUrl;
      await autoscaler?.close();
      autoscaler = undefined;
    } else {
      if (autoscaler === undefined) {
        autoscaler = await open(port);
        if (workerUrl !== undefined) autoscaler.register(workerUrl);
      }
      autoscaler.configure({ down: mode === '503' });
    }
    outage = mode;
  };

  const control = createServer((req, res) => {
    const route = `${req.method ?? 'GET'} ${req.url ?? '/'}`;
    const answer = async (): Promise<void> => {
      if (route === 'GET /summary') {
        send(res, 200, recorder.summary(outage, autoscaler?.workerUrl ?? workerUrl));
      } else if (route === 'POST /outage') {
        const body = await readJson(req);
        const mode = isRecord(body) ? body['mode'] : undefined;
        if (mode !== 'up' && mode !== '503' && mode !== 'refused') {
          send(res, 400, { error: 'mode must be up, 503 or refused' });
          return;
        }
        await setOutage(mode);
        send(res, 200, { outage });
      } else if (route === 'POST /check') {
        const body = await readJson(req);
        const ranges = isRecord(body) ? body['ranges'] : undefined;
        if (!isRanges(ranges)) {
          send(res, 400, { error: 'ranges must be [[from, to], ...]' });
          return;
        }
        send(res, 200, recorder.check(ranges));
      } else {
        send(res, 404, { error: `not found: ${route}` });
      }
    };
    answer().catch((error: unknown) => send(res, 500, { error: String(error) }));
  });
  control.listen(0, '127.0.0.1');
  await once(control, 'listening');
  const address = control.address();
  if (address === null || typeof address === 'string') throw new Error('control: no address');
  process.stdout.write(
    `${JSON.stringify({ event: 'listening', url, control: `http://127.0.0.1:${address.port}` })}\n`,
  );
  const stop = (): void => {
    control.close();
    control.closeAllConnections();
    void autoscaler?.close();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

if (isEntryPoint(import.meta.url)) {
  main().catch((error: unknown) => {
    process.stderr.write(`reliability autoscaler: ${String(error)}\n`);
    process.exit(1);
  });
}
