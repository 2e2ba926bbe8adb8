/**
 * The load test of SGLang: completions and chat, every other request streamed with usage, and a
 * `--verify` that checks OpenAI's answer shape (choices, usage, a stream ending in `data: [DONE]`).
 *
 *   npm run test_load -- --worker sglang -n 200 -rps 50 -k <api key> -e <endpoint> -l --verify
 *   npm run test_load -- --worker sglang -n 50 -rps 10 -k <api key> -e <endpoint> -l --route /v1/chat/completions
 */
import { isEntryPoint, openaiLoadTest, testLoadMain } from '../../lib/index.ts';

const loadTest = openaiLoadTest('sglang');

export default loadTest;

// Run directly (`npx tsx workers/sglang/test_load.ts ...`) it is the test_load command.
if (isEntryPoint(import.meta.url)) {
  process.exitCode = await testLoadMain(process.argv.slice(2), loadTest);
}
