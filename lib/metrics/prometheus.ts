import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { RequestSummary } from '../pipeline/index.ts';
import type { FifoQueue } from '../queue/index.ts';
import { estimatedWaitSeconds } from '../queue/index.ts';
import type { ReadinessPhase, ReadinessState } from '../readiness/state.ts';
import type { Accounting } from './accounting.ts';

export interface PrometheusSources {
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
  /** Feed one finished request (a pipeline observer). */
  readonly observe: (summary: RequestSummary) => void;
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
 * The worker's Prometheus registry (one per worker, never the global one). It reads the same
 * accounting the autoscaler reporter reads; the pipeline only reports finished requests to it.
 */
export function createPrometheusMetrics(sources: PrometheusSources): PrometheusMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const { accounting, readiness, fifo } = sources;

  new Gauge({
    name: 'tsworker_build_info',
    help: 'Always 1; the labels say which tsworker version runs which worker.',
    labelNames: ['version', 'worker'] as const,
    registers: [registry],
  }).set({ version: sources.build.version, worker: sources.build.worker }, 1);

  const requests = new Counter({
    name: 'tsworker_requests_total',
    help: 'Requests by route, HTTP status and outcome (success, error, cancelled, rejected: refused by auth, admission or a drain, invalid).',
    labelNames: ['route', 'status', 'outcome'] as const,
    registers: [registry],
  });
  const queueSeconds = new Histogram({
    name: 'tsworker_request_queue_seconds',
    help: 'Time from arrival until the work started (FIFO wait included).',
    labelNames: ['route'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const ttfbSeconds = new Histogram({
    name: 'tsworker_request_first_byte_seconds',
    help: 'Time from arrival until the response headers were sent.',
    labelNames: ['route'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const durationSeconds = new Histogram({
    name: 'tsworker_request_duration_seconds',
    help: 'Time from arrival until the response was finished.',
    labelNames: ['route'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const workload = new Counter({
    name: 'tsworker_workload_total',
    help: 'Workload units by what happened to them: received, served, cancelled, errored, rejected.',
    labelNames: ['kind'] as const,
    registers: [registry],
  });
  for (const kind of ['received', 'served', 'cancelled', 'errored', 'rejected'])
    workload.inc({ kind }, 0);
  accounting.subscribe((event) => {
    const amount = event.record.workload;
    switch (event.kind) {
      case 'started':
        workload.inc({ kind: 'received' }, amount);
        break;
      case 'succeeded':
        workload.inc({ kind: 'served' }, amount);
        break;
      case 'cancelled':
        workload.inc({ kind: 'cancelled' }, amount);
        break;
      case 'errored':
        workload.inc({ kind: 'errored' }, amount);
        break;
      case 'rejected':
        workload.inc({ kind: 'rejected' }, amount);
        break;
      default:
        break;
    }
  });

  new Gauge({
    name: 'tsworker_inflight_requests',
    help: 'Requests admitted and not finished (queued or running), sessions included.',
    registers: [registry],
    collect() {
      this.set(accounting.inFlight.size);
    },
  });
  new Gauge({
    name: 'tsworker_queued_requests',
    help: 'Requests waiting for their turn in the FIFO.',
    registers: [registry],
    collect() {
      this.set(fifo.waiting);
    },
  });
  new Gauge({
    name: 'tsworker_inflight_workload',
    help: 'Workload of in-flight requests and open sessions (cur_load).',
    registers: [registry],
    collect() {
      this.set(accounting.currentLoad());
    },
  });
  new Gauge({
    name: 'tsworker_queued_workload',
    help: 'Workload of admitted requests that counts toward the estimated wait.',
    registers: [registry],
    collect() {
      this.set(accounting.queuedWorkload);
    },
  });
  new Gauge({
    name: 'tsworker_estimated_wait_seconds',
    help: 'Estimated wait for a new request: queued workload over throughput.',
    registers: [registry],
    collect() {
      this.set(estimatedWaitSeconds(accounting.queuedWorkload, sources.throughput()));
    },
  });
  new Gauge({
    name: 'tsworker_max_perf',
    help: 'Benchmarked capacity in workload units per second (max_perf); 0 until measured.',
    registers: [registry],
    collect() {
      this.set(readiness.maxPerf);
    },
  });
  new Gauge({
    name: 'tsworker_readiness_state',
    help: 'Readiness phase: 1 for the current phase, 0 for the others.',
    labelNames: ['phase'] as const,
    registers: [registry],
    collect() {
      for (const phase of PHASES) this.set({ phase }, readiness.phase === phase ? 1 : 0);
    },
  });
  new Gauge({
    name: 'tsworker_draining',
    help: '1 while the worker drains for shutdown.',
    registers: [registry],
    collect() {
      this.set(readiness.draining ? 1 : 0);
    },
  });
  let errorsCounted = 0;
  new Counter({
    name: 'tsworker_model_errors_total',
    help: 'Model errors seen (error log lines, failed healthchecks, failed start-up steps).',
    registers: [registry],
    collect() {
      const seen = readiness.errorCount;
      if (seen > errorsCounted) this.inc(seen - errorsCounted);
      errorsCounted = seen;
    },
  });

  let droppedCounted = 0;
  new Counter({
    name: 'tsworker_delete_requests_dropped_total',
    help: 'Finished requests never reported to /delete_requests/: the autoscaler stayed unreachable past MAX_PENDING_DELETE_REQUESTS.',
    registers: [registry],
    collect() {
      const dropped = accounting.droppedDeletes;
      if (dropped > droppedCounted) this.inc(dropped - droppedCounted);
      droppedCounted = dropped;
    },
  });

  return {
    registry,
    observe(summary) {
      const route = summary.route;
      requests.inc({ route, status: String(summary.status), outcome: summary.outcome });
      durationSeconds.observe({ route }, summary.totalMs / 1000);
      if (summary.queueMs !== undefined) queueSeconds.observe({ route }, summary.queueMs / 1000);
      if (summary.ttfbMs !== undefined) ttfbSeconds.observe({ route }, summary.ttfbMs / 1000);
    },
  };
}
