/**
 * The request-lifecycle channel: one typed, synchronous stream of what happens to each request.
 * The pipeline and the session manager publish; `Accounting` subscribes first, then the request
 * log and Prometheus, each seeing every event before the publisher goes on.
 *
 * An object per worker rather than `node:diagnostics_channel`: its channels are global by name,
 * and tests and embedders run several workers in one process.
 */
import type { NewRequest, RejectionReason, RequestRecord, RequestSummary } from './record.ts';

export type LifecycleEvent =
  | { readonly kind: 'created'; readonly record: RequestRecord }
  | { readonly kind: 'rejected'; readonly record: RequestRecord; readonly reason: RejectionReason }
  | { readonly kind: 'admitted'; readonly record: RequestRecord }
  | { readonly kind: 'work-started'; readonly record: RequestRecord }
  | { readonly kind: 'succeeded'; readonly record: RequestRecord }
  | { readonly kind: 'errored'; readonly record: RequestRecord }
  | { readonly kind: 'cancelled'; readonly record: RequestRecord }
  | { readonly kind: 'ended'; readonly record: RequestRecord }
  /** Once per HTTP request to a handler route, after everything else: what the client saw. */
  | { readonly kind: 'finished'; readonly summary: RequestSummary };

/** An event about a record: every kind but `finished`. */
export type RecordEvent = Exclude<LifecycleEvent, { readonly kind: 'finished' }>;

export type LifecycleListener = (event: LifecycleEvent) => void;

/**
 * Publishes each step of a request's life, in the order they happen, and keeps the record's own
 * fields (status, timestamps) in step with them. Listeners hold every other piece of state.
 */
export class RequestLifecycle {
  #listeners: readonly LifecycleListener[] = [];
  #nextId = 1;
  readonly #now: () => number;

  constructor(options: { now?: () => number } = {}) {
    this.#now = options.now ?? Date.now;
  }

  /** Adds a listener; returns the function that removes it. */
  subscribe(listener: LifecycleListener): () => void {
    this.#listeners = [...this.#listeners, listener];
    return () => {
      this.#listeners = this.#listeners.filter((existing) => existing !== listener);
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
    this.#publish({ kind: 'created', record });
    return record;
  }

  /** Refused before admission: counted as rejected workload, never in flight. */
  rejected(record: RequestRecord, reason: RejectionReason): void {
    record.status = 'Rejected';
    record.success = false;
    this.#publish({ kind: 'rejected', record, reason });
  }

  /** Admitted: in flight from here until `ended`. */
  admitted(record: RequestRecord): void {
    record.status = 'Started';
    this.#publish({ kind: 'admitted', record });
  }

  /** The request left the queue and its work began; `at` (epoch seconds) defaults to now. */
  workStarted(record: RequestRecord, at = this.#epochSeconds()): void {
    record.workStartedAt = at;
    this.#publish({ kind: 'work-started', record });
  }

  succeeded(record: RequestRecord): void {
    record.status = 'Success';
    record.success = true;
    record.workCompletedAt = this.#epochSeconds();
    this.#publish({ kind: 'succeeded', record });
  }

  errored(record: RequestRecord, message: string): void {
    record.status = 'Error';
    record.success = false;
    record.errorMessage = message;
    record.workCompletedAt = this.#epochSeconds();
    this.#publish({ kind: 'errored', record });
  }

  /** The client went away. Reported as status "Cancelled" with success true, as the reference does. */
  cancelled(record: RequestRecord): void {
    record.status = 'Cancelled';
    record.success = true;
    this.#publish({ kind: 'cancelled', record });
  }

  /** An admitted request is over, whatever its outcome. */
  ended(record: RequestRecord): void {
    this.#publish({ kind: 'ended', record });
  }

  finished(summary: RequestSummary): void {
    this.#publish({ kind: 'finished', summary });
  }

  #epochSeconds(): number {
    return this.#now() / 1000;
  }

  #publish(event: LifecycleEvent): void {
    // A listener added or removed meanwhile takes effect from the next event: the array is replaced.
    for (const listener of this.#listeners) listener(event);
  }
}
