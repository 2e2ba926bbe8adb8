/**
 * `tsworker`: what a worker folder imports (server.ts, data_types.ts, test_load.ts). Importing it
 * has no side effects. The presets' building blocks (schemas, workload functions, route tables):
 * `tsworker/presets`. Embedding a worker in a program of your own: `tsworker/server`. Driving load
 * from code: `tsworker/load-test`.
 */

/** Defining handlers and workers. */
export {
  defineHandler,
  EndpointHandler,
  type HandlerOptions,
  type HandlerContext,
  type HandlerTimeouts,
  type BenchmarkConfig,
} from './handler.ts';
export {
  defineWorker,
  defineWorkerFactory,
  LogAction,
  type WorkerEnv,
  type WorkerFactory,
  type WorkerOptions,
  type LogActionConfig,
  type ExtraRoute,
  type Lifecycle,
} from './worker.ts';

/** Schemas: workers describe payloads with the same zod the framework validates with. */
export { z } from 'zod';

/** The error a handler may throw to answer with a specific status, and the one a bad definition gets. */
export {
  WorkerError,
  DefinitionError,
  type ErrorCode,
  type CustomErrorCode,
  type ErrorOrigin,
} from './errors.ts';

/** Workload helpers. */
export {
  countTokens,
  countTokensAsync,
  warmTokenizer,
  OFF_THREAD_MIN_LENGTH,
} from './tokenizer.ts';

/** Presets for real model servers (vLLM, SGLang, llama.cpp, TGI, ComfyUI, Ollama, passthrough). */
export { openaiWorker, openaiLoadTest, type OpenAIEngine } from './presets/index.ts';
export { tgiWorker, tgiLoadTest } from './presets/index.ts';
export { ollamaWorker, ollamaLoadTest, type OllamaEngine } from './presets/index.ts';
export { comfyuiWorker, comfyuiLoadTest } from './presets/index.ts';
export { passthroughWorker } from './presets/index.ts';
export { randomPrompt, apiPayload, EnvProblems } from './presets/index.ts';

/** A worker's test_load.ts: its payloads and its command line. */
export {
  defineLoadTest,
  testLoadMain,
  isEntryPoint,
  type LoadTestDefinition,
  type LoadTestOptions,
  type LoadTestRoute,
  type Answer,
} from './test-harness/index.ts';
