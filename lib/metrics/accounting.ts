/**
 * Accounting of workload and requests: the only stateful part of metrics. It learns what happened
 * from the lifecycle channel; the autoscaler reporter and the Prometheus registry read from it.
 * Semantics follow protocol §8.1 (and §13.1 for the per-request timestamps), with two fixes that the
 * autoscaler cannot see: records are keyed by an internal id, not by reqnum (§12.12), and the set of
 * received reqnums is bounded while the reported count stays the same.
 */
import type { LifecycleEvent, RequestLifecycle } from '../lifecycle/channel.ts';
import type { RequestRecord } from '../lifecycle/record.ts';

export type { RequestRecord, RequestStatus } from '../lifecycle/record.ts';

/** What one `/worker_status/` interval has accumulated (zeroed after each successful send). */
export interface IntervalCounters {
  served: number;
  received: number;
  cancelled: number;
  errored: number;
  rejected: number;
}

/** How many recent reqnums are remembered to recognise a repeat; older repeats count as new. */
const RECEIVED_WINDOW = 10_000;

/** A unit of reporting: what the next `/worker_status/` says about requests (protocol §8.2). */
export interface AccountingSnapshot {
  readonly interval: Readonly<IntervalCounters>;
  /** Sum of in-flight workloads, sessions included (`cur_load`). */
  readonly currentLoad: number;
  /** In-flight requests and open sessions (`num_requests_working`). */
  readonly working: number;
  readonly workingRequestIdxs: readonly number[];
  /** `num_requests_recieved`. */
  readonly received: number;
  /** Which change this snapshot includes, for `commitReported`. */
  readonly version: number;
  /** Which interval it belongs to: a reset in between makes the commit subtract nothing. */
  readonly intervalEpoch: number;
}

/** Undelivered /delete_requests/ entries kept by default: a 60 s outage at 1,000 requests/s. */
export const DEFAULT_MAX_PENDING_DELETES = 60_000;

export interface AccountingOptions {
  /**
   * Undelivered /delete_requests/ entries kept while the autoscaler is unreachable; older ones are
   * dropped and counted in `droppedDeletes`. @default DEFAULT_MAX_PENDING_DELETES
   */
  readonly maxPendingDeletes?: number;
}

/**
 * Listens to the lifecycle channel and owns everything the autoscaler is told about requests. The
 * reporter reads it through `snapshot()`, settles it with `commitReported()`, and takes the finished
 * records with `takeDeletes()`.
 */
export class Accounting {
  readonly #interval: IntervalCounters = emptyCounters();
  readonly #totals: IntervalCounters = emptyCounters();
  /** Non-session requests and open sessions, from admission to end, in insertion order (§5). */
  readonly #working = new Map<number, RequestRecord>();
  #queuedWorkload = 0;
  /** Finished and rejected records waiting for /delete_requests/. */
  #toDelete: RequestRecord[] = [];
  #droppedDeletes = 0;
  readonly #maxPendingDeletes: number;
  /** Bumped by every change the autoscaler should hear of; compared with the last one reported. */
  #version = 0;
  #reportedVersion = 0;
  #intervalEpoch = 0;
  #receivedCount = 0;
  readonly #recentReqnums = new Set<number>();
  readonly #reqnumRing: (number | undefined)[] = new Array<number | undefined>(RECEIVED_WINDOW);
  #ringNext = 0;

  constructor(lifecycle: RequestLifecycle, options: AccountingOptions = {}) {
    this.#maxPendingDeletes = options.maxPendingDeletes ?? DEFAULT_MAX_PENDING_DELETES;
    lifecycle.subscribe((event) => this.#apply(event));
  }

  /** Workload of admitted requests not yet ended, sessions excluded: admission's numerator. */
  get queuedWorkload(): number {
    return this.#queuedWorkload;
  }

  /** In-flight requests and open sessions. */
  get workingCount(): number {
    return this.#working.size;
  }

  /** Sum of in-flight workloads, sessions included (`cur_load`). */
  currentLoad(): number {
    let total = 0;
    for (const record of this.#working.values()) total += record.workload;
    return total;
  }

  /** The interval's counters since start-up, never reset: for Prometheus-style readers and tests. */
  get totals(): Readonly<IntervalCounters> {
    return { ...this.#totals };
  }

  /** Cumulative count of distinct reqnums received or rejected (`num_requests_recieved`). */
  get receivedCount(): number {
    return this.#receivedCount;
  }

  /** Something changed that the autoscaler has not been told of yet. */
  get hasUnreported(): boolean {
    return this.#version !== this.#reportedVersion;
  }

  get pendingDeletes(): number {
    return this.#toDelete.length;
  }

  /** Entries dropped undelivered because the autoscaler stayed unreachable past the pending cap. */
  get droppedDeletes(): number {
    return this.#droppedDeletes;
  }

  snapshot(): AccountingSnapshot {
    const workingRequestIdxs: number[] = [];
    for (const record of this.#working.values()) {
      if (record.requestIdx !== null) workingRequestIdxs.push(record.requestIdx);
    }
    return {
      interval: { ...this.#interval },
      currentLoad: this.currentLoad(),
      working: this.#working.size,
      workingRequestIdxs,
      received: this.#receivedCount,
      version: this.#version,
      intervalEpoch: this.#intervalEpoch,
    };
  }

  /**
   * The snapshot reached the autoscaler: its counters leave the interval. Subtracted rather than
   * zeroed, so work finished while it was being sent still counts in the next one.
   */
  commitReported(snapshot: AccountingSnapshot): void {
    if (snapshot.intervalEpoch === this.#intervalEpoch) {
      for (const key of COUNTER_KEYS) this.#interval[key] -= snapshot.interval[key];
    }
    if (snapshot.version > this.#reportedVersion) this.#reportedVersion = snapshot.version;
  }

  /** Zeroes the interval counters: the reference does it when the model errors (§8.1). */
  resetInterval(): void {
    for (const key of COUNTER_KEYS) this.#interval[key] = 0;
    this.#intervalEpoch += 1;
  }

  /** The records waiting for /delete_requests/, oldest first, left where they are. */
  peekDeletes(): readonly RequestRecord[] {
    return [...this.#toDelete];
  }

  /** Removes and returns the records waiting for /delete_requests/, oldest first. */
  takeDeletes(): RequestRecord[] {
    const taken = this.#toDelete;
    this.#toDelete = [];
    return taken;
  }

  /**
   * Puts back records whose /delete_requests/ was not delivered, ahead of newer ones, keeping at
   * most the pending cap so a dead autoscaler cannot grow memory. Returns how many were dropped.
   */
  returnDeletes(records: readonly RequestRecord[]): number {
    this.#toDelete = [...records, ...this.#toDelete];
    const excess = this.#toDelete.length - this.#maxPendingDeletes;
    if (excess <= 0) return 0;
    this.#toDelete.splice(0, excess);
    this.#droppedDeletes += excess;
    return excess;
  }

  #apply(event: LifecycleEvent): void {
    switch (event.kind) {
      case 'rejected':
        return this.#rejected(event.record);
      case 'admitted':
        return this.#admitted(event.record);
      case 'succeeded':
        return this.#count(event.record, 'served');
      case 'errored':
        return this.#count(event.record, 'errored');
      case 'cancelled':
        // The reference forgets this one (§12.16); a cancellation changes cur_load, so report it.
        return this.#count(event.record, 'cancelled');
      case 'ended':
        return this.#ended(event.record);
      default:
        return;
    }
  }

  #count(record: RequestRecord, counter: keyof IntervalCounters): void {
    this.#interval[counter] += record.workload;
    this.#totals[counter] += record.workload;
    this.#version += 1;
  }

  #rejected(record: RequestRecord): void {
    this.#count(record, 'rejected');
    if (!record.inSession) {
      this.#noteReqnum(record.reqnum);
      this.#toDelete.push(record);
    }
  }

  #admitted(record: RequestRecord): void {
    this.#count(record, 'received');
    if (record.inSession) return;
    this.#noteReqnum(record.reqnum);
    this.#working.set(record.id, record);
    if (!record.isSession) this.#queuedWorkload += record.workload;
  }

  #ended(record: RequestRecord): void {
    if (record.inSession) return;
    if (this.#working.delete(record.id) && !record.isSession) {
      this.#queuedWorkload -= record.workload;
    }
    this.#toDelete.push(record);
  }

  #noteReqnum(reqnum: number | null): void {
    if (reqnum === null || this.#recentReqnums.has(reqnum)) return;
    this.#receivedCount += 1;
    this.#recentReqnums.add(reqnum);
    // A ring of the last RECEIVED_WINDOW reqnums decides which to forget, in O(1).
    const evicted = this.#reqnumRing[this.#ringNext];
    if (evicted !== undefined) this.#recentReqnums.delete(evicted);
    this.#reqnumRing[this.#ringNext] = reqnum;
    this.#ringNext = (this.#ringNext + 1) % RECEIVED_WINDOW;
  }
}

const COUNTER_KEYS = ['served', 'received', 'cancelled', 'errored', 'rejected'] as const;

function emptyCounters(): IntervalCounters {
  return { served: 0, received: 0, cancelled: 0, errored: 0, rejected: 0 };
}
