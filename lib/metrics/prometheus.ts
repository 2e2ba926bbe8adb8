import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { LifecycleEvent, RequestLifecycle } from '../lifecycle/channel.ts';
import type { RequestSummary } from '../lifecycle/record.ts';
import type { FifoQueue } from '../queue/index.ts';
import { estimatedWaitSeconds } from '../queue/index.ts';
import type { ReadinessPhase, ReadinessState } from '../readiness/state.ts';
import type { Accounting } from './accounting.ts';
import {
  LabelledCounter,
  LabelledHistogram,
  type CounterSeries,
  type HistogramSeries,
} from './series.ts';

export interface PrometheusSources {
  /** Where the request and workload counters and the latency histograms learn what happened. */
  readonly lifecycle: RequestLifecycle;
  /** Read at scrape time for the load gauges. */
  readonly accounting: Accounting;
  readonly readiness: ReadinessState;
  readonly fifo: FifoQueue;
  /** Workload per second used for the estimated wait. */
  readonly throughput: () => number;
  /** The labels of `tsworker_build_info`: tsworker's version and the worker's name. */
  readonly build: { readonly version: string; readonly worker: string };
}

export interface PrometheusMetrics {
  readonly registry: Registry;
}

const PHASES: readonly ReadinessPhase[] = [
  'starting',
  'model-loaded',
  'benchmarking',
  'ready',
  'errored',
];
/** Seconds: from sub-millisecond proxying to multi-minute generations. */
const LATENCY_BUCKETS = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600,
];

/**
 * The worker's Prometheus registry (one per worker, never the global one). Counters and histograms
 * listen to the lifecycle channel; the gauges read the same accounting the autoscaler reporter reads.
 */
export function createPrometheusMetrics(sources: PrometheusSources): PrometheusMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  new Gauge({
    name: 'tsworker_build_info',
    help: 'Always 1; the labels say which tsworker version runs which worker.',
    labelNames: ['version', 'worker'] as const,
    registers: [registry],
  }).set({ version: sources.build.version, worker: sources.build.worker }, 1);
  const observeRequest = requestMetrics(registry);
  const observeWorkload = workloadMetrics(registry);
  sources.lifecycle.subscribe((event) => {
    if (event.kind === 'finished') observeRequest(event.summary);
    else observeWorkload(event);
  });
  loadGauges(registry, sources);
  readinessGauges(registry, sources.readiness);
  followingCounters(registry, sources);
  return { registry };
}

function latencyHistogram(registry: Registry, name: string, help: string) {
  return new LabelledHistogram(name, help, ['route'] as const, LATENCY_BUCKETS, registry);
}

interface RouteHistograms {
  readonly queue: HistogramSeries;
  readonly ttfb: HistogramSeries;
  readonly duration: HistogramSeries;
}

/**
 * Per-request counters and latency histograms. Each route's (and route, outcome, status) series
 * handles are looked up once, then reused: a request adds to numbers only (lib/metrics/series.ts).
 */
function requestMetrics(registry: Registry): (summary: RequestSummary) => void {
  const requests = new LabelledCounter(
    'tsworker_requests_total',
    'Requests by route, HTTP status and outcome (success, error, cancelled, rejected: refused by auth, admission or a drain, invalid).',
    ['route', 'status', 'outcome'] as const,
    registry,
  );
  const queueSeconds = latencyHistogram(
    registry,
    'tsworker_request_queue_seconds',
    'Time from arrival until the work started (FIFO wait included).',
  );
  const ttfbSeconds = latencyHistogram(
    registry,
    'tsworker_request_first_byte_seconds',
    'Time from arrival until the response headers were sent.',
  );
  const durationSeconds = latencyHistogram(
    registry,
    'tsworker_request_duration_seconds',
    'Time from arrival until the response was finished.',
  );
  const histograms = new Map<string, RouteHistograms>();
  const counters = new Map<string, CounterSeries>();
  return (summary) => {
    const route = summary.route;
    const key = `${route} ${summary.outcome} ${summary.status}`;
    let counter = counters.get(key);
    if (counter === undefined) {
      counter = requests.series({
        route,
        status: String(summary.status),
        outcome: summary.outcome,
      });
      counters.set(key, counter);
    }
    let perRoute = histograms.get(route);
    if (perRoute === undefined) {
      perRoute = {
        queue: queueSeconds.series({ route }),
        ttfb: ttfbSeconds.series({ route }),
        duration: durationSeconds.series({ route }),
      };
      histograms.set(route, perRoute);
    }
    counter.inc();
    perRoute.duration.observe(summary.totalMs / 1000);
    if (summary.queueMs !== undefined) perRoute.queue.observe(summary.queueMs / 1000);
    if (summary.ttfbMs !== undefined) perRoute.ttfb.observe(summary.ttfbMs / 1000);
  };
}

const WORKLOAD_KINDS = ['received', 'served', 'cancelled', 'errored', 'rejected'] as const;
type WorkloadKind = (typeof WORKLOAD_KINDS)[number];
/** Which lifecycle event moves which workload counter. */
const WORKLOAD_KIND_OF: Partial<Record<LifecycleEvent['kind'], WorkloadKind>> = {
  admitted: 'received',
  succeeded: 'served',
  cancelled: 'cancelled',
  errored: 'errored',
  rejected: 'rejected',
};

function workloadMetrics(registry: Registry): (event: LifecycleEvent) => void {
  const workload = new LabelledCounter(
    'tsworker_workload_total',
    'Workload units by what happened to them: received, served, cancelled, errored, rejected.',
    ['kind'] as const,
    registry,
  );
  const children = new Map<WorkloadKind, CounterSeries>();
  for (const kind of WORKLOAD_KINDS) children.set(kind, workload.series({ kind }));
  return (event) => {
    const kind = WORKLOAD_KIND_OF[event.kind];
    if (kind !== undefined && 'record' in event) children.get(kind)?.inc(event.record.workload);
  };
}

/** A gauge without labels whose value is read at scrape time. */
function gaugeOf(registry: Registry, name: string, help: string, read: () => number): void {
  new Gauge({
    name,
    help,
    registers: [registry],
    collect() {
      this.set(read());
    },
  });
}

function loadGauges(registry: Registry, sources: PrometheusSources): void {
  const { accounting, fifo } = sources;
  gaugeOf(
    registry,
    'tsworker_inflight_requests',
    'Requests admitted and not finished (queued or running), sessions included.',
    () => accounting.workingCount,
  );
  gaugeOf(
    registry,
    'tsworker_queued_requests',
    'Requests waiting for their turn in the FIFO.',
    () => fifo.waiting,
  );
  gaugeOf(
    registry,
    'tsworker_inflight_workload',
    'Workload of in-flight requests and open sessions (cur_load).',
    () => accounting.currentLoad(),
  );
  gaugeOf(
    registry,
    'tsworker_queued_workload',
    'Workload of admitted requests that counts toward the estimated wait.',
    () => accounting.queuedWorkload,
  );
  gaugeOf(
    registry,
    'tsworker_estimated_wait_seconds',
    'Estimated wait for a new request: queued workload over throughput.',
    () => estimatedWaitSeconds(accounting.queuedWorkload, sources.throughput()),
  );
}

function readinessGauges(registry: Registry, readiness: ReadinessState): void {
  gaugeOf(
    registry,
    'tsworker_max_perf',
    'Benchmarked capacity in workload units per second (max_perf); 0 until measured.',
    () => readiness.maxPerf,
  );
  new Gauge({
    name: 'tsworker_readiness_state',
    help: 'Readiness phase: 1 for the current phase, 0 for the others.',
    labelNames: ['phase'] as const,
    registers: [registry],
    collect() {
      for (const phase of PHASES) this.set({ phase }, readiness.phase === phase ? 1 : 0);
    },
  });
  gaugeOf(registry, 'tsworker_draining', '1 while the worker drains for shutdown.', () =>
    readiness.draining ? 1 : 0,
  );
}

/** A counter that follows a running total kept elsewhere, caught up at scrape time. */
function counterFollowing(registry: Registry, name: string, help: string, total: () => number) {
  let counted = 0;
  new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      const seen = total();
      if (seen > counted) this.inc(seen - counted);
      counted = seen;
    },
  });
}

function followingCounters(registry: Registry, sources: PrometheusSources): void {
  counterFollowing(
    registry,
    'tsworker_model_errors_total',
    'Model errors seen (error log lines, failed healthchecks, failed start-up steps).',
    () => sources.readiness.errorCount,
  );
  counterFollowing(
    registry,
    'tsworker_delete_requests_dropped_total',
    'Finished requests never reported to /delete_requests/: the autoscaler stayed unreachable past MAX_PENDING_DELETE_REQUESTS.',
    () => sources.accounting.droppedDeletes,
  );
}
