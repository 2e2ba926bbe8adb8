/** Presets for real model servers: a worker folder states only what differs from one of these. */
export { randomPrompt } from './prompts.ts';
