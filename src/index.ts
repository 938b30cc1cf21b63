/**
 * effect-job-queue: a job queue for Effect programs.
 *
 * @example
 * import { Effect, Layer, Schema } from "effect"
 * import { JobHandlers, JobQueue, JobStore } from "effect-job-queue"
 *
 * const Echo = JobHandlers.register({
 *   type: "echo",
 *   payload: Schema.Struct({ text: Schema.String }),
 *   handler: ({ text }) => Effect.succeed({ text })
 * })
 * const Live = JobQueue.layer({ maxConcurrent: 4 }).pipe(
 *   Layer.provide(Layer.merge(Echo, JobStore.layerMemory)),
 *   Layer.provide(JobHandlers.layer)
 * )
 */

export * from "./config.js"
export * from "./domain/errors.js"
export * from "./domain/Job.js"
export * from "./domain/JobEvent.js"
export * from "./domain/JobPage.js"
export * from "./domain/SubmitOptions.js"
export * from "./http/Api.js"
export {
  type JobsClient,
  type JobsClientOptions,
  makeFetchJobsClient,
  makeJobsClient
} from "./http/client.js"
export {
  type JobContext,
  type JobHandlerDefinition,
  JobHandlers,
  type ProgressUpdate
} from "./JobHandlers.js"
export {
  type EventFilter,
  eventBufferSize,
  JobQueue,
  type JobQueueService,
  type JobRequest,
  type SubmitError,
  type Submitted
} from "./JobQueue.js"
export {
  applyProgress,
  applyTransition,
  type ClaimOptions,
  type Inserted,
  JobStore,
  type JobStoreService,
  leaseExpiredError,
  makeMemory,
  type ProgressPatch,
  type RetentionPolicy,
  type StoreSignals,
  type Transition,
  type TransitionDetail
} from "./JobStore.js"
export * from "./metrics.js"
export {
  layerStore,
  layerStoreConfig,
  parseStoreSelection,
  type StoreSelection,
  storeConfig
} from "./stores.js"
