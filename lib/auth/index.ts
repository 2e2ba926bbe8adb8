/**
 * Request authentication: the autoscaler's signed `auth_data` ticket (protocol §4, legacy §6.3).
 */

/** Verifying tickets, and fetching the key they are checked against. */
export { SignatureVerifier, type SignatureVerifierOptions, type VerifyOutcome } from './verify.ts';
export { fetchPublicKey, type FetchPublicKeyOptions } from './pubkey.ts';

/** The signed message, and signing it (the local autoscaler stand-in and tests). */
export { canonicalMessage, type AuthMode } from './canonical.ts';
export { signMessage } from './sign.ts';

/** Python `json` compatibility, which the signed bytes depend on. */
export {
  pythonJsonDumps,
  parseJsonPreservingNumbers,
  PyInt,
  PyFloat,
  type PyNumber,
  type PyJsonValue,
  type PythonJsonDumpsOptions,
} from './python-json.ts';
