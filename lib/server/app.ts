import type { IncomingMessage, ServerResponse } from 'node:http';
import { getRequestListener, type HttpBindings } from '@hono/node-server';
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import type { Dispatcher } from 'undici';
import { SignatureVerifier } from '../auth/index.ts';
import { publicUrl, tsworkerVersion, type ResolvedConfig } from '../config.ts';
import { bodyTooLarge, DefinitionError, methodNotAllowed, WorkerError } from '../errors.ts';
import { requestLineLogger, silentLogger, type Logger } from '../log.ts';
import { Accounting } from '../metrics/accounting.ts';
import { createPrometheusMetrics } from '../metrics/prometheus.ts';
import { Reporter, type ReporterOptions } from '../metrics/reporter.ts';
import { currentThroughput } from '../pipeline/admit.ts';
import { envelopeRulesFor } from '../pipeline/validate.ts';
import { InFlightRequests } from '../pipeline/in-flight.ts';
import {
  createPipeline,
  type PipelineDeps,
  type RequestObserver,
  type RequestSummary,
  type RouteHandler,
} from '../pipeline/index.ts';
import { basePath, createModelPool, describeUpstreamError } from '../proxy/index.ts';
import { FifoQueue } from '../queue/index.ts';
import { ReadinessState } from '../readiness/state.ts';
import { mountSessionRoutes } from './session-routes.ts';
import { SessionStore } from '../sessions/store.ts';
import type { ResolvedWorker } from '../worker.ts';
import { mountHealthRoutes } from './health.ts';
import { notFoundHandler, refusedBodyLinger, routeErrorHandler } from './on-error.ts';
import { mountUpdateRoute, tokenMatches } from './update-route.ts';

/** What the app is built from besides the definition and config; each is injected, never mocked. */
export interface WorkerDeps {
  readonly logger?: Logger;
  /** The transport to the model server. @default an undici Pool for the model server URL */
  readonly dispatcher?: Dispatcher;
  readonly now?: () => number;
  /** How often expired sessions are closed. @default 5000 */
  readonly sessionGcIntervalMs?: number;
}

/** The shared state of one worker: what the pipeline, readiness, reporter and routes all read. */
export interface WorkerRuntime {
  readonly worker: ResolvedWorker;
  readonly config: ResolvedConfig;
  readonly modelServerUrl: string;
  readonly logger: Logger;
  readonly accounting: Accounting;
  readonly readiness: ReadinessState;
  readonly fifo: FifoQueue;
  readonly sessions: SessionStore;
  readonly dispatcher: Dispatcher;
  /** Undefined in UNSECURED mode. */
  readonly verifier: SignatureVerifier | undefined;
  readonly assumedThroughput: number;
  readonly now: () => number;
  /** Called with every finished request; Prometheus and the request log subscribe here. */
  readonly observers: RequestObserver[];
  /** The URL the autoscaler routes clients to; an ephemeral port (0) is filled in once bound. */
  readonly publicUrl: () => string;
  /** Records the port the main listener got, for WORKER_PORT=0. */
  readonly setBoundPort: (port: number) => void;
  /** Keeps the autoscaler told; undefined without REPORT_ADDR. Started by `startWorker`. */
  readonly reporter: Reporter | undefined;
  /** Requests the pipeline is handling; a graceful drain waits for them and aborts the rest. */
  readonly inFlight: InFlightRequests;
}

export interface WorkerApp {
  /** Routes other than the handler routes: health, sessions, metrics, extra routes. */
  readonly app: Hono<{ Bindings: HttpBindings }>;
  /** The Node request listener: handler routes go straight to the pipeline, the rest to `app`. */
  readonly listener: (request: IncomingMessage, response: ServerResponse) => void;
  readonly runtime: WorkerRuntime;
}

/** Routes the framework itself owns; a worker route on one of them is a start-up error. */
export const RESERVED_PATHS = [
  '/health',
  '/health/live',
  '/health/ready',
  '/metrics',
  '/session/create',
  '/session/end',
  '/session/get',
  '/session/health',
  '/pyworker/update',
] as const;

/**
 * Builds the worker's HTTP surface and its shared state. Starts nothing: no socket, timer or signal
 * handler (that is `startWorker`), so tests and the bench can build as many as they like.
 */
export function createWorkerApp(
  worker: ResolvedWorker,
  config: ResolvedConfig,
  deps: WorkerDeps = {},
): WorkerApp {
  checkReservedPaths(worker);
  const runtime = createRuntime(worker, config, deps);
  const pipelineDeps = pipelineDepsFor(runtime);
  const handlerRoutes = new Map(
    worker.handlers.map((handler) => [handler.route, createPipeline(pipelineDeps, handler)]),
  );

  const app = new Hono<{ Bindings: HttpBindings }>();
  // Session and update routes read their bodies through hono: the same bound as handler routes.
  app.use(
    '*',
    bodyLimit({
      maxSize: config.maxBodyBytes,
      onError: () => {
        throw bodyTooLarge(config.maxBodyBytes);
      },
    }),
  );
  mountMetricsRoute(app, runtime);
  mountHealthRoutes(app, runtime.readiness);
  mountSessionRoutes(app, runtime);
  mountUpdateRoute(app, runtime);
  mountExtraRoutes(app, runtime);
  for (const route of handlerRoutes.keys()) {
    // Handler routes are POST only; say so instead of a bare 404 (protocol §3.1).
    app.all(route, (c) => {
      throw methodNotAllowed(c.req.method, 'POST');
    });
  }
  app.notFound(notFoundHandler);
  // The one error handler, shared with the plain /session/end listener.
  app.onError(routeErrorHandler(runtime.logger, pipelineDeps.refusedBodyLinger));
  return { app, listener: nodeListener(app, handlerRoutes), runtime };
}

function checkReservedPaths(worker: ResolvedWorker): void {
  const reserved = new Set<string>(RESERVED_PATHS);
  for (const path of [
    ...worker.handlers.map((h) => h.route),
    ...worker.extraRoutes.map((r) => r.path),
  ]) {
    if (reserved.has(path)) {
      throw new DefinitionError(
        `worker ${worker.name}: route ${path} clashes with a route tsworker serves itself`,
      );
    }
  }
}

function createRuntime(
  worker: ResolvedWorker,
  config: ResolvedConfig,
  deps: WorkerDeps,
): WorkerRuntime {
  const logger = deps.logger ?? silentLogger();
  const now = deps.now ?? Date.now;
  const modelServerUrl = config.modelServerUrl ?? worker.modelServerUrl;
  let boundPort: number | undefined;
  const accounting = new Accounting({ now });
  const readiness = new ReadinessState({ now });
  const reportedUrl = (): string =>
    publicUrl(boundPort === undefined ? config : { ...config, publicPort: boundPort });
  const setBoundPort = (port: number): void => {
    if (config.publicPort === 0) boundPort = port;
  };
  return {
    worker,
    config,
    modelServerUrl,
    logger,
    accounting,
    readiness,
    fifo: new FifoQueue(),
    sessions: new SessionStore({ now }),
    dispatcher:
      deps.dispatcher ?? createModelPool(modelServerUrl, { connections: config.maxConnections }),
    verifier: config.unsecured ? undefined : new SignatureVerifier({ mode: config.authMode }),
    assumedThroughput: config.assumedThroughput ?? worker.assumedThroughput,
    now,
    observers: [requestLogger(logger)],
    publicUrl: reportedUrl,
    setBoundPort,
    reporter: createReporter(config, { accounting, readiness, logger, now, url: reportedUrl }),
    inFlight: new InFlightRequests(),
  };
}

/** The autoscaler reporter; undefined without REPORT_ADDR. */
function createReporter(
  config: ResolvedConfig,
  parts: Pick<ReporterOptions, 'accounting' | 'readiness' | 'logger' | 'now' | 'url'>,
): Reporter | undefined {
  if (config.reportAddrs.length === 0) return undefined;
  return new Reporter({
    ...parts,
    addrs: config.reportAddrs,
    workerId: config.containerId,
    mtoken: config.masterToken,
    tickMs: config.timings.reportTick * 1000,
    idleMs: config.timings.reportIdle * 1000,
    timeoutMs: config.timings.reportTimeout * 1000,
    retryDelayMs: config.timings.reportRetryDelay * 1000,
    maxPendingDeletes: config.maxPendingDeletes,
  });
}

function pipelineDepsFor(runtime: WorkerRuntime): PipelineDeps {
  const { config } = runtime;
  return {
    accounting: runtime.accounting,
    readiness: runtime.readiness,
    fifo: runtime.fifo,
    dispatcher: runtime.dispatcher,
    modelBasePath: basePath(runtime.modelServerUrl),
    verifier: runtime.verifier,
    sessions: runtime.sessions,
    logger: runtime.logger,
    envelopeRules: envelopeRulesFor(config),
    assumedThroughput: runtime.assumedThroughput,
    observers: runtime.observers,
    inFlight: runtime.inFlight,
    maxBodyBytes: config.maxBodyBytes,
    refusedBodyLinger: refusedBodyLinger(config),
  };
}

type App = Hono<{ Bindings: HttpBindings }>;

function mountMetricsRoute(app: App, runtime: WorkerRuntime): void {
  const { config, worker } = runtime;
  const prometheus = createPrometheusMetrics({
    accounting: runtime.accounting,
    readiness: runtime.readiness,
    fifo: runtime.fifo,
    throughput: () => currentThroughput(runtime.readiness, runtime.assumedThroughput),
    build: { version: tsworkerVersion(), worker: worker.name },
  });
  runtime.observers.push(prometheus.observe);
  app.get('/metrics', async (c) => {
    // The worker port is public on Vast: METRICS_TOKEN keeps the numbers to whoever holds it.
    if (
      config.metricsToken !== undefined &&
      !bearerMatches(c.req.header('authorization'), config.metricsToken)
    ) {
      throw new WorkerError({
        status: 401,
        code: 'TSW_ERR_UNAUTHORIZED',
        message: 'unauthorized: GET /metrics needs "Authorization: Bearer <METRICS_TOKEN>"',
        headers: { 'www-authenticate': 'Bearer realm="metrics"' },
      });
    }
    return c.body(await prometheus.registry.metrics(), 200, {
      'content-type': prometheus.registry.contentType,
    });
  });
}

/** A worker's own routes: answered in-process (`respond`) or forwarded to the model server. */
function mountExtraRoutes(app: App, runtime: WorkerRuntime): void {
  const modelBasePath = basePath(runtime.modelServerUrl);
  for (const route of runtime.worker.extraRoutes) {
    app.on(route.method, route.path, async (c) => {
      if ('respond' in route) return route.respond(c.req.raw);
      const signal = c.req.raw.signal;
      let upstream: Dispatcher.ResponseData;
      let body: string;
      try {
        upstream = await runtime.dispatcher.request({
          method: route.method,
          path: modelBasePath + route.forward,
          signal,
        });
        body = await upstream.body.text();
      } catch (error) {
        throw describeUpstreamError(error, signal);
      }
      return new Response(body, {
        status: upstream.statusCode,
        headers: { 'content-type': String(upstream.headers['content-type'] ?? 'text/plain') },
      });
    });
  }
}

/** The Node request listener: POSTs to handler routes go straight to the pipeline, the rest to hono. */
function nodeListener(
  app: App,
  handlerRoutes: ReadonlyMap<string, RouteHandler>,
): WorkerApp['listener'] {
  const honoListener = getRequestListener(app.fetch, { overrideGlobalObjects: false });
  return (request, response) => {
    if (request.method === 'POST') {
      const url = request.url ?? '/';
      const query = url.indexOf('?');
      const handle = handlerRoutes.get(query < 0 ? url : url.slice(0, query));
      if (handle !== undefined) {
        void handle(request, response);
        return;
      }
    }
    void honoListener(request, response);
  };
}

function requestLogger(logger: Logger): RequestObserver {
  const log = requestLineLogger(logger, 'request');
  return (summary: RequestSummary) => {
    if (!log.isLevelEnabled('info')) return;
    log.info(
      {
        requestId: summary.requestId,
        // The client's own ids, to find this line from the autoscaler's side.
        request_idx: summary.requestIdx,
        reqnum: summary.reqnum,
        session_id: summary.sessionId,
        route: summary.route,
        status: summary.status,
        outcome: summary.outcome,
        workload: summary.workload,
        queueMs: round(summary.queueMs),
        ttfbMs: round(summary.ttfbMs),
        totalMs: round(summary.totalMs),
        errorCode: summary.errorCode,
      },
      'request',
    );
  };
}

/** `Authorization: Bearer <token>`, compared in constant time; a bare token is not enough. */
function bearerMatches(header: string | undefined, token: string): boolean {
  if (header === undefined || !/^bearer /i.test(header)) return false;
  return tokenMatches(header, token);
}

function round(ms: number | undefined): number | undefined {
  return ms === undefined ? undefined : Math.round(ms * 100) / 100;
}
