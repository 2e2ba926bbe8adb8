export {
  createWorkerApp,
  RESERVED_PATHS,
  type WorkerApp,
  type WorkerDeps,
  type WorkerRuntime,
} from './app.ts';
export { startWorker, type RunningWorker } from './start.ts';
export { drain, type DrainOptions, type DrainOutcome } from './shutdown.ts';
export { PLAIN_BODY_LIMIT_BYTES } from './listeners.ts';
