import { constants, sign } from 'node:crypto';
import type { KeyObject } from 'node:crypto';

/**
 * Signs `message` the way the autoscaler does: RSASSA-PKCS1-v1_5 over SHA-256 of the UTF-8 bytes,
 * as standard base64. For the local autoscaler stand-in and tests; workers only verify.
 */
export function signMessage(privateKey: KeyObject, message: string): string {
  return sign('sha256', Buffer.from(message, 'utf8'), {
    key: privateKey,
    padding: constants.RSA_PKCS1_PADDING,
  }).toString('base64');
}
