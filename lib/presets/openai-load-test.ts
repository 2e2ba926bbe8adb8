/**
 * The load test of the OpenAI-compatible workers: completions and chat, half of them streamed, and a
 * `--verify` that checks the engine's real answer shape.
 */
import { defineLoadTest, type LoadTestDefinition } from '../test-harness/definition.ts';
import type { Answer } from '../test-harness/load-types.ts';
import { generationWorkload, type ChatRequest, type CompletionRequest } from './openai.ts';
import { randomPrompt } from './prompts.ts';
import { isRecord } from '../internal/values.ts';

type OpenAIPayload = (CompletionRequest | ChatRequest) & {
  stream_options?: { include_usage: boolean };
};

const LOAD_TEST_MAX_TOKENS = 128;
const LOAD_TEST_WORDS = 100;

/** Odd requests stream, asking for usage in the stream, so one run checks both shapes. */
function streamOptions(index: number): Partial<OpenAIPayload> {
  return index % 2 === 1 ? { stream: true, stream_options: { include_usage: true } } : {};
}

function choiceText(choice: Record<string, unknown>, chat: boolean, streamed: boolean): unknown {
  if (!chat) return choice['text'];
  const message = choice[streamed ? 'delta' : 'message'];
  return isRecord(message) ? (message['content'] ?? '') : undefined;
}

function checkUsage(usage: unknown, asked: number | undefined): string | undefined {
  if (!isRecord(usage)) return 'usage is missing';
  const { prompt_tokens: prompt, completion_tokens: completion, total_tokens: total } = usage;
  if (typeof prompt !== 'number' || typeof completion !== 'number' || typeof total !== 'number') {
    return 'usage lacks prompt_tokens, completion_tokens or total_tokens';
  }
  if (total !== prompt + completion) return `usage.total_tokens ${total} ≠ prompt + completion`;
  if (asked !== undefined && completion > asked)
    return `asked for at most ${asked} tokens, usage says ${completion}`;
  return undefined;
}

/** A JSON answer has `choices` with text (completions) or `message.content` (chat), and `usage`. */
function verifyJson(answer: Answer<OpenAIPayload>, chat: boolean): string | undefined {
  const body = answer.json;
  if (!isRecord(body)) return 'the answer is not a JSON object';
  const choices = body['choices'];
  if (!Array.isArray(choices) || choices.length === 0) return 'choices is missing or empty';
  for (const choice of choices) {
    if (!isRecord(choice) || typeof choiceText(choice, chat, false) !== 'string') {
      return chat ? 'a choice has no message.content' : 'a choice has no text';
    }
  }
  return checkUsage(body['usage'], answer.payload.max_tokens ?? undefined);
}

/** A stream is `data:` chunks with `choices`, ends in `data: [DONE]`, and carries usage when asked. */
function verifyStream(answer: Answer<OpenAIPayload>, chat: boolean): string | undefined {
  if (!/data: \[DONE\]\s*$/.test(answer.text)) return 'the stream did not end with data: [DONE]';
  const events = answer.events ?? [];
  if (events.length === 0) return 'the stream carried no chunk';
  for (const event of events) {
    if (!isRecord(event) || !Array.isArray(event['choices'])) return 'a chunk has no choices';
    for (const choice of event['choices']) {
      if (!isRecord(choice) || typeof choiceText(choice, chat, true) !== 'string') {
        return chat ? 'a chunk has no delta.content' : 'a chunk has no text';
      }
    }
  }
  if (answer.payload.stream_options?.include_usage) {
    return checkUsage(
      events.at(-1) && (events.at(-1) as Record<string, unknown>)['usage'],
      answer.payload.max_tokens ?? undefined,
    );
  }
  return undefined;
}

function verify(chat: boolean) {
  return (answer: Answer<OpenAIPayload>): string | undefined =>
    answer.payload.stream ? verifyStream(answer, chat) : verifyJson(answer, chat);
}

/** A chunk with text is one token; a JSON body says how many in `usage.completion_tokens`. */
function countTokens(value: unknown, kind: 'event' | 'body'): number {
  if (!isRecord(value)) return 0;
  if (kind === 'body') {
    const usage = value['usage'];
    return isRecord(usage) && typeof usage['completion_tokens'] === 'number'
      ? usage['completion_tokens']
      : 0;
  }
  const choices = value['choices'];
  if (!Array.isArray(choices) || !isRecord(choices[0])) return 0;
  const choice = choices[0];
  const text =
    choice['text'] ?? (isRecord(choice['delta']) ? choice['delta']['content'] : undefined);
  return typeof text === 'string' && text !== '' ? 1 : 0;
}

/**
 * `test_load` for an OpenAI-compatible worker. Payloads leave out `model`: the worker fills in
 * `MODEL_NAME`.
 */
export function openaiLoadTest(name: string): LoadTestDefinition {
  return defineLoadTest<OpenAIPayload>({
    name,
    routes: {
      '/v1/completions': {
        payload: (index) => ({
          prompt: randomPrompt(LOAD_TEST_WORDS),
          max_tokens: LOAD_TEST_MAX_TOKENS,
          ...streamOptions(index),
        }),
        cost: (payload) => generationWorkload(payload),
        verify: verify(false),
        tokens: countTokens,
      },
      '/v1/chat/completions': {
        payload: (index) => ({
          messages: [{ role: 'user', content: randomPrompt(LOAD_TEST_WORDS) }],
          max_tokens: LOAD_TEST_MAX_TOKENS,
          ...streamOptions(index),
        }),
        cost: (payload) => generationWorkload(payload),
        verify: verify(true),
        tokens: countTokens,
      },
    },
  });
}
