/**
 * A request's record and the steps of its life, as the pipeline and the session routes report
 * them. This folder sits below both the pipeline and metrics: the pipeline reports through
 * `RequestLifecycle` without knowing who listens, and `Accounting` (in `lib/metrics/`) implements it.
 */

export type RequestStatus = 'Created' | 'Started' | 'Success' | 'Error' | 'Cancelled' | 'Rejected';

export interface RequestRecord {
  /** Unique within the process; reqnums from clients may repeat. */
  readonly id: number;
  readonly route: string;
  readonly requestIdx: number | null;
  readonly reqnum: number | null;
  readonly workload: number;
  /** A request inside a session: counts workload, but never enters the in-flight map (§8.1). */
  readonly inSession: boolean;
  /** The session-level record made by /session/create. */
  readonly isSession: boolean;
  status: RequestStatus;
  success: boolean;
  errorMessage: string | undefined;
  /** Epoch seconds. */
  readonly enteredQueueAt: number;
  workStartedAt: number | null;
  workCompletedAt: number | null;
}

/** What a request is created from. */
export interface NewRequest {
  route: string;
  requestIdx: number | null;
  reqnum: number | null;
  workload: number;
  inSession?: boolean;
  isSession?: boolean;
}

export type RejectionReason = 'unauthorized' | 'overloaded' | 'session-cap';

/** The steps of a request's life, in the order they happen; each call is synchronous. */
export interface RequestLifecycle {
  /** Workload of admitted requests not yet ended, sessions excluded: admission's numerator. */
  readonly queuedWorkload: number;
  create(fields: NewRequest): RequestRecord;
  rejected(record: RequestRecord, reason: RejectionReason): void;
  /** Admitted: counted as in flight from here until `ended`. */
  started(record: RequestRecord): void;
  workStarted(record: RequestRecord, at?: number): void;
  succeeded(record: RequestRecord): void;
  errored(record: RequestRecord, message: string): void;
  cancelled(record: RequestRecord): void;
  ended(record: RequestRecord): void;
}
