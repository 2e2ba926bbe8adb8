/**
 * The null worker's load test: short reservations, one after another (the worker is a FIFO).
 *
 *   npm run test_load -- --worker null -n 20 -rps 5 -k <api key> -e <endpoint> -l --verify
 */
import { defineLoadTest, isEntryPoint, testLoadMain, type Answer } from '../../lib/index.ts';
import type { ReserveInput } from './data_types.ts';

/** Short holds, so a load test measures the queue rather than waiting on it. */
const LOAD_TEST_DURATION_SECONDS = 0.01;

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** `/reserve` answers `{"result": {released, requested, duration, capped, held_seconds}}`. */
function verifyReserve(answer: Answer<ReserveInput>): string | undefined {
  const body = answer.json;
  if (!isRecord(body) || !isRecord(body['result'])) return 'the answer has no "result" object';
  const result = body['result'];
  if (result['released'] !== 'duration_elapsed') {
    return `released is ${JSON.stringify(result['released'])}, not "duration_elapsed"`;
  }
  const asked = answer.payload.duration ?? null;
  if (result['requested'] !== asked) {
    return `requested says ${JSON.stringify(result['requested'])}, the client asked for ${String(asked)}`;
  }
  const duration = result['duration'];
  if (typeof duration !== 'number' || !(duration > 0)) return 'duration is not a positive number';
  if (asked !== null && duration > asked)
    return `held for ${duration} s, more than the ${asked} s asked`;
  if (typeof result['held_seconds'] !== 'number') return 'held_seconds is missing';
  return undefined;
}

const loadTest = defineLoadTest<ReserveInput>({
  name: 'null',
  routes: {
    '/reserve': {
      payload: () => ({ duration: LOAD_TEST_DURATION_SECONDS }),
      cost: () => 100,
      verify: verifyReserve,
      // No tokens: a reservation is occupancy, not generation.
      tokens: () => 0,
    },
  },
});

export default loadTest;

// Run directly (`npx tsx workers/null/test_load.ts ...`) it is the test_load command.
if (isEntryPoint(import.meta.url)) {
  process.exitCode = await testLoadMain(process.argv.slice(2), loadTest);
}
