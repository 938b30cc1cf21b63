import {
  Cause,
  Chunk,
  Deferred,
  Duration,
  Effect,
  Either,
  Exit,
  Fiber,
  FiberId,
  FiberRef,
  HashMap,
  Option,
  ParseResult,
  PubSub,
  Queue,
  Schedule,
  Schema,
  Stream
} from "effect"
import { type JobQueueOptions, typeEnvName } from "../config.js"
import {
  InvalidJobInput,
  InvalidProgress,
  JobNotCancellable,
  JobNotFound,
  JobTimeout,
  PermanentJobError,
  QueueShuttingDown
} from "../domain/errors.js"
import {
  isTerminal,
  type Job,
  type JobId,
  JobStages,
  type JobStatus,
  Json,
  makeJob,
  makeJobId
} from "../domain/Job.js"
import { JobEvent, type JobEventKind } from "../domain/JobEvent.js"
import { SubmitOptions } from "../domain/SubmitOptions.js"
import { type JobContext, JobHandlers, type ProgressUpdate, type RegisteredHandler } from "../JobHandlers.js"
import {
  eventBufferSize,
  type JobQueueService,
  type JobRequest,
  type SubmitError,
  type Submitted
} from "../JobQueue.js"
import { JobStore, type RetentionPolicy, type Transition, type TransitionDetail } from "../JobStore.js"
import { instrumentStore, trackRunning } from "../metrics.js"
import { DelayedJobs } from "./DelayedJobs.js"
import { type ReadyEntry, ReadyQueue } from "./ReadyQueue.js"

/** A job this process is running: the worker fiber that runs it, and whether a user cancelled it. */
interface RunningJob {
  readonly fiber: Fiber.RuntimeFiber<unknown, unknown>
  cancelled: boolean
}

const shutdownReason = "Cancelled: the queue shut down before the job finished"
const isJson = Schema.is(Json)
const validateOptions = Schema.validateEither(SubmitOptions, { errors: "first" })
const stages: ReadonlySet<string> = new Set(JobStages)
const utf8 = new TextEncoder()

// An escaped U+0000 in JSON text (after an even number of backslashes, so not a literal "\\u0000").
const escapedNul = /(?:^|[^\\])(?:\\\\)*\\u0000/

// What is wrong with metadata as JSON, if anything: more than `max` bytes (a UTF-16 unit takes 1 to 3 bytes in UTF-8,
// so the string's length decides most cases without encoding it), or a U+0000, which PostgreSQL cannot store (refused
// on every store, so that a job valid on one store is valid on all). A value JSON cannot represent is left to its
// schema.
const metadataProblem = (value: unknown, max: number): string | undefined => {
  let text: string | undefined
  try {
    text = JSON.stringify(value)
  } catch {
    return undefined
  }
  if (text === undefined) return undefined
  if (text.length * 3 > max && (text.length > max || utf8.encode(text).length > max))
    return `metadata: is larger than ${max} bytes as JSON`
  if (escapedNul.test(text)) return "metadata: contains the character U+0000 (NUL), which jobs cannot hold"
  return undefined
}

// The log annotations of a job's attempt: the worker's own (usually none) with `jobId` and `jobType`, so that every
// line the handler logs names its job. Set on the worker fiber (and restored) rather than wrapping the handler in
// `Effect.annotateLogs`, which measured about 7 µs a job; each type's map is built once, so a job costs one update.
const typeAnnotations = new Map<string, HashMap.HashMap<string, unknown>>()
const annotationsFor = (
  base: HashMap.HashMap<string, unknown>,
  job: Job
): HashMap.HashMap<string, unknown> => {
  if (HashMap.size(base) > 0) return HashMap.set(HashMap.set(base, "jobType", job.type), "jobId", job.id)
  let byType = typeAnnotations.get(job.type)
  if (byType === undefined) {
    byType = HashMap.make(["jobType", job.type as unknown])
    typeAnnotations.set(job.type, byType)
  }
  return HashMap.set(byType, "jobId", job.id)
}

// Whether an object has no own enumerable keys (`{}`: no size to check).
const isEmptyObject = (value: object): boolean => {
  for (const _ in value) return false
  return true
}

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

const isPermanent = (cause: Cause.Cause<unknown>): boolean => {
  const failure = Cause.failureOption(cause)
  return failure._tag === "Some" && failure.value instanceof PermanentJobError
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

const snapshotKind = (status: JobStatus): JobEventKind =>
  status === "pending" ? "submitted" : status === "running" ? "progress" : status

/**
 * Builds the queue. Ready jobs wait in a {@link ReadyQueue} (priority, then FIFO; per-type limits) for
 * `maxConcurrent` worker fibers; delayed jobs and retries wait in {@link DelayedJobs} for a scheduler fiber. A worker
 * runs its job's handler itself (no fiber per job): cancelling or timing out a running job interrupts that worker,
 * and its slot forks a fresh one.
 */
export const make = (options: JobQueueOptions) =>
  Effect.gen(function* () {
    const store = instrumentStore(yield* JobStore)
    // The in-memory store's writes, called inline on the hot path (see `JobStoreService.inline`).
    const inline = store.inline
    const handlers = yield* JobHandlers
    const clock = yield* Effect.clock
    const ready = new ReadyQueue((type) => limitOf(type))
    const delayed = new DelayedJobs()
    const wakeScheduler = yield* Queue.sliding<void>(1)
    const pubsub = yield* PubSub.sliding<JobEvent>(eventBufferSize)
    const drained = yield* Deferred.make<void>()
    const running = new Map<string, RunningJob>()
    const waiters = new Map<string, Array<Deferred.Deferred<Job>>>()
    const workers = new Set<Fiber.RuntimeFiber<void>>()
    const retention: RetentionPolicy = { maxAgeMs: options.retentionMs, maxCount: options.retentionMax }
    const retrySchedule = Schedule.delays(
      Schedule.exponential(Duration.millis(options.retryBaseMs), 2).pipe(
        Schedule.jittered,
        Schedule.modifyDelay((_, delay) => Duration.min(delay, Duration.millis(options.retryMaxMs)))
      )
    )
    let subscribers = 0
    let shuttingDown = false
    // Durable stores: jobs are claimed from the store under this node's lease and handed to workers.
    const durable = store.durable
    const owner = crypto.randomUUID()
    const claimed = yield* Queue.unbounded<Job>()
    const wakeDispatcher = yield* Queue.sliding<void>(1)
    const inFlightByType = new Map<string, number>()
    let inFlight = 0
    const limitOf = (type: string): number =>
      options.concurrencyByType[type] ??
      options.concurrencyByType[typeEnvName(type)] ??
      Number.POSITIVE_INFINITY
    const wake = () => {
      wakeDispatcher.unsafeOffer(undefined)
    }

    // The time, as the `Date` records carry. Every record stamped within one millisecond shares one `Date` (records
    // never change their dates, and nothing here mutates one): a `Date` takes about 112 heap bytes, and a finished job
    // carries three (created, started, finished), about half of a retained record's size before this.
    let lastMs = Number.NaN
    let lastDate = new Date(0)
    const now = (): Date => {
      const ms = clock.unsafeCurrentTimeMillis()
      if (ms !== lastMs) {
        lastMs = ms
        lastDate = new Date(ms)
      }
      return lastDate
    }

    // A background step that fails (a store that is down, say) is logged and retried after a pause; it never takes
    // the other background fibers down with it.
    const resilient = <A>(name: string, step: Effect.Effect<A>): Effect.Effect<A | undefined> =>
      Effect.catchAllCause(step, (cause) =>
        Cause.isInterruptedOnly(cause)
          ? Effect.failCause(cause)
          : Effect.zipRight(
              Effect.logError(`JobQueue ${name} failed; retrying`, cause),
              Effect.as(Effect.sleep(Duration.millis(options.pollIntervalMs)), undefined)
            )
      )

    // Events to relay to the other nodes sharing a store with signals ("kind|id"), and whether to wake them.
    const signals = store.signals
    let relay: Array<string> = []
    let wakeOthers = false
    // The other nodes on the store's channel (by owner), with when each was last heard from: events and wake-ups are
    // relayed only while there are some. Alone on a store, a node sent a NOTIFY (a commit of its own) about every
    // 5 ms under load for nobody: about one per job when jobs are submitted one by one. Nodes announce themselves
    // ("h:") every `announceMs`; a node that starts asks ("H:", until it hears its own, so that it is listening) and
    // every node answers at once.
    const peers = new Map<string, number>()
    const announceMs = 2_000
    const peerTtlMs = 5 * announceMs
    let listening = false
    const hasPeers = (): boolean => {
      if (peers.size === 0) return false
      const at = clock.unsafeCurrentTimeMillis()
      for (const [peer, seen] of peers) if (at - seen > peerTtlMs) peers.delete(peer)
      return peers.size > 0
    }
    const heardFrom = (peer: string): void => {
      if (peer !== owner) peers.set(peer, clock.unsafeCurrentTimeMillis())
    }

    const publishLocal = (kind: JobEventKind, job: Job): void => {
      if (subscribers === 0) return
      const event = new JobEvent({ kind, job }, true)
      // `unsafeOffer` ignores the sliding strategy: with the buffer full (one subscriber behind) it drops the new
      // event for every subscriber. `PubSub.publish` slides instead, dropping the oldest (synchronously).
      if (!pubsub.unsafeOffer(event)) Effect.runSync(PubSub.publish(pubsub, event))
    }

    const publish = (kind: JobEventKind, job: Job): void => {
      publishLocal(kind, job)
      if (signals !== undefined) relay.push(`${kind}|${job.id}`)
    }

    const notifyWaiters = (job: Job): void => {
      const list = waiters.get(job.id)
      if (list === undefined) return
      waiters.delete(job.id)
      for (const deferred of list) Deferred.unsafeDone(deferred, Exit.succeed(job))
    }

    // A job reached a final status: tell its waiters and subscribers, and let retention forget old ones.
    const finished = (job: Job): Effect.Effect<void> => {
      publish(job.status as JobEventKind, job)
      notifyWaiters(job)
      // A durable store is pruned by the periodic sweep only: a delete per finished job would cost a round trip.
      if (durable) return Effect.void
      if (inline === undefined) return Effect.asVoid(store.prune(retention, now()))
      inline.prune(retention, now())
      return Effect.void
    }

    // A job's move to a final status, and then what `finished` does.
    const finish = (id: JobId, to: JobStatus, detail: TransitionDetail): Effect.Effect<void> => {
      if (inline === undefined)
        return Effect.flatMap(store.transition(id, to, detail, now()), (moved) =>
          moved._tag === "Moved" ? finished(moved.job) : Effect.void
        )
      const moved = inline.transition(id, to, detail, now())
      return moved._tag === "Moved" ? finished(moved.job) : Effect.void
    }

    const schedule = (job: Job, at: number): void => {
      if (job.runAt.getTime() <= at) {
        if (durable) {
          wake()
          wakeOthers = true
        } else ready.offer(job.id, job.type, job.priority)
        return
      }
      const before = delayed.nextDueAt()
      delayed.push({ id: job.id, type: job.type, priority: job.priority, dueAt: job.runAt.getTime() })
      if (before === undefined || job.runAt.getTime() < before) wakeScheduler.unsafeOffer(undefined)
    }

    const invalid = (index: number | undefined, error: InvalidJobInput): InvalidJobInput =>
      index === undefined
        ? error
        : new InvalidJobInput({
            // "type: …" becomes "jobs[3].type: …"; a message that does not open with its field (metadata's
            // "Invalid metadata for job type …") becomes "jobs[3]: Invalid metadata …", not "jobs[3].Invalid …".
            message:
              error.field !== undefined && error.message.startsWith(`${error.field}:`)
                ? `jobs[${index}].${error.message}`
                : `jobs[${index}]: ${error.message}`,
            field: `jobs[${index}].${error.field ?? ""}`.replace(/\.$/, ""),
            index
          })

    // A type's defaults, checked once: a submission without options of its own takes them as they are.
    const checkedDefaults = new WeakMap<RegisteredHandler, ReturnType<typeof validateOptions>>()
    const defaultsOf = (handler: RegisteredHandler): ReturnType<typeof validateOptions> => {
      let checked = checkedDefaults.get(handler)
      if (checked === undefined) {
        checked = validateOptions(handler.defaults)
        checkedDefaults.set(handler, checked)
      }
      return checked
    }

    const build = (
      request: JobRequest,
      createdAt: Date,
      index: number | undefined
    ): Either.Either<Job, InvalidJobInput> => {
      const handler = handlers.get(request.type)
      if (handler === undefined) {
        const known = handlers.types().join(", ")
        return Either.left(
          invalid(
            index,
            new InvalidJobInput({
              message: `type: unknown job type "${request.type}" (registered: ${known})`,
              field: "type"
            })
          )
        )
      }
      const problem =
        request.metadata === undefined || isEmptyObject(request.metadata)
          ? undefined
          : metadataProblem(request.metadata, options.maxMetadataBytes)
      if (problem !== undefined) {
        return Either.left(invalid(index, new InvalidJobInput({ message: problem, field: "metadata" })))
      }
      const metadata = handler.validate(request.metadata ?? {})
      if (Either.isLeft(metadata)) return Either.left(invalid(index, metadata.left))
      const checked =
        request.options === undefined
          ? defaultsOf(handler)
          : validateOptions({ ...handler.defaults, ...request.options })
      if (Either.isLeft(checked)) {
        // Name the option at fault ("options.maxAttempts"), as metadata errors name their field: the tree's last
        // line alone is the `undefined` branch of the optional ("Expected undefined, actual 0").
        const issue = ParseResult.ArrayFormatter.formatErrorSync(checked.left)[0]
        const field = ["options", ...(issue?.path ?? []).map(String)].join(".")
        return Either.left(
          invalid(
            index,
            new InvalidJobInput({ message: `${field}: ${issue?.message ?? "is invalid"}`, field })
          )
        )
      }
      const opts = checked.right
      if (request.options?.delayMs !== undefined && request.options.runAt !== undefined) {
        return Either.left(
          invalid(
            index,
            new InvalidJobInput({ message: "delayMs: give delayMs or runAt, not both", field: "delayMs" })
          )
        )
      }
      const runAt =
        opts.runAt !== undefined && request.options?.delayMs === undefined
          ? opts.runAt
          : opts.delayMs !== undefined && opts.delayMs > 0
            ? new Date(createdAt.getTime() + opts.delayMs)
            : createdAt
      // A delay past the last date a Date can hold gives an invalid runAt, which the scheduler cannot wait for.
      if (Number.isNaN(runAt.getTime())) {
        return Either.left(
          invalid(
            index,
            new InvalidJobInput({ message: "delayMs: is too far in the future", field: "delayMs" })
          )
        )
      }
      return Either.right(
        makeJob({
          id: makeJobId(),
          type: request.type,
          status: "pending",
          stage: "queued",
          progress: 0,
          message: null,
          metadata: metadata.right,
          result: null,
          error: null,
          lastError: null,
          priority: opts.priority ?? 0,
          attempts: 0,
          maxAttempts: opts.maxAttempts ?? 1,
          timeoutMs: opts.timeoutMs ?? null,
          idempotencyKey: opts.idempotencyKey ?? null,
          runAt,
          createdAt,
          startedAt: null,
          finishedAt: null,
          updatedAt: createdAt
        })
      )
    }

    // Builds, stores and queues the requests; `pick` shapes the results (applied in the same step).
    const submitRequests = <A>(
      requests: ReadonlyArray<JobRequest>,
      batch: boolean,
      pick: (results: ReadonlyArray<Submitted>) => A
    ): Effect.Effect<A, SubmitError> =>
      Effect.suspend((): Effect.Effect<A, SubmitError> => {
        if (shuttingDown) return Effect.fail(QueueShuttingDown.instance)
        const createdAt = now()
        const jobs: Array<Job> = []
        for (let i = 0; i < requests.length; i++) {
          const job = build(requests[i]!, createdAt, batch ? i : undefined)
          if (Either.isLeft(job)) return Effect.fail(job.left)
          jobs.push(job.right)
        }
        const queued = (results: ReadonlyArray<Submitted>): A => {
          const at = createdAt.getTime()
          for (const { job, created } of results) {
            if (!created) continue
            publish("submitted", job)
            schedule(job, at)
          }
          return pick(results)
        }
        if (inline === undefined) return Effect.map(store.insert(jobs, options.maxPending), queued)
        const inserted = inline.insert(jobs, options.maxPending)
        return Either.isLeft(inserted) ? Effect.fail(inserted.left) : Effect.succeed(queued(inserted.right))
      })

    const all = (results: ReadonlyArray<Submitted>) => results
    const first = (results: ReadonlyArray<Submitted>) => results[0]!
    const jobs = (results: ReadonlyArray<Submitted>) => results.map((result) => result.job)
    const firstJob = (results: ReadonlyArray<Submitted>) => results[0]!.job

    const offerMany: JobQueueService["offerMany"] = (requests) => submitRequests(requests, true, all)

    const offer: JobQueueService["offer"] = (request) => submitRequests([request], false, first)

    const submitMany: JobQueueService["submitMany"] = (requests) => submitRequests(requests, true, jobs)

    const submit: JobQueueService["submit"] = (type, metadata, submitOptions) =>
      submitRequests([{ type, metadata, options: submitOptions }], false, firstJob)

    const get: JobQueueService["get"] = (id) =>
      Effect.flatMap(store.get(id), (job) =>
        job._tag === "Some" ? Effect.succeed(job.value) : Effect.fail(JobNotFound.of(id))
      )

    const progress = (id: JobId, update: ProgressUpdate): Effect.Effect<void, InvalidProgress> =>
      Effect.suspend(() => {
        const problem = checkProgress(update)
        if (problem !== undefined) return Effect.fail(new InvalidProgress({ message: problem }))
        return Effect.map(store.progress(id, update, now()), (job) => {
          if (job._tag === "Some") publish("progress", job.value)
        })
      })

    const retryDelay = (attempt: number): Effect.Effect<Duration.Duration> =>
      Effect.map(
        Schedule.run(
          retrySchedule,
          clock.unsafeCurrentTimeMillis(),
          Array.from({ length: attempt }, () => undefined)
        ),
        (delays) => Option.getOrElse(Chunk.last(delays), () => Duration.millis(options.retryBaseMs))
      )

    const fail = (job: Job, cause: Cause.Cause<unknown>): Effect.Effect<void> => {
      const error = describeFailure(cause)
      if (!isPermanent(cause) && job.attempts < job.maxAttempts) {
        return Effect.flatMap(retryDelay(job.attempts), (delay) => {
          const at = now()
          const runAt = new Date(at.getTime() + Duration.toMillis(delay))
          return Effect.map(store.transition(job.id, "pending", { error, runAt }, at), (transition) => {
            if (transition._tag !== "Moved") return
            publish("retrying", transition.job)
            schedule(transition.job, at.getTime())
          })
        })
      }
      return store
        .transition(job.id, "failed", { error }, now())
        .pipe(
          Effect.flatMap((transition) =>
            transition._tag === "Moved"
              ? Effect.zipRight(
                  Effect.logWarning(`Job failed: ${error}`).pipe(
                    Effect.annotateLogs({ jobId: job.id, jobType: job.type })
                  ),
                  finished(transition.job)
                )
              : Effect.void
          )
        )
    }

    const settle = (job: Job, record: RunningJob, exit: Exit.Exit<Json, unknown>): Effect.Effect<void> => {
      if (Exit.isSuccess(exit)) {
        const result = exit.value === undefined ? null : exit.value
        if (!isJson(result)) return fail(job, Cause.fail("The handler's result is not a JSON value"))
        return finish(job.id, "completed", { result })
      }
      if (!Cause.isInterruptedOnly(exit.cause)) return fail(job, exit.cause)
      if (record.cancelled) return Effect.void
      if (!shuttingDown) return fail(job, exit.cause)
      // A durable store keeps the job for another node (or the next start): hand it back, attempts kept.
      if (durable) {
        wakeOthers = true
        return Effect.asVoid(store.release(owner, [job.id], now()))
      }
      return finish(job.id, "cancelled", { error: shutdownReason })
    }

    const execute = (
      job: Job,
      record: RunningJob,
      restore: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
    ): Effect.Effect<void> => {
      const handler = handlers.get(job.type)
      if (handler === undefined)
        return fail(job, Cause.fail(`No handler is registered for type "${job.type}"`))
      const context: JobContext = { job, progress: (update) => progress(job.id, update) }
      const attempt = handler.run(job.metadata, context)
      // The worker switches to the handler's context and stays in it for the jobs that follow (of this type, mostly):
      // `run` then need not provide it on each job (see `RegisteredHandler.context`).
      const switched =
        handler.context === undefined || record.fiber.currentContext === handler.context
          ? attempt
          : Effect.zipRight(FiberRef.set(FiberRef.currentContext, handler.context), attempt)
      const timed =
        job.timeoutMs === null
          ? switched
          : Effect.timeoutFail(switched, {
              duration: Duration.millis(job.timeoutMs),
              onTimeout: () =>
                new JobTimeout({
                  message: `the attempt ran longer than ${job.timeoutMs} ms`,
                  timeoutMs: job.timeoutMs!
                })
            })
      return Effect.matchCauseEffect(restore(timed), {
        onFailure: (cause) => settle(job, record, Exit.failCause(cause)),
        onSuccess: (value) => settle(job, record, Exit.succeed(value))
      })
    }

    const runOne = (
      self: Fiber.RuntimeFiber<unknown, unknown>,
      base: HashMap.HashMap<string, unknown>,
      entry: ReadyEntry,
      restore: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
    ): Effect.Effect<void> => {
      const id = entry.id as JobId
      const record: RunningJob = { fiber: self, cancelled: false }
      running.set(id, record)
      trackRunning(1)
      const started = (transition: Transition): Effect.Effect<void> => {
        if (transition._tag !== "Moved") return Effect.void
        publish("started", transition.job)
        // The job's annotations stay on the worker until its next job replaces them: the worker logs nothing of its
        // own in between, and restoring them would cost a second fiber-ref write per job.
        return Effect.zipRight(
          FiberRef.set(FiberRef.currentLogAnnotations, annotationsFor(base, transition.job)),
          execute(transition.job, record, restore)
        )
      }
      const done = (): void => {
        running.delete(id)
        trackRunning(-1)
        ready.release(entry.type)
        if (shuttingDown && running.size === 0) Deferred.unsafeDone(drained, Exit.void)
      }
      // What `Effect.ensuring` does, for a worker that is already uninterruptible here: `ensuring` masks again and
      // runs its finalizer as an effect, about 2.7 kB allocated a job against about 1 kB for this.
      return Effect.matchCauseEffect(
        inline === undefined
          ? Effect.flatMap(store.transition(id, "running", {}, now()), started)
          : Effect.suspend(() => started(inline.transition(id, "running", {}, now()))),
        {
          onFailure: (cause) => {
            done()
            return Effect.failCause(cause)
          },
          onSuccess: () => {
            done()
            return Effect.void
          }
        }
      )
    }

    // Interruptible only while waiting for a job and while its handler runs: a cancel that arrives in between is
    // acted on at the worker's next wait, where it ends the worker without losing anything.
    const worker: Effect.Effect<void> = Effect.withFiberRuntime((self) => {
      const base = self.getFiberRef(FiberRef.currentLogAnnotations)
      return Effect.uninterruptibleMask((restore) =>
        Effect.whileLoop({
          while: () => !shuttingDown,
          body: () =>
            Effect.flatMap(restore(ready.take), (entry) => {
              if (!shuttingDown) return runOne(self, base, entry, restore)
              ready.release(entry.type)
              ready.offer(entry.id, entry.type, entry.priority)
              return Effect.void
            }),
          step: () => {}
        })
      )
    })

    const runClaimed = (
      self: Fiber.RuntimeFiber<unknown, unknown>,
      job: Job,
      restore: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
    ): Effect.Effect<void> => {
      const record: RunningJob = { fiber: self, cancelled: false }
      running.set(job.id, record)
      trackRunning(1)
      const annotations = self.getFiberRef(FiberRef.currentLogAnnotations)
      return Effect.ensuring(
        Effect.zipRight(
          FiberRef.set(FiberRef.currentLogAnnotations, annotationsFor(annotations, job)),
          execute(job, record, restore)
        ),
        Effect.zipRight(
          FiberRef.set(FiberRef.currentLogAnnotations, annotations),
          Effect.sync(() => {
            running.delete(job.id)
            trackRunning(-1)
            inFlight--
            inFlightByType.set(job.type, (inFlightByType.get(job.type) ?? 1) - 1)
            if (!claimedAllDue) wake()
            if (shuttingDown && running.size === 0) Deferred.unsafeDone(drained, Exit.void)
          })
        )
      )
    }

    const durableWorker: Effect.Effect<void> = Effect.withFiberRuntime((self) =>
      Effect.uninterruptibleMask((restore) =>
        Effect.whileLoop({
          while: () => !shuttingDown,
          body: () =>
            Effect.flatMap(restore(Queue.take(claimed)), (job) =>
              shuttingDown ? Queue.offer(claimed, job) : runClaimed(self, job, restore)
            ),
          step: () => {}
        })
      )
    )

    // Whether the last claim took fewer jobs than it asked for: every due job was taken then, so a freed slot has
    // nothing to claim until something wakes the dispatcher (a submit, a due retry, another node, the poll). Without
    // it, a node claimed about twice per job (an empty claim after each claim and each finished job): a round trip
    // each, in the way of the next real claim.
    let claimedAllDue = false

    // Claims due jobs for the free slots: in one batch, or one at a time when a type has a limit (so the limit holds
    // and priority order stays global). Succeeds with whether the claim took all it asked for (more may be due).
    const claimFree: Effect.Effect<boolean> = Effect.suspend(() => {
      const free = options.maxConcurrent - inFlight
      if (free <= 0 || shuttingDown) return Effect.succeed(false)
      const types = handlers.types().filter((type) => (inFlightByType.get(type) ?? 0) < limitOf(type))
      if (types.length === 0) return Effect.succeed(false)
      const limited = types.some((type) => limitOf(type) !== Number.POSITIVE_INFINITY)
      const at = now()
      const leaseUntil = new Date(at.getTime() + options.leaseMs)
      const limit = limited ? 1 : free
      return Effect.map(store.claim({ limit, now: at, owner, leaseUntil, types }), (jobs) => {
        for (const job of jobs) {
          inFlight++
          inFlightByType.set(job.type, (inFlightByType.get(job.type) ?? 0) + 1)
          publish("started", job)
          claimed.unsafeOffer(job)
        }
        // With a type limit, a freed slot of another type may make a job claimable: wake for every freed slot.
        claimedAllDue = !limited && jobs.length < limit
        return jobs.length === limit
      })
    })

    // A claim the database has made must reach `claimed`: it runs uninterruptibly, holding `claiming`, which shutdown
    // takes before it hands back the jobs no worker started (so a claim in flight is waited for, never dropped).
    const claiming = yield* Effect.makeSemaphore(1)
    const claimHeld = claiming.withPermits(1)(Effect.uninterruptible(claimFree))

    // Waits for a reason to claim (a local submit, a freed slot, a due retry) or the poll interval, which also picks
    // up work submitted by other nodes.
    const dispatcher: Effect.Effect<never> = Effect.forever(
      Effect.flatMap(resilient("dispatcher", claimHeld), (full) =>
        full === true
          ? Effect.void
          : Effect.raceFirst(
              Queue.take(wakeDispatcher),
              Effect.sleep(Duration.millis(options.pollIntervalMs))
            )
      )
    )

    // Extends the leases of the jobs running here; a job whose lease this node no longer holds (cancelled on another
    // node, or taken back) is interrupted here.
    const heartbeat: Effect.Effect<void> = Effect.suspend(() => {
      const ids = Array.from(running.keys()) as Array<JobId>
      if (ids.length === 0) return Effect.void
      const at = now()
      return Effect.map(store.heartbeat(owner, ids, new Date(at.getTime() + options.leaseMs)), (held) => {
        const kept = new Set<string>(held)
        for (const id of ids) {
          const record = running.get(id)
          if (kept.has(id) || record === undefined || record.cancelled) continue
          record.cancelled = true
          record.fiber.unsafeInterruptAsFork(FiberId.none)
        }
      })
    })

    // Takes back jobs whose node died (their lease ran out): pending again for a retry, or failed when out of attempts.
    const recover: Effect.Effect<void> = Effect.flatMap(
      Effect.suspend(() => store.recoverExpired(now())),
      (jobs) =>
        Effect.forEach(jobs, (job) => {
          if (job.status === "pending") {
            publish("retrying", job)
            wake()
            return Effect.void
          }
          return finished(job)
        })
    )

    const slot: Effect.Effect<void> = Effect.whileLoop({
      while: () => !shuttingDown,
      body: () =>
        Effect.flatMap(Effect.fork(durable ? durableWorker : worker), (fiber) => {
          workers.add(fiber)
          return Effect.ensuring(
            Fiber.await(fiber),
            Effect.sync(() => workers.delete(fiber))
          )
        }),
      step: () => {}
    })

    const scheduler: Effect.Effect<never> = Effect.forever(
      Effect.suspend(() => {
        const at = clock.unsafeCurrentTimeMillis()
        for (const entry of delayed.takeDue(at)) {
          if (durable) wake()
          else ready.offer(entry.id, entry.type, entry.priority)
        }
        const next = delayed.nextDueAt()
        const woken = Queue.take(wakeScheduler)
        // Timers fire at most 2^31 - 1 ms ahead (about 24.8 days); a later job is looked at again then.
        const sleep = Effect.sleep(
          Duration.millis(Math.min(next === undefined ? 0 : next - at, 2_147_483_647))
        )
        return next === undefined ? woken : Effect.raceFirst(sleep, woken)
      })
    )

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
              const job = transition.job
              if (transition.from !== "running") return Effect.as(finished(job), job)
              // Looking the worker up and interrupting it happen in one step: no other fiber can run in between,
              // so the interrupt reaches the worker while it still holds this job.
              return Effect.withFiberRuntime<Job>((canceller) => {
                const record = running.get(id)
                if (record === undefined) return Effect.as(finished(job), job)
                record.cancelled = true
                record.fiber.unsafeInterruptAsFork(canceller.id())
                return Effect.as(Effect.zipRight(Fiber.await(record.fiber), finished(job)), job)
              })
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
          if (!durable) return Deferred.await(deferred)
          // Another node may finish it: watch the store too.
          const polled: Effect.Effect<Job> = get(id).pipe(
            Effect.delay(Duration.millis(options.pollIntervalMs)),
            Effect.repeat({ until: (job) => isTerminal(job.status) }),
            Effect.orElse(() => Deferred.await(deferred))
          )
          return Effect.raceFirst(Deferred.await(deferred), polled)
        }).pipe(Effect.onInterrupt(() => forget))
      })

    const list: JobQueueService["list"] = (query = {}) => store.list(query)

    const subscribe = Effect.acquireRelease(
      Effect.zipLeft(
        PubSub.subscribe(pubsub),
        Effect.sync(() => subscribers++)
      ),
      () => Effect.sync(() => subscribers--)
    )

    const subscribeEvents: JobQueueService["subscribe"] = (filter = {}) => {
      const statuses = filter.status && filter.status.length > 0 ? new Set<string>(filter.status) : undefined
      const types = filter.type && filter.type.length > 0 ? new Set<string>(filter.type) : undefined
      return Effect.map(subscribe, (subscription) =>
        Stream.filter(
          Stream.fromQueue(subscription),
          (event) =>
            (statuses === undefined || statuses.has(event.job.status)) &&
            (types === undefined || types.has(event.job.type))
        )
      )
    }

    const events: JobQueueService["events"] = (filter) => Stream.unwrapScoped(subscribeEvents(filter))

    const watch: JobQueueService["watch"] = (id) =>
      Stream.unwrapScoped(
        Effect.gen(function* () {
          const subscription = yield* subscribe
          const current = yield* get(id)
          const first = new JobEvent({ kind: snapshotKind(current.status), job: current }, true)
          if (isTerminal(current.status)) return Stream.make(first)
          let sawFinal = false
          const since = current.updatedAt.getTime()
          const live = Stream.fromQueue(subscription).pipe(
            Stream.filter((event) => event.job.id === id && event.job.updatedAt.getTime() >= since),
            Stream.takeUntil((event) => {
              sawFinal = isTerminal(event.job.status)
              return sawFinal
            }),
            // Should this subscriber's buffer drop the final event, the job's end still ends the stream.
            Stream.interruptWhen(awaitJob(id))
          )
          const last = Stream.unwrap(
            Effect.suspend(() =>
              sawFinal
                ? Effect.succeed(Stream.empty)
                : Effect.map(get(id), (job) =>
                    Stream.make(new JobEvent({ kind: snapshotKind(job.status), job }, true))
                  )
            )
          )
          return Stream.concat(Stream.make(first), Stream.concat(live, last))
        })
      )

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
      if (durable) {
        yield* claiming.withPermits(1)(Effect.void)
        const unstarted = yield* Queue.takeAll(claimed)
        if (unstarted.length > 0)
          yield* store.release(
            owner,
            Array.from(unstarted, (job) => job.id),
            now()
          )
        wakeOthers = wakeOthers || unstarted.length > 0
        if (signals !== undefined) yield* flushSignals(signals)
      }
      let cancelledPending = 0
      if (!store.durable) {
        for (const entry of [...ready.drain(), ...delayed.drain()]) {
          const transition: Transition = yield* store.transition(
            entry.id as JobId,
            "cancelled",
            { error: shutdownReason },
            now()
          )
          if (transition._tag === "Moved") {
            cancelledPending++
            yield* finished(transition.job)
          }
        }
      }
      yield* Effect.logInfo(
        durable
          ? `JobQueue shut down: ${busy - interrupted} of ${busy} running job(s) finished in the grace period, ` +
              `${interrupted} interrupted and handed back to the store, pending jobs left pending`
          : `JobQueue shut down: ${busy - interrupted} of ${busy} running job(s) finished in the grace period, ` +
              `${interrupted} interrupted and cancelled, ${cancelledPending} pending job(s) cancelled`
      )
    })

    // Sends what this node has to tell the others, coalesced: at most one message a tick (a wake-up, and the job
    // events of the tick, the latest progress of each job only), each under PostgreSQL's 8000-byte NOTIFY limit.
    const flushSignals = (channel: NonNullable<typeof signals>): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (!hasPeers()) {
          // A cancellation is relayed even so (it is rare): the node running the job must stop at once, even one this
          // node has not heard from yet.
          relay = relay.filter((entry) => entry.startsWith("cancelled|"))
          wakeOthers = false
          if (relay.length === 0) return Effect.void
        }
        const messages: Array<string> = []
        if (wakeOthers) messages.push(`w:${owner}`)
        wakeOthers = false
        if (relay.length > 0) {
          const latestProgress = new Map<string, number>()
          relay.forEach((entry, i) => {
            if (entry.startsWith("progress|")) latestProgress.set(entry, i)
          })
          const entries = relay.filter(
            (entry, i) => !entry.startsWith("progress|") || latestProgress.get(entry) === i
          )
          relay = []
          let chunk: Array<string> = []
          let size = 0
          for (const entry of entries) {
            if (size + entry.length > 7000) {
              messages.push(`e:${owner}:${chunk.join(",")}`)
              chunk = []
              size = 0
            }
            chunk.push(entry)
            size += entry.length + 1
          }
          if (chunk.length > 0) messages.push(`e:${owner}:${chunk.join(",")}`)
        }
        // Sent at once, so that a store that batches its writes sends them together.
        return Effect.forEach(messages, channel.send, { concurrency: "unbounded", discard: true })
      })

    // What the other nodes say: wake up for their new work; relay their job events to this node's subscribers and
    // waiters; a job cancelled elsewhere that runs here stops at once (the heartbeat would catch it within a second).
    const onSignal = (message: string): Effect.Effect<void> => {
      if (message.startsWith("H:") || message.startsWith("h:")) {
        const peer = message.slice(2)
        if (peer === owner) {
          if (message.startsWith("H:")) listening = true
          return Effect.void
        }
        heardFrom(peer)
        return message.startsWith("H:") && signals !== undefined ? signals.send(`h:${owner}`) : Effect.void
      }
      if (message.startsWith("w:")) {
        heardFrom(message.slice(2))
        if (message.slice(2) !== owner) wake()
        return Effect.void
      }
      if (!message.startsWith("e:")) return Effect.void
      const rest = message.slice(2)
      const at = rest.indexOf(":")
      if (at >= 0) heardFrom(rest.slice(0, at))
      if (at < 0 || rest.slice(0, at) === owner) return Effect.void
      const entries = rest
        .slice(at + 1)
        .split(",")
        .map((entry) => entry.split("|") as [JobEventKind, string])
      return Effect.forEach(
        entries,
        ([kind, id]) => {
          if (kind === "cancelled") {
            const record = running.get(id)
            if (record !== undefined && !record.cancelled) {
              record.cancelled = true
              record.fiber.unsafeInterruptAsFork(FiberId.none)
            }
          }
          if (subscribers === 0 && !waiters.has(id)) return Effect.void
          return Effect.map(store.get(id as JobId), (job) => {
            if (job._tag === "None") return
            publishLocal(kind, job.value)
            if (isTerminal(job.value.status)) notifyWaiters(job.value)
          })
        },
        { discard: true }
      )
    }

    const background = yield* Effect.forkScoped(
      Effect.all(
        [
          ...Array.from({ length: options.maxConcurrent }, () => slot),
          scheduler,
          ...(durable
            ? [
                dispatcher,
                Effect.repeat(
                  resilient("heartbeat", heartbeat),
                  Schedule.spaced(Duration.millis(Math.min(Math.floor(options.leaseMs / 3), 1000)))
                ),
                Effect.repeat(
                  resilient("lease recovery", recover),
                  Schedule.spaced(Duration.millis(Math.max(Math.floor(options.leaseMs / 2), 50)))
                )
              ]
            : []),
          ...(signals !== undefined
            ? [
                Effect.forever(
                  resilient(
                    "signal listener",
                    Stream.runForEach(signals.receive, (message) =>
                      resilient("signal handler", onSignal(message))
                    )
                  )
                ),
                Effect.repeat(
                  resilient("signal sender", flushSignals(signals)),
                  Schedule.spaced(Duration.millis(5))
                ),
                // Asks every 50 ms until this node hears its own ask (it is listening then, and will hear the
                // answers), then announces itself every `announceMs`.
                Effect.forever(
                  Effect.zipRight(
                    resilient(
                      "signal announcer",
                      Effect.suspend(() => signals.send(`${listening ? "h" : "H"}:${owner}`))
                    ),
                    Effect.suspend(() => Effect.sleep(Duration.millis(listening ? announceMs : 50)))
                  )
                )
              ]
            : []),
          Effect.repeat(
            resilient(
              "retention sweep",
              Effect.suspend(() => store.prune(retention, now()))
            ),
            Schedule.spaced(Duration.millis(Math.min(Math.max(options.retentionMs, 1000), 60_000)))
          )
        ],
        { concurrency: "unbounded", discard: true }
      )
    )
    // Shared by every caller (the service's `shutdown` and the scope's finalizer): it runs once, others wait for it.
    const shutdownOnce = yield* Effect.cached(shutdown)
    yield* Effect.addFinalizer(() => Effect.zipRight(shutdownOnce, Fiber.interrupt(background)))

    const service: JobQueueService = {
      options,
      types: handlers.types,
      submit,
      submitMany,
      offer,
      offerMany,
      get,
      list,
      cancel,
      await: awaitJob,
      events,
      subscribe: subscribeEvents,
      watch,
      shutdown: shutdownOnce
    }
    return service
  })
