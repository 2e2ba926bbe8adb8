import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, type Logger } from '../../lib/log.ts';
import { post } from '../helpers/request.ts';
import { startStack, type TestStack } from '../helpers/stack.ts';
import { waitFor } from '../helpers/wait-for.ts';

/**
 * A model server that answers the benchmark and the healthcheck like a healthy one, and breaks in
 * the way a prompt names: its headers and then garbage chunk framing, its headers and then a cut
 * connection, or a status no HTTP client can act on.
 */
async function startBreakingModel(): Promise<{ url: string; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (body += chunk));
    req.on('end', () => {
      const socket = res.socket;
      if (body.includes('BREAK-GARBAGE') && socket !== null) {
        socket.write(
          'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz-not-a-chunk-size\r\n',
        );
        return;
      }
      if (body.includes('BREAK-CLOSE') && socket !== null) {
        socket.end(
          'HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n',
        );
        return;
      }
      if (body.includes('STATUS-999')) {
        res.writeHead(999, { 'content-type': 'application/json' });
        res.end('{}');
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ response: 'ok' }));
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}

describe('a model that breaks before the first byte of its answer', () => {
  let model: Awaited<ReturnType<typeof startBreakingModel>>;
  let stack: TestStack;
  const lines: Record<string, unknown>[] = [];
  beforeAll(async () => {
    model = await startBreakingModel();
    const logger: Logger = createLogger({
      level: 'info',
      destination: {
        write: (line: string) => {
          lines.push(JSON.parse(line) as Record<string, unknown>);
        },
      },
    });
    stack = await startStack({ env: { MODEL_SERVER_URL: model.url }, logger });
  });
  afterAll(async () => {
    await stack.close();
    await model.close();
  });

  const ask = (prompt: string) =>
    post(`${stack.worker.url}/generate`, {
      auth_data: stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 1 }),
      payload: { prompt, max_response_tokens: 3 },
    });

  it.each(['BREAK-GARBAGE', 'BREAK-CLOSE'])(
    'answers %s with a JSON 502 marked as the model, not a cut connection',
    async (prompt) => {
      const response = await ask(prompt);
      expect(response.status).toBe(502);
      expect(response.headers['x-worker-error-source']).toBe('model');
      expect(response.json()).toMatchObject({ code: 'TSW_ERR_UPSTREAM_UNAVAILABLE' });
    },
  );

  it('answers a model status outside 200-599 with a JSON 502', async () => {
    const response = await ask('STATUS-999');
    expect(response.status).toBe(502);
    expect(response.json()).toMatchObject({ code: 'TSW_ERR_UPSTREAM_UNAVAILABLE' });
    expect(response.text).toContain('999');
  });

  it('logs none of them as an internal error, and counts each as an error of the request', async () => {
    await waitFor(
      () =>
        lines.filter((line) => line['errorCode'] === 'TSW_ERR_UPSTREAM_UNAVAILABLE').length >= 3 ||
        undefined,
      { label: 'three request lines with the model error' },
    );
    expect(lines.filter((line) => line['errorCode'] === 'TSW_ERR_INTERNAL')).toEqual([]);
    expect(lines.filter((line) => line['message'] === 'request failed')).toEqual([]);
  });
});
