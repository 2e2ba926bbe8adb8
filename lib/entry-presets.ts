/**
 * `tsworker/presets`: the building blocks of the presets, for a worker that goes beyond a preset's
 * options: request schemas, workload functions, route tables, engine settings readers, log actions
 * and the defaults they share. The presets themselves (`openaiWorker`, `tgiWorker`, ...) are in
 * `tsworker`.
 */
export * from './presets/index.ts';
export { DEFAULT_WORKLOAD, DEFAULT_MAX_QUEUE_TIME } from './handler.ts';
export { countTokensWithTiktoken } from './tokenizer.ts';
