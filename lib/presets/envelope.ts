import { z } from 'zod';
import { isRecord } from '../internal/values.ts';

/**
 * An engine's request body as a worker payload. Clients may send the body itself or wrap it as
 * `{"input": {...}}`, as the newest reference accepts (model-servers.md §2.1); either way the model
 * receives the bare body. Fields the shape does not name pass through untouched.
 *
 * @example
 * const Completion = apiPayload({ prompt: z.string(), max_tokens: z.number().int().optional() });
 */
export function apiPayload<Shape extends z.ZodRawShape>(
  shape: Shape,
): z.ZodType<z.output<z.ZodObject<Shape, z.core.$loose>>, unknown> {
  return z.preprocess(unwrapInput, z.looseObject(shape));
}

/** `{"input": {...}}` → its inner object; anything else as it is. */
export function unwrapInput(value: unknown): unknown {
  return isRecord(value) && isRecord(value['input']) ? value['input'] : value;
}
