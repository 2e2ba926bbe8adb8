import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';

/** Hop-by-hop headers (RFC 9110 §7.6.1): they describe one connection and are never forwarded. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/**
 * Streaming content types, as the reference detects them (protocol §3.5). Used to add the
 * anti-buffering headers; every body is piped chunk by chunk whatever its type.
 */
export function isStreamingContentType(contentType: string | undefined): boolean {
  if (contentType === undefined) return false;
  const lower = contentType.toLowerCase();
  return (
    lower.startsWith('text/event-stream') ||
    lower.startsWith('application/x-ndjson') ||
    lower.startsWith('application/jsonl') ||
    lower.includes('stream')
  );
}

/**
 * The model's response headers as the client should see them: hop-by-hop headers (and any named
 * in Connection) dropped. The body is passed through undecoded, so Content-Length and
 * Content-Encoding stay true and are kept.
 */
export function clientResponseHeaders(upstream: IncomingHttpHeaders): OutgoingHttpHeaders {
  const named = upstream['connection'];
  const extra = named === undefined ? undefined : new Set(named.toLowerCase().split(/\s*,\s*/));
  const headers: OutgoingHttpHeaders = {};
  for (const key in upstream) {
    if (HOP_BY_HOP.has(key) || extra?.has(key)) continue;
    const value = upstream[key];
    if (value !== undefined) headers[key] = value;
  }
  if (isStreamingContentType(upstream['content-type'])) {
    headers['cache-control'] = 'no-cache';
    headers['x-accel-buffering'] = 'no';
  }
  return headers;
}
