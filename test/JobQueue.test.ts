import { describe, expect, it } from "@effect/vitest"
import {
  ConfigProvider,
  Context,
  Deferred,
  Effect,
  Either,
  Exit,
  Fiber,
  FastCheck as fc,
  Layer,
  Option,
  Schema,
  Scope,
  Supervisor,
  TestClock
} from "effect"
import type { JobQueueOptions } from "../src/config.js"
import type { Job, JobId, JobStatus, Json } from "../src/domain/Job.js"
import type { JobQuery } from "../src/domain/JobPage.js"
import { JobHandlers } from "../src/JobHandlers.js"
import { JobQueue } from "../src/JobQueue.js"
import { JobStore } from "../src/JobStore.js"
import {
  gated,
  type HandlerLayer,
  handler,
  ids,
  listAll,
  makeGate,
  newestFirst,
  ok,
  queueLayer,
  withQueue,
  yields
} from "./support.js"

// ---------------------------------------------------------------------------------------------------------
// Lifecycle, validation and listing
// ---------------------------------------------------------------------------------------------------------

describe("JobQueue lifecycle", () => {
  it.effect("submit, get and await a job to completion", () =>
    withQueue([handler("echo", ({ job }) => Effect.succeed({ echoed: job.metadata }))], {}, (queue) =>
      Effect.gen(function* () {
        yield* TestClock.adjust(1_234)
        const submitted = yield* queue.submit("echo", { text: "hi" })
        expect(submitted).toMatchObject({
          type: "echo",
          status: "pending",
          stage: "queued",
          progress: 0,
          attempts: 0,
          metadata: {},
          result: null,
          error: null,
          startedAt: null,
          finishedAt: null
        })
        expect(submitted.createdAt.getTime()).toBe(1_234)

        const fetched = yield* queue.get(submitted.id)
        expect(fetched.id).toBe(submitted.id)

        const done = yield* queue.await(submitted.id)
        expect(done).toMatchObject({
          id: submitted.id,
          status: "completed",
          progress: 100,
          result: { echoed: {} },
          error: null,
          attempts: 1
        })
        expect(done.startedAt).not.toBeNull()
        expect(done.finishedAt).not.toBeNull()
        expect(yield* queue.get(submitted.id)).toEqual(done)
        // Awaiting a finished job answers at once, with the same record.
        expect(yield* queue.await(submitted.id)).toEqual(done)
      })
    )
  )

  it.effect("keeps the metadata its payload schema describes", () =>
    withQueue(
      [
        JobHandlers.register({
          type: "download",
          payload: Schema.Struct({
            source: Schema.String,
            retries: Schema.optional(Schema.NumberFromString)
          }),
          handler: ({ source, retries }) => Effect.succeed({ source, retries: retries ?? null })
        })
      ],
      {},
      (queue) =>
        Effect.gen(function* () {
          const job = yield* queue.submit("download", { source: "s3://a", retries: "3", extra: 1 })
          expect(job.metadata).toEqual({ source: "s3://a", retries: "3" })
          const done = yield* queue.await(job.id)
          expect(done.result).toEqual({ source: "s3://a", retries: 3 })
        })
    )
  )

  it.effect("get, await and cancel of an unknown id fail with JobNotFound", () =>
    withQueue([ok()], {}, (queue) =>
      Effect.gen(function* () {
        const id = "6f1f2a3b-4c5d-4e6f-8a7b-9c0d1e2f3a4b" as JobId
        for (const attempt of [queue.get(id), queue.await(id), queue.cancel(id)]) {
          const error = yield* Effect.flip(attempt)
          expect(error._tag).toBe("JobNotFound")
          expect(error).toMatchObject({ id })
        }
      })
    )
  )
})

describe("JobQueue submit validation", () => {
  const download = JobHandlers.register({
    type: "download",
    payload: Schema.Struct({ source: Schema.String, options: Schema.Struct({ depth: Schema.Int }) }),
    handler: () => Effect.succeed(null)
  })

  it.effect("rejects an unknown type with InvalidJobInput on field type", () =>
    withQueue([download, ok()], {}, (queue) =>
      Effect.gen(function* () {
        const error = yield* Effect.flip(queue.submit("nope", {}))
        expect(error._tag).toBe("InvalidJobInput")
        expect(error).toMatchObject({ field: "type" })
        expect(error.message).toContain('"nope"')
        expect(error.message).toContain("download, ok")
        expect((yield* queue.list()).items).toEqual([])
      })
    )
  )

  it.effect("rejects metadata that fails the payload schema, naming the field", () =>
    withQueue([download], {}, (queue) =>
      Effect.gen(function* () {
        const missing = yield* Effect.flip(queue.submit("download", {}))
        expect(missing).toMatchObject({ _tag: "InvalidJobInput", field: "metadata.source" })
        expect(missing.message).toContain("metadata.source")

        const wrongType = yield* Effect.flip(queue.submit("download", { source: 42, options: { depth: 1 } }))
        expect(wrongType).toMatchObject({ _tag: "InvalidJobInput", field: "metadata.source" })

        const nested = yield* Effect.flip(queue.submit("download", { source: "x", options: { depth: 1.5 } }))
        expect(nested).toMatchObject({ _tag: "InvalidJobInput", field: "metadata.options.depth" })
        expect(nested.message).toContain("metadata.options.depth")

        const none = yield* Effect.flip(queue.submit("download"))
        expect(none).toMatchObject({ _tag: "InvalidJobInput", field: "metadata.source" })

        expect((yield* queue.list()).items).toEqual([])
        const good = yield* queue.submit("download", { source: "x", options: { depth: 2 } })
        expect((yield* queue.await(good.id)).status).toBe("completed")
      })
    )
  )
})

describe("JobQueue list", () => {
  it.effect("filters by status and type: OR within a filter, AND across filters", () =>
    Effect.gen(function* () {
      const gate = yield* makeGate
      const layers = [ok("ok"), handler("boom", () => Effect.fail("boom")), gated("slow", gate)]
      yield* withQueue(layers, { maxConcurrent: 1 }, (queue) =>
        Effect.gen(function* () {
          const submit = (type: string) => Effect.zipLeft(queue.submit(type), TestClock.adjust(1))
          const completed = yield* submit("ok")
          yield* queue.await(completed.id)
          const failed = yield* submit("boom")
          yield* queue.await(failed.id)
          const running = yield* submit("slow")
          yield* Deferred.await(gate.started)
          const cancelled = yield* submit("ok")
          yield* queue.cancel(cancelled.id)
          const pending = yield* submit("boom")

          const all = [pending, cancelled, running, failed, completed]
          const statusOf = new Map<JobId, JobStatus>([
            [completed.id, "completed"],
            [failed.id, "failed"],
            [running.id, "running"],
            [cancelled.id, "cancelled"],
            [pending.id, "pending"]
          ])
          const listed = (query: JobQuery) => Effect.map(queue.list(query), (page) => ids(page.items))

          const everything = yield* queue.list()
          expect(ids(everything.items)).toEqual(ids(all))
          expect(everything.nextCursor).toBeNull()
          for (const job of everything.items) expect(job.status).toBe(statusOf.get(job.id))

          expect(yield* listed({ status: [], type: [] })).toEqual(ids(all))
          expect(yield* listed({ status: ["completed"] })).toEqual([completed.id])
          expect(yield* listed({ status: ["pending", "running"] })).toEqual([pending.id, running.id])
          expect(yield* listed({ status: ["failed", "cancelled", "completed"] })).toEqual([
            cancelled.id,
            failed.id,
            completed.id
          ])
          expect(yield* listed({ type: ["ok"] })).toEqual([cancelled.id, completed.id])
          expect(yield* listed({ type: ["slow", "boom"] })).toEqual([pending.id, running.id, failed.id])
          expect(yield* listed({ type: ["unregistered"] })).toEqual([])
          expect(yield* listed({ status: ["failed", "pending"], type: ["boom"] })).toEqual([
            pending.id,
            failed.id
          ])
          expect(yield* listed({ status: ["failed", "pending"], type: ["ok", "slow"] })).toEqual([])
          expect(yield* listed({ status: ["cancelled", "running"], type: ["ok", "slow"] })).toEqual([
            cancelled.id,
            running.id
          ])
          expect(yield* listed({ status: ["completed", "cancelled"], type: ["ok"], limit: 1 })).toEqual([
            cancelled.id
          ])

          yield* Deferred.succeed(gate.open, undefined)
          yield* queue.await(pending.id)
        })
      )
    })
  )

  it.effect.prop(
    "following nextCursor yields every matching job exactly once, newest first",
    {
      gaps: fc.array(fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 5 })), { maxLength: 30 }),
      types: fc.infiniteStream(fc.constantFrom("a", "b", "c")),
      limit: fc.integer({ min: 1, max: 8 }),
      filter: fc.subarray(["a", "b", "c"])
    },
    ({ gaps, types, limit, filter }) =>
      withQueue([ok("a"), ok("b"), ok("c")], {}, (queue) =>
        Effect.gen(function* () {
          const submitted: Array<Job> = []
          const typeOf = types[Symbol.iterator]()
          for (const gap of gaps) {
            if (gap > 0) yield* TestClock.adjust(gap)
            submitted.push(yield* queue.submit(typeOf.next().value as string))
          }
          const everything = yield* listAll(queue, {}, limit)
          expect(ids(everything)).toEqual(ids(newestFirst(submitted)))

          const matching = submitted.filter((job) => filter.length === 0 || filter.includes(job.type))
          const filtered = yield* listAll(queue, { type: filter }, limit)
          expect(ids(filtered)).toEqual(ids(newestFirst(matching)))
        })
      ),
    { fastCheck: { numRuns: 60 } }
  )

  it.effect("a cursor that is not one fails with InvalidCursor", () =>
    withQueue([ok()], {}, (queue) =>
      Effect.gen(function* () {
        yield* queue.submit("ok")
        for (const cursor of ["garbage", "12_not-a-uuid", "", "1e3_6f1f2a3b-4c5d-4e6f-8a7b-9c0d1e2f3a4b"]) {
          const error = yield* Effect.flip(queue.list({ cursor }))
          expect(error).toMatchObject({ _tag: "InvalidCursor", cursor })
        }
      })
    )
  )
})

// ---------------------------------------------------------------------------------------------------------
// Progress and concurrency
// ---------------------------------------------------------------------------------------------------------

describe("JobQueue progress", () => {
  it.effect(
    "progress reported by a handler is visible while the job runs; a bad update changes nothing",
    () =>
      Effect.gen(function* () {
        const go = yield* Deferred.make<void>()
        const reported = yield* Deferred.make<void>()
        const resume = yield* Deferred.make<void>()
        const rejected =
          yield* Deferred.make<ReadonlyArray<{ readonly _tag: string; readonly message: string }>>()
        const finish = yield* Deferred.make<void>()
        const worker = handler("work", ({ progress }) =>
          Effect.gen(function* () {
            yield* Deferred.await(go)
            yield* progress({ stage: "transcribing", progress: 40, message: "halfway" })
            yield* Deferred.succeed(reported, undefined)
            yield* Deferred.await(resume)
            const errors = yield* Effect.all([
              Effect.flip(progress({ progress: 150 })),
              Effect.flip(progress({ progress: Number.NaN, message: "never" })),
              Effect.flip(progress({ progress: -1 })),
              Effect.flip(progress({ stage: "sleeping" as "queued", progress: 50 }))
            ])
            yield* Deferred.succeed(rejected, errors)
            yield* Deferred.await(finish)
            return "done"
          })
        )
        yield* withQueue([worker], {}, (queue) =>
          Effect.gen(function* () {
            const job = yield* queue.submit("work")
            yield* TestClock.adjust(10)
            yield* Deferred.succeed(go, undefined)
            yield* Deferred.await(reported)
            const during = yield* queue.get(job.id)
            expect(during).toMatchObject({
              status: "running",
              stage: "transcribing",
              progress: 40,
              message: "halfway"
            })
            expect(during.updatedAt.getTime()).toBe(10)

            yield* TestClock.adjust(10)
            yield* Deferred.succeed(resume, undefined)
            const errors = yield* Deferred.await(rejected)
            expect(errors.map((error) => error._tag)).toEqual([
              "InvalidProgress",
              "InvalidProgress",
              "InvalidProgress",
              "InvalidProgress"
            ])
            expect(errors[0]!.message).toContain("150")
            expect(errors[1]!.message).toContain("NaN")
            expect(errors[3]!.message).toContain("sleeping")
            expect(yield* queue.get(job.id)).toEqual(during)

            yield* Deferred.succeed(finish, undefined)
            const done = yield* queue.await(job.id)
            expect(done).toMatchObject({
              status: "completed",
              progress: 100,
              stage: "transcribing",
              result: "done"
            })
          })
        )
      })
  )
})

describe("JobQueue concurrency", () => {
  it.effect.prop(
    "at most maxConcurrent handlers run at once, and that many do when there is work",
    { jobs: fc.integer({ min: 1, max: 20 }), limit: fc.integer({ min: 1, max: 8 }) },
    ({ jobs, limit }) =>
      Effect.gen(function* () {
        const expected = Math.min(jobs, limit)
        const reached = yield* Deferred.make<void>()
        const open = yield* Deferred.make<void>()
        let running = 0
        let most = 0
        const counted = handler("count", () =>
          Effect.gen(function* () {
            running++
            most = Math.max(most, running)
            if (running === expected) yield* Deferred.succeed(reached, undefined)
            yield* Deferred.await(open)
            running--
            return running
          })
        )
        yield* withQueue([counted], { maxConcurrent: limit }, (queue) =>
          Effect.gen(function* () {
            const submitted = yield* Effect.forEach(Array.from({ length: jobs }), () => queue.submit("count"))
            yield* Deferred.await(reached)
            // Let every fiber that can run do so before looking: a worker too many would have started by now.
            yield* TestClock.adjust(0)
            expect(running).toBe(expected)
            const runningPage = yield* queue.list({ status: ["running"] })
            const pending = yield* queue.list({ status: ["pending"] })
            expect(runningPage.items.length).toBe(expected)
            expect(pending.items.length).toBe(jobs - expected)

            yield* Deferred.succeed(open, undefined)
            const done = yield* Effect.forEach(submitted, (job) => queue.await(job.id))
            expect(done.every((job) => job.status === "completed")).toBe(true)
            expect(most).toBe(expected)
            expect(running).toBe(0)
          })
        )
      }),
    { fastCheck: { numRuns: 40 } }
  )
})

// ---------------------------------------------------------------------------------------------------------
// Cancellation
// ---------------------------------------------------------------------------------------------------------

/** How one cancel-versus-completion race is run: which side starts first and when each side yields. */
interface RaceSchedule {
  readonly cancelFirst: boolean
  readonly releaseYields: number
  readonly cancelYields: number
  readonly releaseOps: number
  readonly cancelOps: number
}

/**
 * Job `a` is running, gated; `b` waits behind it on the only worker. One fiber opens `a`'s gate while another
 * cancels `a`. Whoever wins, `get`, `await` and the cancel's answer agree, and `b` then runs normally.
 */
const raceCancelAgainstCompletion = (schedule: RaceSchedule) =>
  Effect.gen(function* () {
    const gateA = yield* makeGate
    const gateB = yield* makeGate
    yield* withQueue(
      [gated("a", gateA, "a done"), gated("b", gateB, "b done")],
      { maxConcurrent: 1 },
      (queue) =>
        Effect.gen(function* () {
          const a = yield* queue.submit("a")
          yield* Deferred.await(gateA.started)
          const b = yield* queue.submit("b")

          const release = yields(schedule.releaseYields).pipe(
            Effect.zipRight(Deferred.succeed(gateA.open, undefined)),
            Effect.withMaxOpsBeforeYield(schedule.releaseOps)
          )
          const cancel = yields(schedule.cancelYields).pipe(
            Effect.zipRight(Effect.either(queue.cancel(a.id))),
            Effect.withMaxOpsBeforeYield(schedule.cancelOps)
          )
          const outcome = schedule.cancelFirst
            ? (yield* Effect.all([cancel, release], { concurrency: "unbounded" }))[0]
            : (yield* Effect.all([release, cancel], { concurrency: "unbounded" }))[1]

          const viaAwait = yield* queue.await(a.id)
          const viaGet = yield* queue.get(a.id)
          expect(viaAwait).toEqual(viaGet)
          if (Either.isRight(outcome)) {
            expect(viaGet.status).toBe("cancelled")
            expect(outcome.right).toEqual(viaGet)
          } else {
            expect(outcome.left).toMatchObject({ _tag: "JobNotCancellable", status: "completed" })
            expect(viaGet).toMatchObject({ status: "completed", result: "a done" })
          }

          yield* Deferred.await(gateB.started)
          yield* Deferred.succeed(gateB.open, undefined)
          expect(yield* queue.await(b.id)).toMatchObject({
            status: "completed",
            result: "b done",
            attempts: 1
          })
        })
    )
  })

describe("JobQueue cancel", () => {
  it.effect("a pending job that is cancelled never starts, and the queue moves past it", () =>
    Effect.gen(function* () {
      const gate = yield* makeGate
      let calls = 0
      const counted = handler("counted", () => Effect.sync(() => ++calls))
      yield* withQueue([gated("slow", gate), counted], { maxConcurrent: 1 }, (queue) =>
        Effect.gen(function* () {
          const blocker = yield* queue.submit("slow")
          yield* Deferred.await(gate.started)
          const victim = yield* queue.submit("counted")
          const waiting = yield* Effect.fork(queue.await(victim.id))

          const cancelled = yield* queue.cancel(victim.id)
          expect(cancelled).toMatchObject({ id: victim.id, status: "cancelled", error: null, attempts: 0 })
          expect(cancelled.finishedAt).not.toBeNull()
          expect(yield* Fiber.join(waiting)).toEqual(cancelled)

          yield* Deferred.succeed(gate.open, undefined)
          expect((yield* queue.await(blocker.id)).status).toBe("completed")
          const next = yield* queue.submit("counted")
          expect(yield* queue.await(next.id)).toMatchObject({ status: "completed", result: 1 })
          expect(calls).toBe(1)
          expect(yield* queue.get(victim.id)).toEqual(cancelled)
        })
      )
    })
  )

  it.effect(
    "a running job that is cancelled is interrupted, its finalizer runs, the worker keeps serving",
    () =>
      Effect.gen(function* () {
        const started = yield* Deferred.make<void>()
        const finalized = yield* Deferred.make<void>()
        const forever = handler("forever", () =>
          Effect.scoped(
            Effect.gen(function* () {
              yield* Effect.addFinalizer(() => Deferred.succeed(finalized, undefined))
              yield* Deferred.succeed(started, undefined)
              return yield* Effect.never
            })
          )
        )
        yield* withQueue([forever, ok()], { maxConcurrent: 1 }, (queue) =>
          Effect.gen(function* () {
            const job = yield* queue.submit("forever")
            yield* Deferred.await(started)
            const waiting = yield* Effect.fork(queue.await(job.id))
            expect((yield* queue.get(job.id)).status).toBe("running")

            const cancelled = yield* queue.cancel(job.id)
            expect(yield* Deferred.isDone(finalized)).toBe(true)
            expect(cancelled).toMatchObject({ id: job.id, status: "cancelled", error: null, attempts: 1 })
            expect(yield* queue.get(job.id)).toEqual(cancelled)
            expect(yield* Fiber.join(waiting)).toEqual(cancelled)
            expect(yield* queue.await(job.id)).toEqual(cancelled)

            const next = yield* queue.submit("ok")
            expect((yield* queue.await(next.id)).status).toBe("completed")
            expect(yield* queue.get(job.id)).toEqual(cancelled)
          })
        )
      })
  )

  it.effect("a finished job cannot be cancelled", () =>
    withQueue([ok(), handler("boom", () => Effect.fail("boom"))], {}, (queue) =>
      Effect.gen(function* () {
        const completed = yield* queue.submit("ok")
        const failed = yield* queue.submit("boom")
        const cancelled = yield* queue.submit("ok")
        yield* queue.cancel(cancelled.id).pipe(Effect.catchTag("JobNotCancellable", () => Effect.void))
        for (const job of [completed, failed, cancelled]) {
          const before = yield* queue.await(job.id)
          const error = yield* Effect.flip(queue.cancel(job.id))
          expect(error).toMatchObject({ _tag: "JobNotCancellable", id: job.id, status: before.status })
          expect(error.message).toContain(before.status)
          expect(yield* queue.get(job.id)).toEqual(before)
        }
        expect((yield* queue.get(completed.id)).status).toBe("completed")
        expect((yield* queue.get(failed.id)).status).toBe("failed")
      })
    )
  )

  it.effect("cancel wins against a completion that has not been recorded yet", () =>
    Effect.gen(function* () {
      const gate = yield* makeGate
      yield* withQueue([gated("slow", gate)], {}, (queue) =>
        Effect.gen(function* () {
          const job = yield* queue.submit("slow")
          yield* Deferred.await(gate.started)
          // The handler is free to finish, but its worker has not run yet when the cancel lands.
          yield* Deferred.succeed(gate.open, undefined)
          const cancelled = yield* queue.cancel(job.id)
          expect(cancelled.status).toBe("cancelled")
          expect(yield* queue.await(job.id)).toEqual(cancelled)
          expect(yield* queue.get(job.id)).toEqual(cancelled)
        })
      )
    })
  )

  it.effect.prop(
    "cancel racing completion has one winner that every reader agrees on",
    {
      cancelFirst: fc.boolean(),
      releaseYields: fc.nat({ max: 3 }),
      cancelYields: fc.nat({ max: 3 }),
      // How many steps each side takes before the runtime makes it yield: moves the race into different places.
      // (Below about 10 the runtime spends every step on yielding and never gets anywhere.)
      releaseOps: fc.integer({ min: 16, max: 64 }),
      cancelOps: fc.integer({ min: 16, max: 64 })
    },
    raceCancelAgainstCompletion,
    { fastCheck: { numRuns: 300 } }
  )

  // Interleavings in which the interrupt meant for `a` used to land on `b` (see the engine's cancel).
  it.effect.each([
    { cancelFirst: true, releaseYields: 0, cancelYields: 0, releaseOps: 24, cancelOps: 18 },
    { cancelFirst: false, releaseYields: 0, cancelYields: 0, releaseOps: 17, cancelOps: 18 },
    { cancelFirst: false, releaseYields: 2, cancelYields: 0, releaseOps: 41, cancelOps: 18 }
  ])("cancel racing completion: %j", raceCancelAgainstCompletion)
})

// ---------------------------------------------------------------------------------------------------------
// Handler failures
// ---------------------------------------------------------------------------------------------------------

class DiskFull extends Schema.TaggedError<DiskFull>()("DiskFull", { message: Schema.String }) {}

describe("JobQueue handler failures", () => {
  const cases: ReadonlyArray<readonly [string, HandlerLayer, RegExp]> = [
    [
      "fails with a tagged error",
      handler("bad", () => new DiskFull({ message: "disk full" })),
      /^DiskFull: disk full$/
    ],
    ["fails with a string", handler("bad", () => Effect.fail("no luck")), /^no luck$/],
    [
      "throws inside Effect.sync",
      handler("bad", () =>
        Effect.sync(() => {
          throw new Error("kaboom")
        })
      ),
      /^Defect: kaboom$/
    ],
    [
      "throws before returning an effect",
      JobHandlers.register({
        type: "bad",
        payload: Schema.Struct({}),
        handler: (): Effect.Effect<Json> => {
          throw new Error("too early")
        }
      }),
      /^Defect: too early$/
    ],
    ["dies", handler("bad", () => Effect.die("dead")), /^Defect: dead$/],
    [
      "returns something that is not JSON",
      handler("bad", () => Effect.succeed(new Map() as unknown as Json)),
      /not a JSON value/
    ]
  ]

  for (const [name, bad, message] of cases) {
    it.effect(`a handler that ${name} fails its job, and the next job still runs`, () =>
      withQueue([bad, ok()], { maxConcurrent: 1 }, (queue) =>
        Effect.gen(function* () {
          yield* TestClock.adjust(5)
          const job = yield* queue.submit("bad")
          const failed = yield* queue.await(job.id)
          expect(failed).toMatchObject({ status: "failed", result: null, attempts: 1 })
          expect(failed.error).toMatch(message)
          expect(failed.finishedAt?.getTime()).toBe(5)
          expect(yield* queue.get(job.id)).toEqual(failed)

          const next = yield* queue.submit("ok")
          expect(yield* queue.await(next.id)).toMatchObject({ status: "completed", result: { ok: true } })
        })
      )
    )
  }
})

// ---------------------------------------------------------------------------------------------------------
// Shutdown
// ---------------------------------------------------------------------------------------------------------

/** Builds a queue in a scope the test closes itself, tracking every fiber the queue forks. */
const buildQueue = (handlers: ReadonlyArray<HandlerLayer>, options: Partial<JobQueueOptions>) =>
  Effect.gen(function* () {
    const supervisor = yield* Supervisor.track
    const scope = yield* Scope.make()
    const context = yield* Layer.buildWithScope(queueLayer(handlers, options), scope).pipe(
      Effect.supervised(supervisor)
    )
    return { queue: Context.get(context, JobQueue), scope, fibers: supervisor.value }
  })

describe("JobQueue shutdown", () => {
  it.effect("waits out the grace period, then cancels the running job and the pending ones", () =>
    Effect.gen(function* () {
      const gate = yield* makeGate
      const finalized = yield* Deferred.make<void>()
      let calls = 0
      const long = handler("long", () =>
        Deferred.succeed(gate.started, undefined).pipe(
          Effect.zipRight(Deferred.await(gate.open)),
          Effect.as("late"),
          Effect.onInterrupt(() => Deferred.succeed(finalized, undefined))
        )
      )
      const counted = handler("counted", () => Effect.sync(() => ++calls))
      const { queue, scope, fibers } = yield* buildQueue([long, counted], {
        maxConcurrent: 1,
        shutdownGraceMs: 5_000
      })

      const running = yield* queue.submit("long")
      yield* Deferred.await(gate.started)
      const pending = yield* Effect.all([queue.submit("counted"), queue.submit("counted")])
      const awaiting = yield* Effect.fork(queue.await(running.id))
      expect((yield* fibers).length).toBeGreaterThan(0)

      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* TestClock.adjust(4_999)
      expect(yield* Fiber.poll(closing)).toEqual(Option.none())
      expect((yield* queue.get(running.id)).status).toBe("running")
      expect(yield* Deferred.isDone(finalized)).toBe(false)
      for (const job of pending) expect((yield* queue.get(job.id)).status).toBe("pending")
      expect(yield* Effect.flip(queue.submit("counted"))).toMatchObject({ _tag: "QueueShuttingDown" })

      yield* TestClock.adjust(1)
      expect(yield* Fiber.join(closing)).toBeUndefined()
      expect(yield* Deferred.isDone(finalized)).toBe(true)
      const stopped = yield* queue.get(running.id)
      expect(stopped).toMatchObject({ status: "cancelled", result: null })
      expect(stopped.error).toMatch(/shut( )?down/i)
      expect(yield* Fiber.join(awaiting)).toEqual(stopped)
      for (const job of pending) {
        const cancelled = yield* queue.get(job.id)
        expect(cancelled).toMatchObject({ status: "cancelled", attempts: 0 })
        expect(cancelled.error).toMatch(/shut( )?down/i)
        expect(yield* queue.await(job.id)).toEqual(cancelled)
      }
      expect(calls).toBe(0)
      expect(yield* fibers).toEqual([])
      expect(yield* Effect.flip(queue.submit("counted"))).toMatchObject({ _tag: "QueueShuttingDown" })
    })
  )

  it.effect("lets a running job that finishes within the grace period complete", () =>
    Effect.gen(function* () {
      const gate = yield* makeGate
      let calls = 0
      const counted = handler("counted", () => Effect.sync(() => ++calls))
      const { queue, scope, fibers } = yield* buildQueue([gated("long", gate, "finished"), counted], {
        maxConcurrent: 1,
        shutdownGraceMs: 5_000
      })
      const running = yield* queue.submit("long")
      yield* Deferred.await(gate.started)
      const pending = yield* queue.submit("counted")

      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* TestClock.adjust(1_000)
      expect(yield* Fiber.poll(closing)).toEqual(Option.none())
      yield* Deferred.succeed(gate.open, undefined)
      yield* Fiber.join(closing)

      expect(yield* TestClock.currentTimeMillis).toBe(1_000)
      expect(yield* queue.get(running.id)).toMatchObject({
        status: "completed",
        result: "finished",
        error: null
      })
      expect((yield* queue.get(pending.id)).status).toBe("cancelled")
      expect(calls).toBe(0)
      expect(yield* fibers).toEqual([])
    })
  )

  it.effect("cancels a job submitted just before shutdown rather than losing it", () =>
    Effect.gen(function* () {
      const { queue, scope, fibers } = yield* buildQueue([ok()], { maxConcurrent: 2, shutdownGraceMs: 1_000 })
      // Both workers are idle, waiting for work: one is handed this job but has not run yet when the queue closes.
      const job = yield* queue.submit("ok")
      yield* Scope.close(scope, Exit.void)
      const final = yield* queue.get(job.id)
      expect(["completed", "cancelled"]).toContain(final.status)
      expect(yield* queue.await(job.id)).toEqual(final)
      expect(yield* fibers).toEqual([])
    })
  )

  it.effect("shuts down at once when nothing is running", () =>
    Effect.gen(function* () {
      const { queue, scope, fibers } = yield* buildQueue([ok()], { shutdownGraceMs: 60_000 })
      const done = yield* queue.submit("ok")
      yield* queue.await(done.id)
      yield* Scope.close(scope, Exit.void)
      expect(yield* TestClock.currentTimeMillis).toBe(0)
      expect(yield* fibers).toEqual([])
      expect(yield* Effect.flip(queue.submit("ok"))).toMatchObject({ _tag: "QueueShuttingDown" })
    })
  )
})

// ---------------------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------------------

describe("JobQueue.layerConfig", () => {
  const optionsFrom = (entries: ReadonlyArray<readonly [string, string]>) =>
    Effect.scoped(
      Effect.map(
        Layer.build(
          JobQueue.layerConfig.pipe(Layer.provide(JobStore.layerMemory), Layer.provide(JobHandlers.layer))
        ),
        (context) => Context.get(context, JobQueue).options
      )
    ).pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map(entries))))

  it.effect("defaults to 2 / 1000 / 10000, with the retry, retention and pending limits' defaults", () =>
    Effect.gen(function* () {
      expect(yield* optionsFrom([])).toEqual({
        maxConcurrent: 2,
        concurrencyByType: {},
        pollIntervalMs: 1_000,
        shutdownGraceMs: 10_000,
        retryBaseMs: 1_000,
        retryMaxMs: 60_000,
        retentionMs: 86_400_000,
        retentionMax: 10_000,
        maxPending: 100_000,
        leaseMs: 30_000,
        maxMetadataBytes: 65_536
      })
    })
  )

  it.effect("reads each variable", () =>
    Effect.gen(function* () {
      const options = yield* optionsFrom([
        ["APP_JOB_MAX_CONCURRENT", "7"],
        ["APP_JOB_POLL_INTERVAL_MS", "250"],
        ["APP_JOB_SHUTDOWN_GRACE_MS", "0"],
        ["APP_JOB_RETRY_BASE_MS", "50"],
        ["APP_JOB_RETRY_MAX_MS", "400"],
        ["APP_JOB_RETENTION_MS", "0"],
        ["APP_JOB_RETENTION_MAX", "3"],
        ["APP_JOB_MAX_PENDING", "9"],
        ["APP_JOB_LEASE_MS", "500"],
        ["APP_JOB_MAX_METADATA_BYTES", "1024"]
      ])
      expect(options).toEqual({
        maxConcurrent: 7,
        concurrencyByType: {},
        pollIntervalMs: 250,
        shutdownGraceMs: 0,
        retryBaseMs: 50,
        retryMaxMs: 400,
        retentionMs: 0,
        retentionMax: 3,
        maxPending: 9,
        leaseMs: 500,
        maxMetadataBytes: 1024
      })
    })
  )

  it.effect.each([
    ["APP_JOB_MAX_CONCURRENT", "0"],
    ["APP_JOB_MAX_CONCURRENT", "abc"],
    ["APP_JOB_MAX_CONCURRENT", "1.5"],
    ["APP_JOB_POLL_INTERVAL_MS", "0"],
    ["APP_JOB_SHUTDOWN_GRACE_MS", "-1"],
    ["APP_JOB_RETRY_BASE_MS", "-1"],
    ["APP_JOB_RETRY_MAX_MS", "x"],
    ["APP_JOB_RETENTION_MS", "-1"],
    ["APP_JOB_RETENTION_MAX", "-1"],
    ["APP_JOB_MAX_PENDING", "0"],
    ["APP_JOB_LEASE_MS", "10"]
  ] as const)("fails to build when %s=%s, naming the variable", ([name, value]) =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(optionsFrom([[name, value]]))
      expect(error._tag).toBe("ConfigError")
      expect(String(error)).toContain(name)
    })
  )
})
