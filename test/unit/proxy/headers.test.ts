import { describe, expect, it } from 'vitest';
import {
  clientResponseHeaders,
  isEventStreamContentType,
  isStreamingContentType,
} from '../../../lib/proxy/headers.ts';

describe('clientResponseHeaders', () => {
  it('drops hop-by-hop headers and any header the Connection header names', () => {
    const headers = clientResponseHeaders({
      connection: 'keep-alive, x-private',
      'keep-alive': 'timeout=5',
      'transfer-encoding': 'chunked',
      'x-private': 'secret',
      'content-type': 'application/json',
      'content-length': '12',
      'content-encoding': 'gzip',
      date: 'today',
    });
    expect(headers).toEqual({
      'content-type': 'application/json',
      'content-length': '12',
      'content-encoding': 'gzip',
      date: 'today',
    });
  });

  it('adds no-cache and X-Accel-Buffering: no to streaming content types', () => {
    const headers = clientResponseHeaders({ 'content-type': 'text/event-stream; charset=utf-8' });
    expect(headers['cache-control']).toBe('no-cache');
    expect(headers['x-accel-buffering']).toBe('no');
  });

  it('detects streaming content types as the reference does (§3.5)', () => {
    expect(isStreamingContentType('text/event-stream')).toBe(true);
    expect(isStreamingContentType('application/x-ndjson')).toBe(true);
    expect(isStreamingContentType('application/jsonl')).toBe(true);
    expect(isStreamingContentType('application/octet-stream')).toBe(true);
    expect(isStreamingContentType('application/json')).toBe(false);
    expect(isStreamingContentType(undefined)).toBe(false);
  });

  it('knows event streams (what the load tester counts events in) as a subset of the streaming types', () => {
    for (const type of ['text/event-stream', 'application/x-ndjson', 'application/json-seq']) {
      expect(isEventStreamContentType(type)).toBe(true);
      expect(isStreamingContentType(type)).toBe(true);
    }
    expect(isEventStreamContentType(['Text/Event-Stream; charset=utf-8'])).toBe(true);
    expect(isEventStreamContentType('application/octet-stream')).toBe(false);
    expect(isEventStreamContentType(undefined)).toBe(false);
  });
});
