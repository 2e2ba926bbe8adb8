import type { SignatureVerifier } from '../auth/index.ts';
import { unauthorized } from '../errors.ts';
import type { AuthData } from './validate.ts';

/**
 * Step 6 of protocol §1.3. `verifier` is undefined in UNSECURED mode. Throws 401 with the reason;
 * the caller records the rejection.
 */
export function checkSignature(
  verifier: SignatureVerifier | undefined,
  authData: AuthData,
  rawBody: string,
): void {
  if (verifier === undefined) return;
  const outcome = verifier.verify(authData, rawBody);
  if (!outcome.ok) throw unauthorized(`invalid signature: ${outcome.reason}`);
}
