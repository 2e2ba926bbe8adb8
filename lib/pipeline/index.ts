import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import type { SignatureVerifier } from '../auth/index.ts';
import { draining, handlerFailed, invalidSession, WorkerError } from '../errors.ts';
import type { HandlerContext, ResolvedHandler } from '../handler.ts';
import type { Logger } from '../log.ts';
import type { Accounting, RequestRecord } from '../metrics/accounting.ts';
import { callModel, pipeModelResponse, sendWebResponse, toWebResponse } from '../proxy/index.ts';
import type { FifoQueue, FifoTicket } from '../queue/index.ts';
import type { ReadinessState } from '../readiness/state.ts';
import {
  SessionClosedError,
  type Session,
  type SessionRequest,
  type SessionStore,
} from '../sessions/store.ts';
import { admit } from './admit.ts';
import { signatureProblem } from './auth.ts';
import type { InFlightRequests } from './in-flight.ts';
import {
  BodyAbortedError,
  lingerOnRefusedBody,
  parseJson,
  readBody,
  type RefusedBodyLinger,
} from './parse.ts';
import { sendError, sendJson, toWorkerError } from './respond.ts';
import { validateEnvelope, type EnvelopeRules } from './validate.ts';
import { measureWorkload } from './workload.ts';

/**
 * The request pipeline (PyWorker's Backend), in the reference's order (protocol §1.3):
 *
 *   drain check ▶ bounded read ▶ parse ▶ validate ▶ session ▶ auth ▶ workload ▶ admit ▶ queue
 *   ▶ forward ▶ respond
 *
 * (the reference measures the workload before the signature; the statuses are the same).
 *
 * with accounting around it. Every failure becomes one JSON error through `sendError`; nothing a
 * request does can disturb another.
 */

/** How one request ended, for the request log line and Prometheus. */
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

export type RequestObserver = (summary: RequestSummary) => void;

export interface PipelineDeps {
  readonly accounting: Accounting;
  readonly readiness: ReadinessState;
  readonly fifo: FifoQueue;
  readonly dispatcher: Dispatcher;
  /** Path prefix of the model server's base URL (empty for a bare origin). */
  readonly modelBasePath: string;
  /** Undefined in UNSECURED mode. */
  readonly verifier: SignatureVerifier | undefined;
  readonly sessions: SessionStore;
  readonly logger: Logger;
  readonly envelopeRules: EnvelopeRules;
  readonly assumedThroughput: number;
  readonly observers: readonly RequestObserver[];
  /** `MAX_BODY_BYTES`: larger bodies get 413 and are not read. */
  readonly maxBodyBytes: number;
  /** How much of a refused body is drained before closing: see `lingerOnRefusedBody`. */
  readonly refusedBodyLinger: RefusedBodyLinger;
  /** Where a graceful drain finds the requests to wait for, and to abort when time is up. */
  readonly inFlight?: InFlightRequests;
}

/** The reason a request's signal aborts when its client goes away. */
export class ClientGoneError extends Error {
  constructor() {
    super('client disconnected');
    this.name = 'ClientGoneError';
  }
}

const requestIdPrefix = randomBytes(4).toString('hex');
let requestCounter = 0;

/**
 * A client's `x-request-id` that is used as the request's id (log lines, the echoed header, error
 * bodies): 1 to 64 characters of `[A-Za-z0-9._:-]`, so it cannot forge log lines or headers. Any
 * other value is replaced by an id of ours.
 */
export const REQUEST_ID_PATTERN = /^[A-Za-z0-9._:-]{1,64}$/;

/** The incoming `x-request-id` if it is safe to reuse, else a new id. */
function requestIdFor(request: IncomingMessage): string {
  const incoming = request.headers['x-request-id'];
  if (typeof incoming === 'string' && REQUEST_ID_PATTERN.test(incoming)) return incoming;
  return `${requestIdPrefix}-${(++requestCounter).toString(36)}`;
}

/** Session ids are 13 characters; a longer client value is cut before it reaches a log line. */
const MAX_LOGGED_SESSION_ID = 64;

/** The client's own ids, for the request log line. */
interface ClientIds {
  readonly requestIdx?: number | undefined;
  readonly reqnum?: number | undefined;
  readonly sessionId?: string | undefined;
}

export type RouteHandler = (request: IncomingMessage, response: ServerResponse) => Promise<void>;

/** Builds the Node-level handler for one route. Everything that can be decided once is decided here. */
export function createPipeline(deps: PipelineDeps, handler: ResolvedHandler): RouteHandler {
  const modelPath = deps.modelBasePath + handler.modelPath;
  const log = deps.logger.child({ component: 'pipeline', route: handler.route });

  return async function handleRequest(request, response) {
    const arrivedAt = performance.now();
    const requestId = requestIdFor(request);
    const idHeader = { 'x-request-id': requestId };
    const controller = new AbortController();
    deps.inFlight?.add(controller);
    const onClose = () => {
      // Unfinished and not destroyed by us (an upstream failure sets `errored`): the client left.
      if (!response.writableFinished && response.errored === null) {
        controller.abort(new ClientGoneError());
      }
    };
    response.once('close', onClose);

    let record: RequestRecord | undefined;
    let started = false;
    let ticket: FifoTicket | undefined;
    let session: Session | undefined;
    let sessionRequest: SessionRequest | undefined;
    let workStartedAt: number | undefined;
    let headersAt: number | undefined;
    let outcome: RequestSummary['outcome'] = 'invalid';
    let failure: WorkerError | undefined;
    let clientIds: ClientIds = {};

    try {
      if (deps.readiness.draining) {
        // Refused, not malformed: Prometheus counts it with the other refusals.
        outcome = 'rejected';
        throw draining();
      }
      const rawBody = await readBody(request, deps.maxBodyBytes);
      const envelope = validateEnvelope(parseJson(rawBody), handler, deps.envelopeRules);
      const authData = envelope.authData;
      clientIds = {
        requestIdx: asInteger(authData['request_idx']) ?? undefined,
        reqnum: asInteger(authData['reqnum']) ?? undefined,
        sessionId: envelope.sessionId?.slice(0, MAX_LOGGED_SESSION_ID) ?? undefined,
      };
      // The signature is checked before the workload is measured: the port is public, and an
      // unsigned request must never reach the tokenizer. Its rejection counts no workload.
      const forged = signatureProblem(deps.verifier, authData, rawBody);
      const measured = forged === undefined ? measureWorkload(handler, envelope.payload, log) : 0;
      // Awaited only when the workload function returned a promise (a large prompt counted off-thread).
      const workload = typeof measured === 'number' ? measured : await measured;
      record = deps.accounting.create({
        route: handler.route,
        requestIdx: asInteger(authData['request_idx']),
        reqnum: asInteger(authData['reqnum']),
        workload,
        inSession: envelope.sessionId !== null,
      });

      // 410 comes before 401, as in the reference; but only an admitted request extends the session (§12.13).
      if (envelope.sessionId !== null && deps.sessions.get(envelope.sessionId) === undefined) {
        throw invalidSession();
      }

      if (forged !== undefined) {
        outcome = 'rejected';
        deps.accounting.rejected(record, 'unauthorized');
        throw forged;
      }
      try {
        admit(handler, deps.accounting, deps.readiness, deps.assumedThroughput);
      } catch (error) {
        outcome = 'rejected';
        deps.accounting.rejected(record, 'overloaded');
        throw error;
      }

      if (envelope.sessionId !== null) {
        sessionRequest = { record, abort: (reason) => controller.abort(reason) };
        session = deps.sessions.bind(envelope.sessionId, sessionRequest);
      }
      deps.accounting.started(record);
      started = true;
      if (!handler.allowParallel) ticket = await deps.fifo.enter(controller.signal);
      workStartedAt = performance.now();
      deps.accounting.workStarted(record);

      const context: HandlerContext = {
        signal: controller.signal,
        route: handler.route,
        requestId,
      };
      if (handler.predict !== undefined) {
        let result: unknown;
        try {
          result = await handler.predict(envelope.payload, context);
        } catch (error) {
          if (controller.signal.aborted) throw controller.signal.reason;
          throw handlerFailed(handler.route, error);
        }
        headersAt = performance.now();
        if (result instanceof Response) await sendWebResponse(response, result, idHeader);
        else sendJson(response, 200, { result }, idHeader);
      } else {
        const body = JSON.stringify(
          handler.transformRequest === undefined
            ? envelope.payload
            : applyTransform(handler, envelope.payload),
        );
        const upstream = await callModel(deps.dispatcher, {
          path: modelPath,
          body,
          signal: controller.signal,
          headersTimeoutMs: handler.headersTimeoutMs,
          bodyTimeoutMs: handler.bodyTimeoutMs,
        });
        headersAt = performance.now();
        if (handler.transformResponse === undefined) {
          await pipeModelResponse(response, upstream, idHeader, controller.signal);
        } else {
          let transformed: Response;
          try {
            transformed = await handler.transformResponse(toWebResponse(upstream), context);
          } catch (error) {
            upstream.body.destroy();
            throw handlerFailed(handler.route, error);
          }
          await sendWebResponse(response, transformed, idHeader);
        }
      }
      // Model non-2xx answers count as served, as in the reference (§12.8): the autoscaler sees the same.
      deps.accounting.succeeded(record);
      outcome = 'success';
    } catch (error) {
      if (error instanceof BodyAbortedError && !controller.signal.aborted) {
        controller.abort(new ClientGoneError());
      }
      if (controller.signal.aborted) {
        // Abandoned, at any step: the client left, the session closed, or the drain ran out of time.
        outcome = 'cancelled';
        if (record !== undefined && started) deps.accounting.cancelled(record);
        const reason: unknown = controller.signal.reason;
        if (reason instanceof SessionClosedError && !response.headersSent) {
          failure = invalidSession();
        } else if (reason instanceof WorkerError && !response.headersSent) {
          // Aborted by the worker itself (the drain's grace period ran out): say why.
          failure = reason;
        }
      } else {
        failure = toWorkerError(error);
        if (started && record !== undefined) {
          outcome = 'error';
          deps.accounting.errored(record, failure.message);
        }
        if (failure.code === 'TSW_ERR_INTERNAL')
          log.error({ err: error, requestId }, 'request failed');
      }
      if (failure !== undefined && !response.headersSent && !response.destroyed) {
        sendError(response, failure, requestId);
        if (failure.status === 413) lingerOnRefusedBody(request, deps.refusedBodyLinger);
      } else if (!response.writableFinished) {
        // Headers are out: the only honest signal left is a broken stream.
        response.destroy();
      }
    } finally {
      if (ticket !== undefined) deps.fifo.release(ticket);
      if (session !== undefined && sessionRequest !== undefined)
        deps.sessions.unbind(session, sessionRequest);
      if (started && record !== undefined) deps.accounting.ended(record);
      response.off('close', onClose);
      deps.inFlight?.delete(controller);
      const summary: RequestSummary = {
        requestId,
        ...clientIds,
        route: handler.route,
        // A cancelled request's client saw nothing (499), unless the worker answered why (410, 503).
        status: outcome === 'cancelled' && failure === undefined ? 499 : response.statusCode,
        outcome,
        workload: record?.workload ?? 0,
        queueMs: workStartedAt === undefined ? undefined : workStartedAt - arrivedAt,
        ttfbMs: headersAt === undefined ? undefined : headersAt - arrivedAt,
        totalMs: performance.now() - arrivedAt,
        errorCode: failure?.code,
      };
      for (const observe of deps.observers) observe(summary);
    }
  };
}

function applyTransform(handler: ResolvedHandler, payload: unknown): unknown {
  try {
    return handler.transformRequest?.(payload);
  } catch (error) {
    throw handlerFailed(handler.route, error);
  }
}

function asInteger(value: unknown): number | null {
  return typeof value === 'number' && Number.isInteger(value) ? value : null;
}
