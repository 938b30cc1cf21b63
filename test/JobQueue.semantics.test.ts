// The queue's production semantics, through the public JobQueue: submission options and per-type defaults, bulk
// submission, retries with jittered exponential backoff, timeouts, priorities, delayed jobs, idempotency, per-type
// concurrency, retention, backpressure and events. Time only moves when a test moves the TestClock; handlers are
// held by Deferred gates, never by sleeping.
import { describe, expect, it } from "@effect/vitest"
import {
  Clock,
  ConfigProvider,
  Deferred,
  Effect,
  Fiber,
  FastCheck as fc,
  Layer,
  Option,
  Queue,
  Random,
  Schema,
  Stream,
  TestClock
} from "effect"
import { PermanentJobError } from "../src/domain/errors.js"
import type { Job, JobId, Json } from "../src/domain/Job.js"
import { isFinalEvent, type JobEvent, type JobEventKind } from "../src/domain/JobEvent.js"
import { JobHandlers } from "../src/JobHandlers.js"
import {
  eventBufferSize,
  JobQueue,
  type JobQueueService,
  type JobRequest,
  type SubmitError
} from "../src/JobQueue.js"
import { JobStore } from "../src/JobStore.js"
import {
  gated,
  type HandlerLayer,
  handler,
  ids,
  listAll,
  makeGate,
  ok,
  settle,
  withQueue,
  yields
} from "./support.js"

// ---------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------

/** One run of a handler: which job, which attempt, and when (TestClock time) it began. */
interface Run {
  readonly id: JobId
  readonly attempt: number
  readonly at: number
  readonly job: Job
}

/** What an attempt does, by its number (1-based). */
type Outcome = "ok" | "fail" | "die" | "permanent"

/**
 * A handler that records each run in `runs`, then does what `outcome(attempt)` says: succeed with
 * `{ attempt }`, fail with "attempt n failed", die with "attempt n died", or fail for good.
 */
const scripted = (type: string, runs: Array<Run>, outcome: (attempt: number) => Outcome): HandlerLayer =>
  handler(type, ({ job }) =>
    Effect.flatMap(Clock.currentTimeMillis, (at): Effect.Effect<Json, string | PermanentJobError> => {
      runs.push({ id: job.id, attempt: job.attempts, at, job })
      switch (outcome(job.attempts)) {
        case "ok":
          return Effect.succeed({ attempt: job.attempts })
        case "fail":
          return Effect.fail(`attempt ${job.attempts} failed`)
        case "die":
          return Effect.die(new Error(`attempt ${job.attempts} died`))
        case "permanent":
          return Effect.fail(new PermanentJobError({ message: `attempt ${job.attempts} is hopeless` }))
      }
    })
  )

/** A handler that records the order its jobs start in. */
const recording = (type: string, started: Array<JobId>): HandlerLayer =>
  handler(type, ({ job }) => Effect.sync(() => started.push(job.id)).pipe(Effect.as(null)))

/** Moves the TestClock to `ms` (never back), running everything due on the way. */
const at = (ms: number) =>
  Effect.flatMap(TestClock.currentTimeMillis, (now) => {
    expect(ms, "the test clock only moves forward").toBeGreaterThanOrEqual(now)
    return TestClock.setTime(ms)
  })

/** Reads the job until `check` holds, letting the queue's fibers run in between (no clock moves). */
const waitFor = (queue: JobQueueService, id: JobId, check: (job: Job) => boolean) =>
  Effect.gen(function* () {
    for (let i = 0; i < 50; i++) {
      const job = yield* queue.get(id)
      if (check(job)) return job
      yield* settle
    }
    return yield* Effect.dieMessage(`job ${id} never reached the expected state`)
  })

/** How many jobs the queue holds, in any status (walking every page of the list). */
const retained = (queue: JobQueueService) => Effect.map(listAll(queue), (jobs) => jobs.length)

/** Follows a stream in the background, recording what it emits; `stop` lets it catch up, then ends it. */
const follow = <E>(stream: Stream.Stream<JobEvent, E>) =>
  Effect.gen(function* () {
    const seen: Array<JobEvent> = []
    const fiber = yield* Effect.fork(
      Stream.runForEach(stream, (event) => Effect.sync(() => seen.push(event)))
    )
    // Let the follower subscribe before anything happens.
    yield* settle
    return { seen, stop: Effect.zipRight(settle, Fiber.interrupt(fiber)) }
  })

const kinds = (events: ReadonlyArray<JobEvent>): Array<JobEventKind> => events.map((event) => event.kind)

// ---------------------------------------------------------------------------------------------------------
// Submission options and per-type defaults
// ---------------------------------------------------------------------------------------------------------

describe("submission options", () => {
  const defaults = { priority: 5, maxAttempts: 3, timeoutMs: 1_000, delayMs: 500 }
  const defaulted = handler("defaulted", () => Effect.succeed("done"), defaults)

  it.effect("a type's defaults apply; a submission's own options win, one by one", () =>
    withQueue([defaulted, ok()], {}, (queue) =>
      Effect.gen(function* () {
        yield* at(100)
        const plain = yield* queue.submit("defaulted")
        expect(plain).toMatchObject({
          priority: 5,
          maxAttempts: 3,
          timeoutMs: 1_000,
          idempotencyKey: null,
          lastError: null
        })
        expect(plain.runAt.getTime()).toBe(600)

        const own = yield* queue.submit(
          "defaulted",
          {},
          { priority: -1, maxAttempts: 1, timeoutMs: 50, delayMs: 0, idempotencyKey: "own" }
        )
        expect(own).toMatchObject({ priority: -1, maxAttempts: 1, timeoutMs: 50, idempotencyKey: "own" })
        expect(own.runAt.getTime()).toBe(100)

        const partial = yield* queue.submit("defaulted", {}, { priority: 9 })
        expect(partial).toMatchObject({ priority: 9, maxAttempts: 3, timeoutMs: 1_000 })
        expect(partial.runAt.getTime()).toBe(600)

        // A submission's runAt replaces the type's default delay.
        const pinned = yield* queue.submit("defaulted", {}, { runAt: new Date(5_000) })
        expect(pinned).toMatchObject({ priority: 5, maxAttempts: 3, timeoutMs: 1_000 })
        expect(pinned.runAt.getTime()).toBe(5_000)

        // The batch forms take the same defaults.
        const [batched] = yield* queue.offerMany([{ type: "defaulted" }])
        expect(batched?.job).toMatchObject({ priority: 5, maxAttempts: 3, timeoutMs: 1_000 })
        expect(batched?.job.runAt.getTime()).toBe(600)

        // A type without defaults: priority 0, one attempt, no timeout, due at once.
        const bare = yield* queue.submit("ok")
        expect(bare).toMatchObject({ priority: 0, maxAttempts: 1, timeoutMs: null, idempotencyKey: null })
        expect(bare.runAt.getTime()).toBe(100)

        // The delays are real: only the undelayed jobs have run by 599.
        expect((yield* queue.await(own.id)).status).toBe("completed")
        expect((yield* queue.await(bare.id)).status).toBe("completed")
        yield* at(599)
        for (const job of [plain, partial, batched!.job, pinned]) {
          expect(yield* queue.get(job.id)).toMatchObject({ status: "pending", attempts: 0 })
        }
        yield* at(600)
        for (const job of [plain, partial, batched!.job]) {
          const done = yield* queue.await(job.id)
          expect(done).toMatchObject({ status: "completed", attempts: 1 })
          expect(done.startedAt?.getTime()).toBe(600)
        }
        expect((yield* queue.get(pinned.id)).status).toBe("pending")
        yield* at(5_000)
        expect((yield* queue.await(pinned.id)).startedAt?.getTime()).toBe(5_000)
      })
    )
  )

  it.effect("delayMs together with runAt is InvalidJobInput, and creates nothing", () =>
    withQueue([defaulted, ok()], {}, (queue) =>
      Effect.gen(function* () {
        const error = yield* Effect.flip(queue.submit("ok", {}, { delayMs: 10, runAt: new Date(50) }))
        expect(error).toMatchObject({ _tag: "InvalidJobInput", field: "delayMs" })
        expect(error.message).toMatch(/delayMs/)
        expect(error.message).toMatch(/runAt/)
        // Even a zero delay clashes with runAt: it is the submission's own pair that is refused (a type's default
        // delay gives way to a submission's runAt, as tested above).
        const clash = yield* Effect.flip(queue.submit("defaulted", {}, { delayMs: 0, runAt: new Date(50) }))
        expect(clash).toMatchObject({ _tag: "InvalidJobInput", field: "delayMs" })
        expect(yield* retained(queue)).toBe(0)
      })
    )
  )

  it.effect(
    "a delay past the last date a Date can hold is InvalidJobInput; the scheduler keeps working",
    () =>
      withQueue([ok()], {}, (queue) =>
        Effect.gen(function* () {
          const error = yield* Effect.flip(queue.submit("ok", {}, { delayMs: 9_000_000_000_000_000 }))
          expect(error).toMatchObject({ _tag: "InvalidJobInput", field: "delayMs" })
          expect(yield* retained(queue)).toBe(0)
          // The latest representable time itself is a valid runAt.
          const last = yield* queue.submit("ok", {}, { runAt: new Date(8.64e15) })
          expect(last.runAt.getTime()).toBe(8.64e15)
          const soon = yield* queue.submit("ok", {}, { delayMs: 100 })
          yield* at(100)
          expect((yield* queue.await(soon.id)).status).toBe("completed")
          expect((yield* queue.get(last.id)).status).toBe("pending")
        })
      )
  )

  it.effect.each([
    ["maxAttempts", { maxAttempts: 0 }],
    ["maxAttempts", { maxAttempts: 101 }],
    ["maxAttempts", { maxAttempts: 1.5 }],
    ["timeoutMs", { timeoutMs: -1 }],
    ["timeoutMs", { timeoutMs: 0 }],
    ["priority", { priority: 0.5 }],
    ["delayMs", { delayMs: -1 }],
    ["idempotencyKey", { idempotencyKey: "" }]
  ] as const)(
    "an invalid option (%s: %j) is InvalidJobInput naming it, and creates nothing",
    ([name, options]) =>
      withQueue([ok()], {}, (queue) =>
        Effect.gen(function* () {
          const error = yield* Effect.flip(queue.submit("ok", {}, options))
          expect(error).toMatchObject({ _tag: "InvalidJobInput", field: `options.${name}` })
          expect(error.message).toContain(`options.${name}`)
          expect(error.message).toContain(String(Object.values(options)[0]))
          expect(yield* retained(queue)).toBe(0)
        })
      )
  )
})

// ---------------------------------------------------------------------------------------------------------
// Bulk submission
// ---------------------------------------------------------------------------------------------------------

describe("bulk submission", () => {
  const download = JobHandlers.register({
    type: "download",
    payload: Schema.Struct({ source: Schema.String }),
    handler: ({ source }) => Effect.succeed(source)
  })
  const handlers = [download, ok("a"), ok("b")]

  it.effect("submitMany returns the jobs in the order given", () =>
    withQueue(handlers, { maxConcurrent: 1 }, (queue) =>
      Effect.gen(function* () {
        const requests: Array<JobRequest> = Array.from({ length: 7 }, (_, i) =>
          i % 3 === 0
            ? { type: "download", metadata: { source: `s${i}` }, options: { priority: i } }
            : { type: i % 3 === 1 ? "a" : "b", options: { priority: i } }
        )
        const jobs = yield* queue.submitMany(requests)
        expect(jobs.map((job) => [job.type, job.priority])).toEqual(
          requests.map((r) => [r.type, r.options?.priority])
        )
        expect(jobs.filter((job) => job.type === "download").map((job) => job.metadata)).toEqual([
          { source: "s0" },
          { source: "s3" },
          { source: "s6" }
        ])
        expect(new Set(ids(jobs)).size).toBe(7)
        for (const job of jobs) expect(yield* queue.get(job.id)).toMatchObject({ id: job.id, type: job.type })
        expect(yield* retained(queue)).toBe(7)
        const offered = yield* queue.offerMany([{ type: "a" }, { type: "b" }])
        expect(offered.map(({ job, created }) => [job.type, created])).toEqual([
          ["a", true],
          ["b", true]
        ])
      })
    )
  )

  const badAtTwo: ReadonlyArray<readonly [string, JobRequest, string]> = [
    ["an unknown type", { type: "nope" }, "jobs[2].type"],
    [
      "metadata that fails its schema",
      { type: "download", metadata: { source: 42 } },
      "jobs[2].metadata.source"
    ],
    ["an invalid option", { type: "a", options: { maxAttempts: 0 } }, "jobs[2].options.maxAttempts"],
    ["delayMs with runAt", { type: "a", options: { delayMs: 5, runAt: new Date(9) } }, "jobs[2].delayMs"]
  ]

  for (const [name, bad, field] of badAtTwo) {
    it.effect(`one entry with ${name} at index 2 fails the batch, naming jobs[2], and creates nothing`, () =>
      withQueue(handlers, {}, (queue) =>
        Effect.gen(function* () {
          const requests: Array<JobRequest> = [
            { type: "a", options: { idempotencyKey: "first" } },
            { type: "download", metadata: { source: "x" } },
            bad,
            { type: "b" }
          ]
          for (const attempt of [
            queue.submitMany(requests),
            Effect.map(queue.offerMany(requests), () => [])
          ]) {
            const error = yield* Effect.flip(attempt)
            expect(error).toMatchObject({ _tag: "InvalidJobInput", index: 2, field })
            expect(error.message).toMatch(/^jobs\[2\]/)
          }
          expect(yield* retained(queue)).toBe(0)
          // Nothing was claimed either: the key of the first entry is still free.
          expect((yield* queue.offer({ type: "a", options: { idempotencyKey: "first" } })).created).toBe(true)
        })
      )
    )
  }

  it.effect.prop(
    "whichever entry is invalid, the error carries its index and nothing is created",
    { size: fc.integer({ min: 1, max: 12 }), position: fc.nat(), badType: fc.boolean() },
    ({ size, position, badType }) =>
      withQueue(handlers, {}, (queue) =>
        Effect.gen(function* () {
          const index = position % size
          const requests: Array<JobRequest> = Array.from({ length: size }, (_, i) =>
            i !== index
              ? { type: i % 2 === 0 ? "a" : "b" }
              : badType
                ? { type: "missing" }
                : { type: "download", metadata: {} }
          )
          const error = yield* Effect.flip(queue.submitMany(requests))
          expect(error).toMatchObject({ _tag: "InvalidJobInput", index })
          expect(error.message.startsWith(`jobs[${index}]`)).toBe(true)
          expect(yield* retained(queue)).toBe(0)
        })
      ),
    { fastCheck: { numRuns: 25 } }
  )
})

// ---------------------------------------------------------------------------------------------------------
// Retries
// ---------------------------------------------------------------------------------------------------------

/**
 * A job that fails three times and then succeeds (maxAttempts 4), with retryBaseMs 1000 and retryMaxMs 3000 (so
 * the third delay, nominally 4000 × [0.8, 1.2], is capped to 3000). Each delay must lie in base·2^(n-1) × [0.8, 1.2],
 * capped: the next attempt does not start a millisecond before the lower bound, and has started once the clock
 * passes the upper bound, at its runAt exactly. With a `random` pinned at 0 or 1 (`exact` "low" or "high") the
 * jitter is at its bound, so the delay is exactly the lower or upper bound.
 */
const backoff = (random: Random.Random | undefined, exact: "low" | "high" | undefined) =>
  Effect.gen(function* () {
    const runs: Array<Run> = []
    const maxAttempts = 4
    const flaky = scripted("flaky", runs, (attempt) => (attempt < maxAttempts ? "fail" : "ok"))
    const options = { retryBaseMs: 1_000, retryMaxMs: 3_000, maxConcurrent: 1 }
    const program = withQueue([flaky], options, (queue) =>
      Effect.gen(function* () {
        yield* at(10)
        const job = yield* queue.submit("flaky", {}, { maxAttempts })
        for (let n = 1; n < maxAttempts; n++) {
          // Attempt n failed at once: the job waits for attempt n + 1.
          const waiting = yield* waitFor(queue, job.id, (j) => j.attempts === n && j.status === "pending")
          const failedAt = runs[n - 1]!.at
          const nominal = 1_000 * 2 ** (n - 1)
          const low = Math.min(0.8 * nominal, 3_000)
          const high = Math.min(1.2 * nominal, 3_000)
          expect(waiting).toMatchObject({
            status: "pending",
            stage: "queued",
            progress: 0,
            attempts: n,
            error: null,
            lastError: `attempt ${n} failed`,
            finishedAt: null
          })
          expect(waiting.startedAt?.getTime()).toBe(failedAt)
          const delay = waiting.runAt.getTime() - failedAt
          expect(delay).toBeGreaterThanOrEqual(low)
          expect(delay).toBeLessThanOrEqual(high)
          if (exact === "low") expect(delay).toBe(low)
          if (exact === "high") expect(delay).toBe(high)

          yield* at(failedAt + low - 1)
          expect(runs.length).toBe(n)
          expect(yield* queue.get(job.id)).toEqual(waiting)

          yield* at(failedAt + high)
          expect(runs.length).toBe(n + 1)
          const next = runs[n]!
          expect(next.attempt).toBe(n + 1)
          expect(next.at).toBe(waiting.runAt.getTime())
          // The attempt sees the record of its own start.
          expect(next.job).toMatchObject({
            status: "running",
            attempts: n + 1,
            lastError: `attempt ${n} failed`
          })
          expect(next.job.startedAt?.getTime()).toBe(next.at)
        }
        const done = yield* queue.await(job.id)
        expect(done).toMatchObject({
          status: "completed",
          attempts: maxAttempts,
          result: { attempt: maxAttempts },
          error: null,
          lastError: `attempt ${maxAttempts - 1} failed`
        })
        expect(done.startedAt?.getTime()).toBe(runs[maxAttempts - 1]!.at)
        expect(runs.map((run) => run.id)).toEqual(Array.from({ length: maxAttempts }, () => job.id))
      })
    )
    yield* random === undefined ? program : Effect.withRandom(program, random)
  })

describe("retries", () => {
  it.effect("a job that fails twice then succeeds, with maxAttempts 3, completes on attempt 3", () =>
    Effect.gen(function* () {
      const runs: Array<Run> = []
      const flaky = scripted("flaky", runs, (attempt) => (attempt < 3 ? "fail" : "ok"))
      yield* withQueue([flaky], { retryBaseMs: 1_000 }, (queue) =>
        Effect.gen(function* () {
          const job = yield* queue.submit("flaky", {}, { maxAttempts: 3 })
          const first = yield* waitFor(queue, job.id, (j) => j.attempts === 1 && j.status === "pending")
          expect(first).toMatchObject({
            lastError: "attempt 1 failed",
            error: null,
            stage: "queued",
            progress: 0
          })
          expect(first.startedAt?.getTime()).toBe(0)
          expect(first.runAt.getTime()).toBeGreaterThanOrEqual(800)
          expect(first.runAt.getTime()).toBeLessThanOrEqual(1_200)

          yield* at(1_200)
          const second = yield* waitFor(queue, job.id, (j) => j.attempts === 2 && j.status === "pending")
          expect(second).toMatchObject({ lastError: "attempt 2 failed", error: null })
          expect(second.startedAt).toEqual(first.runAt)
          expect(second.runAt.getTime() - first.runAt.getTime()).toBeGreaterThanOrEqual(1_600)
          expect(second.runAt.getTime() - first.runAt.getTime()).toBeLessThanOrEqual(2_400)

          yield* at(first.runAt.getTime() + 2_400)
          const done = yield* queue.await(job.id)
          expect(done).toMatchObject({
            status: "completed",
            attempts: 3,
            result: { attempt: 3 },
            error: null,
            lastError: "attempt 2 failed"
          })
          expect(done.startedAt).toEqual(second.runAt)
          expect(done.finishedAt).toEqual(second.runAt)
          expect(runs.map((run) => run.at)).toEqual([0, first.runAt.getTime(), second.runAt.getTime()])
        })
      )
    })
  )

  it.effect("backoff delays lie within base·2^(n-1) × [0.8, 1.2], capped by retryMaxMs (random jitter)", () =>
    backoff(undefined, undefined)
  )

  it.effect("backoff at the lowest jitter: exactly 0.8 × the nominal delay, capped", () =>
    backoff(Random.fixed([0]), "low")
  )

  it.effect("backoff at the highest jitter: exactly 1.2 × the nominal delay, capped", () =>
    backoff(Random.fixed([1]), "high")
  )

  it.effect.prop(
    "backoff stays within its bounds whatever the jitter",
    { jitter: fc.double({ min: 0, max: 1, noNaN: true }) },
    ({ jitter }) => backoff(Random.fixed([jitter]), undefined),
    { fastCheck: { numRuns: 15 } }
  )

  it.effect(
    "when maxAttempts are used up the job fails, with error and lastError from the last attempt",
    () =>
      Effect.gen(function* () {
        const runs: Array<Run> = []
        yield* withQueue(
          [scripted("doomed", runs, () => "fail")],
          { retryBaseMs: 100, retryMaxMs: 100 },
          (queue) =>
            Effect.gen(function* () {
              const job = yield* queue.submit("doomed", {}, { maxAttempts: 3 })
              // Each delay is 100 × [0.8, 1.2] (then × 2), capped at 100: so 80 to 100 ms.
              const first = yield* waitFor(queue, job.id, (j) => j.attempts === 1 && j.status === "pending")
              yield* at(100)
              const second = yield* waitFor(queue, job.id, (j) => j.attempts === 2 && j.status === "pending")
              expect(second.runAt.getTime() - first.runAt.getTime()).toBeGreaterThanOrEqual(80)
              expect(second.runAt.getTime() - first.runAt.getTime()).toBeLessThanOrEqual(100)
              expect([first.lastError, second.lastError]).toEqual(["attempt 1 failed", "attempt 2 failed"])
              expect([first.error, second.error]).toEqual([null, null])
              yield* at(200)
              const failed = yield* queue.await(job.id)
              expect(failed).toMatchObject({
                status: "failed",
                attempts: 3,
                error: "attempt 3 failed",
                lastError: "attempt 3 failed",
                result: null
              })
              expect(failed.startedAt).toEqual(second.runAt)
              expect(failed.finishedAt).toEqual(second.runAt)
              yield* at(10_000)
              expect(runs.length).toBe(3)
              expect(yield* queue.get(job.id)).toEqual(failed)
            })
        )
      })
  )

  it.effect("a PermanentJobError fails the job at once, skipping the attempts left", () =>
    Effect.gen(function* () {
      const runs: Array<Run> = []
      yield* withQueue([scripted("hopeless", runs, () => "permanent")], { retryBaseMs: 100 }, (queue) =>
        Effect.gen(function* () {
          const job = yield* queue.submit("hopeless", {}, { maxAttempts: 5 })
          const failed = yield* queue.await(job.id)
          expect(failed).toMatchObject({
            status: "failed",
            attempts: 1,
            error: "PermanentJobError: attempt 1 is hopeless",
            lastError: "PermanentJobError: attempt 1 is hopeless"
          })
          yield* at(60_000)
          expect(runs.length).toBe(1)
          expect(yield* queue.get(job.id)).toEqual(failed)
        })
      )
    })
  )

  it.effect("a defect counts as a failed attempt, and is retried", () =>
    Effect.gen(function* () {
      const runs: Array<Run> = []
      const shaky = scripted("shaky", runs, (attempt) => (attempt === 1 ? "die" : "ok"))
      yield* withQueue([shaky], { retryBaseMs: 100 }, (queue) =>
        Effect.gen(function* () {
          const job = yield* queue.submit("shaky", {}, { maxAttempts: 2 })
          const waiting = yield* waitFor(queue, job.id, (j) => j.status === "pending" && j.attempts === 1)
          expect(waiting.lastError).toBe("Defect: attempt 1 died")
          yield* at(120)
          expect(yield* queue.await(job.id)).toMatchObject({
            status: "completed",
            attempts: 2,
            result: { attempt: 2 },
            lastError: "Defect: attempt 1 died"
          })
        })
      )
    })
  )
})

// ---------------------------------------------------------------------------------------------------------
// Timeouts
// ---------------------------------------------------------------------------------------------------------

describe("timeouts", () => {
  it.effect(
    "an attempt past timeoutMs is interrupted (finalizer run), fails with JobTimeout, then is retried",
    () =>
      Effect.gen(function* () {
        const starts: Array<number> = []
        const finalized: Array<number> = []
        const stuck = handler("stuck", () =>
          Effect.scoped(
            Effect.gen(function* () {
              yield* Effect.acquireRelease(Effect.void, () =>
                Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.sync(() => finalized.push(now)))
              )
              starts.push(yield* Clock.currentTimeMillis)
              return yield* Effect.never
            })
          )
        )
        yield* withQueue([stuck, ok()], { retryBaseMs: 1_000, maxConcurrent: 1 }, (queue) =>
          Effect.gen(function* () {
            const job = yield* queue.submit("stuck", {}, { timeoutMs: 1_000, maxAttempts: 2 })
            yield* at(999)
            expect(starts).toEqual([0])
            expect(finalized).toEqual([])
            expect((yield* queue.get(job.id)).status).toBe("running")

            yield* at(1_000)
            expect(finalized).toEqual([1_000])
            const waiting = yield* queue.get(job.id)
            expect(waiting).toMatchObject({ status: "pending", attempts: 1, error: null })
            expect(waiting.lastError).toMatch(/^JobTimeout: .*1000 ms/)
            expect(waiting.runAt.getTime()).toBeGreaterThanOrEqual(1_800)
            expect(waiting.runAt.getTime()).toBeLessThanOrEqual(2_200)

            yield* at(2_200)
            const second = waiting.runAt.getTime()
            expect(starts).toEqual([0, second])
            expect(yield* queue.get(job.id)).toMatchObject({ status: "running", attempts: 2 })

            yield* at(second + 999)
            expect(finalized).toEqual([1_000])
            yield* at(second + 1_000)
            expect(finalized).toEqual([1_000, second + 1_000])
            const failed = yield* queue.await(job.id)
            expect(failed).toMatchObject({ status: "failed", attempts: 2 })
            expect(failed.error).toMatch(/^JobTimeout: .*1000 ms/)
            expect(failed.lastError).toBe(failed.error)
            expect(failed.finishedAt?.getTime()).toBe(second + 1_000)

            // The worker the timeout freed serves the next job.
            const next = yield* queue.submit("ok")
            expect((yield* queue.await(next.id)).status).toBe("completed")
          })
        )
      })
  )

  it.effect("an attempt that finishes within timeoutMs completes normally", () =>
    Effect.gen(function* () {
      const gate = yield* makeGate
      yield* withQueue([gated("held", gate, "in time")], {}, (queue) =>
        Effect.gen(function* () {
          const job = yield* queue.submit("held", {}, { timeoutMs: 1_000 })
          yield* Deferred.await(gate.started)
          yield* at(999)
          yield* Deferred.succeed(gate.open, undefined)
          const done = yield* queue.await(job.id)
          expect(done).toMatchObject({ status: "completed", result: "in time", attempts: 1, lastError: null })
          expect(done.finishedAt?.getTime()).toBe(999)
        })
      )
    })
  )
})

// ---------------------------------------------------------------------------------------------------------
// Priority
// ---------------------------------------------------------------------------------------------------------

describe("priority", () => {
  it.effect.prop(
    "with one worker, ready jobs start by priority (highest first), in submission order within one",
    {
      jobs: fc.array(
        fc.record({ priority: fc.integer({ min: -1, max: 2 }), type: fc.constantFrom("a", "b", "c") }),
        { minLength: 1, maxLength: 30 }
      ),
      batched: fc.boolean()
    },
    ({ jobs, batched }) =>
      Effect.gen(function* () {
        const gate = yield* makeGate
        const started: Array<JobId> = []
        const handlers = [gated("hold", gate), ...["a", "b", "c"].map((type) => recording(type, started))]
        yield* withQueue(handlers, { maxConcurrent: 1 }, (queue) =>
          Effect.gen(function* () {
            const holder = yield* queue.submit("hold")
            yield* Deferred.await(gate.started)
            const requests = jobs.map(({ priority, type }) => ({ type, options: { priority } }))
            const submitted = batched
              ? yield* queue.submitMany(requests)
              : yield* Effect.forEach(requests, ({ type, options }) => queue.submit(type, {}, options))
            yield* settle
            expect(started).toEqual([])
            yield* Deferred.succeed(gate.open, undefined)
            yield* queue.await(holder.id)
            for (const job of submitted) yield* queue.await(job.id)
            // A stable sort keeps submission order within one priority.
            const expected = [...submitted].sort((x, y) => y.priority - x.priority)
            expect(started).toEqual(ids(expected))
          })
        )
      }),
    { fastCheck: { numRuns: 50 } }
  )
})

// ---------------------------------------------------------------------------------------------------------
// Delayed jobs
// ---------------------------------------------------------------------------------------------------------

describe("delayed jobs", () => {
  it.effect("a delayed job waits, queued, for its runAt without holding the worker", () =>
    Effect.gen(function* () {
      const gate = yield* makeGate
      const runs: Array<Run> = []
      yield* withQueue(
        [gated("now", gate), scripted("later", runs, () => "ok")],
        { maxConcurrent: 1 },
        (queue) =>
          Effect.gen(function* () {
            const later = yield* queue.submit("later", {}, { delayMs: 1_000, priority: 10 })
            expect(later).toMatchObject({ status: "pending", stage: "queued", attempts: 0 })
            expect(later.runAt.getTime()).toBe(1_000)
            // Submitted after it, with a lower priority, the immediate job still gets the only worker.
            const now = yield* queue.submit("now")
            yield* Deferred.await(gate.started)
            expect(yield* queue.get(later.id)).toEqual(later)
            yield* Deferred.succeed(gate.open, undefined)
            expect((yield* queue.await(now.id)).status).toBe("completed")

            yield* at(999)
            expect(runs).toEqual([])
            expect(yield* queue.get(later.id)).toEqual(later)
            yield* at(1_000)
            const done = yield* queue.await(later.id)
            expect(done).toMatchObject({ status: "completed", attempts: 1 })
            expect(done.startedAt?.getTime()).toBe(1_000)
          })
      )
    })
  )

  it.effect("delayed jobs start at their own times, an earlier one submitted later included", () =>
    Effect.gen(function* () {
      const runs: Array<Run> = []
      yield* withQueue([scripted("later", runs, () => "ok")], { maxConcurrent: 1 }, (queue) =>
        Effect.gen(function* () {
          const c = yield* queue.submit("later", {}, { delayMs: 300 })
          const a = yield* queue.submit("later", {}, { delayMs: 100 })
          const b = yield* queue.submit("later", {}, { runAt: new Date(200) })
          yield* at(1_000)
          expect(runs.map((run) => [run.id, run.at])).toEqual([
            [a.id, 100],
            [b.id, 200],
            [c.id, 300]
          ])
        })
      )
    })
  )

  it.effect("a delayed job or one awaiting its retry can be cancelled, and then never runs", () =>
    Effect.gen(function* () {
      const runs: Array<Run> = []
      const handlers = [scripted("later", runs, () => "ok"), scripted("flaky", runs, () => "fail")]
      yield* withQueue(handlers, { maxConcurrent: 1, retryBaseMs: 100, retryMaxMs: 100 }, (queue) =>
        Effect.gen(function* () {
          const delayed = yield* queue.submit("later", {}, { delayMs: 50 })
          const retrying = yield* queue.submit("flaky", {}, { maxAttempts: 3 })
          yield* waitFor(queue, retrying.id, (job) => job.status === "pending" && job.attempts === 1)
          const cancelled = [yield* queue.cancel(delayed.id), yield* queue.cancel(retrying.id)]
          expect(cancelled.map((job) => [job.status, job.attempts])).toEqual([
            ["cancelled", 0],
            ["cancelled", 1]
          ])
          yield* at(1_000)
          expect(runs.map((run) => run.id)).toEqual([retrying.id])
          expect([yield* queue.get(delayed.id), yield* queue.get(retrying.id)]).toEqual(cancelled)
          // The worker is not held by them.
          const next = yield* queue.submit("later")
          expect((yield* queue.await(next.id)).status).toBe("completed")
        })
      )
    })
  )

  it.effect("a runAt in the past (or now) runs at once", () =>
    Effect.gen(function* () {
      const runs: Array<Run> = []
      yield* withQueue([scripted("late", runs, () => "ok")], {}, (queue) =>
        Effect.gen(function* () {
          yield* at(5_000)
          const past = yield* queue.submit("late", {}, { runAt: new Date(1_000) })
          const present = yield* queue.submit("late", {}, { runAt: new Date(5_000) })
          expect(past.runAt.getTime()).toBe(1_000)
          for (const job of [past, present]) {
            const done = yield* queue.await(job.id)
            expect(done).toMatchObject({ status: "completed", attempts: 1 })
            expect(done.startedAt?.getTime()).toBe(5_000)
          }
          expect(yield* TestClock.currentTimeMillis).toBe(5_000)
        })
      )
    })
  )
})

// ---------------------------------------------------------------------------------------------------------
// Idempotency
// ---------------------------------------------------------------------------------------------------------

describe("idempotency", () => {
  it.effect("a second submission with the same key returns the same job and creates nothing", () =>
    Effect.gen(function* () {
      const gate = yield* makeGate
      yield* withQueue([gated("held", gate), ok()], {}, (queue) =>
        Effect.gen(function* () {
          const first = yield* queue.submit("held", {}, { idempotencyKey: "k" })
          yield* Deferred.await(gate.started)
          const running = yield* queue.get(first.id)
          // The key decides, whatever else the second submission says; the job comes back as it is now.
          expect(yield* queue.submit("ok", {}, { idempotencyKey: "k", priority: 3 })).toEqual(running)
          expect(yield* queue.offer({ type: "held", options: { idempotencyKey: "k" } })).toEqual({
            job: running,
            created: false
          })
          expect(ids(yield* listAll(queue))).toEqual([first.id])

          // Within one batch too: the first entry creates, the second finds it.
          const batch = yield* queue.offerMany([
            { type: "ok", options: { idempotencyKey: "b" } },
            { type: "ok", options: { idempotencyKey: "b" } },
            { type: "ok", options: { idempotencyKey: "k" } }
          ])
          expect(batch.map(({ created }) => created)).toEqual([true, false, false])
          expect(batch[1]!.job.id).toBe(batch[0]!.job.id)
          expect(batch[2]!.job.id).toBe(first.id)
          expect(yield* retained(queue)).toBe(2)

          // A finished job still holds its key while it is retained.
          yield* Deferred.succeed(gate.open, undefined)
          const done = yield* queue.await(first.id)
          expect(yield* queue.offer({ type: "held", options: { idempotencyKey: "k" } })).toEqual({
            job: done,
            created: false
          })
          expect(yield* retained(queue)).toBe(2)
        })
      )
    })
  )

  it.effect.prop(
    "concurrent submissions with one key create exactly one job",
    { pauses: fc.array(fc.nat({ max: 5 }), { minLength: 2, maxLength: 40 }) },
    ({ pauses }) =>
      withQueue([ok()], {}, (queue) =>
        Effect.gen(function* () {
          const request = { type: "ok", options: { idempotencyKey: "same" } }
          type Outcome = { readonly job: Job; readonly created: boolean | undefined }
          const submitOne = (i: number): Effect.Effect<Outcome, SubmitError> =>
            i % 3 === 0
              ? queue.offer(request)
              : i % 3 === 1
                ? Effect.map(queue.offerMany([request]), (results) => results[0]!)
                : Effect.map(queue.submit("ok", {}, request.options), (job) => ({ job, created: undefined }))
          const attempts = pauses.map((pause, i) => Effect.zipRight(yields(pause), submitOne(i)))
          const outcomes = yield* Effect.all(attempts, { concurrency: "unbounded" })
          const id = outcomes[0]!.job.id
          expect(outcomes.every((outcome) => outcome.job.id === id)).toBe(true)
          const offers = outcomes.filter((outcome) => outcome.created !== undefined)
          expect(offers.filter((outcome) => outcome.created === true).length).toBeLessThanOrEqual(1)
          expect(ids(yield* listAll(queue))).toEqual([id])
        })
      ),
    { fastCheck: { numRuns: 30 } }
  )

  it.effect("many concurrent offers with one key: exactly one is created", () =>
    withQueue([ok()], {}, (queue) =>
      Effect.gen(function* () {
        const outcomes = yield* Effect.all(
          Array.from({ length: 100 }, (_, i) =>
            Effect.zipRight(yields(i % 7), queue.offer({ type: "ok", options: { idempotencyKey: "race" } }))
          ),
          { concurrency: "unbounded" }
        )
        expect(outcomes.filter(({ created }) => created).length).toBe(1)
        expect(new Set(outcomes.map(({ job }) => job.id)).size).toBe(1)
        expect(ids(yield* listAll(queue))).toEqual([outcomes[0]!.job.id])
      })
    )
  )
})

// ---------------------------------------------------------------------------------------------------------
// Per-type concurrency
// ---------------------------------------------------------------------------------------------------------

/**
 * Two slow jobs (limit 1) and two fast ones: the second slow job waits, the fast ones do not, though they come
 * after it and with a lower priority.
 */
const typeLimitScenario = (
  queue: JobQueueService,
  slowStarted: Queue.Queue<JobId>,
  open: Deferred.Deferred<void>
) =>
  Effect.gen(function* () {
    // Let the workers reach their first wait, so that slow1 is taken the moment it is submitted.
    yield* settle
    const slow1 = yield* queue.submit("slow")
    const slow2 = yield* queue.submit("slow", {}, { priority: 10 })
    const fast1 = yield* queue.submit("fast")
    const fast2 = yield* queue.submit("fast")
    expect(yield* Queue.take(slowStarted)).toBe(slow1.id)
    // Submitted after slow2, the fast jobs still run (two workers are free) and finish.
    for (const job of [fast1, fast2]) expect((yield* queue.await(job.id)).status).toBe("completed")
    yield* settle
    expect(yield* queue.get(slow1.id)).toMatchObject({ status: "running" })
    expect(yield* queue.get(slow2.id)).toMatchObject({ status: "pending", attempts: 0 })
    expect(yield* Queue.size(slowStarted)).toBe(0)

    yield* Deferred.succeed(open, undefined)
    expect(yield* Queue.take(slowStarted)).toBe(slow2.id)
    for (const job of [slow1, slow2]) expect((yield* queue.await(job.id)).status).toBe("completed")
  })

const slowHandler = (started: Queue.Queue<JobId>, open: Deferred.Deferred<void>) =>
  handler("slow", ({ job }) =>
    Queue.offer(started, job.id).pipe(Effect.zipRight(Deferred.await(open)), Effect.as(1))
  )

describe("per-type concurrency", () => {
  it.effect("a type at its limit waits without holding up the other types", () =>
    Effect.gen(function* () {
      const started = yield* Queue.unbounded<JobId>()
      const open = yield* Deferred.make<void>()
      yield* withQueue(
        [slowHandler(started, open), ok("fast")],
        { maxConcurrent: 3, concurrencyByType: { slow: 1 } },
        (queue) => typeLimitScenario(queue, started, open)
      )
    })
  )

  /** Provides a queue built by `JobQueue.layerConfig` from these variables, over these handlers. */
  const fromEnv =
    (entries: ReadonlyArray<readonly [string, string]>, handlers: ReadonlyArray<HandlerLayer>) =>
    <A, E, R>(effect: Effect.Effect<A, E, R>) =>
      effect.pipe(
        Effect.provide(
          JobQueue.layerConfig.pipe(
            Layer.provide(Layer.mergeAll(JobStore.layerMemory, ...handlers)),
            Layer.provide(JobHandlers.layer)
          )
        ),
        Effect.withConfigProvider(ConfigProvider.fromMap(new Map(entries)))
      )

  it.effect("JobQueue.layerConfig reads APP_JOB_CONCURRENCY_<TYPE> for each registered type", () =>
    Effect.gen(function* () {
      const started = yield* Queue.unbounded<JobId>()
      const open = yield* Deferred.make<void>()
      yield* Effect.gen(function* () {
        const queue = yield* JobQueue
        expect(queue.options.maxConcurrent).toBe(3)
        expect(queue.options.concurrencyByType).toEqual({ slow: 1, "video-encode": 2 })
        yield* typeLimitScenario(queue, started, open)
      }).pipe(
        fromEnv(
          [
            ["APP_JOB_MAX_CONCURRENT", "3"],
            ["APP_JOB_SHUTDOWN_GRACE_MS", "0"],
            ["APP_JOB_CONCURRENCY_SLOW", "1"],
            ["APP_JOB_CONCURRENCY_VIDEO_ENCODE", "2"],
            ["APP_JOB_CONCURRENCY_UNREGISTERED", "5"]
          ],
          [slowHandler(started, open), ok("fast"), ok("video-encode")]
        )
      )
    })
  )

  it.effect.each(["0", "-1", "x"])(
    "APP_JOB_CONCURRENCY_SLOW=%s fails to build, naming the variable",
    (value) =>
      Effect.gen(function* () {
        const error = yield* Effect.flip(
          JobQueue.pipe(fromEnv([["APP_JOB_CONCURRENCY_SLOW", value]], [ok("slow")]))
        )
        expect(error._tag).toBe("ConfigError")
        expect(String(error)).toContain("APP_JOB_CONCURRENCY_SLOW")
      })
  )
})

// ---------------------------------------------------------------------------------------------------------
// Retention
// ---------------------------------------------------------------------------------------------------------

describe("retention", () => {
  it.effect(
    "at most retentionMax finished jobs are kept through 100 000 jobs, the earliest finished evicted first",
    () =>
      Effect.gen(function* () {
        const gate = yield* makeGate
        const finishedInOrder: Array<JobId> = []
        const runs: Array<Run> = []
        const handlers = [
          gated("hold", gate),
          scripted("flaky", runs, () => "fail"),
          recording("noop", finishedInOrder)
        ]
        const options = { retentionMax: 100, maxConcurrent: 2, retryBaseMs: 3_600_000, retryMaxMs: 3_600_000 }
        yield* withQueue(handlers, options, (queue) =>
          Effect.gen(function* () {
            // Never evicted: a running job, a delayed one and one awaiting its retry.
            const holding = yield* queue.submit("hold")
            yield* Deferred.await(gate.started)
            const parked = yield* queue.submit("noop", {}, { delayMs: 3_600_000 })
            const retrying = yield* queue.submit("flaky", {}, { maxAttempts: 2 })
            yield* waitFor(queue, retrying.id, (job) => job.status === "pending" && job.attempts === 1)

            const total = 100_000
            const chunk = 1_000
            let firstJob: Job | undefined
            for (let done = 0; done < total; done += chunk) {
              const requests: Array<JobRequest> = Array.from({ length: chunk }, (_, i) =>
                done + i === 0 ? { type: "noop", options: { idempotencyKey: "first" } } : { type: "noop" }
              )
              const jobs = yield* queue.submitMany(requests)
              firstJob ??= jobs[0]
              // One worker is free and serves them in order: the last to start is the last to finish.
              yield* queue.await(jobs[jobs.length - 1]!.id)
              expect(finishedInOrder.length).toBe(done + chunk)
              if (done % 20_000 === 0 || done + chunk === total) {
                const kept = yield* listAll(queue, { status: ["completed", "failed", "cancelled"] })
                expect(kept.length).toBe(Math.min(100, done + chunk))
              }
            }
            expect(finishedInOrder.length).toBe(total)

            // The newest 100 to finish are kept; everything that finished before them is gone.
            const kept = yield* listAll(queue, { status: ["completed"] })
            expect(new Set(ids(kept))).toEqual(new Set(finishedInOrder.slice(-100)))
            for (const id of [finishedInOrder[0]!, finishedInOrder[total - 101]!]) {
              expect(yield* Effect.flip(queue.get(id))).toMatchObject({ _tag: "JobNotFound", id })
            }
            expect(yield* queue.get(finishedInOrder[total - 100]!)).toMatchObject({ status: "completed" })

            // The running, delayed and retrying jobs are all still there.
            expect(yield* queue.get(holding.id)).toMatchObject({ status: "running" })
            expect(yield* queue.get(parked.id)).toMatchObject({ status: "pending", attempts: 0 })
            expect(yield* queue.get(retrying.id)).toMatchObject({ status: "pending", attempts: 1 })
            expect(yield* retained(queue)).toBe(103)

            // The evicted first job's idempotency key is free again.
            expect(firstJob?.idempotencyKey).toBe("first")
            const again = yield* queue.offer({ type: "noop", options: { idempotencyKey: "first" } })
            expect(again.created).toBe(true)
            expect(again.job.id).not.toBe(firstJob?.id)
            yield* queue.await(again.job.id)
            expect(yield* retained(queue)).toBe(103)
            yield* Deferred.succeed(gate.open, undefined)
          })
        )
      }),
    180_000
  )

  it.effect("finished jobs are forgotten once retentionMs has passed; unfinished ones are kept", () =>
    Effect.gen(function* () {
      const gate = yield* makeGate
      yield* withQueue([gated("hold", gate), ok()], { retentionMs: 1_000, maxConcurrent: 2 }, (queue) =>
        Effect.gen(function* () {
          const holding = yield* queue.submit("hold")
          const parked = yield* queue.submit("ok", {}, { delayMs: 60_000 })
          const early = yield* queue.submit("ok")
          yield* queue.await(early.id)
          yield* at(999)
          expect((yield* queue.get(early.id)).status).toBe("completed")

          yield* at(1_001)
          expect(yield* Effect.flip(queue.get(early.id))).toMatchObject({ _tag: "JobNotFound" })
          expect(yield* Effect.flip(queue.await(early.id))).toMatchObject({ _tag: "JobNotFound" })

          yield* at(1_500)
          const late = yield* queue.submit("ok")
          yield* queue.await(late.id)
          yield* at(2_400)
          expect((yield* queue.get(late.id)).status).toBe("completed")
          // Swept within one sweep interval (here 1 s) of turning retentionMs old.
          yield* at(3_500)
          expect(yield* Effect.flip(queue.get(late.id))).toMatchObject({ _tag: "JobNotFound" })

          expect(yield* queue.get(holding.id)).toMatchObject({ status: "running" })
          expect(yield* queue.get(parked.id)).toMatchObject({ status: "pending" })
          expect(ids(yield* listAll(queue)).sort()).toEqual([holding.id, parked.id].sort())
          yield* Deferred.succeed(gate.open, undefined)
        })
      )
    })
  )
})

// ---------------------------------------------------------------------------------------------------------
// Backpressure
// ---------------------------------------------------------------------------------------------------------

describe("backpressure", () => {
  it.effect(
    "past maxPending, submit fails with QueueFull; delayed and retrying jobs count, running ones not",
    () =>
      Effect.gen(function* () {
        const gate = yield* makeGate
        const runs: Array<Run> = []
        const handlers = [gated("hold", gate), scripted("flaky", runs, () => "fail"), ok()]
        const options = { maxPending: 3, maxConcurrent: 1, retryBaseMs: 3_600_000, retryMaxMs: 3_600_000 }
        yield* withQueue(handlers, options, (queue) =>
          Effect.gen(function* () {
            const retrying = yield* queue.submit("flaky", {}, { maxAttempts: 2 })
            yield* waitFor(queue, retrying.id, (job) => job.status === "pending" && job.attempts === 1)
            const holding = yield* queue.submit("hold")
            yield* Deferred.await(gate.started)
            const delayed = yield* queue.submit("ok", {}, { delayMs: 60_000, idempotencyKey: "delayed" })
            const queued = yield* queue.submit("ok")
            expect(yield* queue.get(holding.id)).toMatchObject({ status: "running" })

            const full = yield* Effect.flip(queue.submit("ok"))
            expect(full).toMatchObject({ _tag: "QueueFull", maxPending: 3 })
            expect(full.message).toContain("3")
            expect(yield* Effect.flip(queue.offer({ type: "ok", options: { delayMs: 5 } }))).toMatchObject({
              _tag: "QueueFull"
            })
            expect(yield* Effect.flip(queue.submitMany([{ type: "ok" }]))).toMatchObject({
              _tag: "QueueFull"
            })
            // A submission that finds its job by key adds nothing, so it is not refused.
            expect(yield* queue.offer({ type: "ok", options: { idempotencyKey: "delayed" } })).toEqual({
              job: delayed,
              created: false
            })
            expect(yield* retained(queue)).toBe(4)

            // Two slots free, a batch of three: refused whole.
            yield* queue.cancel(queued.id)
            yield* queue.cancel(delayed.id)
            const before = yield* listAll(queue)
            const batch = [{ type: "ok" }, { type: "ok", options: { idempotencyKey: "new" } }, { type: "ok" }]
            expect(yield* Effect.flip(queue.submitMany(batch))).toMatchObject({
              _tag: "QueueFull",
              maxPending: 3
            })
            expect(yield* listAll(queue)).toEqual(before)
            expect(yield* Effect.flip(queue.offerMany(batch))).toMatchObject({ _tag: "QueueFull" })
            expect(yield* listAll(queue)).toEqual(before)
            // Exactly two fit.
            const fits = yield* queue.submitMany(batch.slice(0, 2))
            expect(fits.length).toBe(2)
            expect(yield* Effect.flip(queue.submit("ok"))).toMatchObject({ _tag: "QueueFull" })

            // As pending jobs start, room opens again.
            yield* Deferred.succeed(gate.open, undefined)
            for (const job of fits) yield* queue.await(job.id)
            const later = yield* queue.submit("ok")
            expect((yield* queue.await(later.id)).status).toBe("completed")
          })
        )
      })
  )
})

// ---------------------------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------------------------

describe("events", () => {
  it.effect(
    "events() delivers submitted, started, progress and completed, each with the job after the change",
    () =>
      Effect.gen(function* () {
        const gate = yield* makeGate
        const worker = handler("work", ({ progress }) =>
          Effect.gen(function* () {
            yield* Effect.orDie(progress({ stage: "processing", progress: 40, message: "halfway" }))
            yield* Deferred.succeed(gate.started, undefined)
            yield* Deferred.await(gate.open)
            yield* Effect.orDie(progress({ progress: 90 }))
            return "done"
          })
        )
        yield* withQueue([worker], {}, (queue) =>
          Effect.gen(function* () {
            const { seen, stop } = yield* follow(queue.events())
            const job = yield* queue.submit("work")
            yield* Deferred.await(gate.started)
            yield* at(10)
            yield* Deferred.succeed(gate.open, undefined)
            const done = yield* queue.await(job.id)
            yield* stop

            expect(kinds(seen)).toEqual(["submitted", "started", "progress", "progress", "completed"])
            expect(seen.every((event) => event.job.id === job.id)).toBe(true)
            const [submitted, started, first, second, completed] = seen.map((event) => event.job)
            expect(submitted).toEqual(job)
            expect(started).toMatchObject({ status: "running", attempts: 1, stage: "queued", progress: 0 })
            expect(first).toMatchObject({
              status: "running",
              stage: "processing",
              progress: 40,
              message: "halfway"
            })
            expect(second).toMatchObject({ status: "running", stage: "processing", progress: 90 })
            expect(second?.updatedAt.getTime()).toBe(10)
            expect(completed).toEqual(done)
          })
        )
      })
  )

  it.effect(
    "subscribe() has subscribed when it returns: what happens next is in its stream, without settling first",
    () =>
      withQueue([ok()], {}, (queue) =>
        Effect.scoped(
          Effect.gen(function* () {
            const stream = yield* queue.subscribe({ type: ["ok"] })
            const job = yield* queue.submit("ok")
            const first = yield* Stream.runHead(stream)
            expect(Option.map(first, (event) => [event.kind, event.job.id])).toEqual(
              Option.some(["submitted", job.id])
            )
          })
        )
      )
  )

  it.effect("events() delivers retrying and failed, and cancelled, in their cases", () =>
    Effect.gen(function* () {
      const gate = yield* makeGate
      const runs: Array<Run> = []
      const handlers = [gated("hold", gate), scripted("doomed", runs, () => "fail")]
      yield* withQueue(handlers, { maxConcurrent: 1, retryBaseMs: 100, retryMaxMs: 100 }, (queue) =>
        Effect.gen(function* () {
          const { seen, stop } = yield* follow(queue.events())
          const doomed = yield* queue.submit("doomed", {}, { maxAttempts: 2 })
          yield* waitFor(queue, doomed.id, (job) => job.status === "pending" && job.attempts === 1)
          yield* at(100)
          const failed = yield* queue.await(doomed.id)

          const holding = yield* queue.submit("hold")
          yield* Deferred.await(gate.started)
          const waiting = yield* queue.submit("doomed")
          const cancelledPending = yield* queue.cancel(waiting.id)
          const cancelledRunning = yield* queue.cancel(holding.id)
          yield* stop

          const of = (id: JobId) => seen.filter((event) => event.job.id === id)
          expect(kinds(of(doomed.id))).toEqual(["submitted", "started", "retrying", "started", "failed"])
          const retryingJob = of(doomed.id)[2]!.job
          expect(retryingJob).toMatchObject({ status: "pending", attempts: 1, lastError: "attempt 1 failed" })
          // The first retry's delay: 100 × [0.8, 1.2], capped at 100.
          expect(retryingJob.runAt.getTime()).toBeGreaterThanOrEqual(80)
          expect(retryingJob.runAt.getTime()).toBeLessThanOrEqual(100)
          expect(of(doomed.id)[4]!.job).toEqual(failed)
          expect(kinds(of(waiting.id))).toEqual(["submitted", "cancelled"])
          expect(of(waiting.id)[1]!.job).toEqual(cancelledPending)
          expect(kinds(of(holding.id))).toEqual(["submitted", "started", "cancelled"])
          expect(of(holding.id)[2]!.job).toEqual(cancelledRunning)
          // One stream, in the order things happened.
          expect(seen.map((event) => `${event.kind}:${event.job.id}`)).toEqual([
            ...of(doomed.id).map((event) => `${event.kind}:${doomed.id}`),
            `submitted:${holding.id}`,
            `started:${holding.id}`,
            `submitted:${waiting.id}`,
            `cancelled:${waiting.id}`,
            `cancelled:${holding.id}`
          ])
        })
      )
    })
  )

  it.effect("events(filter) keeps the events whose job, after the change, matches status and type", () =>
    Effect.gen(function* () {
      const runs: Array<Run> = []
      const handlers = [ok("a"), ok("b"), scripted("bad", runs, () => "fail")]
      yield* withQueue(handlers, { maxConcurrent: 1 }, (queue) =>
        Effect.gen(function* () {
          const all = yield* follow(queue.events())
          const finishedA = yield* follow(
            queue.events({ status: ["completed", "failed"], type: ["a", "bad"] })
          )
          const running = yield* follow(queue.events({ status: ["running"] }))
          const typeB = yield* follow(queue.events({ type: ["b"] }))
          const none = yield* follow(queue.events({ status: [], type: [] }))
          const jobs = yield* queue.submitMany([{ type: "a" }, { type: "b" }, { type: "bad" }, { type: "a" }])
          for (const job of jobs) yield* queue.await(job.id)
          for (const follower of [all, finishedA, running, typeB, none]) yield* follower.stop

          const [a1, b, bad, a2] = jobs as [Job, Job, Job, Job]
          const described = (events: ReadonlyArray<JobEvent>) =>
            events.map((event) => `${event.kind}:${event.job.type}:${event.job.id}`)
          const expected = (keep: (event: JobEvent) => boolean) => described(all.seen.filter(keep))
          expect(all.seen.length).toBe(12)
          expect(described(finishedA.seen)).toEqual([
            `completed:a:${a1.id}`,
            `failed:bad:${bad.id}`,
            `completed:a:${a2.id}`
          ])
          expect(described(running.seen)).toEqual(expected((event) => event.kind === "started"))
          expect(running.seen.length).toBe(4)
          expect(described(typeB.seen)).toEqual([
            `submitted:b:${b.id}`,
            `started:b:${b.id}`,
            `completed:b:${b.id}`
          ])
          expect(described(none.seen)).toEqual(described(all.seen))
        })
      )
    })
  )

  it.effect("watch(id) starts with the job as it is, follows each change and ends after the final one", () =>
    Effect.gen(function* () {
      const holdGate = yield* makeGate
      const gate = yield* makeGate
      const worker = handler("work", ({ progress }) =>
        Effect.gen(function* () {
          yield* Effect.orDie(progress({ stage: "processing", progress: 50 }))
          yield* Deferred.succeed(gate.started, undefined)
          yield* Deferred.await(gate.open)
          return "done"
        })
      )
      yield* withQueue([gated("hold", holdGate), worker], { maxConcurrent: 1 }, (queue) =>
        Effect.gen(function* () {
          const holding = yield* queue.submit("hold")
          yield* Deferred.await(holdGate.started)
          const job = yield* queue.submit("work")
          const first = yield* Deferred.make<void>()
          const watching = yield* Effect.fork(
            Stream.runCollect(queue.watch(job.id).pipe(Stream.tap(() => Deferred.succeed(first, undefined))))
          )
          yield* Deferred.await(first)
          yield* Deferred.succeed(holdGate.open, undefined)
          yield* queue.await(holding.id)
          yield* Deferred.await(gate.started)
          yield* Deferred.succeed(gate.open, undefined)
          const done = yield* queue.await(job.id)
          const events = [...(yield* Fiber.join(watching))]
          expect(kinds(events)).toEqual(["submitted", "started", "progress", "completed"])
          expect(events[0]!.job).toEqual(job)
          expect(events[1]!.job).toMatchObject({ status: "running", attempts: 1 })
          expect(events[2]!.job).toMatchObject({ status: "running", progress: 50, stage: "processing" })
          expect(events[3]!.job).toEqual(done)
          expect(events.every((event) => event.job.id === job.id)).toBe(true)
        })
      )
    })
  )

  it.effect(
    "watch(id) of a running job starts with its current progress; of a retried job, follows the retry",
    () =>
      Effect.gen(function* () {
        const gate = yield* makeGate
        const runs: Array<Run> = []
        const worker = handler("work", ({ progress }) =>
          Effect.gen(function* () {
            yield* Effect.orDie(progress({ stage: "transcribing", progress: 30, message: "going" }))
            yield* Deferred.succeed(gate.started, undefined)
            yield* Deferred.await(gate.open)
            return "done"
          })
        )
        const flaky = scripted("flaky", runs, (attempt) => (attempt === 1 ? "fail" : "ok"))
        yield* withQueue([worker, flaky], { retryBaseMs: 100, retryMaxMs: 100 }, (queue) =>
          Effect.gen(function* () {
            const job = yield* queue.submit("work")
            yield* Deferred.await(gate.started)
            const current = yield* queue.get(job.id)
            const watching = yield* Effect.fork(Stream.runCollect(queue.watch(job.id)))
            yield* settle
            yield* Deferred.succeed(gate.open, undefined)
            const done = yield* queue.await(job.id)
            const events = [...(yield* Fiber.join(watching))]
            expect(kinds(events)).toEqual(["progress", "completed"])
            expect(events[0]!.job).toEqual(current)
            expect(events[1]!.job).toEqual(done)

            const retried = yield* queue.submit("flaky", {}, { maxAttempts: 2, delayMs: 50 })
            const following = yield* Effect.fork(Stream.runCollect(queue.watch(retried.id)))
            yield* settle
            yield* at(50)
            yield* waitFor(queue, retried.id, (j) => j.status === "pending" && j.attempts === 1)
            yield* at(150)
            const finished = yield* queue.await(retried.id)
            const retryEvents = [...(yield* Fiber.join(following))]
            expect(kinds(retryEvents)).toEqual(["submitted", "started", "retrying", "started", "completed"])
            expect(retryEvents[4]!.job).toEqual(finished)
          })
        )
      })
  )

  it.effect(
    "watch(id) of a finished job emits only its final state and ends; of an unknown one, JobNotFound",
    () =>
      Effect.gen(function* () {
        const gate = yield* makeGate
        const runs: Array<Run> = []
        yield* withQueue([ok(), scripted("bad", runs, () => "fail"), gated("hold", gate)], {}, (queue) =>
          Effect.gen(function* () {
            const completed = yield* queue.submit("ok")
            const failed = yield* queue.submit("bad")
            const cancelled = yield* queue.submit("hold")
            yield* Deferred.await(gate.started)
            yield* queue.cancel(cancelled.id)
            for (const [job, kind] of [
              [completed, "completed"],
              [failed, "failed"],
              [cancelled, "cancelled"]
            ] as const) {
              const final = yield* queue.await(job.id)
              const events = [...(yield* Stream.runCollect(queue.watch(job.id)))]
              expect(events.map((event) => [event.kind, event.job])).toEqual([[kind, final]])
              expect(isFinalEvent(events[0]!)).toBe(true)
            }
            const unknown = "6f1f2a3b-4c5d-4e6f-8a7b-9c0d1e2f3a4b" as JobId
            expect(yield* Effect.flip(Stream.runCollect(queue.watch(unknown)))).toMatchObject({
              _tag: "JobNotFound",
              id: unknown
            })
          })
        )
      })
  )

  it.effect(
    "a subscriber that stops reading does not slow the workers, loses only its oldest events, and can leave",
    () =>
      withQueue([ok()], { maxConcurrent: 1 }, (queue) =>
        Effect.gen(function* () {
          // This subscriber takes its first event, then stops reading until `resume`.
          const resume = yield* Deferred.make<void>()
          const released = yield* Deferred.make<void>()
          const seen: Array<JobEvent> = []
          const stalled = yield* Effect.fork(
            queue.events().pipe(
              Stream.ensuring(Deferred.succeed(released, undefined)),
              Stream.runForEach((event) =>
                Effect.sync(() => seen.push(event)).pipe(Effect.zipRight(Deferred.await(resume)))
              )
            )
          )
          // And this one never gets past its first event.
          const silent = yield* Effect.fork(
            Stream.runDrain(Stream.mapEffect(queue.events(), () => Effect.never))
          )
          // While this one keeps reading.
          const reader = yield* follow(queue.events())

          // With one worker, the events are known in advance: per batch, every submitted, then each job's
          // started and completed.
          const expected: Array<string> = []
          let last: Job | undefined
          for (let batch = 0; batch < 10; batch++) {
            const jobs = yield* queue.submitMany(Array.from({ length: 1_000 }, () => ({ type: "ok" })))
            for (const job of jobs) last = yield* queue.await(job.id)
            expected.push(...jobs.map((job) => `submitted:${job.id}`))
            for (const job of jobs) expected.push(`started:${job.id}`, `completed:${job.id}`)
          }
          expect((yield* listAll(queue, { status: ["completed"] })).length).toBe(10_000)
          expect(seen.length).toBe(1)
          // The subscribers that stopped reading cost the one that reads nothing.
          yield* reader.stop
          expect(reader.seen.length).toBe(expected.length)
          expect(reader.seen.map((event) => `${event.kind}:${event.job.id}`)).toEqual(expected)

          // Reading again, it gets what it had already pulled, then the newest eventBufferSize events: the ones
          // in between were dropped, for it alone.
          yield* Deferred.succeed(resume, undefined)
          yield* settle
          const got = seen.map((event) => `${event.kind}:${event.job.id}`)
          let pulled = 0
          while (pulled < got.length && got[pulled] === expected[pulled]) pulled++
          expect(pulled).toBeGreaterThanOrEqual(1)
          expect(got.slice(pulled)).toEqual(expected.slice(expected.length - eventBufferSize))
          expect(seen[seen.length - 1]!.job).toEqual(last)

          // Leaving: interrupting the stream's fiber ends it and runs its finalizers.
          yield* Fiber.interrupt(stalled)
          expect(yield* Deferred.isDone(released)).toBe(true)
          yield* Fiber.interrupt(silent)

          // A newcomer sees only what happens after it joined.
          const { seen: fresh, stop } = yield* follow(queue.events())
          const after = yield* queue.submit("ok")
          yield* queue.await(after.id)
          yield* stop
          expect(kinds(fresh)).toEqual(["submitted", "started", "completed"])
        })
      ),
    180_000
  )
})
