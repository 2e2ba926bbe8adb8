/**
 * The faithful fakes, by worker name: `tsworker dev <worker>` and the tests start a worker's fake
 * from here. Each engine's module adds one entry.
 */
import type { FakeServer, FakeServerOptions } from './common.ts';

export type FakeStarter = (options: FakeServerOptions) => Promise<FakeServer>;

export const FAKES: Readonly<Record<string, FakeStarter>> = {
  // One line per worker, e.g.  vllm: (options) => startOpenAIFake({ ...options, variant: 'vllm' }),
};
