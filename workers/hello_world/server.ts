import { defineHandler, defineWorker } from '../../lib/index.ts';
import { countWorkload, forTest, InputData } from './data_types.ts';

/** What both routes share: the payload, its workload in prompt tokens, and no FIFO. */
const common = { payload: InputData, workload: countWorkload, allowParallel: true };

/** `/generate`: the whole answer as JSON. Its benchmark measures the model's capacity. */
const generate = defineHandler({
  ...common,
  route: '/generate',
  benchmark: { generator: forTest, runs: 3, concurrency: 10 },
});

/** `/generate_stream`: the same request, one token per SSE event, piped as it arrives. */
const generateStream = defineHandler({ ...common, route: '/generate_stream' });

export default defineWorker({
  name: 'hello_world',
  modelServerUrl: 'http://127.0.0.1:5001',
  handlers: [generate, generateStream],
  logActions: {
    onLoad: ['server has started'],
    onError: ['Exception: corrupted model file'],
    onInfo: ['"message":"Download'],
  },
  modelHealthcheckPath: '/healthcheck',
  extraRoutes: [
    { method: 'GET', path: '/ping', respond: () => new Response('pong') },
    { method: 'GET', path: '/healthcheck', forward: '/healthcheck' },
  ],
});
