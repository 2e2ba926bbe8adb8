/** Presets for real model servers: a worker folder states only what differs from one of these. */
export { randomPrompt } from './prompts.ts';
export { apiPayload, unwrapInput } from './envelope.ts';
export {
  EnvProblems,
  lines,
  readEngineSettings,
  requireModelId,
  type EngineDefaults,
  type EngineSettings,
} from './settings.ts';
export {
  openaiWorker,
  openaiHandler,
  readOpenAISettings,
  generationWorkload,
  scaledWorkload,
  CompletionRequest,
  ChatRequest,
  EmbeddingRequest,
  DEFAULT_MAX_TOKENS,
  OPENAI_DEFAULT_URL,
  OPENAI_ROUTES,
  type OpenAIEngine,
  type OpenAIRoute,
  type OpenAIRouteOptions,
  type OpenAISettings,
} from './openai.ts';
export { openaiLoadTest } from './openai-load-test.ts';
