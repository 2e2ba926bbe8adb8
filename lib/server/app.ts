import type { IncomingMessage, ServerResponse } from 'node:http';
import { getRequestListener, type HttpBindings } from '@hono/node-server';
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import type { Dispatcher } from 'undici';
import { SignatureVerifier } from '../auth/index.ts';
import { publicUrl, tsworkerVersion, type ResolvedConfig } from '../config.ts';
import { bodyTooLarge, DefinitionError, methodNotAllowed, WorkerError } from '../errors.ts';
import { requestLineLogger, silentLogger, type Logger } from '../log.ts';
import { RequestLifecycle, type LifecycleListener } from '../lifecycle/channel.ts';
import { Accounting } from '../metrics/accounting.ts';
import { createPrometheusMetrics } from '../metrics/prometheus.ts';
import { Reporter, type ReporterOptions } from '../metrics/reporter.ts';
import { currentThroughput } from '../pipeline/admit.ts';
import { envelopeRulesFor } from '../pipeline/validate.ts';
import { InFlightRequests } from '../pipeline/in-flight.ts';
import { createPipeline, type PipelineDeps, type RouteHandler } from '../pipeline/index.ts';
import { basePath, createModelPool, describeUpstreamError } from '../proxy/index.ts';
import { FifoQueue } from '../queue/index.ts';
import { ReadinessState } from '../readiness/state.ts';
import { mountSessionRoutes } from './session-routes.ts';
import { SessionManager } from '../sessions/manager.ts';
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

/**
 * The parts of one worker, built once by `createWorkerApp`. Only the composition root (this file
 * and `startWorker`) reads it whole; each part is handed the few others it uses.
 */
export interface WorkerParts {
  readonly worker: ResolvedWorker;
  readonly config: ResolvedConfig;
  readonly modelServerUrl: string;
  readonly logger: Logger;
  /** Every step of every request; accounting, Prometheus and the request log listen. */
  readonly lifecycle: RequestLifecycle;
  readonly accounting: Accounting;
  readonly readiness: ReadinessState;
  readonly fifo: FifoQueue;
  readonly sessions: SessionManager;
  readonly dispatcher: Dispatcher;
  /** Undefined in UNSECURED mode. */
  readonly verifier: SignatureVerifier | undefined;
  readonly assumedThroughput: number;
  /** Requests the pipeline is handling; a graceful drain waits for them and aborts the rest. */
  readonly inFlight: InFlightRequests;
  /** Keeps the autoscaler told; undefined without REPORT_ADDR. Started by `startWorker`. */
  readonly reporter: Reporter | undefined;
  /** The URL the autoscaler routes clients to; an ephemeral port (0) is filled in once bound. */
  readonly publicUrl: () => string;
  /** Records the port the main listener got, for WORKER_PORT=0. */
  readonly setBoundPort: (port: number) => void;
}

export interface WorkerApp {
  /** Routes other than the handler routes: health, sessions, metrics, extra routes. */
  readonly app: Hono<{ Bindings: HttpBindings }>;
  /** The Node request listener: handler routes go straight to the pipeline, the rest to `app`. */
  readonly listener: (request: IncomingMessage, response: ServerResponse) => void;
  readonly parts: WorkerParts;
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
  const parts = createParts(worker, config, deps);
  const pipelineDeps = pipelineDepsFor(parts);
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
  mountMetricsRoute(app, parts);
  mountHealthRoutes(app, parts.readiness);
  mountSessionRoutes(app, { sessions: parts.sessions, accept: pipelineDeps });
  mountUpdateRoute(app, {
    logger: parts.logger,
    masterToken: config.masterToken,
    markerFile: config.forceUpdateFile,
  });
  mountExtraRoutes(app, worker.extraRoutes, parts.dispatcher, pipelineDeps.modelBasePath);
  for (const route of handlerRoutes.keys()) {
    // Handler routes are POST only; say so instead of a bare 404 (protocol §3.1).
    app.all(route, (c) => {
      throw methodNotAllowed(c.req.method, 'POST');
    });
  }
  app.notFound(notFoundHandler);
  // The one error handler, shared with the plain /session/end listener.
  app.onError(routeErrorHandler(parts.logger, pipelineDeps.refusedBodyLinger));
  return { app, listener: nodeListener(app, handlerRoutes), parts };
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

function createParts(
  worker: ResolvedWorker,
  config: ResolvedConfig,
  deps: WorkerDeps,
): WorkerParts {
  const logger = deps.logger ?? silentLogger();
  const now = deps.now ?? Date.now;
  const modelServerUrl = config.modelServerUrl ?? worker.modelServerUrl;
  let boundPort: number | undefined;
  const lifecycle = new RequestLifecycle({ now });
  // Subscribed first, so every other listener reads accounting already up to date.
  const accounting = new Accounting(lifecycle, { maxPendingDeletes: config.maxPendingDeletes });
  const readiness = new ReadinessState({ now });
  readiness.onChange((next, previous) => {
    // The reference zeroes the interval counters when the model errors (§8.1).
    if (next.phase === 'errored' && previous.phase !== 'errored') accounting.resetInterval();
  });
  const dispatcher =
    deps.dispatcher ?? createModelPool(modelServerUrl, { connections: config.maxConnections });
  const reportedUrl = (): string =>
    publicUrl(boundPort === undefined ? config : { ...config, publicPort: boundPort });
  lifecycle.subscribe(requestLogger(logger));
  return {
    worker,
    config,
    modelServerUrl,
    logger,
    lifecycle,
    accounting,
    readiness,
    fifo: new FifoQueue(),
    sessions: new SessionManager({
      lifecycle,
      logger,
      now,
      maxSessions: worker.maxSessions,
      model: { dispatcher, basePath: basePath(modelServerUrl) },
    }),
    dispatcher,
    verifier: config.unsecured ? undefined : new SignatureVerifier({ mode: config.authMode }),
    assumedThroughput: config.assumedThroughput ?? worker.assumedThroughput,
    inFlight: new InFlightRequests(),
    reporter: createReporter(config, { accounting, readiness, logger, now, url: reportedUrl }),
    publicUrl: reportedUrl,
    setBoundPort: (port) => {
      if (config.publicPort === 0) boundPort = port;
    },
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
  });
}

function pipelineDepsFor(parts: WorkerParts): PipelineDeps {
  const { config } = parts;
  return {
    lifecycle: parts.lifecycle,
    load: parts.accounting,
    readiness: parts.readiness,
    fifo: parts.fifo,
    dispatcher: parts.dispatcher,
    modelBasePath: basePath(parts.modelServerUrl),
    verifier: parts.verifier,
    sessions: parts.sessions,
    logger: parts.logger,
    envelopeRules: envelopeRulesFor(config),
    assumedThroughput: parts.assumedThroughput,
    inFlight: parts.inFlight,
    maxBodyBytes: config.maxBodyBytes,
    refusedBodyLinger: refusedBodyLinger(config),
  };
}

type App = Hono<{ Bindings: HttpBindings }>;

function mountMetricsRoute(app: App, parts: WorkerParts): void {
  const { config, worker, readiness } = parts;
  const prometheus = createPrometheusMetrics({
    lifecycle: parts.lifecycle,
    accounting: parts.accounting,
    readiness,
    fifo: parts.fifo,
    throughput: () => currentThroughput(readiness, parts.assumedThroughput),
    build: { version: tsworkerVersion(), worker: worker.name },
  });
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
function mountExtraRoutes(
  app: App,
  routes: ResolvedWorker['extraRoutes'],
  dispatcher: Dispatcher,
  modelBasePath: string,
): void {
  for (const route of routes) {
    app.on(route.method, route.path, async (c) => {
      if ('respond' in route) return route.respond(c.req.raw);
      const signal = c.req.raw.signal;
      let upstream: Dispatcher.ResponseData;
      let body: string;
      try {
        upstream = await dispatcher.request({
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

/** The per-request log line, at info, from each request's `finished` event. */
function requestLogger(logger: Logger): LifecycleListener {
  const log = requestLineLogger(logger, 'request');
  return (event) => {
    if (event.kind !== 'finished' || !log.isLevelEnabled('info')) return;
    const summary = event.summary;
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
