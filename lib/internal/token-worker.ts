/**
 * A thread of lib/tokenizer-pool.ts: counts each text it is sent with `countTokens`, in order, and
 * answers `{id, count}` (or `{id, error}`). It has its own tiktoken and piece cache.
 */
import { parentPort } from 'node:worker_threads';
import type { TokenWorkerJob, TokenWorkerReply } from '../tokenizer-pool.ts';
import { countTokens, warmTokenizer } from '../tokenizer.ts';
import { errorMessage } from './values.ts';

const port = parentPort;
if (port === null) throw new Error('token-worker runs as a worker thread of lib/tokenizer-pool.ts');

warmTokenizer();
port.on('message', (job: TokenWorkerJob) => {
  let reply: TokenWorkerReply;
  try {
    reply = { id: job.id, count: countTokens(job.text) };
  } catch (error) {
    reply = { id: job.id, error: errorMessage(error) };
  }
  port.postMessage(reply);
});
