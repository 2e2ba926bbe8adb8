/**
 * A request's record and how its HTTP request ended. This folder sits below both the pipeline and
 * metrics: the pipeline and the session manager publish on the lifecycle channel (`channel.ts`)
 * without knowing who listens; accounting, Prometheus and the request log subscribe.
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

/** How one HTTP request ended, for the request log line and Prometheus. */
export interface RequestSummary {
  /** The client's `x-request-id` when it is a safe one (`REQUEST_ID_PATTERN`), else ours. */
  readonly requestId: string;
  /** The client's `auth_data.request_idx`, `auth_data.reqnum` and `session_id`, when it sent them. */
  readonly requestIdx?: number | undefined;
  readonly reqnum?: number | undefined;
  readonly sessionId?: string | undefined;
  readonly route: string;
  readonly status: number;
  readonly outcome: 'success' | 'error' | 'cancelled' | 'rejected' | 'invalid';
  readonly workload: number;
  /** Milliseconds from arrival to the start of the work (the FIFO wait). */
  readonly queueMs: number | undefined;
  /** Milliseconds from arrival to the response headers. */
  readonly ttfbMs: number | undefined;
  readonly totalMs: number;
  readonly errorCode: string | undefined;
}
