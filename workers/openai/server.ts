/**
 * `openai`: the reference's backwards-compatible alias of `vllm` (model-servers.md §2, PW@00ef0aa
 * `workers/openai/README.md`). The same worker, under its old name.
 */
export { default } from '../vllm/server.ts';
