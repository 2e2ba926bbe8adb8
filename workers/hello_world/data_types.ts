import { countTokens, randomPrompt, warmTokenizer, z } from '../../lib/index.ts';

// Build the tokenizer when the worker loads, not on its first request.
warmTokenizer();

/** The model server's API contract: `{prompt, max_response_tokens}` for both routes. */
export const InputData = z.object({
  prompt: z.string(),
  max_response_tokens: z.number().int().positive().nullable(),
});
export type InputData = z.infer<typeof InputData>;

/** Workload = tokens in the prompt (tiktoken cl100k_base, shipped in the package). */
export function countWorkload(payload: InputData): number {
  return countTokens(payload.prompt);
}

/** A benchmark and load-test sample: about 250 random words, as PyWorker's `for_test()`. */
export function forTest(): InputData {
  return { prompt: randomPrompt(250), max_response_tokens: 300 };
}
