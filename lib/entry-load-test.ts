/**
 * `tsworker/load-test`: the engine behind `tsworker test_load`, for driving a worker or an
 * endpoint from code: open and closed loops, routed or direct targets, and the summary.
 */
export {
  runLoad,
  startLoad,
  routeTarget,
  directTarget,
  summarize,
  formatSummary,
  seededRandom,
  defineLoadTest,
  testLoadMain,
  isEntryPoint,
  type LoadTestDefinition,
  type LoadTestOptions,
  type LoadTestRoute,
  type Answer,
  type LoadOptions,
  type LoadResult,
  type LoadSummary,
  type PlannedRequest,
  type RequestResult,
  type Target,
} from './test-harness/index.ts';
