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
export { tgiWorker, tgiHandler, tgiWorkload, TgiRequest, TGI_LOG_ACTIONS } from './tgi.ts';
export { tgiLoadTest } from './tgi-load-test.ts';
export {
  ollamaWorker,
  ollamaHandler,
  ollamaWorkload,
  ollamaHostUrl,
  readOllamaSettings,
  OllamaGenerateRequest,
  OllamaChatRequest,
  OLLAMA_DEFAULT_URL,
  OLLAMA_DEFAULT_LOG,
  OLLAMA_HEALTH_PATH,
  OLLAMA_LOG_ACTIONS,
  OLLAMA_NATIVE_ROUTES,
  type OllamaEngine,
  type OllamaNativeRoute,
  type OllamaRoute,
  type OllamaRouteOptions,
  type OllamaSettings,
} from './ollama.ts';
export { ollamaLoadTest } from './ollama-load-test.ts';
export {
  comfyuiWorker,
  comfyuiHandler,
  comfyuiLifecycle,
  comfyuiLoadTest,
  comfyuiWorkload,
  readComfyUISettings,
  text2imageSample,
  ComfyUIRequest,
  COMFYUI_DEFAULT_URL,
  COMFYUI_WRAPPER_URL,
  COMFYUI_DEFAULT_LOG,
  COMFYUI_LOG_ACTIONS,
  COMFYUI_ROUTES,
  type ComfyUIEngine,
  type ComfyUIReadinessOptions,
  type ComfyUIRoute,
  type ComfyUISettings,
} from './comfyui.ts';
export { passthroughWorker, AnyJsonObject, type PassthroughOptions } from './passthrough.ts';
