import { type ConfigError, Context, Effect, Layer } from "effect"
import { defaultJobQueueOptions, type JobQueueOptions, jobQueueConfig } from "./config.js"
import type {
  InvalidCursor,
  InvalidJobInput,
  JobNotCancellable,
  JobNotFound,
  QueueShuttingDown
} from "./domain/errors.js"
import type { Job, JobId, JsonObject } from "./domain/Job.js"
import type { JobPage, JobQuery } from "./domain/JobPage.js"
import { make } from "./internal/engine.js"
import type { JobHandlers } from "./JobHandlers.js"
import type { JobStore } from "./JobStore.js"

/** The job queue: submit work, follow it, cancel it. */
export interface JobQueueService {
  /** The options the queue runs with. */
  readonly options: JobQueueOptions
  /** Validates and stores a new job, then queues it. Fails on an unknown type or metadata that fails its schema. */
  readonly submit: (
    type: string,
    metadata?: JsonObject | undefined
  ) => Effect.Effect<Job, InvalidJobInput | QueueShuttingDown>
  /** Reads one job. */
  readonly get: (id: JobId) => Effect.Effect<Job, JobNotFound>
  /** Lists jobs newest first (ties broken by id); `status` and `type` each accept several values. */
  readonly list: (query?: JobQuery) => Effect.Effect<JobPage, InvalidCursor>
  /** Cancels a pending or running job; a running job's fiber is interrupted and its finalizers run first. */
  readonly cancel: (id: JobId) => Effect.Effect<Job, JobNotFound | JobNotCancellable>
  /** Waits until the job is completed, failed or cancelled, and returns it. */
  readonly await: (id: JobId) => Effect.Effect<Job, JobNotFound>
}

/**
 * The job queue service. Build it with `JobQueue.layer(options)` or `JobQueue.layerConfig` (from the
 * environment), over a `JobStore` and `JobHandlers`. Its workers live in the layer's scope: closing it refuses
 * new jobs, gives running ones `shutdownGraceMs` to finish, then interrupts them.
 */
export class JobQueue extends Context.Tag("effect-job-queue/JobQueue")<JobQueue, JobQueueService>() {
  /** The queue with explicit options; missing ones take their defaults. */
  static layer(options: Partial<JobQueueOptions> = {}): Layer.Layer<JobQueue, never, JobStore | JobHandlers> {
    return Layer.scoped(JobQueue, make({ ...defaultJobQueueOptions, ...options }))
  }

  /** The queue with its options read from the environment (`APP_JOB_MAX_CONCURRENT`, …); a bad value fails at start. */
  static readonly layerConfig: Layer.Layer<JobQueue, ConfigError.ConfigError, JobStore | JobHandlers> =
    Layer.unwrapEffect(Effect.map(jobQueueConfig, (options) => JobQueue.layer(options)))
}
