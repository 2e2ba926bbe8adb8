import { get_encoding, type Tiktoken } from 'tiktoken';

/**
 * Token counting for workload estimates. The encoder ships inside the tiktoken package (nothing is
 * downloaded) and is built once, then reused: building it costs tens of milliseconds.
 */
let encoder: Tiktoken | undefined;

/** Builds the encoder now, so the first request does not pay for it. */
export function warmTokenizer(): void {
  encoder ??= get_encoding('cl100k_base');
}

/** Number of cl100k_base tokens in `text`. Special-token text is counted as ordinary text. */
export function countTokens(text: string): number {
  encoder ??= get_encoding('cl100k_base');
  return encoder.encode_ordinary(text).length;
}
