import {
  countTokens,
  countTokensAsync,
  OFF_THREAD_MIN_LENGTH,
  randomPrompt,
  warmTokenizer,
  z,
} from '../../lib/index.ts';

// Build the tokenizer when the worker loads, not on its first request.
warmTokenizer();

/** The model server's API contract: `{prompt, max_response_tokens}` for both routes. */
export const InputData = z.object({
  prompt: z.string(),
  max_response_tokens: z.number().int().positive().nullable(),
});
export type InputData = z.infer<typeof InputData>;

/**
 * Workload = tokens in the prompt (tiktoken cl100k_base, shipped in the package). A short prompt is
 * counted here and now, a plain number; a large one on a worker thread, so counting it never stalls
 * the event loop (and the streams it serves).
 */
export function countWorkload(payload: InputData): number | Promise<number> {
  const { prompt } = payload;
  return prompt.length < OFF_THREAD_MIN_LENGTH ? countTokens(prompt) : countTokensAsync(prompt);
}

/** The same count, always a plain number: the load test's `cost` (a client, where blocking is harmless). */
export function countPromptTokens(payload: InputData): number {
  return countTokens(payload.prompt);
}

/** A benchmark and load-test sample: about 250 random words, as PyWorker's `for_test()`. */
export function forTest(): InputData {
  return { prompt: randomPrompt(250), max_response_tokens: 300 };
}
