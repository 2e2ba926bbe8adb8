/** Small checks and conversions of plain values, shared by the whole of lib/. */

/** A JSON object: not null, not an array. */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** `http://host:8000/v1//` → `http://host:8000/v1`: base URLs and paths are joined with one slash. */
export function trimTrailingSlashes(text: string): string {
  return text.replace(/\/+$/, '');
}

/** An error's message, or the thrown value itself as text when it is not an Error. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
