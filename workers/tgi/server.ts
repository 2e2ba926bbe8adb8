/**
 * The TGI worker (`BACKEND=tgi`): Hugging Face text-generation-inference on port 5001, as the
 * reference's `workers/tgi/worker.py`. Everything lives in the preset; see README.md.
 */
import { tgiWorker } from '../../lib/index.ts';

export default tgiWorker();
