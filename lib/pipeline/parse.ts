import type { IncomingMessage } from 'node:http';
import { bodyTooLarge, invalidJson, payloadInvalid } from '../errors.ts';
import { decodeUtf8 } from '../internal/utf8.ts';

/** Deepest JSON nesting a body may have; deeper bodies get 422 before they are parsed. */
export const MAX_JSON_DEPTH = 128;

/** The client hung up before its body arrived. */
export class BodyAbortedError extends Error {
  constructor() {
    super('client disconnected while sending the body');
    this.name = 'BodyAbortedError';
  }
}

/**
 * Reads the whole request body as UTF-8, refusing more than `limitBytes`: at once from a declared
 * Content-Length, otherwise as soon as the bytes received pass the limit. Nothing past the limit is
 * kept, and reading stops; the 413 closes the connection.
 */
export function readBody(request: IncomingMessage, limitBytes: number): Promise<string> {
  const declared = Number(request.headers['content-length']);
  if (declared > limitBytes) return Promise.reject(bodyTooLarge(limitBytes));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = (): void => {
      request.off('data', onData);
      request.off('end', onEnd);
      request.off('error', onError);
      request.off('close', onClose);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limitBytes) {
        cleanup();
        chunks.length = 0;
        request.pause();
        reject(bodyTooLarge(limitBytes));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => {
      cleanup();
      resolve(decodeUtf8(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks)));
    };
    const onError = (error: Error): void => {
      cleanup();
      reject(error);
    };
    const onClose = (): void => {
      cleanup();
      reject(new BodyAbortedError());
    };
    request.on('data', onData);
    request.on('end', onEnd);
    request.on('error', onError);
    request.on('close', onClose);
  });
}

/** How much of a refused body is read and thrown away before its connection closes. */
export interface RefusedBodyLinger {
  /** `REFUSED_BODY_LINGER_SECONDS` in milliseconds; 0 closes at once. */
  readonly ms: number;
  /** `REFUSED_BODY_LINGER_BYTES`; 0 closes at once. */
  readonly bytes: number;
}

/**
 * After a 413 whose body is still arriving: reads and throws away the rest, for at most
 * `linger.ms` and `linger.bytes`, then closes, as nginx's lingering close and Go's server do. Node
 * would close the `Connection: close` socket as soon as the answer is written; the kernel then
 * answers the unread bytes with a reset, and a client that writes its whole body before reading
 * (Python's http.client) loses the 413 it was sent. Nothing is kept, whatever the client does.
 */
export function lingerOnRefusedBody(request: IncomingMessage, linger: RefusedBodyLinger): void {
  if (request.complete || linger.ms <= 0 || linger.bytes <= 0) return;
  const socket = request.socket;
  const timer = setTimeout(() => socket.destroy(), linger.ms);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
  // The body is all in, or the client gave up sending: nothing is left unread, so closing once the
  // answer is out ends the connection cleanly.
  const closeOnceAnswered = (): void => {
    if (socket.writableFinished) socket.destroy();
    else socket.once('finish', () => socket.destroy());
  };
  socket.once('end', closeOnceAnswered);
  request.once('end', closeOnceAnswered);
  // Node calls destroySoon() once the answer is written: close our side only, and keep reading.
  socket.destroySoon = () => socket.end();
  // A reader left behind (hono's body stream) would pause the body; flowing also keeps Node from
  // dumping it, which would drop the counter.
  request.removeAllListeners('data');
  let discarded = 0;
  request.on('data', (chunk: Buffer) => {
    discarded += chunk.length;
    if (discarded > linger.bytes) socket.destroy();
  });
  request.resume();
}

/**
 * True when `text` nests arrays and objects deeper than `maxDepth`. One pass over the text,
 * skipping strings: JSON.parse itself copes, but JSON.stringify, deep-equal and every other
 * recursive walk of the value would overflow the stack on it.
 */
export function nestsDeeperThan(text: string, maxDepth: number): boolean {
  if (text.length <= maxDepth || !opensMoreThan(text, maxDepth)) return false;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x7b || c === 0x5b) {
      if (++depth > maxDepth) return true;
    } else if (c === 0x7d || c === 0x5d) {
      depth--;
    }
  }
  return false;
}

/**
 * True when `text` has more than `limit` `{` and `[` in all, strings included. Most bodies have a
 * handful, and indexOf finds them at memchr speed: the character-by-character scan above costs
 * more than JSON.parse itself, and runs only for a body that could nest that deep.
 */
function opensMoreThan(text: string, limit: number): boolean {
  let count = 0;
  for (let i = text.indexOf('{'); i !== -1; i = text.indexOf('{', i + 1)) {
    if (++count > limit) return true;
  }
  for (let i = text.indexOf('['); i !== -1; i = text.indexOf('[', i + 1)) {
    if (++count > limit) return true;
  }
  return false;
}

/**
 * Step 1 of protocol §1.3: any content type is accepted; invalid JSON is 422 `{"error":"invalid JSON"}`.
 * A body nested deeper than MAX_JSON_DEPTH is 422 too, before it is parsed.
 */
export function parseJson(text: string): unknown {
  if (nestsDeeperThan(text, MAX_JSON_DEPTH)) {
    throw payloadInvalid({ error: `JSON nested deeper than ${MAX_JSON_DEPTH} levels` });
  }
  try {
    return JSON.parse(text);
  } catch {
    throw invalidJson();
  }
}
