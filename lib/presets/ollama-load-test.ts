/**
 * The load test of the Ollama worker: the native `/api/generate` and `/api/chat`, half of them
 * streamed as NDJSON (Ollama's default) and half with `stream: false`, with a `--verify` that checks
 * Ollama's answer shape and its final `done: true` line; and the OpenAI routes, verified as the
 * OpenAI workers' are.
 */
import { defineLoadTest, type LoadTestDefinition } from '../test-harness/definition.ts';
import type { Answer } from '../test-harness/load-types.ts';
import { ollamaWorkload, type OllamaChatRequest, type OllamaGenerateRequest } from './ollama.ts';
import { openaiLoadTest } from './openai-load-test.ts';
import { randomPrompt } from './prompts.ts';
import { isRecord } from '../internal/values.ts';

type NativePayload = OllamaGenerateRequest | OllamaChatRequest;

const LOAD_TEST_NUM_PREDICT = 128;
const LOAD_TEST_WORDS = 100;
/** Ollama's metrics on the last line (api/types.go Metrics), in nanoseconds and tokens. */
const METRICS = [
  'total_duration',
  'load_duration',
  'prompt_eval_count',
  'prompt_eval_duration',
  'eval_count',
  'eval_duration',
] as const;

/** Even requests stream (the native default: no `stream` field), odd ones ask for one object. */
function streamChoice(index: number): { stream?: false } {
  return index % 2 === 1 ? { stream: false } : {};
}

/** The text of one line: `response` (generate) or `message.content` (chat). */
function lineText(line: Record<string, unknown>, chat: boolean): unknown {
  if (!chat) return line['response'];
  const message = line['message'];
  return isRecord(message) && message['role'] === 'assistant' ? message['content'] : undefined;
}

/** The final object: `done: true`, a `done_reason`, every metric, and no more tokens than asked. */
function checkFinal(
  line: unknown,
  chat: boolean,
  asked: number | undefined,
  where: string,
): string | undefined {
  if (!isRecord(line)) return `${where} is not a JSON object`;
  if (line['done'] !== true) return `${where} does not say done: true`;
  if (typeof line['done_reason'] !== 'string') return `${where} has no done_reason`;
  if (typeof lineText(line, chat) !== 'string') {
    return `${where} has no ${chat ? 'message.content' : 'response'}`;
  }
  for (const metric of METRICS) {
    if (typeof line[metric] !== 'number') return `${where} has no ${metric}`;
  }
  const evalCount = line['eval_count'] as number;
  if (asked !== undefined && evalCount > asked) {
    return `asked for at most ${asked} tokens, eval_count says ${evalCount}`;
  }
  return undefined;
}

/** NDJSON: `application/x-ndjson`, `done: false` lines with text, then one `done: true` line. */
function verifyStream(answer: Answer<NativePayload>, chat: boolean): string | undefined {
  const type = answer.headers['content-type'];
  if (typeof type !== 'string' || !type.startsWith('application/x-ndjson')) {
    return `a stream should be application/x-ndjson, got ${String(type)}`;
  }
  const lines = answer.events ?? [];
  if (lines.length === 0) return 'the stream carried no line';
  const last = lines.at(-1);
  for (const [i, line] of lines.slice(0, -1).entries()) {
    if (!isRecord(line) || line['done'] !== false || typeof lineText(line, chat) !== 'string') {
      return `line ${i + 1} is not a done: false line with ${chat ? 'message.content' : 'response'}`;
    }
  }
  const asked = answer.payload.options?.num_predict ?? undefined;
  const problem = checkFinal(last, chat, asked, 'the last line');
  if (problem !== undefined) return problem;
  if (!chat && !Array.isArray((last as Record<string, unknown>)['context'])) {
    return 'the last line of /api/generate has no context';
  }
  return undefined;
}

function verifyJson(answer: Answer<NativePayload>, chat: boolean): string | undefined {
  const asked = answer.payload.options?.num_predict ?? undefined;
  return checkFinal(answer.json, chat, asked, 'the answer');
}

function verify(chat: boolean) {
  return (answer: Answer<NativePayload>): string | undefined =>
    answer.payload.stream === false ? verifyJson(answer, chat) : verifyStream(answer, chat);
}

/** A line with text is one token; a JSON body (or the last line) says `eval_count`. */
function countTokens(value: unknown, kind: 'event' | 'body'): number {
  if (!isRecord(value)) return 0;
  if (kind === 'body') return typeof value['eval_count'] === 'number' ? value['eval_count'] : 0;
  if (value['done'] === true) return 0;
  const text = value['response'] ?? (isRecord(value['message']) ? value['message']['content'] : '');
  return typeof text === 'string' && text !== '' ? 1 : 0;
}

/**
 * `test_load` for the Ollama worker. Payloads leave out `model`: the worker fills in `MODEL_NAME`
 * (or `OLLAMA_MODEL`).
 */
export function ollamaLoadTest(name = 'ollama'): LoadTestDefinition {
  const openai = openaiLoadTest(name);
  const native = defineLoadTest<NativePayload>({
    name,
    routes: {
      '/api/generate': {
        payload: (index) => ({
          prompt: randomPrompt(LOAD_TEST_WORDS),
          options: { num_predict: LOAD_TEST_NUM_PREDICT },
          ...streamChoice(index),
        }),
        cost: (payload) => ollamaWorkload(payload),
        verify: verify(false),
        tokens: countTokens,
      },
      '/api/chat': {
        payload: (index) => ({
          messages: [{ role: 'user', content: randomPrompt(LOAD_TEST_WORDS) }],
          options: { num_predict: LOAD_TEST_NUM_PREDICT },
          ...streamChoice(index),
        }),
        cost: (payload) => ollamaWorkload(payload),
        verify: verify(true),
        tokens: countTokens,
      },
    },
  });
  return defineLoadTest<unknown>({
    name,
    routes: { ...native.routes, ...openai.routes },
    defaultRoute: '/api/generate',
  });
}
