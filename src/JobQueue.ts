import {
  type ConfigError,
  Context,
  DefaultServices,
  Effect,
  Layer,
  type Scope,
  type Stream,
  Tracer
} from "effect"
import {
  concurrencyByTypeConfig,
  defaultJobQueueOptions,
  type JobQueueOptions,
  jobQueueConfig
} from "./config.js"
import type {
  InvalidCursor,
  InvalidJobInput,
  JobNotCancellable,
  JobNotFound,
  QueueFull,
  QueueShuttingDown
} from "./domain/errors.js"
import type { Job, JobId, JobStatus, JsonObject } from "./domain/Job.js"
import type { JobEvent } from "./domain/JobEvent.js"
import type { JobPage, JobQuery } from "./domain/JobPage.js"
import type { SubmitOptions } from "./domain/SubmitOptions.js"
import { make } from "./internal/engine.js"
import { JobHandlers } from "./JobHandlers.js"
import type { JobStore } from "./JobStore.js"

/** One job to submit: its type, its metadata (checked against the type's schema) and its options. */
export interface JobRequest {
  readonly type: string
  readonly metadata?: JsonObject | undefined
  readonly options?: SubmitOptions | undefined
}

/** A submission's outcome: the job, and whether it was created now (false: its idempotency key was taken). */
export interface Submitted {
  readonly job: Job
  readonly created: boolean
}

/** Which events to follow: by status and type, as in the list (OR within one, AND across both). */
export interface EventFilter {
  readonly status?: ReadonlyArray<JobStatus> | undefined
  readonly type?: ReadonlyArray<string> | undefined
}

/** Why a submission is refused. */
export type SubmitError = InvalidJobInput | QueueShuttingDown | QueueFull

/** The job queue: submit work, follow it, cancel it. */
export interface JobQueueService {
  /** The options the queue runs with. */
  readonly options: JobQueueOptions
  /** Every job type with a registered handler (the types `submit` accepts), in registration order. */
  readonly types: () => ReadonlyArray<string>
  /**
   * Validates and stores a new job, then queues it (or schedules it, when delayed). With an idempotency key that a
   * retained job holds, returns that job and creates nothing.
   */
  readonly submit: (
    type: string,
    metadata?: JsonObject | undefined,
    options?: SubmitOptions | undefined
  ) => Effect.Effect<Job, SubmitError>
  /** Submits several jobs, all or none: one invalid request fails the lot, naming its index. Jobs come back in order. */
  readonly submitMany: (requests: ReadonlyArray<JobRequest>) => Effect.Effect<ReadonlyArray<Job>, SubmitError>
  /** Like `submit`, telling whether the job was created now or found by its idempotency key. */
  readonly offer: (request: JobRequest) => Effect.Effect<Submitted, SubmitError>
  /** Like `submitMany`, telling for each job whether it was created now or found by its idempotency key. */
  readonly offerMany: (
    requests: ReadonlyArray<JobRequest>
  ) => Effect.Effect<ReadonlyArray<Submitted>, SubmitError>
  /** Reads one job. */
  readonly get: (id: JobId) => Effect.Effect<Job, JobNotFound>
  /** Lists jobs newest first (ties broken by id); `status` and `type` each accept several values. */
  readonly list: (query?: JobQuery) => Effect.Effect<JobPage, InvalidCursor>
  /** Cancels a pending or running job; a running job's fiber is interrupted and its finalizers run first. */
  readonly cancel: (id: JobId) => Effect.Effect<Job, JobNotFound | JobNotCancellable>
  /** Waits until the job is completed, failed or cancelled, and returns it. */
  readonly await: (id: JobId) => Effect.Effect<Job, JobNotFound>
  /**
   * Every job event from now on (`submitted`, `started`, `progress`, `retrying`, `completed`, `failed`, `cancelled`),
   * optionally filtered by the job's status and type after the event. Each subscriber has a sliding buffer of
   * `eventBufferSize` events: a subscriber that falls behind loses its oldest unread events, never slowing the workers.
   */
  readonly events: (filter?: EventFilter) => Stream.Stream<JobEvent>
  /**
   * {@link JobQueueService.events}, subscribed when this effect completes (not when the stream is first pulled): every
   * event published after it returns is in the stream, until the scope closes. For "subscribe, then act" without a gap.
   */
  readonly subscribe: (filter?: EventFilter) => Effect.Effect<Stream.Stream<JobEvent>, never, Scope.Scope>
  /**
   * One job's events: first its current state, then each change, ending after its final event (at once for a job
   * that has already finished).
   */
  readonly watch: (id: JobId) => Stream.Stream<JobEvent, JobNotFound>
  /**
   * Shuts the queue down, as closing its layer's scope does: refuses new jobs, gives running ones the grace period,
   * then interrupts them. Runs once; later calls wait for it. Useful to drain before the HTTP server stops.
   */
  readonly shutdown: Effect.Effect<void>
}

// The tracer a fiber has when none was installed: its spans go nowhere (no exporter reads them), and making one costs
// about 3 µs a call (a span, a context copy to parent it, its end), 10 % of a submit-bound workload.
const defaultTracer = Context.get(DefaultServices.liveServices, Tracer.Tracer)

// Runs `effect` in a span named `name` when the fiber has a tracer installed; with the default one, runs it as is.
// Attributes are built only for a span that is made; no stack trace is captured (that would double a span's cost).
const traced = <A, E>(
  name: string,
  attributes: () => Record<string, unknown>,
  effect: Effect.Effect<A, E>
): Effect.Effect<A, E> =>
  Effect.withFiberRuntime((fiber) =>
    fiber.currentTracer === defaultTracer
      ? effect
      : Effect.withSpan(effect, name, { attributes: attributes(), captureStackTrace: false })
  )

const none = () => ({})

/**
 * The service with a span around each call of its request-facing methods, named after the method
 * (`JobQueue.submit`, `JobQueue.get`, …) and carrying the job's type or id, when a tracer is installed.
 * Workers run span-free.
 */
const withSpans = (queue: JobQueueService): JobQueueService => ({
  ...queue,
  submit: (type, metadata, options) =>
    traced("JobQueue.submit", () => ({ "job.type": type }), queue.submit(type, metadata, options)),
  submitMany: (requests) =>
    traced("JobQueue.submitMany", () => ({ "jobs.count": requests.length }), queue.submitMany(requests)),
  offer: (request) => traced("JobQueue.offer", () => ({ "job.type": request.type }), queue.offer(request)),
  offerMany: (requests) =>
    traced("JobQueue.offerMany", () => ({ "jobs.count": requests.length }), queue.offerMany(requests)),
  get: (id) => traced("JobQueue.get", () => ({ "job.id": id }), queue.get(id)),
  list: (query) => traced("JobQueue.list", none, queue.list(query)),
  cancel: (id) => traced("JobQueue.cancel", () => ({ "job.id": id }), queue.cancel(id))
})

/** How many unread events each subscriber may hold before its oldest are dropped. */
export const eventBufferSize = 4096

/**
 * The job queue service. Build it with `JobQueue.layer(options)` or `JobQueue.layerConfig` (from the
 * environment), over a `JobStore` and `JobHandlers`. Its workers live in the layer's scope: closing it refuses
 * new jobs, gives running ones `shutdownGraceMs` to finish, then interrupts them.
 */
export class JobQueue extends Context.Tag("effect-job-queue/JobQueue")<JobQueue, JobQueueService>() {
  /** The queue with explicit options; missing ones take their defaults. */
  static layer(options: Partial<JobQueueOptions> = {}): Layer.Layer<JobQueue, never, JobStore | JobHandlers> {
    return Layer.scoped(JobQueue, Effect.map(make({ ...defaultJobQueueOptions, ...options }), withSpans))
  }

  /**
   * The queue with its options read from the environment (`APP_JOB_MAX_CONCURRENT`, …, and
   * `APP_JOB_CONCURRENCY_<TYPE>` for each registered type); a bad value fails at start.
   */
  static readonly layerConfig: Layer.Layer<JobQueue, ConfigError.ConfigError, JobStore | JobHandlers> =
    Layer.unwrapEffect(
      Effect.gen(function* () {
        const options = yield* jobQueueConfig
        const handlers = yield* JobHandlers
        const concurrencyByType = yield* concurrencyByTypeConfig(handlers.types())
        return JobQueue.layer({ ...options, concurrencyByType })
      })
    )
}
