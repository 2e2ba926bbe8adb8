import { createLogger, loadConfig, startWorker, type RunningWorker } from '../../lib/index.ts';
import { loadWorker } from './load-worker.ts';

/**
 * `tsworker start <worker>`: one worker configured by the environment. Stops on SIGTERM/SIGINT.
 */
export async function startCommand(
  workerName: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<RunningWorker> {
  const config = loadConfig(env);
  const logger = createLogger({ level: config.logLevel });
  const worker = await loadWorker(workerName);
  const running = await startWorker(worker, config, { logger });
  const stop = () => {
    void running.close().then(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  return running;
}
