import { statfsSync } from 'node:fs';
import type { Logger } from '../log.ts';
import type { ReadinessState } from '../readiness/state.ts';
import type { Accounting, AccountingSnapshot, RequestRecord } from './accounting.ts';
import { AutoscalerClient } from './autoscaler-client.ts';

/** The reference's server version, reported as `version` (protocol §1.1). */
export const PROTOCOL_VERSION = '1.1.0';

/** `/worker_status/` body: the 17 fields of protocol §8.2, in the order the reference sends them. */
export interface WorkerStatus {
  id: number;
  mtoken: string | null;
  version: string;
  loadtime: number;
  cur_load: number;
  rej_load: number;
  new_load: number;
  error_msg: string;
  max_perf: number;
  cur_perf: number;
  cur_capacity: number;
  max_capacity: number;
  num_requests_working: number;
  /** Misspelled on the wire, as the autoscaler expects. */
  num_requests_recieved: number;
  additional_disk_usage: number;
  working_request_idxs: number[];
  url: string;
}

/** A status with no load, no capacity and no error, in the wire's field order: fill in the rest. */
export function emptyWorkerStatus(
  identity: Pick<WorkerStatus, 'id' | 'mtoken' | 'url'>,
): WorkerStatus {
  return {
    id: identity.id,
    mtoken: identity.mtoken,
    version: PROTOCOL_VERSION,
    loadtime: 0,
    cur_load: 0,
    rej_load: 0,
    new_load: 0,
    error_msg: '',
    max_perf: 0,
    cur_perf: 0,
    cur_capacity: 0,
    max_capacity: 0,
    num_requests_working: 0,
    num_requests_recieved: 0,
    additional_disk_usage: 0,
    working_request_idxs: [],
    url: identity.url,
  };
}

/** One entry of the newest `/delete_requests/` format (protocol §13.1). */
export interface DeleteRequestEntry {
  request_idx: number;
  success: boolean;
  status: string;
  entered_queue_at: number;
  work_started_at: number | null;
  work_completed_at: number | null;
}

export interface ReporterOptions {
  readonly addrs: readonly string[];
  readonly workerId: number;
  readonly mtoken: string | undefined;
  readonly url: () => string;
  readonly accounting: Accounting;
  readonly readiness: ReadinessState;
  readonly logger: Logger;
  readonly tickMs: number;
  readonly idleMs: number;
  readonly timeoutMs: number;
  readonly retryDelayMs: number;
  readonly now?: () => number;
  /** Bytes used on the root filesystem; injectable for tests. */
  readonly diskUsedBytes?: () => number;
}

function rootDiskUsedBytes(): number {
  try {
    const stats = statfsSync('/');
    return (stats.blocks - stats.bfree) * stats.bsize;
  } catch {
    return 0;
  }
}

/**
 * Keeps the autoscaler told: `/worker_status/` every tick when something changed and at least every
 * idle period, at once on readiness changes; `/delete_requests/` for finished requests. Sends run on
 * their own timer and never block requests; a slow autoscaler delays only the reporter itself.
 */
export class Reporter {
  readonly #options: ReporterOptions;
  readonly #client: AutoscalerClient;
  readonly #now: () => number;
  readonly #diskUsedBytes: () => number;
  readonly #log: Logger;
  #timer: NodeJS.Timeout | undefined;
  #lastSentAt = 0;
  #diskBaseline: number;
  #statusInFlight: Promise<void> | undefined;
  #deleteInFlight: Promise<void> | undefined;
  #immediate = false;
  #stopped = false;
  #unsubscribe: (() => void) | undefined;

  constructor(options: ReporterOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#diskUsedBytes = options.diskUsedBytes ?? rootDiskUsedBytes;
    this.#diskBaseline = this.#diskUsedBytes();
    this.#log = options.logger.child({ component: 'reporter' });
    this.#client = new AutoscalerClient({
      addrs: options.addrs,
      timeoutMs: options.timeoutMs,
      retryDelayMs: options.retryDelayMs,
      logger: this.#log,
    });
  }

  start(): void {
    if (this.#timer !== undefined || this.#stopped) return;
    this.#unsubscribe = this.#options.readiness.onChange(() => {
      // Loaded, errored and draining reach the autoscaler at once, not up to 10 s later (§12.16).
      this.requestReport();
    });
    this.#timer = setInterval(() => this.#tick(), this.#options.tickMs);
    this.#timer.unref();
  }

  /** Sends a /worker_status/ now (or right after the one in flight). */
  requestReport(): void {
    this.#immediate = true;
    if (this.#statusInFlight === undefined && !this.#stopped)
      this.#statusInFlight = this.#sendStatus();
  }

  /** Sends the final /worker_status/ and every pending /delete_requests/ entry; resolves when done. */
  async flush(): Promise<void> {
    await this.#statusInFlight;
    await this.#deleteInFlight;
    this.#statusInFlight = this.#sendStatus();
    this.#deleteInFlight = this.#sendDeletes();
    await Promise.all([this.#statusInFlight, this.#deleteInFlight]);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    this.#unsubscribe?.();
    await this.#client.close();
    await Promise.allSettled([this.#statusInFlight, this.#deleteInFlight]);
  }

  /** The body of the next report, without sending it. */
  statusBody(
    diskDeltaGb = 0,
    snapshot: AccountingSnapshot = this.#options.accounting.snapshot(),
  ): WorkerStatus {
    const { readiness } = this.#options;
    const interval = snapshot.interval;
    return {
      id: this.#options.workerId,
      mtoken: this.#options.mtoken ?? null,
      version: PROTOCOL_VERSION,
      loadtime: readiness.loadtime,
      cur_load: snapshot.currentLoad,
      rej_load: interval.rejected,
      new_load: Math.max(interval.received - interval.cancelled, 0),
      error_msg: readiness.errorMessage,
      max_perf: readiness.maxPerf,
      cur_perf: interval.served,
      cur_capacity: 0,
      max_capacity: 0,
      num_requests_working: snapshot.working,
      num_requests_recieved: snapshot.received,
      additional_disk_usage: diskDeltaGb,
      working_request_idxs: [...snapshot.workingRequestIdxs],
      url: this.#options.url(),
    };
  }

  #tick(): void {
    if (this.#stopped) return;
    const elapsed = this.#now() - this.#lastSentAt;
    if (
      this.#statusInFlight === undefined &&
      (this.#options.accounting.hasUnreported || this.#immediate || elapsed >= this.#options.idleMs)
    ) {
      this.#statusInFlight = this.#sendStatus();
    }
    if (this.#deleteInFlight === undefined && this.#options.accounting.pendingDeletes > 0) {
      this.#deleteInFlight = this.#sendDeletes();
    }
  }

  async #sendStatus(): Promise<void> {
    try {
      do {
        this.#immediate = false;
        const snapshot = this.#options.accounting.snapshot();
        const diskNow = this.#diskUsedBytes();
        const body = this.statusBody((diskNow - this.#diskBaseline) / 2 ** 30, snapshot);
        const delivered = await this.#client.post('/worker_status/', body);
        if (delivered) {
          this.#lastSentAt = this.#now();
          this.#options.accounting.commitReported(snapshot);
          // The reference loses the disk delta on a failed send (§8.2); only a delivered one moves the baseline.
          this.#diskBaseline = diskNow;
          this.#log.debug({ report: { ...body, mtoken: undefined } }, 'worker status sent');
        } else {
          // Nothing committed: the next tick sends the changes again.
          this.#lastSentAt = this.#now();
          this.#log.warn('worker status not delivered to any REPORT_ADDR');
          break;
        }
      } while (this.#immediate && !this.#stopped);
    } finally {
      this.#statusInFlight = undefined;
    }
  }

  async #sendDeletes(): Promise<void> {
    try {
      const accounting = this.#options.accounting;
      const records = accounting.takeDeletes();
      const entries = records.filter((r) => r.requestIdx !== null).map(toDeleteEntry);
      if (entries.length === 0) return;
      const delivered = await this.#client.post(
        '/delete_requests/',
        {
          worker_id: this.#options.workerId,
          mtoken: this.#options.mtoken ?? null,
          requests: entries,
        },
        { skipCloudApi: true },
      );
      if (!delivered) {
        // Kept for the next tick, oldest first, bounded so a dead autoscaler cannot grow memory.
        const dropped = accounting.returnDeletes(records);
        if (dropped > 0) this.#log.warn({ dropped }, 'dropped undelivered delete_requests entries');
      }
    } finally {
      this.#deleteInFlight = undefined;
    }
  }
}

function toDeleteEntry(record: RequestRecord): DeleteRequestEntry {
  return {
    request_idx: record.requestIdx as number,
    success: record.success,
    status: record.status,
    entered_queue_at: record.enteredQueueAt,
    work_started_at: record.workStartedAt,
    work_completed_at: record.workCompletedAt,
  };
}
