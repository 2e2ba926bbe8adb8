/**
 * Pure accounting of workload and requests: the only stateful part of metrics. The autoscaler
 * reporter and the Prometheus registry read from it; the pipeline tells it what happened.
 * Semantics follow protocol §8.1 (and §13.1 for the per-request timestamps), with two fixes that the
 * autoscaler cannot see: records are keyed by an internal id, not by reqnum (§12.12), and the set of
 * received reqnums is bounded while the reported count stays the same.
 */
import type {
  RejectionReason,
  RequestLifecycle,
  RequestRecord,
  NewRequest,
} from '../lifecycle/record.ts';

export type { RequestRecord, RequestStatus } from '../lifecycle/record.ts';

export type AccountingEvent =
  | { kind: 'created'; record: RequestRecord }
  | {
      kind: 'rejected';
      record: RequestRecord;
      reason: RejectionReason;
    }
  | { kind: 'started'; record: RequestRecord }
  | { kind: 'work-started'; record: RequestRecord }
  | { kind: 'succeeded'; record: RequestRecord }
  | { kind: 'errored'; record: RequestRecord }
  | { kind: 'cancelled'; record: RequestRecord }
  | { kind: 'ended'; record: RequestRecord };

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

export class Accounting implements RequestLifecycle {
  readonly interval: IntervalCounters = {
    served: 0,
    received: 0,
    cancelled: 0,
    errored: 0,
    rejected: 0,
  };
  /** The same counters since start-up, never reset: for Prometheus-style readers and tests. */
  readonly totals: IntervalCounters = {
    served: 0,
    received: 0,
    cancelled: 0,
    errored: 0,
    rejected: 0,
  };
  /** Non-session requests and open sessions, from start to end, in insertion order (§5). */
  readonly inFlight = new Map<number, RequestRecord>();
  /** Workload of in-flight entries that are not session-level records: the admission numerator. */
  queuedWorkload = 0;
  /** Finished and rejected records waiting for /delete_requests/. */
  readonly toDelete: RequestRecord[] = [];
  /** Entries dropped undelivered because the autoscaler stayed unreachable past the pending cap. */
  droppedDeletes = 0;
  /** A report should go out at the next tick. */
  updatePending = false;

  #nextId = 1;
  #receivedCount = 0;
  readonly #recentReqnums = new Set<number>();
  readonly #reqnumRing: (number | undefined)[] = new Array<number | undefined>(RECEIVED_WINDOW);
  #ringNext = 0;
  readonly #listeners: ((event: AccountingEvent) => void)[] = [];
  readonly #now: () => number;

  constructor(options: { now?: () => number } = {}) {
    this.#now = options.now ?? Date.now;
  }

  /** Cumulative count of distinct reqnums received or rejected (`num_requests_recieved`). */
  get receivedCount(): number {
    return this.#receivedCount;
  }

  subscribe(listener: (event: AccountingEvent) => void): () => void {
    this.#listeners.push(listener);
    return () => {
      const index = this.#listeners.indexOf(listener);
      if (index >= 0) this.#listeners.splice(index, 1);
    };
  }

  create(fields: NewRequest): RequestRecord {
    const record: RequestRecord = {
      id: this.#nextId++,
      route: fields.route,
      requestIdx: fields.requestIdx,
      reqnum: fields.reqnum,
      workload: fields.workload,
      inSession: fields.inSession ?? false,
      isSession: fields.isSession ?? false,
      status: 'Created',
      success: false,
      errorMessage: undefined,
      enteredQueueAt: this.#epochSeconds(),
      workStartedAt: null,
      workCompletedAt: null,
    };
    this.#emit({ kind: 'created', record });
    return record;
  }

  rejected(record: RequestRecord, reason: RejectionReason): void {
    this.interval.rejected += record.workload;
    this.totals.rejected += record.workload;
    record.status = 'Rejected';
    record.success = false;
    if (!record.inSession) {
      this.#noteReqnum(record.reqnum);
      this.toDelete.push(record);
    }
    this.updatePending = true;
    this.#emit({ kind: 'rejected', record, reason });
  }

  started(record: RequestRecord): void {
    record.status = 'Started';
    this.interval.received += record.workload;
    this.totals.received += record.workload;
    if (!record.inSession) {
      this.#noteReqnum(record.reqnum);
      this.inFlight.set(record.id, record);
      if (!record.isSession) this.queuedWorkload += record.workload;
    }
    this.updatePending = true;
    this.#emit({ kind: 'started', record });
  }

  /** The request left the queue and its work began (`work_started_at`). */
  /** `at` (epoch seconds) defaults to now; a session's work starts when it is created. */
  workStarted(record: RequestRecord, at = this.#epochSeconds()): void {
    record.workStartedAt = at;
    this.#emit({ kind: 'work-started', record });
  }

  succeeded(record: RequestRecord): void {
    this.interval.served += record.workload;
    this.totals.served += record.workload;
    record.status = 'Success';
    record.success = true;
    record.workCompletedAt = this.#epochSeconds();
    this.updatePending = true;
    this.#emit({ kind: 'succeeded', record });
  }

  errored(record: RequestRecord, message: string): void {
    this.interval.errored += record.workload;
    this.totals.errored += record.workload;
    record.status = 'Error';
    record.success = false;
    record.errorMessage = message;
    record.workCompletedAt = this.#epochSeconds();
    this.updatePending = true;
    this.#emit({ kind: 'errored', record });
  }

  /** The client went away. Reported as status "Cancelled" with success true, as the reference does. */
  cancelled(record: RequestRecord): void {
    this.interval.cancelled += record.workload;
    this.totals.cancelled += record.workload;
    record.status = 'Cancelled';
    record.success = true;
    // The reference forgets this (§12.16); a cancellation changes cur_load, so report it.
    this.updatePending = true;
    this.#emit({ kind: 'cancelled', record });
  }

  ended(record: RequestRecord): void {
    if (!record.inSession) {
      if (this.inFlight.delete(record.id) && !record.isSession) {
        this.queuedWorkload -= record.workload;
      }
      this.toDelete.push(record);
    }
    this.#emit({ kind: 'ended', record });
  }

  /** Sum of in-flight workloads, sessions included (`cur_load`). */
  currentLoad(): number {
    let total = 0;
    for (const record of this.inFlight.values()) total += record.workload;
    return total;
  }

  resetInterval(): void {
    this.interval.served = 0;
    this.interval.received = 0;
    this.interval.cancelled = 0;
    this.interval.errored = 0;
    this.interval.rejected = 0;
  }

  /** Removes and returns the records waiting for /delete_requests/. */
  takeDeletes(): RequestRecord[] {
    return this.toDelete.splice(0, this.toDelete.length);
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

  #epochSeconds(): number {
    return this.#now() / 1000;
  }

  #emit(event: AccountingEvent): void {
    for (const listener of this.#listeners) listener(event);
  }
}
