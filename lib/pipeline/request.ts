/**
 * One request through a handler route: an object that owns the request's state and its cleanup,
 * with one method per stage, in the protocol's order (§1.3):
 *
 *   accept (drain check ▶ bounded read ▶ parse ▶ validate ▶ auth ▶ workload ▶ session ▶ admit)
 *   ▶ enter (session binding, accounting, queue) ▶ execute (predict, or forward and respond)
 *
 * A refusal is a `Rejection` thrown by its stage, which says how accounting counts it; `#fail`
 * turns any failure into the one JSON error, and `#finish` releases what the stages took.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { draining, handlerFailed, invalidSession, WorkerError } from '../errors.ts';
import type { HandlerContext, ResolvedHandler } from '../handler.ts';
import type { RequestRecord } from '../lifecycle/record.ts';
import type { Logger } from '../log.ts';
import { callModel, pipeModelResponse, sendWebResponse, toWebResponse } from '../proxy/index.ts';
import type { FifoTicket } from '../queue/index.ts';
import type { Session, SessionRequest } from '../sessions/store.ts';
import { admit } from './admit.ts';
import { signatureProblem } from './auth.ts';
import type { PipelineDeps, RequestSummary } from './index.ts';
import { BodyAbortedError, lingerOnRefusedBody, parseJson, readBody } from './parse.ts';
import { Rejection } from './rejection.ts';
import { requestIdFor } from './request-id.ts';
import { sendError, sendJson, toWorkerError } from './respond.ts';
import { validateEnvelope, type Envelope } from './validate.ts';
import { measureWorkload } from './workload.ts';

/** What is decided once per route, shared by all its requests. */
export interface RouteContext {
  readonly deps: PipelineDeps;
  readonly handler: ResolvedHandler;
  /** The model server's path for this route, base path included. */
  readonly modelPath: string;
  readonly log: Logger;
}

/** The reason a request's signal aborts when its client goes away. */
export class ClientGoneError extends Error {
  constructor() {
    super('client disconnected');
    this.name = 'ClientGoneError';
  }
}

/** Session ids are 13 characters; a longer client value is cut before it reaches a log line. */
const MAX_LOGGED_SESSION_ID = 64;

export class PipelineRequest {
  readonly #route: RouteContext;
  readonly #request: IncomingMessage;
  readonly #response: ServerResponse;
  readonly #arrivedAt = performance.now();
  readonly #requestId: string;
  readonly #idHeader: Record<string, string>;
  readonly #controller = new AbortController();
  #record: RequestRecord | undefined;
  /** Admitted: counted in flight from here until `#finish`. */
  #admitted = false;
  #ticket: FifoTicket | undefined;
  #session: Session | undefined;
  #sessionRequest: SessionRequest | undefined;
  #workStartedAt: number | undefined;
  #headersAt: number | undefined;
  #outcome: RequestSummary['outcome'] = 'invalid';
  #failure: WorkerError | undefined;
  #requestIdx: number | undefined;
  #reqnum: number | undefined;
  #sessionId: string | undefined;

  constructor(route: RouteContext, request: IncomingMessage, response: ServerResponse) {
    this.#route = route;
    this.#request = request;
    this.#response = response;
    this.#requestId = requestIdFor(request);
    this.#idHeader = { 'x-request-id': this.#requestId };
  }

  /** Unfinished and not destroyed by us (an upstream failure sets `errored`): the client left. */
  readonly #onClose = (): void => {
    if (!this.#response.writableFinished && this.#response.errored === null) {
      this.#controller.abort(new ClientGoneError());
    }
  };

  async run(): Promise<void> {
    this.#route.deps.inFlight?.add(this.#controller);
    this.#response.once('close', this.#onClose);
    try {
      const envelope = await this.#accept();
      await this.#enter(envelope);
      await this.#execute(envelope);
      // Model non-2xx answers count as served, as in the reference (§12.8): the autoscaler sees the same.
      if (this.#record !== undefined) this.#route.deps.accounting.succeeded(this.#record);
      this.#outcome = 'success';
    } catch (error) {
      this.#fail(error);
    } finally {
      this.#finish();
    }
  }

  /** Everything before the request is admitted; each refusal throws. */
  async #accept(): Promise<Envelope> {
    const { deps, handler, log } = this.#route;
    // Refused, not malformed: Prometheus counts it with the other refusals.
    if (deps.readiness.draining) throw new Rejection(draining(), undefined);
    const rawBody = await readBody(this.#request, deps.maxBodyBytes);
    const envelope = validateEnvelope(parseJson(rawBody), handler, deps.envelopeRules);
    const requestIdx = asInteger(envelope.authData['request_idx']);
    const reqnum = asInteger(envelope.authData['reqnum']);
    this.#requestIdx = requestIdx ?? undefined;
    this.#reqnum = reqnum ?? undefined;
    this.#sessionId = envelope.sessionId?.slice(0, MAX_LOGGED_SESSION_ID) ?? undefined;
    // The signature is checked before the workload is measured: the port is public, and an
    // unsigned request must never reach the tokenizer. Its rejection counts no workload.
    const forged = signatureProblem(deps.verifier, envelope.authData, rawBody);
    const measured = forged === undefined ? measureWorkload(handler, envelope.payload, log) : 0;
    // Awaited only when the workload function returned a promise (a large prompt counted off-thread).
    const workload = typeof measured === 'number' ? measured : await measured;
    this.#record = deps.accounting.create({
      route: handler.route,
      requestIdx,
      reqnum,
      workload,
      inSession: envelope.sessionId !== null,
    });
    // 410 comes before 401, as in the reference; but only an admitted request extends the session (§12.13).
    if (envelope.sessionId !== null && deps.sessions.get(envelope.sessionId) === undefined) {
      throw invalidSession();
    }
    if (forged !== undefined) throw new Rejection(forged, 'unauthorized');
    admit(handler, deps.accounting, deps.readiness, deps.assumedThroughput);
    return envelope;
  }

  /** Admitted: bound to its session, counted in flight, and through the FIFO when it has one. */
  async #enter(envelope: Envelope): Promise<void> {
    const { deps, handler } = this.#route;
    const record = this.#record as RequestRecord;
    if (envelope.sessionId !== null) {
      this.#sessionRequest = { record, abort: (reason) => this.#controller.abort(reason) };
      this.#session = deps.sessions.bind(envelope.sessionId, this.#sessionRequest);
    }
    deps.accounting.started(record);
    this.#admitted = true;
    if (!handler.allowParallel) this.#ticket = await deps.fifo.enter(this.#controller.signal);
    this.#workStartedAt = performance.now();
    deps.accounting.workStarted(record);
  }

  /** The work: the worker's own `predict`, or the model server with the route's transforms. */
  async #execute(envelope: Envelope): Promise<void> {
    const { handler } = this.#route;
    const signal = this.#controller.signal;
    const context: HandlerContext = { signal, route: handler.route, requestId: this.#requestId };
    if (handler.predict === undefined) return this.#forward(envelope, context);
    let result: unknown;
    try {
      result = await handler.predict(envelope.payload, context);
    } catch (error) {
      if (signal.aborted) throw signal.reason;
      throw handlerFailed(handler.route, error);
    }
    this.#headersAt = performance.now();
    if (result instanceof Response) await sendWebResponse(this.#response, result, this.#idHeader);
    else sendJson(this.#response, 200, { result }, this.#idHeader);
  }

  async #forward(envelope: Envelope, context: HandlerContext): Promise<void> {
    const { deps, handler, modelPath } = this.#route;
    const body = JSON.stringify(
      handler.transformRequest === undefined
        ? envelope.payload
        : applyTransform(handler, envelope.payload),
    );
    const upstream = await callModel(deps.dispatcher, {
      path: modelPath,
      body,
      signal: context.signal,
      headersTimeoutMs: handler.headersTimeoutMs,
      bodyTimeoutMs: handler.bodyTimeoutMs,
    });
    this.#headersAt = performance.now();
    if (handler.transformResponse === undefined) {
      await pipeModelResponse(this.#response, upstream, this.#idHeader, context.signal);
      return;
    }
    let transformed: Response;
    try {
      transformed = await handler.transformResponse(toWebResponse(upstream), context);
    } catch (error) {
      upstream.body.destroy();
      throw handlerFailed(handler.route, error);
    }
    await sendWebResponse(this.#response, transformed, this.#idHeader);
  }

  /** Any failure, at any stage: counted once, answered with one JSON error while that is possible. */
  #fail(thrown: unknown): void {
    const { deps } = this.#route;
    const signal = this.#controller.signal;
    let error = thrown;
    if (error instanceof Rejection) {
      this.#outcome = 'rejected';
      if (error.reason !== undefined && this.#record !== undefined)
        deps.accounting.rejected(this.#record, error.reason);
      error = error.failure;
    }
    if (error instanceof BodyAbortedError && !signal.aborted)
      this.#controller.abort(new ClientGoneError());
    if (signal.aborted) this.#abandoned(signal.reason);
    else this.#failed(error);
    const response = this.#response;
    if (this.#failure !== undefined && !response.headersSent && !response.destroyed) {
      sendError(response, this.#failure, this.#requestId);
      if (this.#failure.status === 413) lingerOnRefusedBody(this.#request, deps.refusedBodyLinger);
    } else if (!response.writableFinished) {
      // Headers are out: the only honest signal left is a broken stream.
      response.destroy();
    }
  }

  /** Abandoned, at any step: the client left, the session closed, or the drain ran out of time. */
  #abandoned(reason: unknown): void {
    this.#outcome = 'cancelled';
    if (this.#record !== undefined && this.#admitted)
      this.#route.deps.accounting.cancelled(this.#record);
    if (this.#response.headersSent) return;
    // Aborted by the worker itself (the session closed, the drain's grace period ran out): say why.
    if (reason instanceof WorkerError) this.#failure = reason;
  }

  #failed(error: unknown): void {
    const failure = toWorkerError(error);
    this.#failure = failure;
    if (this.#admitted && this.#record !== undefined) {
      this.#outcome = 'error';
      this.#route.deps.accounting.errored(this.#record, failure.message);
    }
    if (failure.code === 'TSW_ERR_INTERNAL')
      this.#route.log.error({ err: error, requestId: this.#requestId }, 'request failed');
  }

  /** Releases what the stages took, then tells the observers how the request ended. */
  #finish(): void {
    const { deps, handler } = this.#route;
    if (this.#ticket !== undefined) deps.fifo.release(this.#ticket);
    if (this.#session !== undefined && this.#sessionRequest !== undefined)
      deps.sessions.unbind(this.#session, this.#sessionRequest);
    if (this.#admitted && this.#record !== undefined) deps.accounting.ended(this.#record);
    this.#response.off('close', this.#onClose);
    deps.inFlight?.delete(this.#controller);
    if (deps.observers.length === 0) return;
    const arrivedAt = this.#arrivedAt;
    const summary: RequestSummary = {
      requestId: this.#requestId,
      requestIdx: this.#requestIdx,
      reqnum: this.#reqnum,
      sessionId: this.#sessionId,
      route: handler.route,
      // A cancelled request's client saw nothing (499), unless the worker answered why (410, 503).
      status:
        this.#outcome === 'cancelled' && this.#failure === undefined
          ? 499
          : this.#response.statusCode,
      outcome: this.#outcome,
      workload: this.#record?.workload ?? 0,
      queueMs: this.#workStartedAt === undefined ? undefined : this.#workStartedAt - arrivedAt,
      ttfbMs: this.#headersAt === undefined ? undefined : this.#headersAt - arrivedAt,
      totalMs: performance.now() - arrivedAt,
      errorCode: this.#failure?.code,
    };
    for (const observe of deps.observers) observe(summary);
  }
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
