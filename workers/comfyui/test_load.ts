/**
 * The ComfyUI worker's load test: Text2Image jobs of the benchmark's size (512² × 20 steps).
 * `--verify` checks the wrapper's Result (`status: "completed"` and its `output` list) and, on the
 * stream route, that the progress events end in a `final_result` event carrying that Result:
 *
 *   npm run test_load -- --worker comfyui -n 20 -rps 1 -k <api key> -e <endpoint> -l --verify
 *   npx tsx workers/comfyui/test_load.ts -n 20 -rps 1 -k <api key> -e <endpoint> -l --route /generate/stream
 */
import { comfyuiLoadTest, isEntryPoint, testLoadMain } from '../../lib/index.ts';

const loadTest = comfyuiLoadTest('comfyui');
export default loadTest;

// Run directly (`npx tsx workers/comfyui/test_load.ts ...`) it is the test_load command.
if (isEntryPoint(import.meta.url)) {
  process.exitCode = await testLoadMain(process.argv.slice(2), loadTest);
}
