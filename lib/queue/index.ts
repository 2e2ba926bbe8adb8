export { FifoQueue, type FifoTicket } from './fifo.ts';
export { estimatedWaitSeconds, exceedsQueueLimit } from './admission.ts';
