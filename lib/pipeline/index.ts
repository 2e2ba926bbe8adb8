import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import type { ResolvedHandler } from '../handler.ts';
import type { Logger } from '../log.ts';
import type { FifoQueue } from '../queue/index.ts';
import type { SessionManager } from '../sessions/manager.ts';
import { admissionRefusal, type LoadView } from './admit.ts';
import type { AcceptDeps } from './accept.ts';
import type { InFlightRequests } from './in-flight.ts';
import type { RefusedBodyLinger } from './parse.ts';
import { PipelineRequest, type RouteContext } from './request.ts';
import { measureWorkload } from './workload.ts';

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
 * with each step published on the lifecycle channel: one `PipelineRequest` per request
 * (`request.ts`). Every failure becomes one JSON error through `sendError`; nothing a request does
 * can disturb another.
 */

export interface PipelineDeps extends AcceptDeps {
  readonly load: LoadView;
  readonly fifo: FifoQueue;
  readonly dispatcher: Dispatcher;
  /** Path prefix of the model server's base URL (empty for a bare origin). */
  readonly modelBasePath: string;
  readonly sessions: SessionManager;
  readonly logger: Logger;
  readonly assumedThroughput: number;
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
  const log = deps.logger.child({ component: 'pipeline', route: handler.route });
  const route: RouteContext = {
    deps,
    handler,
    modelPath: deps.modelBasePath + handler.modelPath,
    log,
    accept: {
      route: handler.route,
      payload: handler.payload,
      opensSession: false,
      workload: (envelope) => measureWorkload(handler, envelope.payload, log),
      admit: () => admissionRefusal(handler, deps.load, deps.readiness, deps.assumedThroughput),
    },
  };
  return (request, response) => new PipelineRequest(route, request, response).run();
}
