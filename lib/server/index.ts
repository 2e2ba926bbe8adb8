export {
  createWorkerApp,
  RESERVED_PATHS,
  type WorkerApp,
  type WorkerDeps,
  type WorkerParts,
} from './app.ts';
export { startWorker, type RunningWorker, type WorkerInspection } from './start.ts';
export { drain, type DrainOptions, type DrainOutcome } from './shutdown.ts';
export { PLAIN_BODY_LIMIT_BYTES } from './listeners.ts';
