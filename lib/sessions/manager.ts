/**
 * The worker's sessions (protocol §9): opening, binding requests, the close procedure shared by
 * /session/end, the expiry GC and shutdown, and the on_close callbacks. HTTP lives in
 * `lib/server/session-routes.ts`; this is everything a session is besides its routes.
 *
 * Fixes of the reference's weaknesses (§12.13, §12.18): ids come from the CSPRNG, the expiry
 * extension is bounded (`SessionStore.bind`), and the on_close callback runs after the close has
 * answered, bounded by its own timeout.
 */
import { randomBytes } from 'node:crypto';
import { sessionClosed, WorkerError } from '../errors.ts';
import type { RequestLifecycle } from '../lifecycle/channel.ts';
import type { RejectionReason, RequestRecord } from '../lifecycle/record.ts';
import type { Logger } from '../log.ts';
import { runCloseCallback, type ModelServerTarget } from './close-callback.ts';
import { SessionStore, type Session, type SessionRequest } from './store.ts';

/** `lifetime` when create does not give one, in seconds (§9). */
export const DEFAULT_SESSION_LIFETIME = 60;
/** How often expired sessions are closed (§1.1). */
export const DEFAULT_SESSION_GC_INTERVAL_MS = 5_000;
/** Reference-length ids (§11.40), but from the CSPRNG: 13 × log2(62) ≈ 77 bits. */
const SESSION_ID_LENGTH = 13;
const ID_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

export type SessionCloseReason = 'ended' | 'expired' | 'shutdown';

/** What a new session is opened with: create's `payload`, validated by the route. */
export interface SessionOptions {
  readonly authData: Readonly<Record<string, unknown>>;
  readonly lifetime?: number | undefined;
  readonly onCloseRoute?: string | null | undefined;
  readonly onClosePayload?: unknown;
}

export interface SessionManagerOptions {
  readonly lifecycle: RequestLifecycle;
  readonly logger: Logger;
  /** Where relative on_close routes are sent. */
  readonly model: ModelServerTarget;
  /** Open sessions allowed at once; null for no cap, negative for none at all. */
  readonly maxSessions: number | null;
  readonly now?: () => number;
}

export class SessionManager {
  readonly #store: SessionStore;
  readonly #lifecycle: RequestLifecycle;
  readonly #log: Logger;
  readonly #model: ModelServerTarget;
  readonly #maxSessions: number | null;
  readonly #now: () => number;
  /** Close callbacks still running, so a shutdown can wait for them. */
  readonly #callbacks = new Set<Promise<void>>();
  #gcTimer: NodeJS.Timeout | undefined;

  constructor(options: SessionManagerOptions) {
    this.#now = options.now ?? Date.now;
    this.#store = new SessionStore({ now: this.#now });
    this.#lifecycle = options.lifecycle;
    this.#log = options.logger.child({ component: 'sessions' });
    this.#model = options.model;
    this.#maxSessions = options.maxSessions;
  }

  get size(): number {
    return this.#store.size;
  }

  get(sessionId: string): Session | undefined {
    return this.#store.get(sessionId);
  }

  has(sessionId: string): boolean {
    return this.#store.get(sessionId) !== undefined;
  }

  values(): IterableIterator<Session> {
    return this.#store.values();
  }

  /** Whether the id belonged to a session that closed recently (ended, expired or shut down). */
  wasClosed(sessionId: string): boolean {
    return this.#store.wasClosed(sessionId);
  }

  /** Attaches an admitted request; undefined when the session closed meanwhile. */
  bind(sessionId: string, request: SessionRequest): Session | undefined {
    return this.#store.bind(sessionId, request);
  }

  unbind(session: Session, request: SessionRequest): void {
    this.#store.unbind(session, request);
  }

  /** The cap check of /session/create: 429, with Retry-After when the soonest session expires. */
  capRefusal(): { failure: WorkerError; reason: RejectionReason } | undefined {
    const max = this.#maxSessions;
    if (max === null || this.#store.size < max) return undefined;
    let soonest = Infinity;
    for (const session of this.#store.values()) soonest = Math.min(soonest, session.expiration);
    const wait = Number.isFinite(soonest) ? soonest - this.#now() / 1000 : DEFAULT_SESSION_LIFETIME;
    const failure = new WorkerError({
      status: 429,
      code: 'TSW_ERR_SESSION_LIMIT',
      message: max > 0 ? `session limit reached (${max} open)` : 'this worker accepts no sessions',
      headers: { 'retry-after': String(Math.max(1, Math.ceil(wait))) },
    });
    return { failure, reason: 'session-cap' };
  }

  /** Opens a session for an accepted create: its record is in flight until the session closes. */
  open(record: RequestRecord, options: SessionOptions): Session {
    const nowSeconds = this.#now() / 1000;
    const lifetime = options.lifetime ?? DEFAULT_SESSION_LIFETIME;
    const onCloseRoute = options.onCloseRoute ?? null;
    const session: Session = {
      sessionId: this.#newId(),
      lifetime,
      expiration: nowSeconds + lifetime,
      createdAt: nowSeconds,
      authData: options.authData,
      onCloseRoute,
      onClosePayload: onCloseRoute === null ? null : (options.onClosePayload ?? null),
      requestIdx: record.requestIdx,
      sessionReqnum: 0,
      requests: new Set(),
      record,
    };
    this.#store.add(session);
    this.#lifecycle.admitted(record);
    // A session's work starts when it is created.
    this.#lifecycle.workStarted(record, record.enteredQueueAt);
    this.#log.info(
      { sessionId: session.sessionId, lifetime, workload: record.workload },
      'session created',
    );
    return session;
  }

  /**
   * The close procedure (§9): remove the session, abort its in-flight requests (they count as
   * cancelled, through the pipeline's normal path), record the session as served, and start the
   * on_close callback without waiting for it. Returns the session, or undefined when it was
   * already closed.
   */
  close(sessionId: string, reason: SessionCloseReason): Session | undefined {
    const session = this.#store.remove(sessionId);
    if (session === undefined) return undefined;
    const requests = [...session.requests];
    const closed = sessionClosed(sessionId);
    for (const request of requests) request.abort(closed);
    this.#lifecycle.succeeded(session.record);
    this.#lifecycle.ended(session.record);
    this.#log.info({ sessionId, reason, abortedRequests: requests.length }, 'session closed');
    if (session.onCloseRoute !== null) {
      const callback = runCloseCallback(this.#model, this.#log, session, session.onCloseRoute);
      this.#callbacks.add(callback);
      void callback.finally(() => this.#callbacks.delete(callback));
    }
    return session;
  }

  /** Closes every open session (at shutdown); returns how many there were. */
  closeAll(reason: SessionCloseReason): number {
    const ids = [...this.#store.values()].map((session) => session.sessionId);
    for (const id of ids) this.close(id, reason);
    return ids.length;
  }

  /** Resolves when every on_close callback started so far has finished (each is bounded by 10 s). */
  async settleCallbacks(): Promise<void> {
    await Promise.allSettled([...this.#callbacks]);
  }

  /**
   * Closes sessions whose expiration has passed. A session with requests still running waits for
   * them: its expiry is about idleness, and a long stream must not be cut because of it.
   */
  sweepExpired(): number {
    const nowSeconds = this.#now() / 1000;
    const expired = [...this.#store.values()].filter(
      (session) => session.expiration <= nowSeconds && session.requests.size === 0,
    );
    for (const session of expired) this.close(session.sessionId, 'expired');
    return expired.length;
  }

  /** Runs the expiry sweep every `intervalMs` until `stopGc`. */
  startGc(intervalMs: number = DEFAULT_SESSION_GC_INTERVAL_MS): void {
    if (this.#gcTimer !== undefined) return;
    this.#gcTimer = setInterval(() => {
      try {
        this.sweepExpired();
      } catch (error) {
        // The sweep must survive anything one session does; the next tick tries again.
        this.#log.error({ err: error }, 'session GC sweep failed');
      }
    }, intervalMs);
    this.#gcTimer.unref();
  }

  stopGc(): void {
    clearInterval(this.#gcTimer);
    this.#gcTimer = undefined;
  }

  /** 13 characters of [A-Za-z0-9] from the CSPRNG, without modulo bias (bytes ≥ 248 are skipped). */
  #newId(): string {
    for (;;) {
      let id = '';
      while (id.length < SESSION_ID_LENGTH) {
        for (const byte of randomBytes(SESSION_ID_LENGTH * 2)) {
          if (byte >= 248) continue;
          id += ID_ALPHABET[byte % 62];
          if (id.length === SESSION_ID_LENGTH) break;
        }
      }
      if (!this.has(id) && !this.wasClosed(id)) return id;
    }
  }
}
