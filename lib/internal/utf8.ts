import { isAscii } from 'node:buffer';

/**
 * UTF-8 both ways, with a fast path for ASCII, which most request bodies are: Node's UTF-8 codec
 * takes ~3 ms per MB each way, a one-byte copy a fraction of that. For a 3.8 MB prompt that is
 * ~11 ms less of a blocked event loop; for a 1 KB body, half a microsecond.
 */

/** `bytes` decoded as UTF-8 (invalid sequences become U+FFFD, as `toString('utf8')` does). */
export function decodeUtf8(bytes: Buffer): string {
  return isAscii(bytes) ? bytes.toString('latin1') : bytes.toString('utf8');
}

/** `text` encoded as UTF-8: its UTF-8 length equals its length only when every character is ASCII. */
export function encodeUtf8(text: string): Buffer {
  return Buffer.byteLength(text, 'utf8') === text.length
    ? Buffer.from(text, 'latin1')
    : Buffer.from(text, 'utf8');
}
