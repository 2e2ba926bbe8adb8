export {
  createWorkerApp,
  RESERVED_PATHS,
  type WorkerApp,
  type WorkerDeps,
  type WorkerRuntime,
} from './app.ts';
export { startWorker, type RunningWorker } from './start.ts';
