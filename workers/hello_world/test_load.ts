/**
 * hello_world's load test, as PyWorker's `workers/hello_world/test_load.py`:
 *
 *   npx tsx workers/hello_world/test_load.ts -n 10 -rps 5 -k <api key> -e <endpoint> -l
 *   npm run test_load -- -n 10 -rps 5 -k <api key> -e <endpoint> -l --route /generate_stream --verify
 */
import { defineLoadTest, isEntryPoint, testLoadMain, type Answer } from '../../lib/index.ts';
import { countPromptTokens, forTest, type InputData } from './data_types.ts';

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** `/generate` answers `{generated_text, tokens}`: one word per token, as many as asked for. */
function verifyGenerate(answer: Answer<InputData>): string | undefined {
  const body = answer.json;
  if (!isRecord(body)) return 'the answer is not a JSON object';
  const { generated_text: text, tokens } = body;
  if (typeof text !== 'string' || typeof tokens !== 'number')
    return 'generated_text or tokens is missing';
  const asked = answer.payload.max_response_tokens;
  if (asked !== null && tokens !== asked) return `asked for ${asked} tokens, got ${tokens}`;
  const words = text === '' ? 0 : text.split(' ').length;
  if (words !== tokens) return `tokens says ${tokens} but generated_text has ${words} words`;
  return undefined;
}

/** `/generate_stream` sends `{token, index}` events in order, then `{done: true, tokens}`. */
function verifyStream(answer: Answer<InputData>): string | undefined {
  const events = answer.events ?? [];
  const last = events.at(-1);
  if (!isRecord(last) || last['done'] !== true) return 'the stream did not end with a done event';
  const tokenEvents = events.slice(0, -1);
  for (const [i, event] of tokenEvents.entries()) {
    if (!isRecord(event) || typeof event['token'] !== 'string' || event['index'] !== i) {
      return `event ${i} is not token ${i}`;
    }
  }
  if (last['tokens'] !== tokenEvents.length) {
    return `done says ${String(last['tokens'])} tokens but ${tokenEvents.length} arrived`;
  }
  const asked = answer.payload.max_response_tokens;
  if (asked !== null && tokenEvents.length !== asked)
    return `asked for ${asked} tokens, got ${tokenEvents.length}`;
  return undefined;
}

/** A stream event `{token}` is one token; a JSON body says how many in `tokens`. */
function countTokens(value: unknown, kind: 'event' | 'body'): number {
  if (!isRecord(value)) return 0;
  if (kind === 'event') return typeof value['token'] === 'string' ? 1 : 0;
  return typeof value['tokens'] === 'number' ? value['tokens'] : 0;
}

const loadTest = defineLoadTest<InputData>({
  name: 'hello_world',
  routes: {
    '/generate': {
      payload: forTest,
      cost: countPromptTokens,
      verify: verifyGenerate,
      tokens: countTokens,
    },
    '/generate_stream': {
      payload: forTest,
      cost: countPromptTokens,
      verify: verifyStream,
      tokens: countTokens,
    },
  },
});

export default loadTest;

// Run directly (`npx tsx workers/hello_world/test_load.ts ...`) it is the test_load command.
if (isEntryPoint(import.meta.url)) {
  process.exitCode = await testLoadMain(process.argv.slice(2), loadTest);
}
