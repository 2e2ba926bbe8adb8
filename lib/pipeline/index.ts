import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import type { SignatureVerifier } from '../auth/index.ts';
import type { ResolvedHandler } from '../handler.ts';
import type { RequestLifecycle } from '../lifecycle/record.ts';
import type { Logger } from '../log.ts';
import type { FifoQueue } from '../queue/index.ts';
import type { SessionStore } from '../sessions/store.ts';
import type { ReadinessView } from './admit.ts';
import type { InFlightRequests } from './in-flight.ts';
import type { RefusedBodyLinger } from './parse.ts';
import { PipelineRequest, type RouteContext } from './request.ts';
import type { EnvelopeRules } from './validate.ts';

export { ClientGoneError } from './request.ts';
export { REQUEST_ID_PATTERN } from './request-id.ts';

/**
 * The request pipeline (PyWorker's Backend), in the reference's order (protocol §1.3):
 *
 *   drain check ▶ bounded read ▶ parse ▶ validate ▶ session ▶ auth ▶ workload ▶ admit ▶ queue
 *   ▶ forward ▶ respond
 *
 * (the reference measures the workload before the signature; the statuses are the same).
 *
 * with accounting around it: one `PipelineRequest` per request (`request.ts`). Every failure
 * becomes one JSON error through `sendError`; nothing a request does can disturb another.
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
  readonly accounting: RequestLifecycle;
  readonly readiness: ReadinessView;
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

export type RouteHandler = (request: IncomingMessage, response: ServerResponse) => Promise<void>;

/** Builds the Node-level handler for one route. Everything that can be decided once is decided here. */
export function createPipeline(deps: PipelineDeps, handler: ResolvedHandler): RouteHandler {
  const route: RouteContext = {
    deps,
    handler,
    modelPath: deps.modelBasePath + handler.modelPath,
    log: deps.logger.child({ component: 'pipeline', route: handler.route }),
  };
  return (request, response) => new PipelineRequest(route, request, response).run();
}
