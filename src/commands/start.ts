import {
  createLogger,
  loadConfig,
  startErrorBeacon,
  startWorker,
  type RunningWorker,
} from '../../lib/entry-server.ts';

/** The worker did not start; the error beacon is running and keeps the process alive. */
export class StartupFailed extends Error {
  constructor(reason: string, options?: { cause?: unknown }) {
    super(`worker failed to start: ${reason}`, options);
    this.name = 'StartupFailed';
  }
}
import { keepServingOnStrayErrors } from './last-resort.ts';
import { loadWorker } from './load-worker.ts';
import { catchEarlySignals, drainOnSignals, onParentExit } from './signals.ts';
import { errorMessage } from '../../lib/internal/values.ts';

/**
 * `tsworker start <worker>`: one worker configured by the environment. SIGTERM/SIGINT drain it
 * gracefully (TERMINATION_GRACE_PERIOD_SECONDS); a second signal exits at once.
 */
export async function startCommand(
  workerName: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<RunningWorker> {
  const config = loadConfig(env);
  const logger = createLogger({ level: config.logLevel });
  keepServingOnStrayErrors(logger);
  const early = catchEarlySignals();
  let running: RunningWorker;
  try {
    const worker = await loadWorker(workerName, env);
    running = await startWorker(worker, config, { logger });
  } catch (error) {
    early.release();
    // A worker that cannot start tells the autoscaler, every interval, until it is stopped (§1.2).
    // The CLI prints the error, once; a log line here would say it a second time.
    const reason = errorMessage(error);
    if (config.reportAddrs.length === 0) throw error;
    const beacon = startErrorBeacon(config, reason, logger);
    const stopBeacon = () => void beacon.stop().then(() => process.exit(1));
    process.once('SIGTERM', stopBeacon);
    process.once('SIGINT', stopBeacon);
    onParentExit(stopBeacon);
    if (early.received() !== undefined) stopBeacon();
    throw new StartupFailed(reason, { cause: error });
  }
  early.release();
  drainOnSignals(running, logger, { pending: early.received() });
  return running;
}
