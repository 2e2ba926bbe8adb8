/**
 * tsworker's public API: everything a worker folder imports. Importing it has no side effects.
 */

/** Defining handlers and workers. */
export {
  defineHandler,
  EndpointHandler,
  DEFAULT_WORKLOAD,
  DEFAULT_MAX_QUEUE_TIME,
  type HandlerOptions,
  type HandlerContext,
  type HandlerTimeouts,
  type BenchmarkConfig,
  type ResolvedHandler,
} from './handler.ts';
export {
  defineWorker,
  defineWorkerFactory,
  isWorkerFactory,
  resolveWorker,
  LogAction,
  type WorkerEnv,
  type WorkerFactory,
  type WorkerOptions,
  type ResolvedWorker,
  type LogActionConfig,
  type ExtraRoute,
  type Lifecycle,
} from './worker.ts';

/** Schemas: workers describe payloads with the same zod the framework validates with. */
export { z } from 'zod';

/** Errors a handler may throw to answer with a specific status. */
export {
  WorkerError,
  DefinitionError,
  StartupError,
  type ErrorCode,
  type ErrorOrigin,
} from './errors.ts';

/** Workload helpers. */
export {
  countTokens,
  countTokensAsync,
  countTokensWithTiktoken,
  warmTokenizer,
  OFF_THREAD_MIN_LENGTH,
} from './tokenizer.ts';
export { closeTokenizerPool } from './tokenizer-pool.ts';

/** Presets for real model servers (vLLM, SGLang, llama.cpp, TGI, ComfyUI, Ollama, passthrough). */
export * from './presets/index.ts';

/** Configuration and running a worker (used by the CLI, tests and embedders). */
export { loadConfig, publicUrl, ConfigError, type ResolvedConfig } from './config.ts';
export { createLogger, silentLogger, type Logger } from './log.ts';
export {
  createWorkerApp,
  startWorker,
  RESERVED_PATHS,
  type WorkerApp,
  type WorkerDeps,
  type WorkerRuntime,
  type RunningWorker,
  drain,
  type DrainOptions,
  type DrainOutcome,
} from './server/index.ts';
export type { RequestSummary, RequestObserver } from './pipeline/index.ts';
export { startErrorBeacon, type ErrorBeacon } from './metrics/beacon.ts';
export {
  PROTOCOL_VERSION,
  type WorkerStatus,
  type DeleteRequestEntry,
} from './metrics/reporter.ts';

/** Load testing: a worker's test_load.ts declares its payloads; the engine is shared with the bench. */
export {
  defineLoadTest,
  testLoadMain,
  isEntryPoint,
  runLoad,
  startLoad,
  routeTarget,
  directTarget,
  summarize,
  formatSummary,
  seededRandom,
  type LoadTestDefinition,
  type LoadTestOptions,
  type LoadTestRoute,
  type Answer,
  type LoadOptions,
  type LoadResult,
  type LoadSummary,
  type PlannedRequest,
  type RequestRecord,
  type Target,
} from './test-harness/index.ts';
