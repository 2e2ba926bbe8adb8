/**
 * Ollama (`ollama serve`) as Vast's Ollama image runs it (model-servers.md §6): the native
 * `/api/generate` and `/api/chat` (NDJSON streams) plus the OpenAI routes. Everything comes from the
 * Ollama preset: the image's `Model pull complete:` line, health on `/api/version`, `OLLAMA_HOST`.
 */
import { ollamaWorker } from '../../lib/index.ts';

export default ollamaWorker();
