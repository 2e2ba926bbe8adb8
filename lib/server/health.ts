/**
 * Health endpoints for orchestrators and load balancers (new in tsworker; the reference has none,
 * §3.1). They never touch the model server, the queue or accounting.
 *
 * - GET /health/live: 200 while the process serves (liveness).
 * - GET /health/ready: 200 only when the model is loaded, nothing errored and the worker is not
 *   draining; otherwise 503 with the phase and the reason (readiness).
 * - GET /health: Sprocket's `{"status":"healthy"}` 200 / `{"status":"unhealthy"}` 503, same rule.
 */
import type { HttpBindings } from '@hono/node-server';
import type { Hono } from 'hono';
import type { ReadinessState } from '../readiness/state.ts';

type Env = { Bindings: HttpBindings };

const NO_STORE = { 'cache-control': 'no-store' };

export function mountHealthRoutes(app: Hono<Env>, readiness: ReadinessState): void {
  app.get('/health/live', (c) => c.json({ status: 'alive' }, 200, NO_STORE));
  app.get('/health/ready', (c) => {
    const reason = notReadyReason(readiness);
    return reason === undefined
      ? c.json({ status: 'ready', phase: readiness.phase }, 200, NO_STORE)
      : c.json({ status: 'not ready', phase: readiness.phase, reason }, 503, NO_STORE);
  });
  app.get('/health', (c) =>
    readiness.isReady
      ? c.json({ status: 'healthy' }, 200, NO_STORE)
      : c.json({ status: 'unhealthy' }, 503, NO_STORE),
  );
}

/** Why the worker does not take traffic, or undefined when it does. */
export function notReadyReason(readiness: ReadinessState): string | undefined {
  if (readiness.phase === 'errored') return readiness.errorMessage || 'errored';
  if (readiness.draining) return 'draining: the worker is shutting down';
  switch (readiness.phase) {
    case 'starting':
      return 'waiting for the model to load';
    case 'model-loaded':
    case 'benchmarking':
      return 'model loaded; benchmark and healthcheck not finished';
    case 'ready':
      return undefined;
  }
}
