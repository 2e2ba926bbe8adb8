/**
 * One request through a handler route: an object that owns the request's state and its cleanup,
 * with one method per stage, in the protocol's order (§1.3):
 *
 *   accept (drain check ▶ bounded read ▶ parse ▶ validate ▶ auth ▶ workload ▶ session ▶ admit)
 *   ▶ enter (session binding, accounting, queue) ▶ execute (predict, or forward and respond)
 *
 * Each step is published on the lifecycle channel. A refusal is an error its stage tags with
 * `refusal` (and counts there when it counts workload); `#fail` turns any failure into the one
 * JSON error, and `#finish` releases what the stages took and publishes how the request ended.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { handlerFailed, WorkerError } from '../errors.ts';
import type { HandlerContext, ResolvedHandler } from '../handler.ts';
import type { RequestRecord, RequestSummary } from '../lifecycle/record.ts';
import type { Logger } from '../log.ts';
import { callModel, pipeModelResponse, sendWebResponse, toWebResponse } from '../proxy/index.ts';
import type { FifoTicket } from '../queue/index.ts';
import type { Session, SessionRequest } from '../sessions/store.ts';
import { RequestAbort } from './abort.ts';
import {
  acceptBody,
  refuseWhileDraining,
  type AcceptProgress,
  type AcceptRoute,
} from './accept.ts';
import type { PipelineDeps } from './index.ts';
import { BodyAbortedError, lingerOnRefusedBody, readBody } from './parse.ts';
import { isRefusal } from './rejection.ts';
import { requestIdFor } from './request-id.ts';
import { sendError, sendJson, toWorkerError } from './respond.ts';
import type { Envelope } from './validate.ts';

/** What is decided once per route, shared by all its requests. */
export interface RouteContext {
  readonly deps: PipelineDeps;
  readonly handler: ResolvedHandler;
  /** The model server's path for this route, base path included. */
  readonly modelPath: string;
  readonly log: Logger;
  /** The route's side of the accept stages: its schema, workload and admission check. */
  readonly accept: AcceptRoute;
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
  /** Aborts the request's work: the client left, its session closed, or the drain ran out. */
  readonly #abort = new RequestAbort();
  /** The envelope and record, as far as the accept stages got. */
  readonly #accepted: AcceptProgress = {};
  /** Admitted: counted in flight from here until `#finish`. */
  #admitted = false;
  #ticket: FifoTicket | undefined;
  #session: Session | undefined;
  #sessionRequest: SessionRequest | undefined;
  #workStartedAt: number | undefined;
  #headersAt: number | undefined;
  #outcome: RequestSummary['outcome'] = 'invalid';
  #failure: WorkerError | undefined;

  constructor(route: RouteContext, request: IncomingMessage, response: ServerResponse) {
    this.#route = route;
    this.#request = request;
    this.#response = response;
    this.#requestId = requestIdFor(request);
    this.#idHeader = { 'x-request-id': this.#requestId };
  }

  get #record(): RequestRecord | undefined {
    return this.#accepted.record;
  }

  /** Unfinished and not destroyed by us (an upstream failure sets `errored`): the client left. */
  readonly #onClose = (): void => {
    if (!this.#response.writableFinished && this.#response.errored === null) {
      this.#abort.abort(new ClientGoneError());
    }
  };

  async run(): Promise<void> {
    this.#route.deps.inFlight?.add(this.#abort);
    this.#response.once('close', this.#onClose);
    try {
      const envelope = await this.#accept();
      await this.#enter(envelope);
      await this.#execute(envelope);
      // Model non-2xx answers count as served, as in the reference (§12.8): the autoscaler sees the same.
      if (this.#record !== undefined) this.#route.deps.lifecycle.succeeded(this.#record);
      this.#outcome = 'success';
    } catch (error) {
      this.#fail(error);
    } finally {
      this.#finish();
    }
  }

  /** Everything before the request is admitted (`accept.ts`); each refusal throws. */
  async #accept(): Promise<Envelope> {
    const { deps } = this.#route;
    refuseWhileDraining(deps.readiness);
    const rawBody = await readBody(this.#request, deps.maxBodyBytes);
    const accepted = await acceptBody(deps, this.#route.accept, rawBody, this.#accepted);
    return accepted.envelope;
  }

  /** Admitted: bound to its session, counted in flight, and through the FIFO when it has one. */
  async #enter(envelope: Envelope): Promise<void> {
    const { deps, handler } = this.#route;
    const record = this.#record as RequestRecord;
    if (envelope.sessionId !== null) {
      this.#sessionRequest = { record, abort: (reason) => this.#abort.abort(reason) };
      this.#session = deps.sessions.bind(envelope.sessionId, this.#sessionRequest);
    }
    deps.lifecycle.admitted(record);
    this.#admitted = true;
    if (!handler.allowParallel) this.#ticket = await deps.fifo.enter(this.#abort.signal);
    this.#workStartedAt = performance.now();
    deps.lifecycle.workStarted(record);
  }

  /** The work: the worker's own `predict`, or the model server with the route's transforms. */
  async #execute(envelope: Envelope): Promise<void> {
    const { handler } = this.#route;
    if (handler.predict === undefined) return this.#forward(envelope);
    const abort = this.#abort;
    let result: unknown;
    try {
      result = await handler.predict(envelope.payload, this.#handlerContext());
    } catch (error) {
      if (abort.aborted) throw abort.reason;
      throw handlerFailed(handler.route, error);
    }
    this.#headersAt = performance.now();
    if (result instanceof Response) await sendWebResponse(this.#response, result, this.#idHeader);
    else sendJson(this.#response, 200, { result }, this.#idHeader);
  }

  /** What `predict` and the transforms get; its AbortSignal is made only for them. */
  #handlerContext(): HandlerContext {
    return {
      signal: this.#abort.signal,
      route: this.#route.handler.route,
      requestId: this.#requestId,
    };
  }

  async #forward(envelope: Envelope): Promise<void> {
    const { deps, handler, modelPath } = this.#route;
    const body = JSON.stringify(
      handler.transformRequest === undefined
        ? envelope.payload
        : applyTransform(handler, envelope.payload),
    );
    const upstream = await callModel(deps.dispatcher, {
      path: modelPath,
      body,
      signal: this.#abort,
      headersTimeoutMs: handler.headersTimeoutMs,
      bodyTimeoutMs: handler.bodyTimeoutMs,
    });
    this.#headersAt = performance.now();
    if (handler.transformResponse === undefined) {
      await pipeModelResponse(this.#response, upstream, this.#idHeader, this.#abort);
      return;
    }
    let transformed: Response;
    try {
      transformed = await handler.transformResponse(
        toWebResponse(upstream),
        this.#handlerContext(),
      );
    } catch (error) {
      upstream.body.destroy();
      throw handlerFailed(handler.route, error);
    }
    await sendWebResponse(this.#response, transformed, this.#idHeader);
  }

  /** Any failure, at any stage: counted once, answered with one JSON error while that is possible. */
  #fail(error: unknown): void {
    const { deps } = this.#route;
    const abort = this.#abort;
    if (isRefusal(error)) this.#outcome = 'rejected';
    if (error instanceof BodyAbortedError && !abort.aborted)
      this.#abort.abort(new ClientGoneError());
    if (abort.aborted) this.#abandoned(abort.reason);
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
      this.#route.deps.lifecycle.cancelled(this.#record);
    if (this.#response.headersSent) return;
    // Aborted by the worker itself (the session closed, the drain's grace period ran out): say why.
    if (reason instanceof WorkerError) this.#failure = reason;
  }

  #failed(error: unknown): void {
    const failure = toWorkerError(error);
    this.#failure = failure;
    if (this.#admitted && this.#record !== undefined) {
      this.#outcome = 'error';
      this.#route.deps.lifecycle.errored(this.#record, failure.message);
    }
    if (failure.code === 'TSW_ERR_INTERNAL')
      this.#route.log.error({ err: error, requestId: this.#requestId }, 'request failed');
  }

  /** Releases what the stages took, then publishes how the request ended. */
  #finish(): void {
    const { deps, handler } = this.#route;
    if (this.#ticket !== undefined) deps.fifo.release(this.#ticket);
    if (this.#session !== undefined && this.#sessionRequest !== undefined)
      deps.sessions.unbind(this.#session, this.#sessionRequest);
    if (this.#admitted && this.#record !== undefined) deps.lifecycle.ended(this.#record);
    this.#response.off('close', this.#onClose);
    deps.inFlight?.delete(this.#abort);
    const arrivedAt = this.#arrivedAt;
    const record = this.#record;
    deps.lifecycle.finished({
      requestId: this.#requestId,
      requestIdx: record?.requestIdx ?? undefined,
      reqnum: record?.reqnum ?? undefined,
      sessionId: this.#accepted.envelope?.sessionId?.slice(0, MAX_LOGGED_SESSION_ID),
      route: handler.route,
      // A cancelled request's client saw nothing (499), unless the worker answered why (410, 503).
      status:
        this.#outcome === 'cancelled' && this.#failure === undefined
          ? 499
          : this.#response.statusCode,
      outcome: this.#outcome,
      workload: record?.workload ?? 0,
      queueMs: this.#workStartedAt === undefined ? undefined : this.#workStartedAt - arrivedAt,
      ttfbMs: this.#headersAt === undefined ? undefined : this.#headersAt - arrivedAt,
      totalMs: performance.now() - arrivedAt,
      errorCode: this.#failure?.code,
    });
  }
}

function applyTransform(handler: ResolvedHandler, payload: unknown): unknown {
  try {
    return handler.transformRequest?.(payload);
  } catch (error) {
    throw handlerFailed(handler.route, error);
  }
}
