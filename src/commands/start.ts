import {
  createLogger,
  loadConfig,
  startErrorBeacon,
  startWorker,
  type RunningWorker,
} from '../../lib/index.ts';

/** The worker did not start; the error beacon is running and keeps the process alive. */
export class StartupFailed extends Error {
  constructor(reason: string) {
    super(`worker failed to start: ${reason}`);
    this.name = 'StartupFailed';
  }
}
import { keepServingOnStrayErrors } from './last-resort.ts';
import { loadWorker } from './load-worker.ts';
import { drainOnSignals } from './signals.ts';

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
  let running: RunningWorker;
  try {
    const worker = await loadWorker(workerName, env);
    running = await startWorker(worker, config, { logger });
  } catch (error) {
    // A worker that cannot start tells the autoscaler, every interval, until it is stopped (§1.2).
    const reason = error instanceof Error ? error.message : String(error);
    logger.fatal({ err: error }, 'worker failed to start');
    if (config.reportAddrs.length === 0) throw error;
    const beacon = startErrorBeacon(config, reason, logger);
    const stopBeacon = () => void beacon.stop().then(() => process.exit(1));
    process.once('SIGTERM', stopBeacon);
    process.once('SIGINT', stopBeacon);
    throw new StartupFailed(reason);
  }
  drainOnSignals(running, logger);
  return running;
}
