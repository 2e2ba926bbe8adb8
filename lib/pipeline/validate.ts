import type { z } from 'zod';
import { payloadInvalid } from '../errors.ts';
import type { ResolvedHandler } from '../handler.ts';
import { isRecord } from '../internal/values.ts';

export type AuthData = Readonly<Record<string, unknown>>;

export interface Envelope {
  readonly authData: AuthData;
  readonly payload: unknown;
  readonly sessionId: string | null;
}

export interface EnvelopeRules {
  /** Fields auth_data must carry. Empty in UNSECURED mode, where auth_data may be left out. */
  readonly requiredAuthFields: readonly string[];
  readonly authDataRequired: boolean;
}

/**
 * What the envelope must carry under this configuration: every auth_data field in secured mode
 * (request_idx is absent from legacy five-field auth_data), nothing in UNSECURED mode.
 */
export function envelopeRulesFor(config: {
  readonly unsecured: boolean;
  readonly authMode: 'current' | 'legacy';
}): EnvelopeRules {
  if (config.unsecured) return { requiredAuthFields: [], authDataRequired: false };
  return {
    requiredAuthFields:
      config.authMode === 'legacy'
        ? ['cost', 'endpoint', 'reqnum', 'signature', 'url']
        : ['cost', 'endpoint', 'reqnum', 'request_idx', 'signature', 'url'],
    authDataRequired: true,
  };
}

/**
 * Largest `cost` accepted in auth_data. Only `url` is signed, so `cost` is whatever the client sent,
 * and a session reports it as load: a bound keeps one client from telling the autoscaler to scale
 * out without limit.
 */
export const MAX_COST = 10_000_000;

const isCount = (v: unknown): boolean => Number.isSafeInteger(v) && (v as number) >= 0;

/**
 * Type checks on the auth_data fields the worker itself uses; other fields pass untouched. The
 * numbers reach the autoscaler's reports, so they must be ones it could have produced.
 */
const AUTH_FIELD_TYPES: Readonly<Record<string, (value: unknown) => string | undefined>> = {
  cost: (v) =>
    typeof v === 'number' && Number.isFinite(v) && v >= 0 && v <= MAX_COST
      ? undefined
      : `must be a number from 0 to ${MAX_COST}`,
  reqnum: (v) => (isCount(v) ? undefined : 'must be a non-negative safe integer'),
  request_idx: (v) => (isCount(v) ? undefined : 'must be a non-negative safe integer'),
  signature: (v) => (typeof v === 'string' ? undefined : 'must be a string'),
  url: (v) => (typeof v === 'string' ? undefined : 'must be a string'),
};

/**
 * Step 2 of protocol §1.3: extracts auth_data, payload and session_id, collecting every problem
 * into one 422 body with the reference's keys and words ("field missing", "missing parameter"),
 * extended with zod's precise messages for invalid payload fields.
 */
export function validateEnvelope(
  body: unknown,
  handler: Pick<ResolvedHandler, 'payload'>,
  rules: EnvelopeRules,
): Envelope {
  if (!isRecord(body)) {
    // The reference answers 500 for null or a number and this map for an array (§3.3); one clear 422 for all.
    throw payloadInvalid({
      error: 'request body must be a JSON object',
      auth_data: 'field missing',
      payload: 'field missing',
    });
  }
  const errors: Record<string, unknown> = {};

  const rawAuth = body['auth_data'];
  let authData: AuthData = {};
  if (rawAuth === undefined || rawAuth === null) {
    if (rules.authDataRequired) errors['auth_data'] = 'field missing';
  } else if (!isRecord(rawAuth)) {
    errors['auth_data'] = 'auth_data must be a dictionary';
  } else {
    const fieldErrors: Record<string, string> = {};
    for (const field of rules.requiredAuthFields) {
      if (!(field in rawAuth)) fieldErrors[field] = 'missing parameter';
    }
    for (const field in AUTH_FIELD_TYPES) {
      if (field in rawAuth && !(field in fieldErrors)) {
        const problem = AUTH_FIELD_TYPES[field]?.(rawAuth[field]);
        if (problem !== undefined) fieldErrors[field] = problem;
      }
    }
    if (Object.keys(fieldErrors).length > 0) errors['auth_data'] = fieldErrors;
    authData = rawAuth;
  }

  let payload: unknown;
  if (!('payload' in body)) {
    errors['payload'] = 'field missing';
  } else {
    const parsed = handler.payload.safeParse(body['payload']);
    if (parsed.success) payload = parsed.data;
    else errors['payload'] = fieldErrorMap(parsed.error, body['payload']);
  }

  const rawSession = body['session_id'];
  let sessionId: string | null = null;
  if (rawSession !== undefined && rawSession !== null) {
    if (typeof rawSession === 'string') sessionId = rawSession;
    else errors['session_id'] = 'must be a string';
  }

  if (Object.keys(errors).length > 0) throw payloadInvalid(errors);
  return { authData, payload, sessionId };
}

/**
 * zod issues → the reference's wire shape: `{"prompt": "missing parameter"}` for an absent field,
 * `{"temperature": "unknown parameter"}` for a field a strict schema refuses, zod's message
 * otherwise, keyed by dotted path; a payload that is not an object at all gets the reference's
 * "payload must be a dictionary".
 */
export function fieldErrorMap(error: z.ZodError, input: unknown): Record<string, string> | string {
  const map: Record<string, string> = {};
  for (const issue of error.issues) {
    if (issue.code === 'unrecognized_keys') {
      // A handler with `unknownFields: 'reject'` (or a z.strictObject): one entry per field.
      for (const key of issue.keys) {
        map[[...issue.path, key].map(String).join('.')] ??= 'unknown parameter';
      }
      continue;
    }
    if (issue.path.length === 0) {
      if (!isRecord(input) && issue.code === 'invalid_type' && issue.expected === 'object') {
        return { data: 'payload must be a dictionary' };
      }
      map['data'] ??= issue.message;
      continue;
    }
    const key = issue.path.map(String).join('.');
    if (key in map) continue;
    map[key] = isMissing(issue, input) ? 'missing parameter' : issue.message;
  }
  return map;
}

function isMissing(issue: z.core.$ZodIssue, input: unknown): boolean {
  if (issue.code !== 'invalid_type') return false;
  let value: unknown = input;
  for (const key of issue.path) {
    if (!isRecord(value) && !Array.isArray(value)) return false;
    value = (value as Record<PropertyKey, unknown>)[key as PropertyKey];
  }
  return value === undefined;
}
