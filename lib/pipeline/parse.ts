import type { IncomingMessage } from 'node:http';
import { invalidJson } from '../errors.ts';

/** Reads the whole request body as UTF-8. The main listener sets no size limit (protocol §1.2). */
export async function readBody(request: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return chunks.length === 1
    ? (chunks[0] as Buffer).toString('utf8')
    : Buffer.concat(chunks).toString('utf8');
}

/** Step 1 of protocol §1.3: any content type is accepted; invalid JSON is 422 `{"error":"invalid JSON"}`. */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw invalidJson();
  }
}
