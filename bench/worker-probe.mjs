/* global process */
// Preloaded into the bench's worker process (node --expose-gc --import bench/worker-probe.mjs):
// answers "probe" messages on the IPC channel with its memory and CPU, after a full GC when asked,
// so the bench can tell a leak (heap after GC growing) from a heap that is merely not collected yet.
// It touches nothing else in the worker.
if (typeof process.send === 'function') {
  process.channel?.unref();
  process.on('message', (message) => {
    if (typeof message !== 'object' || message === null || message.type !== 'probe') return;
    if (message.gc === true && typeof globalThis.gc === 'function') {
      globalThis.gc();
      globalThis.gc();
    }
    process.send({
      type: 'probe',
      id: message.id,
      memory: process.memoryUsage(),
      cpu: process.cpuUsage(),
    });
  });
}
