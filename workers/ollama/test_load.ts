/**
 * The load test of Ollama: `/api/generate` and `/api/chat` (every other request streamed as NDJSON,
 * the rest `stream: false`) and the OpenAI routes, with a `--verify` that checks Ollama's final
 * `done: true` line and OpenAI's answer shape.
 *
 *   npm run test_load -- --worker ollama -n 200 -rps 50 -k <api key> -e <endpoint> -l --verify
 *   npm run test_load -- --worker ollama -n 50 -rps 10 -k <api key> -e <endpoint> -l --route /api/chat
 */
import { isEntryPoint, ollamaLoadTest, testLoadMain } from '../../lib/index.ts';

const loadTest = ollamaLoadTest('ollama');

export default loadTest;

// Run directly (`npx tsx workers/ollama/test_load.ts ...`) it is the test_load command.
if (isEntryPoint(import.meta.url)) {
  process.exitCode = await testLoadMain(process.argv.slice(2), loadTest);
}
