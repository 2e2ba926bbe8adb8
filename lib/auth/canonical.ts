import { pythonJsonDumps } from './python-json.ts';
import type { PyJsonValue } from './python-json.ts';

/**
 * Which message the autoscaler signs.
 * - `current`: only `{"url": ...}` (vast-sdk since 0.4.2; protocol §4). No replay protection.
 * - `legacy`: every AuthData field but `signature` (the legacy and "later" PyWorker; legacy §6.3),
 *   with the reqnum window and message history.
 */
export type AuthMode = 'current' | 'legacy';

// Everything in the Python `AuthData` dataclass except `signature`. Other keys (`__request_id`,
// anything unknown) never reach the message, because the dataclass drops them on construction.
const LEGACY_SIGNED_FIELDS = ['cost', 'endpoint', 'reqnum', 'request_idx', 'url'] as const;

/**
 * The exact string the autoscaler signed, as Python builds it with
 * `json.dumps(message, indent=4, sort_keys=True)`. Pure: values must already carry Python's view of
 * their numbers (see `parseJsonPreservingNumbers`), since `242.0` and `242` sign differently.
 *
 * @throws TypeError when a field the message needs is missing.
 * @example
 * canonicalMessage({ url: 'http://1.2.3.4:5000', signature: '...' }, 'current');
 * // '{\n    "url": "http://1.2.3.4:5000"\n}'
 */
export function canonicalMessage(
  authData: { readonly [key: string]: PyJsonValue },
  mode: AuthMode,
): string {
  const fields = mode === 'current' ? (['url'] as const) : LEGACY_SIGNED_FIELDS;
  const message: Record<string, PyJsonValue> = {};
  for (const field of fields) {
    const value = Object.hasOwn(authData, field) ? authData[field] : undefined;
    if (value !== undefined) {
      message[field] = value;
    } else if (field !== 'request_idx') {
      throw new TypeError(`auth_data.${field} is missing`);
    }
  }
  return pythonJsonDumps(message, { indent: 4, sortKeys: true });
}
