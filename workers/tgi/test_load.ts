/**
 * The TGI worker's load test; `--verify` checks TGI's answer shapes (`generated_text`, `token`
 * events, the last event's `generated_text`):
 *
 *   npm run test_load -- --worker tgi -n 100 -rps 10 -k <api key> -e <endpoint> -l --verify
 *   npx tsx workers/tgi/test_load.ts -n 100 -rps 10 -k <api key> -e <endpoint> -l --route /generate_stream
 */
import { isEntryPoint, testLoadMain, tgiLoadTest } from '../../lib/index.ts';

const loadTest = tgiLoadTest('tgi');
export default loadTest;

// Run directly (`npx tsx workers/tgi/test_load.ts ...`) it is the test_load command.
if (isEntryPoint(import.meta.url)) {
  process.exitCode = await testLoadMain(process.argv.slice(2), loadTest);
}
