import type { RequestRecord } from '../lifecycle/record.ts';

/** A request running inside a session; closing the session aborts it. */
export interface SessionRequest {
  readonly record: RequestRecord;
  readonly abort: (reason: unknown) => void;
}

export interface Session {
  readonly sessionId: string;
  readonly lifetime: number;
  /** Epoch seconds. */
  expiration: number;
  readonly createdAt: number;
  readonly authData: Readonly<Record<string, unknown>>;
  readonly onCloseRoute: string | null;
  readonly onClosePayload: unknown;
  readonly requestIdx: number | null;
  sessionReqnum: number;
  readonly requests: Set<SessionRequest>;
  /** The session-level record started at create and ended at close. */
  readonly record: RequestRecord;
}

/** Raised into a session's in-flight requests when the session closes. */
const RECENTLY_CLOSED_LIMIT = 1000;

/**
 * Open sessions by id. The pipeline binds requests to a session; the session routes (and GC)
 * create and close them.
 */
export class SessionStore {
  readonly #sessions = new Map<string, Session>();
  readonly #now: () => number;
  /** Upper bound on how far ahead of now request traffic can push a session's expiry, in lifetimes. */
  readonly #maxExtensionLifetimes: number;
  /** Ids of recently closed sessions, oldest first, so a late end can answer 410 instead of 400. */
  readonly #recentlyClosed = new Set<string>();

  constructor(options: { now?: () => number; maxExtensionLifetimes?: number } = {}) {
    this.#now = options.now ?? Date.now;
    this.#maxExtensionLifetimes = options.maxExtensionLifetimes ?? 10;
  }

  get size(): number {
    return this.#sessions.size;
  }

  get(sessionId: string): Session | undefined {
    return this.#sessions.get(sessionId);
  }

  values(): IterableIterator<Session> {
    return this.#sessions.values();
  }

  add(session: Session): void {
    this.#sessions.set(session.sessionId, session);
  }

  /** Removes the session; returns it if it was still open (the caller then runs the close). */
  remove(sessionId: string): Session | undefined {
    const session = this.#sessions.get(sessionId);
    if (session !== undefined) {
      this.#sessions.delete(sessionId);
      this.#recentlyClosed.add(sessionId);
      if (this.#recentlyClosed.size > RECENTLY_CLOSED_LIMIT) {
        const oldest = this.#recentlyClosed.values().next();
        if (oldest.done !== true) this.#recentlyClosed.delete(oldest.value);
      }
    }
    return session;
  }

  /** Whether the id belonged to a session that closed recently (ended, expired or shut down). */
  wasClosed(sessionId: string): boolean {
    return this.#recentlyClosed.has(sessionId);
  }

  /**
   * Attaches a request: extends the expiry by one lifetime (capped, §12.13) and counts it.
   * Returns undefined for an unknown id (the pipeline answers 410).
   */
  bind(sessionId: string, request: SessionRequest): Session | undefined {
    const session = this.#sessions.get(sessionId);
    if (session === undefined) return undefined;
    const nowSeconds = this.#now() / 1000;
    const cap = nowSeconds + session.lifetime * this.#maxExtensionLifetimes;
    session.expiration = Math.min(session.expiration + session.lifetime, cap);
    session.sessionReqnum += 1;
    session.requests.add(request);
    return session;
  }

  unbind(session: Session, request: SessionRequest): void {
    session.requests.delete(request);
  }
}
