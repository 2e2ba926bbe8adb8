/**
 * The faithful fakes, by worker name: `tsworker dev <worker>` and the tests start a worker's fake
 * from here. Each engine's module adds one entry.
 */
import type { FakeServer, FakeServerOptions } from './common.ts';
import { startComfyUIFake } from './comfyui.ts';
import { OLLAMA_DEV_BATCHING, startOllamaFake } from './ollama.ts';
import { startOpenAIFake } from './openai.ts';
import { startTgiFake } from './tgi.ts';

export type FakeStarter = (options: FakeServerOptions) => Promise<FakeServer>;

export const FAKES: Readonly<Record<string, FakeStarter>> = {
  // One line per worker, e.g.  vllm: (options) => startOpenAIFake({ ...options, variant: 'vllm' }),
  comfyui: (options) => startComfyUIFake(options),
  ollama: (options) => startOllamaFake({ batching: OLLAMA_DEV_BATCHING, ...options }),
  tgi: (options) => startTgiFake(options),
  vllm: (options) => startOpenAIFake({ ...options, variant: 'vllm' }),
  openai: (options) => startOpenAIFake({ ...options, variant: 'vllm' }),
  sglang: (options) => startOpenAIFake({ ...options, variant: 'sglang' }),
  llama: (options) => startOpenAIFake({ ...options, variant: 'llama' }),
};
