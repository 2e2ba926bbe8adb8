/**
 * The load test of the TGI worker: `/generate` and `/generate_stream`, and a `--verify` that checks
 * TGI's real answer shapes (model-servers.md §7.2).
 */
import { defineLoadTest, type LoadTestDefinition } from '../test-harness/definition.ts';
import type { Answer } from '../test-harness/load-types.ts';
import { randomPrompt } from './prompts.ts';
import { tgiWorkload } from './tgi.ts';
import { isRecord } from '../internal/values.ts';

interface TgiPayload {
  inputs: string;
  parameters: { max_new_tokens: number; details?: boolean; [key: string]: unknown };
}

const LOAD_TEST_MAX_TOKENS = 128;
const LOAD_TEST_WORDS = 100;

/**
 * `/generate` always asks for `details`, the only place its body says how many tokens it holds;
 * on `/generate_stream` odd requests ask, so one run checks events with and without them.
 */
function payload(details: (index: number) => boolean) {
  return (index: number): TgiPayload => ({
    inputs: randomPrompt(LOAD_TEST_WORDS),
    parameters: {
      max_new_tokens: LOAD_TEST_MAX_TOKENS,
      ...(details(index) && { details: true }),
    },
  });
}

const FINISH_REASONS = ['length', 'eos_token', 'stop_sequence'];

function checkToken(token: unknown): string | undefined {
  if (!isRecord(token)) return 'token is missing';
  if (typeof token['id'] !== 'number' || typeof token['text'] !== 'string') {
    return 'token lacks id or text';
  }
  if (typeof token['special'] !== 'boolean') return 'token lacks special';
  return undefined;
}

/** `{generated_text}`, plus `details` exactly when asked for, with no more tokens than allowed. */
function verifyGenerate(answer: Answer<TgiPayload>): string | undefined {
  const body = answer.json;
  if (!isRecord(body)) return 'the answer is not a JSON object';
  if (typeof body['generated_text'] !== 'string') return 'generated_text is missing';
  const asked = answer.payload.parameters.max_new_tokens;
  const header = Number(answer.headers['x-generated-tokens']);
  if (Number.isFinite(header) && header > asked) {
    return `asked for at most ${asked} tokens, x-generated-tokens says ${header}`;
  }
  const details = body['details'];
  if (!answer.payload.parameters.details) {
    return details === undefined ? undefined : 'details came back without being asked for';
  }
  if (!isRecord(details)) return 'details were asked for and are missing';
  if (!FINISH_REASONS.includes(String(details['finish_reason']))) {
    return `unknown finish_reason ${JSON.stringify(details['finish_reason'])}`;
  }
  const generated = details['generated_tokens'];
  if (typeof generated !== 'number' || generated > asked) {
    return `asked for at most ${asked} tokens, details.generated_tokens is ${String(generated)}`;
  }
  const tokens = details['tokens'];
  if (!Array.isArray(tokens) || tokens.length !== generated) {
    return 'details.tokens does not hold generated_tokens tokens';
  }
  for (const token of tokens) {
    const wrong = checkToken(token);
    if (wrong !== undefined) return `details.tokens: ${wrong}`;
  }
  return undefined;
}

/**
 * TGI's stream: `data:{json}` events, no `[DONE]`; each event a `token` with its 1-based `index`;
 * only the last carries `generated_text` (the tokens' texts joined) and, when asked, `details`.
 */
function verifyStream(answer: Answer<TgiPayload>): string | undefined {
  if (/\[DONE\]/.test(answer.text)) return 'a TGI stream has no [DONE]';
  const events = answer.events ?? [];
  if (events.length === 0) return 'the stream carried no event';
  const asked = answer.payload.parameters.max_new_tokens;
  if (events.length > asked) return `asked for at most ${asked} tokens, got ${events.length}`;
  let text = '';
  for (const [i, event] of events.entries()) {
    if (!isRecord(event)) return `event ${i + 1} is not a JSON object`;
    if (typeof event['error'] === 'string') return `TGI error event: ${event['error']}`;
    if (event['index'] !== i + 1) return `event ${i + 1} has index ${String(event['index'])}`;
    const wrong = checkToken(event['token']);
    if (wrong !== undefined) return `event ${i + 1}: ${wrong}`;
    text += (event['token'] as { text: string }).text;
    const last = i === events.length - 1;
    if (!last && (event['generated_text'] !== null || event['details'] !== null)) {
      return `event ${i + 1} carries generated_text or details before the last event`;
    }
  }
  const final = events.at(-1) as Record<string, unknown>;
  if (final['generated_text'] !== text) {
    return 'the last event’s generated_text is not the streamed tokens joined';
  }
  const details = final['details'];
  if (answer.payload.parameters.details) {
    if (!isRecord(details) || details['generated_tokens'] !== events.length) {
      return 'the last event’s details do not count the streamed tokens';
    }
  } else if (details !== null) {
    return 'details came back without being asked for';
  }
  return undefined;
}

/** A stream event with a token is one token; a JSON body counts `details.generated_tokens`. */
function countTokens(value: unknown, kind: 'event' | 'body'): number {
  if (!isRecord(value)) return 0;
  if (kind === 'event') return isRecord(value['token']) ? 1 : 0;
  const details = value['details'];
  return isRecord(details) && typeof details['generated_tokens'] === 'number'
    ? details['generated_tokens']
    : 0;
}

/** `test_load` for the TGI worker; the cost of a request is its `max_new_tokens`. */
export function tgiLoadTest(name = 'tgi'): LoadTestDefinition {
  const common = { cost: (request: TgiPayload) => tgiWorkload(request), tokens: countTokens };
  return defineLoadTest<TgiPayload>({
    name,
    routes: {
      '/generate': { ...common, payload: payload(() => true), verify: verifyGenerate },
      '/generate_stream': {
        ...common,
        payload: payload((index) => index % 2 === 1),
        verify: verifyStream,
      },
    },
  });
}
