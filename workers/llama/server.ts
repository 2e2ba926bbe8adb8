/**
 * llama.cpp's `llama-server`, as the reference's `workers/llama` (model-servers.md §5.1). Routes,
 * workload and benchmark come from the OpenAI preset; this folder states llama-server's log.
 */
import { openaiWorker } from '../../lib/index.ts';

export default openaiWorker({
  name: 'llama',
  modelLog: '/var/log/portal/llama.log',
  modelEnv: ['LLAMA_MODEL'],
  logActions: {
    // Printed once /health answers 200; never "listening on", which older builds print while
    // every request still gets 503 "Loading model".
    onLoad: ['model loaded'],
    onError: ['INFO exited: llama', 'error loading model', 'failed to load model'],
    onInfo: ['"message":"Download'],
  },
});
