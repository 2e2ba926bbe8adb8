/**
 * vLLM's OpenAI-compatible server (`vllm serve`), as the reference's `workers/vllm` (model-servers.md
 * §3.1). Routes, workload and benchmark come from the OpenAI preset; this folder states vLLM's log.
 */
import { openaiWorker } from '../../lib/index.ts';

export default openaiWorker({
  name: 'vllm',
  modelLog: '/var/log/portal/vllm.log',
  modelEnv: ['VLLM_MODEL'],
  logActions: {
    // uvicorn's line, printed once the API server listens (after the engine is built).
    onLoad: ['Application startup complete.'],
    onError: ['INFO exited: vllm', 'RuntimeError: Engine', 'Traceback (most recent call last):'],
    onInfo: ['"message":"Download'],
  },
});
