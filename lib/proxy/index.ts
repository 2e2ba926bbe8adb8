export { createModelPool, basePath, type ModelClientOptions } from './pool.ts';
export {
  clientResponseHeaders,
  isEventStreamContentType,
  isStreamingContentType,
} from './headers.ts';
export {
  callModel,
  describeUpstreamError,
  pipeModelResponse,
  sendWebResponse,
  toWebResponse,
  type AbortState,
  type ModelCall,
  type UpstreamSignal,
} from './forward.ts';
