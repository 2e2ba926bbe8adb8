import type { SignatureVerifier } from '../auth/index.ts';
import { unauthorized, type WorkerError } from '../errors.ts';
import type { AuthData } from './validate.ts';

/**
 * Step 6 of protocol §1.3. `verifier` is undefined in UNSECURED mode. Returns the 401 to answer, or
 * nothing when the signature is good; the caller records the rejection.
 */
export function signatureProblem(
  verifier: SignatureVerifier | undefined,
  authData: AuthData,
  rawBody: string,
): WorkerError | undefined {
  if (verifier === undefined) return undefined;
  const outcome = verifier.verify(authData, rawBody);
  return outcome.ok ? undefined : unauthorized(`invalid signature: ${outcome.reason}`);
}

/** Like `signatureProblem`, throwing the 401. */
export function checkSignature(
  verifier: SignatureVerifier | undefined,
  authData: AuthData,
  rawBody: string,
): void {
  const problem = signatureProblem(verifier, authData, rawBody);
  if (problem !== undefined) throw problem;
}
