/**
 * hello_world without its tokenizer: the same routes, payload and model server, but every request
 * counts the default workload instead of its prompt's tokens. The bench runs it beside hello_world
 * to show what the framework costs apart from counting tokens, which the floor never does.
 */
import { defineHandler, defineWorker, randomPrompt, z } from '../../lib/index.ts';

const InputData = z.object({
  prompt: z.string(),
  max_response_tokens: z.number().int().positive().nullable(),
});

const common = { payload: InputData, allowParallel: true };

export default defineWorker({
  name: 'flat_workload',
  modelServerUrl: 'http://127.0.0.1:5001',
  handlers: [
    defineHandler({
      ...common,
      route: '/generate',
      benchmark: {
        generator: () => ({ prompt: randomPrompt(250), max_response_tokens: 300 }),
        runs: 3,
        concurrency: 10,
      },
    }),
    defineHandler({ ...common, route: '/generate_stream' }),
  ],
  logActions: { onLoad: ['server has started'], onError: ['Exception: corrupted model file'] },
  modelHealthcheckPath: '/healthcheck',
});
