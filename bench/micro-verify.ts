/**
 * tsx bench/micro-verify.ts [reference.ts]: CPU per cached `verify` (current mode, the hot path),
 * alternating with another verify module when one is given.
 */
import { generateKeyPairSync } from 'node:crypto';
import { canonicalMessage, signMessage } from '../lib/auth/index.ts';
import { SignatureVerifier } from '../lib/auth/verify.ts';

type VerifierClass = typeof SignatureVerifier;
const variants: [string, VerifierClass][] = [['lib/auth/verify.ts', SignatureVerifier]];
if (process.argv[2] !== undefined) {
  const module = (await import(process.argv[2])) as { SignatureVerifier: VerifierClass };
  variants.push([process.argv[2], module.SignatureVerifier]);
}
const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const url = 'http://203.0.113.7:40123';
const authData = {
  cost: 256,
  endpoint: 'bench',
  reqnum: 1,
  request_idx: 1,
  url,
  signature: signMessage(privateKey, canonicalMessage({ url }, 'current')),
};
const N = 200_000;
for (let round = 0; round < 5; round++) {
  for (const [name, Verifier] of variants) {
    const verifier = new Verifier({ mode: 'current' });
    verifier.setPublicKey(publicKey);
    verifier.verify(authData, '');
    const start = process.cpuUsage();
    for (let i = 0; i < N; i++) verifier.verify({ ...authData, reqnum: i }, '');
    const used = process.cpuUsage(start);
    console.log(`${name}: ${((used.user + used.system) / N).toFixed(3)} µs CPU per cached verify`);
  }
}
