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
 * Content types whose body is a sequence of events, one per line or SSE block: server-sent events,
 * NDJSON, JSON Lines, JSON text sequences. The load tester counts their events as tokens.
 */
export function isEventStreamContentType(
  contentType: string | readonly string[] | undefined,
): boolean {
  const type = (typeof contentType === 'string' ? contentType : contentType?.[0])?.toLowerCase();
  if (type === undefined) return false;
  return (
    type.startsWith('text/event-stream') ||
    type.includes('ndjson') ||
    type.includes('jsonl') ||
    type.includes('json-seq')
  );
}

/**
 * Streaming content types, as the reference detects them (protocol §3.5): the event streams, and
 * any other type naming a stream (application/octet-stream). Used to add the anti-buffering
 * headers; every body is piped chunk by chunk whatever its type.
 */
export function isStreamingContentType(contentType: string | undefined): boolean {
  return (
    isEventStreamContentType(contentType) ||
    (contentType !== undefined && contentType.toLowerCase().includes('stream'))
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
