/**
 * The ComfyUI worker (`BACKEND=comfyui`, the reference's `comfyui-json`): ai-dock's
 * comfyui-api-wrapper on port 18288 in front of ComfyUI on 18188. Everything lives in the preset;
 * see README.md.
 */
import { comfyuiWorker } from '../../lib/index.ts';

export default comfyuiWorker();
