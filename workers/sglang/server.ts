/**
 * SGLang's server (`sglang serve`), as the reference's `workers/sglang` (model-servers.md §4.1).
 * Routes, workload and benchmark come from the OpenAI preset; this folder states SGLang's log.
 */
import { openaiWorker } from '../../lib/index.ts';

export default openaiWorker({
  name: 'sglang',
  modelLog: '/var/log/portal/sglang.log',
  modelEnv: ['SGLANG_MODEL'],
  logActions: {
    // Printed after the warm-up request passed; uvicorn's own lines come earlier.
    onLoad: ['The server is fired up and ready to roll!'],
    onError: ['INFO exited: sglang', 'Traceback (most recent call last):'],
    onInfo: ['"message":"Download'],
  },
});
