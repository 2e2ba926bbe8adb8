/**
 * The accept stages, shared by every handler route and by /session/create, in the protocol's order
 * (§1.3): drain ▶ (bounded read, by the caller) ▶ parse ▶ validate ▶ auth ▶ workload ▶ session ▶
 * admit. The signature is checked before the workload is measured: the port is public, and an
 * unsigned request must never reach the tokenizer, so its rejection counts no workload.
 */
import type { SignatureVerifier } from '../auth/index.ts';
import { draining, invalidSession, type WorkerError } from '../errors.ts';
import type { ResolvedHandler } from '../handler.ts';
import type { RequestLifecycle } from '../lifecycle/channel.ts';
import type { RejectionReason, RequestRecord } from '../lifecycle/record.ts';
import type { ReadinessView, CountedRefusal } from './admit.ts';
import { signatureProblem } from './auth.ts';
import { parseJson } from './parse.ts';
import { refusal } from './rejection.ts';
import { validateEnvelope, type Envelope, type EnvelopeRules } from './validate.ts';

/** What the accept stages read of the worker. */
export interface AcceptDeps {
  readonly lifecycle: RequestLifecycle;
  readonly readiness: ReadinessView;
  /** Undefined in UNSECURED mode. */
  readonly verifier: SignatureVerifier | undefined;
  readonly envelopeRules: EnvelopeRules;
  /** The open sessions: a request naming an unknown one gets 410. */
  readonly sessions: { has(sessionId: string): boolean };
}

/** What differs between the routes that share the stages. */
export interface AcceptRoute {
  readonly route: string;
  readonly payload: ResolvedHandler['payload'];
  /** The record is a session's own (/session/create), not a request's. */
  readonly opensSession: boolean;
  /** The workload of a signed request; a promise only when it is counted off the main thread. */
  readonly workload: (envelope: Envelope) => number | Promise<number>;
  /** The capacity check, once the signature is good: returns the refusal, if any. */
  readonly admit: () => CountedRefusal | undefined;
}

export interface Accepted {
  readonly envelope: Envelope;
  readonly record: RequestRecord;
}

/** Filled in as the stages pass, so a refusal's caller still knows what was read and recorded. */
export interface AcceptProgress {
  envelope?: Envelope;
  record?: RequestRecord;
}

/** Refused, not malformed: Prometheus counts it with the other refusals. */
export function refuseWhileDraining(readiness: ReadinessView): void {
  if (readiness.draining) throw refusal(draining());
}

/**
 * Parse to admit, on a body already read. Each refusal throws; one counted as rejected (a bad
 * signature, admission, the session cap) is tagged with `refusal` and published before it is thrown.
 */
export async function acceptBody(
  deps: AcceptDeps,
  route: AcceptRoute,
  rawBody: string,
  progress: AcceptProgress = {},
): Promise<Accepted> {
  const envelope = validateEnvelope(parseJson(rawBody), route, deps.envelopeRules);
  progress.envelope = envelope;
  const forged = signatureProblem(deps.verifier, envelope.authData, rawBody);
  const measured = forged === undefined ? route.workload(envelope) : 0;
  // Awaited only when the workload function returned a promise (a large prompt counted off-thread).
  const workload = typeof measured === 'number' ? measured : await measured;
  const inSession = !route.opensSession && envelope.sessionId !== null;
  const record = deps.lifecycle.create({
    route: route.route,
    requestIdx: asInteger(envelope.authData['request_idx']),
    reqnum: asInteger(envelope.authData['reqnum']),
    workload,
    inSession,
    isSession: route.opensSession,
  });
  progress.record = record;
  // 410 comes before 401, as in the reference; but only an admitted request extends the session (§12.13).
  if (inSession && !deps.sessions.has(envelope.sessionId as string)) throw invalidSession();
  if (forged !== undefined) throw reject(deps.lifecycle, record, forged, 'unauthorized');
  const refused = route.admit();
  if (refused !== undefined) throw reject(deps.lifecycle, record, refused.failure, refused.reason);
  return { envelope, record };
}

function reject(
  lifecycle: RequestLifecycle,
  record: RequestRecord,
  failure: WorkerError,
  reason: RejectionReason,
): WorkerError {
  lifecycle.rejected(record, reason);
  return refusal(failure);
}

function asInteger(value: unknown): number | null {
  return typeof value === 'number' && Number.isInteger(value) ? value : null;
}
