/**
 * The load-test harness (PyWorker's lib/test_utils): an engine that workers' test_load.ts, the
 * `tsworker test_load` command and the bench share.
 */
export { arrivalOffsets, arrivalSchedule, seededRandom, userStartOffsets } from './arrivals.ts';
export type { ArrivalKind, ArrivalOptions, Random } from './arrivals.ts';
export { percentile, distribution, RecentWindow, type Distribution } from './stats.ts';
export { runLoad, startLoad } from './engine.ts';
export type {
  Answer,
  ClosedSchedule,
  CountTokens,
  ErrorCause,
  LoadOptions,
  LoadResult,
  LoadRun,
  OpenSchedule,
  PlannedRequest,
  Progress,
  RequestResult,
  RetryPolicy,
  Verify,
} from './load-types.ts';
export { directTarget, routeTarget, RoutingError, isRetryableStatus } from './targets.ts';
export type { Destination, DirectEnvelope, RouteContext, Target } from './targets.ts';
export {
  summarize,
  formatSummary,
  formatProgress,
  formatProgressLine,
  formatMs,
} from './report.ts';
export type { ErrorGroup, LoadSummary, RunDescription } from './report.ts';
export { defineLoadTest, isLoadTestDefinition } from './definition.ts';
export type { LoadTestDefinition, LoadTestOptions, LoadTestRoute } from './definition.ts';
export {
  testLoadMain,
  runTestLoad,
  parseTestLoadArgs,
  normalizeArgv,
  readPayloadFile,
  isEntryPoint,
  UsageError,
  RunError,
  TEST_LOAD_USAGE,
  LOCAL_AUTOSCALER,
  PRODUCTION_AUTOSCALER,
} from './cli.ts';
export type { TestLoadIo, TestLoadOptions } from './cli.ts';
