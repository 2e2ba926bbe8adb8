/**
 * `tsworker/server`: running a worker inside a program of your own (what the CLI's `start` and
 * `dev` do): configuration, logging, starting, draining and the failed-start beacon.
 */
export { loadConfig, publicUrl, ConfigError, type ResolvedConfig } from './config.ts';
export { createLogger, silentLogger, type Logger } from './log.ts';
export { resolveWorker, isWorkerFactory, type ResolvedWorker } from './worker.ts';
export type { ResolvedHandler } from './handler.ts';
export {
  createWorkerApp,
  startWorker,
  RESERVED_PATHS,
  type WorkerApp,
  type WorkerDeps,
  type WorkerParts,
  type WorkerInspection,
  type RunningWorker,
  drain,
  type DrainOptions,
  type DrainOutcome,
} from './server/index.ts';
export {
  RequestLifecycle,
  type LifecycleEvent,
  type LifecycleListener,
} from './lifecycle/channel.ts';
export type { RequestRecord, RequestSummary } from './lifecycle/record.ts';
export { startErrorBeacon, type ErrorBeacon } from './metrics/beacon.ts';
export { StartupError } from './errors.ts';
export { closeTokenizerPool } from './tokenizer-pool.ts';
export {
  PROTOCOL_VERSION,
  type WorkerStatus,
  type DeleteRequestEntry,
} from './metrics/reporter.ts';
