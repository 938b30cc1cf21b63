import { Cause, Deferred, Duration, Effect, Either, Exit, Fiber, FiberId, Queue, Schema } from "effect"
import type { JobQueueOptions } from "../config.js"
import {
  InvalidJobInput,
  InvalidProgress,
  JobNotCancellable,
  JobNotFound,
  QueueShuttingDown
} from "../domain/errors.js"
import { isTerminal, Job, type JobId, JobStages, Json, makeJobId } from "../domain/Job.js"
import { type JobContext, JobHandlers, type ProgressUpdate } from "../JobHandlers.js"
import type { JobQueueService } from "../JobQueue.js"
import { JobStore, type Transition } from "../JobStore.js"

/** A job this process is running: the worker fiber that runs it, and whether a user cancelled it. */
interface RunningJob {
  readonly fiber: Fiber.RuntimeFiber<unknown, unknown>
  claimed: boolean
  cancelled: boolean
}

const shutdownReason = "Cancelled: the queue shut down before the job finished"
const isJson = Schema.is(Json)
const stages: ReadonlySet<string> = new Set(JobStages)

const messageOf = (error: unknown): string => {
  if (typeof error === "string") return error
  if (typeof error === "object" && error !== null) {
    const tag = "_tag" in error && typeof error._tag === "string" ? error._tag : undefined
    const message = "message" in error && typeof error.message === "string" ? error.message : undefined
    if (message !== undefined && message !== "") return tag !== undefined ? `${tag}: ${message}` : message
    if (tag !== undefined) return tag
  }
  return String(error)
}

/** The error text recorded on a job whose handler failed, died or was interrupted. */
export const describeFailure = (cause: Cause.Cause<unknown>): string => {
  const failure = Cause.failureOption(cause)
  if (failure._tag === "Some") return messageOf(failure.value)
  const defect = Cause.dieOption(cause)
  if (defect._tag === "Some") return `Defect: ${messageOf(defect.value)}`
  return "The handler was interrupted"
}

const checkProgress = (update: ProgressUpdate): string | undefined => {
  if (
    update.progress !== undefined &&
    !(Number.isFinite(update.progress) && update.progress >= 0 && update.progress <= 100)
  )
    return `progress must be a number from 0 to 100, got ${String(update.progress)}`
  if (update.stage !== undefined && !stages.has(update.stage))
    return `stage must be one of ${JobStages.join(", ")}, got ${String(update.stage)}`
  if (update.message !== undefined && update.message !== null && typeof update.message !== "string")
    return "message must be a string or null"
  return undefined
}

/**
 * Builds the queue. Ready job ids flow through an unbounded `Queue` to `maxConcurrent` worker fibers, so at most
 * that many handlers run at once. A worker runs its job's handler itself (no fiber per job): cancelling a running
 * job interrupts that worker, and its slot forks a fresh one.
 */
export const make = (options: JobQueueOptions) =>
  Effect.gen(function* () {
    const store = yield* JobStore
    const handlers = yield* JobHandlers
    const clock = yield* Effect.clock
    const ready = yield* Queue.unbounded<JobId>()
    const drained = yield* Deferred.make<void>()
    const running = new Map<string, RunningJob>()
    const waiters = new Map<string, Array<Deferred.Deferred<Job>>>()
    const workers = new Set<Fiber.RuntimeFiber<void>>()
    let shuttingDown = false

    const now = () => new Date(clock.unsafeCurrentTimeMillis())

    const settled = (job: Job): void => {
      const list = waiters.get(job.id)
      if (list === undefined) return
      waiters.delete(job.id)
      for (const deferred of list) Deferred.unsafeDone(deferred, Exit.succeed(job))
    }

    const settle = (transition: Transition): void => {
      if (transition._tag === "Moved") settled(transition.job)
    }

    const submit: JobQueueService["submit"] = (type, metadata) =>
      Effect.suspend((): Effect.Effect<Job, InvalidJobInput | QueueShuttingDown> => {
        if (shuttingDown) return Effect.fail(QueueShuttingDown.instance)
        const handler = handlers.get(type)
        if (handler === undefined) {
          const known = handlers.types().join(", ")
          return Effect.fail(
            new InvalidJobInput({
              message: `type: unknown job type "${type}" (registered: ${known})`,
              field: "type"
            })
          )
        }
        const valid = handler.validate(metadata ?? {})
        if (Either.isLeft(valid)) return Effect.fail(valid.left)
        const createdAt = now()
        const job = new Job(
          {
            id: makeJobId(),
            type,
            status: "pending",
            stage: "queued",
            progress: 0,
            message: null,
            metadata: valid.right,
            result: null,
            error: null,
            attempts: 0,
            createdAt,
            startedAt: null,
            finishedAt: null,
            updatedAt: createdAt
          },
          true
        )
        return Effect.as(Effect.zipRight(store.insert(job), Queue.offer(ready, job.id)), job)
      })

    const get: JobQueueService["get"] = (id) =>
      Effect.flatMap(store.get(id), (job) =>
        job._tag === "Some" ? Effect.succeed(job.value) : Effect.fail(JobNotFound.of(id))
      )

    const progress = (id: JobId, update: ProgressUpdate): Effect.Effect<void, InvalidProgress> =>
      Effect.suspend(() => {
        const problem = checkProgress(update)
        if (problem !== undefined) return Effect.fail(new InvalidProgress({ message: problem }))
        return Effect.asVoid(store.progress(id, update, now()))
      })

    const finish = (job: Job, exit: Exit.Exit<Json, unknown>) => {
      if (Exit.isSuccess(exit)) {
        const result = exit.value === undefined ? null : exit.value
        if (isJson(result))
          return Effect.map(store.transition(job.id, "completed", { result }, now()), settle)
        return Effect.map(
          store.transition(job.id, "failed", { error: "The handler's result is not a JSON value" }, now()),
          settle
        )
      }
      return store.transition(job.id, "failed", { error: describeFailure(exit.cause) }, now()).pipe(
        Effect.tap((transition) =>
          transition._tag === "Moved"
            ? Effect.logWarning(`Job failed: ${transition.job.error}`).pipe(
                Effect.annotateLogs({ jobId: job.id, jobType: job.type })
              )
            : Effect.void
        ),
        Effect.map(settle)
      )
    }

    const execute = (job: Job): Effect.Effect<void> => {
      const handler = handlers.get(job.type)
      if (handler === undefined)
        return finish(job, Exit.fail(`No handler is registered for type "${job.type}"`))
      const context: JobContext = { job, progress: (update) => progress(job.id, update) }
      return Effect.flatMap(Effect.exit(handler.run(job.metadata, context)), (exit) => finish(job, exit))
    }

    const released = (id: JobId, entry: RunningJob, exit: Exit.Exit<void>): Effect.Effect<void> => {
      running.delete(id)
      if (shuttingDown && running.size === 0) Deferred.unsafeDone(drained, Exit.void)
      if (!entry.claimed || !Exit.isInterrupted(exit) || entry.cancelled) return Effect.void
      const reason = shuttingDown ? shutdownReason : "The job's fiber was interrupted"
      return Effect.map(store.transition(id, "cancelled", { error: reason }, now()), settle)
    }

    const runOne = (self: Fiber.RuntimeFiber<unknown, unknown>, id: JobId): Effect.Effect<void> => {
      if (shuttingDown) return Queue.offer(ready, id)
      const entry: RunningJob = { fiber: self, claimed: false, cancelled: false }
      running.set(id, entry)
      return store.transition(id, "running", {}, now()).pipe(
        Effect.flatMap((transition) => {
          if (transition._tag !== "Moved") return Effect.void
          entry.claimed = true
          return execute(transition.job)
        }),
        Effect.onExit((exit) => released(id, entry, exit))
      )
    }

    const worker: Effect.Effect<void> = Effect.withFiberRuntime((self) =>
      Effect.whileLoop({
        while: () => !shuttingDown,
        body: () => Effect.flatMap(Queue.take(ready), (id) => runOne(self, id)),
        step: () => {}
      })
    )

    const slot: Effect.Effect<void> = Effect.whileLoop({
      while: () => !shuttingDown,
      body: () =>
        Effect.flatMap(Effect.fork(worker), (fiber) => {
          workers.add(fiber)
          return Effect.ensuring(
            Fiber.await(fiber),
            Effect.sync(() => workers.delete(fiber))
          )
        }),
      step: () => {}
    })

    const cancel: JobQueueService["cancel"] = (id) =>
      Effect.flatMap(
        store.transition(id, "cancelled", { error: null }, now()),
        (transition): Effect.Effect<Job, JobNotFound | JobNotCancellable> => {
          switch (transition._tag) {
            case "NotFound":
              return Effect.fail(JobNotFound.of(id))
            case "Refused":
              return Effect.fail(JobNotCancellable.of(id, transition.job.status))
            case "Moved": {
              if (transition.from !== "running") {
                settled(transition.job)
                return Effect.succeed(transition.job)
              }
              // Find the worker and interrupt it in one step: a worker found a step earlier may since have let go
              // of this job (its own move to a final status refused) and taken the next one, which the interrupt
              // would then kill. With no entry left, the worker has finished with the job: nothing to interrupt.
              return Effect.withFiberRuntime<Job>((canceller) => {
                const entry = running.get(id)
                if (entry === undefined) return Effect.succeed(transition.job)
                entry.cancelled = true
                entry.fiber.unsafeInterruptAsFork(canceller.id())
                return Effect.as(Fiber.await(entry.fiber), transition.job)
              }).pipe(Effect.ensuring(Effect.sync(() => settled(transition.job))))
            }
          }
        }
      )

    const awaitJob: JobQueueService["await"] = (id) =>
      Effect.suspend(() => {
        const deferred = Deferred.unsafeMake<Job>(FiberId.none)
        const list = waiters.get(id)
        if (list === undefined) waiters.set(id, [deferred])
        else list.push(deferred)
        const forget = Effect.sync(() => {
          const remaining = waiters.get(id)?.filter((other) => other !== deferred)
          if (remaining === undefined || remaining.length === 0) waiters.delete(id)
          else waiters.set(id, remaining)
        })
        return Effect.flatMap(store.get(id), (job) => {
          if (job._tag === "None") return Effect.zipRight(forget, Effect.fail(JobNotFound.of(id)))
          if (isTerminal(job.value.status)) return Effect.as(forget, job.value)
          return Deferred.await(deferred)
        }).pipe(Effect.onInterrupt(() => forget))
      })

    const list: JobQueueService["list"] = (query = {}) => store.list(query)

    const shutdown = Effect.gen(function* () {
      shuttingDown = true
      const busy = running.size
      if (busy > 0) {
        yield* Effect.logInfo(
          `JobQueue shutting down: waiting up to ${options.shutdownGraceMs} ms for ${busy} running job(s)`
        )
        // Finalizers run uninterruptibly, and a timeout cannot cut short an uninterruptible effect: without
        // `interruptible` the wait would outlast the grace period for as long as a handler keeps running.
        yield* Deferred.await(drained).pipe(
          Effect.interruptible,
          Effect.timeoutOption(Duration.millis(options.shutdownGraceMs))
        )
      }
      const interrupted = running.size
      yield* Fiber.interruptAll(Array.from(workers))
      let cancelledPending = 0
      if (!store.durable) {
        const ids = yield* Queue.takeAll(ready)
        for (const id of ids) {
          const transition = yield* store.transition(id, "cancelled", { error: shutdownReason }, now())
          if (transition._tag === "Moved") {
            cancelledPending++
            settled(transition.job)
          }
        }
      }
      yield* Effect.logInfo(
        `JobQueue shut down: ${busy - interrupted} of ${busy} running job(s) finished in the grace period, ` +
          `${interrupted} interrupted and cancelled, ${cancelledPending} pending job(s) cancelled`
      )
    })

    const slots = yield* Effect.forkScoped(
      Effect.all(
        Array.from({ length: options.maxConcurrent }, () => slot),
        { concurrency: "unbounded", discard: true }
      )
    )
    yield* Effect.addFinalizer(() => Effect.zipRight(shutdown, Fiber.interrupt(slots)))

    const service: JobQueueService = { options, submit, get, list, cancel, await: awaitJob }
    return service
  })
