// Protocol reference §12.5: a failed public-key fetch errored the worker even with UNSECURED=true.
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { startStack } from '../helpers/stack.ts';

describe('ref-05: UNSECURED workers and the public key', () => {
  it('never fetch the key, so an autoscaler without /pubkey/ cannot error them', async () => {
    const paths: string[] = [];
    const autoscaler = createServer((req, res) => {
      paths.push(req.url ?? '');
      res.writeHead(req.url === '/pubkey/' ? 503 : 200).end('{}');
    });
    autoscaler.listen(0, '127.0.0.1');
    await once(autoscaler, 'listening');
    const url = `http://127.0.0.1:${(autoscaler.address() as AddressInfo).port}`;
    const stack = await startStack({ env: { UNSECURED: 'true', REPORT_ADDR: url } });
    try {
      expect(await stack.worker.publicKeyLoaded).toBe(true);
      expect(stack.worker.readiness.phase).toBe('ready');
      expect(stack.worker.readiness.errorMessage).toBe('');
      expect(paths).not.toContain('/pubkey/');
    } finally {
      await stack.close();
      autoscaler.close();
    }
  });
});
