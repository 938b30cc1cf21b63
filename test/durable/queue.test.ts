// The durable guarantees of the JobQueue, in one process: one suite run over the in-memory store (where the
// behaviour is shared), SQLite (a temporary file per test) and PostgreSQL (a database for this file, a schema per
// test). The clock is the real one, with short leases and poll intervals; the tests wait for events (a handler's
// start, a finalizer, a job's end), and every wait has a timeout guard that names what it waited for.
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Clock, Context, Deferred, Duration, Effect, Exit, Fiber, Layer, Option, Scope, Stream } from "effect"
import type { JobQueueOptions } from "../../src/config.js"
import { Job, type JobId, type JsonObject, makeJobId } from "../../src/domain/Job.js"
import type { JobEvent } from "../../src/domain/JobEvent.js"
import { JobHandlers } from "../../src/JobHandlers.js"
import { JobQueue, type JobQueueService } from "../../src/JobQueue.js"
import { JobStore, type JobStoreService, leaseExpiredError } from "../../src/JobStore.js"
import * as SqlJobStore from "../../src/SqlJobStore.js"
import { type HandlerLayer, handler } from "../support.js"
import { describePg, testDatabase, urlFor, withSql } from "./pg.js"

// ---------------------------------------------------------------------------------------------------------
// Stores
// ---------------------------------------------------------------------------------------------------------

/** Where a suite's jobs live: how to get a fresh, empty place for one test, and a store (a new connection) on it. */
interface Backend {
  readonly name: string
  /** The store outlives its connections (restarts and leases apply). */
  readonly durable: boolean
  /** Several queues may share one place from this process, each over its own connection. */
  readonly multiNode: boolean
  /** A fresh, empty place for one test, removed when the test's scope closes. */
  readonly fresh: Effect.Effect<string, never, Scope.Scope>
  /** A store on that place: each build opens a new connection (or, in memory, a new empty store). */
  readonly store: (location: string) => Layer.Layer<JobStore, unknown>
}

const memory: Backend = {
  name: "memory",
  durable: false,
  multiNode: false,
  fresh: Effect.succeed("memory"),
  store: () => JobStore.layerMemory
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "jq-durable-queue-"))
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }))

let files = 0
const sqlite: Backend = {
  name: "SQLite",
  durable: true,
  // Two connections to one file from one thread could wait on each other's write lock (the driver is synchronous).
  multiNode: false,
  fresh: Effect.acquireRelease(
    Effect.sync(() => path.join(tmp, `queue-${++files}.db`)),
    (file) =>
      Effect.sync(() => {
        for (const suffix of ["", "-wal", "-shm"]) fs.rmSync(file + suffix, { force: true })
      })
  ),
  store: (file) => SqlJobStore.layerSqlite(file)
}

const database = testDatabase("queue")
let schemas = 0
const postgres: Backend = {
  name: "PostgreSQL",
  durable: true,
  multiNode: true,
  fresh: Effect.acquireRelease(
    Effect.promise(async () => {
      const schema = `queue_${++schemas}`
      await withSql(database.url, (sql) => Effect.asVoid(sql`CREATE SCHEMA ${sql(schema)}`))
      return schema
    }),
    (schema) =>
      Effect.promise(() =>
        withSql(database.url, (sql) => Effect.asVoid(sql`DROP SCHEMA ${sql(schema)} CASCADE`))
      )
  ).pipe(Effect.map((schema) => urlFor(database.name, schema))),
  store: (url) => SqlJobStore.layerPg(url)
}

// ---------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------

/** Short timings, so leases run out and polls come round within a test; the grace period is 0 unless a test sets it. */
const testOptions: Partial<JobQueueOptions> = {
  pollIntervalMs: 50,
  leaseMs: 1_000,
  shutdownGraceMs: 0,
  retryBaseMs: 40,
  retryMaxMs: 1_000
}

/** A queue over `store` with these handlers, built in the current scope (its shutdown runs when the scope closes). */
const buildQueue = (
  store: Layer.Layer<JobStore, unknown>,
  handlers: ReadonlyArray<HandlerLayer>,
  options: Partial<JobQueueOptions> = {}
): Effect.Effect<JobQueueService, unknown, Scope.Scope> =>
  Effect.map(
    Layer.build(
      JobQueue.layer({ ...testOptions, ...options }).pipe(
        Layer.provide(Layer.mergeAll(store, ...handlers)),
        Layer.provide(JobHandlers.layer)
      )
    ),
    Context.get(JobQueue)
  )

/** A scope the test closes itself (a graceful stop); closed anyway, with the test's exit, if the test fails first. */
const closeableScope = Effect.acquireRelease(Scope.make(), (scope, exit) => Scope.close(scope, exit))

/** A store opened on its own, in the current scope. */
const openStore = (
  store: Layer.Layer<JobStore, unknown>
): Effect.Effect<JobStoreService, unknown, Scope.Scope> =>
  Effect.map(Layer.build(store), Context.get(JobStore))

/** The same store without its signals between nodes: a node over it learns of other nodes' changes by polling. */
const withoutSignals = (store: Layer.Layer<JobStore, unknown>): Layer.Layer<JobStore, unknown> =>
  Layer.effect(
    JobStore,
    Effect.map(JobStore, (service): JobStoreService => ({ ...service, signals: undefined }))
  ).pipe(Layer.provide(store))

/** Fails with a message naming `what` if `self` takes longer than `ms`. */
const within =
  (ms: number, what: string) =>
  <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E | Error, R> =>
    Effect.timeoutFail(self, {
      duration: Duration.millis(ms),
      onTimeout: () => new Error(`timed out after ${ms} ms waiting for ${what}`)
    })

/** Awaits every job, each with a guard; returns them in order. */
const awaitAll = (queue: JobQueueService, ids: ReadonlyArray<JobId>, ms = 10_000) =>
  Effect.forEach(ids, (id) => queue.await(id).pipe(within(ms, `job ${id} to finish`)))

/** One run of a handler: which job, which attempt, when, and on which queue. */
interface Run {
  readonly id: JobId
  readonly attempt: number
  readonly at: number
  readonly node: string
}

/** A handler that records each run, then does `work` (nothing by default) and completes with `{ attempt }`. */
const recorder = (
  type: string,
  runs: Array<Run>,
  node = "a",
  work: Effect.Effect<void> = Effect.void
): HandlerLayer =>
  handler(type, ({ job }) =>
    Effect.flatMap(Clock.currentTimeMillis, (at) => {
      runs.push({ id: job.id, attempt: job.attempts, at, node })
      return Effect.as(work, { attempt: job.attempts })
    })
  )

/** A handler held until `open`: it reports its start, and the time it was interrupted (from its finalizer). */
interface Held {
  readonly started: Deferred.Deferred<JobId>
  readonly open: Deferred.Deferred<void>
  readonly interrupted: Deferred.Deferred<number>
}

const makeHeld: Effect.Effect<Held> = Effect.all({
  started: Deferred.make<JobId>(),
  open: Deferred.make<void>(),
  interrupted: Deferred.make<number>()
})

const holding = (type: string, held: Held): HandlerLayer =>
  handler(type, ({ job }) =>
    Deferred.succeed(held.started, job.id).pipe(
      Effect.zipRight(Deferred.await(held.open)),
      Effect.onInterrupt(() =>
        Effect.flatMap(Clock.currentTimeMillis, (at) => Deferred.succeed(held.interrupted, at))
      ),
      Effect.as({ held: true })
    )
  )

/** A pending job of `type`, created and due at `at`, as `submit` would have stored it. */
const pendingJob = (type: string, fields: { readonly maxAttempts: number; readonly at: Date }): Job =>
  new Job({
    id: makeJobId(),
    type,
    status: "pending",
    stage: "queued",
    progress: 0,
    message: null,
    metadata: {} as JsonObject,
    result: null,
    error: null,
    lastError: null,
    priority: 0,
    attempts: 0,
    maxAttempts: fields.maxAttempts,
    timeoutMs: null,
    idempotencyKey: null,
    runAt: fields.at,
    createdAt: fields.at,
    startedAt: null,
    finishedAt: null,
    updatedAt: fields.at
  })

const ms = (date: Date | null): number => {
  if (date === null) throw new Error("expected a date")
  return date.getTime()
}

// ---------------------------------------------------------------------------------------------------------
// The suite
// ---------------------------------------------------------------------------------------------------------

const suite = (backend: Backend): void => {
  describe(`JobQueue over ${backend.name}`, () => {
    it.scopedLive("a submitted job runs once and completes; the stored record says so", () =>
      Effect.gen(function* () {
        const location = yield* backend.fresh
        const runs: Array<Run> = []
        const queue = yield* buildQueue(backend.store(location), [recorder("rec", runs)])
        const job = yield* queue.submit("rec", { note: "hi" })
        expect(job).toMatchObject({ status: "pending", attempts: 0, metadata: {} })
        const done = yield* queue.await(job.id).pipe(within(10_000, "the job to finish"))
        expect(done).toMatchObject({ id: job.id, status: "completed", attempts: 1, result: { attempt: 1 } })
        expect(runs.map((run) => run.id)).toEqual([job.id])
        expect(yield* queue.get(job.id)).toEqual(done)
        if (backend.durable) {
          // Another connection reads the same record.
          const other = yield* openStore(backend.store(location))
          expect(yield* other.get(job.id)).toEqual(Option.some(done))
        }
      })
    )

    it.scopedLive("a failing job is retried with jittered, capped backoff until it succeeds", () =>
      Effect.gen(function* () {
        const location = yield* backend.fresh
        const firstAttempt = yield* Deferred.make<void>()
        const release = yield* Deferred.make<void>()
        const flaky = handler("flaky", ({ job }) =>
          job.attempts === 1
            ? // The first attempt waits until the test follows the job, so that no event is missed.
              Deferred.succeed(firstAttempt, undefined).pipe(
                Effect.zipRight(Deferred.await(release)),
                Effect.zipRight(Effect.fail(`attempt ${job.attempts} failed`))
              )
            : job.attempts < 3
              ? Effect.fail(`attempt ${job.attempts} failed`)
              : Effect.succeed({ attempt: job.attempts })
        )
        // Delays: 40 × [0.8, 1.2] = 32 to 48 ms, then 80 × [0.8, 1.2] capped at 60 = exactly 60 ms.
        const queue = yield* buildQueue(backend.store(location), [flaky], { retryBaseMs: 40, retryMaxMs: 60 })
        const job = yield* queue.submit("flaky", {}, { maxAttempts: 3 })
        yield* Deferred.await(firstAttempt).pipe(within(10_000, "the first attempt"))

        // `watch` subscribes before it reads the job: once its first event is in, every later change will be seen.
        const events: Array<JobEvent> = []
        const subscribed = yield* Deferred.make<void>()
        const follower = yield* Effect.fork(
          Stream.runForEach(queue.watch(job.id), (event) =>
            Effect.zipRight(
              Effect.sync(() => events.push(event)),
              Deferred.succeed(subscribed, undefined)
            )
          )
        )
        yield* Deferred.await(subscribed).pipe(within(10_000, "the watch to start"))
        yield* Deferred.succeed(release, undefined)
        yield* Fiber.join(follower).pipe(within(10_000, "the job's final event"))

        const done = yield* queue.get(job.id)
        expect(done).toMatchObject({
          status: "completed",
          attempts: 3,
          result: { attempt: 3 },
          error: null,
          lastError: "attempt 2 failed"
        })
        expect(events.map((event) => [event.kind, event.job.status, event.job.attempts])).toEqual([
          ["progress", "running", 1],
          ["retrying", "pending", 1],
          ["started", "running", 2],
          ["retrying", "pending", 2],
          ["started", "running", 3],
          ["completed", "completed", 3]
        ])
        const [, retry1, start2, retry2, start3, completed] = events.map((event) => event.job)
        // A retry is stamped when the attempt failed (updatedAt) and is due after the backoff (runAt).
        const delay1 = ms(retry1!.runAt) - ms(retry1!.updatedAt)
        expect(delay1).toBeGreaterThanOrEqual(32)
        expect(delay1).toBeLessThanOrEqual(48)
        expect(ms(retry2!.runAt) - ms(retry2!.updatedAt)).toBe(60)
        expect([retry1!.lastError, retry2!.lastError]).toEqual(["attempt 1 failed", "attempt 2 failed"])
        // No attempt starts before its retry is due.
        expect(ms(start2!.startedAt)).toBeGreaterThanOrEqual(ms(retry1!.runAt))
        expect(ms(start3!.startedAt)).toBeGreaterThanOrEqual(ms(retry2!.runAt))
        expect(completed).toEqual(done)
      })
    )

    it.scopedLive("a delayed job waits for its runAt without holding the only slot", () =>
      Effect.gen(function* () {
        const location = yield* backend.fresh
        const runs: Array<Run> = []
        // A poll interval far beyond the test: the delayed job must be started by the queue's own timer.
        const queue = yield* buildQueue(backend.store(location), [recorder("rec", runs)], {
          maxConcurrent: 1,
          pollIntervalMs: 60_000
        })
        const delayed = yield* queue.submit("rec", {}, { delayMs: 2_000, priority: 10 })
        expect(ms(delayed.runAt) - ms(delayed.createdAt)).toBe(2_000)
        const immediate = yield* queue.submit("rec")
        const first = yield* queue.await(immediate.id).pipe(within(10_000, "the immediate job"))
        expect(first.status).toBe("completed")
        expect(ms(first.finishedAt)).toBeLessThan(ms(delayed.runAt))
        expect((yield* queue.get(delayed.id)).status).toBe("pending")

        const done = yield* queue.await(delayed.id).pipe(within(10_000, "the delayed job"))
        expect(done).toMatchObject({ status: "completed", attempts: 1 })
        expect(ms(done.startedAt)).toBeGreaterThanOrEqual(ms(delayed.runAt))
        // Started by the timer, not by a poll a minute later.
        expect(ms(done.startedAt) - ms(delayed.runAt)).toBeLessThan(5_000)
        expect(runs.map((run) => run.id)).toEqual([immediate.id, delayed.id])
        expect(runs[1]!.at).toBeGreaterThanOrEqual(ms(delayed.runAt))
      })
    )

    it.scopedLive("concurrent submissions with one idempotency key create one job", () =>
      Effect.gen(function* () {
        const location = yield* backend.fresh
        const runs: Array<Run> = []
        const queue = yield* buildQueue(backend.store(location), [recorder("rec", runs)])
        const offers = yield* Effect.all(
          Array.from({ length: 12 }, (_, i) =>
            queue.offer({ type: "rec", metadata: { i }, options: { idempotencyKey: "once" } })
          ),
          { concurrency: "unbounded" }
        )
        expect(offers.filter((offer) => offer.created)).toHaveLength(1)
        const id = offers.find((offer) => offer.created)!.job.id
        expect(new Set(offers.map((offer) => offer.job.id))).toEqual(new Set([id]))
        yield* awaitAll(queue, [id])
        // A later submission with the key gets the finished job back.
        const again = yield* queue.offer({ type: "rec", options: { idempotencyKey: "once" } })
        expect(again).toMatchObject({ created: false, job: { id, status: "completed" } })
        expect((yield* queue.list()).items.map((job) => job.id)).toEqual([id])
        expect(runs.map((run) => run.id)).toEqual([id])
      })
    )

    it.scopedLive("a cancelled pending job never runs, and the queue goes on", () =>
      Effect.gen(function* () {
        const location = yield* backend.fresh
        const held = yield* makeHeld
        const runs: Array<Run> = []
        const queue = yield* buildQueue(
          backend.store(location),
          [holding("hold", held), recorder("rec", runs)],
          {
            maxConcurrent: 1
          }
        )
        const holder = yield* queue.submit("hold")
        yield* Deferred.await(held.started).pipe(within(10_000, "the holder to start"))
        const doomed = yield* queue.submit("rec")
        const cancelled = yield* queue.cancel(doomed.id)
        expect(cancelled).toMatchObject({ id: doomed.id, status: "cancelled", attempts: 0, error: null })
        expect(cancelled.finishedAt).not.toBeNull()
        const after = yield* queue.submit("rec")
        yield* Deferred.succeed(held.open, undefined)
        yield* awaitAll(queue, [holder.id, after.id])
        expect(runs.map((run) => run.id)).toEqual([after.id])
        expect(yield* queue.get(doomed.id)).toEqual(cancelled)
        expect(yield* queue.await(doomed.id)).toEqual(cancelled)
        const refused = yield* Effect.flip(queue.cancel(doomed.id))
        expect(refused._tag).toBe("JobNotCancellable")
      })
    )

    it.scopedLive(
      "cancelling a running job interrupts its handler: the finalizer has run when cancel returns",
      () =>
        Effect.gen(function* () {
          const location = yield* backend.fresh
          const held = yield* makeHeld
          const runs: Array<Run> = []
          const queue = yield* buildQueue(
            backend.store(location),
            [holding("hold", held), recorder("rec", runs)],
            {
              maxConcurrent: 1
            }
          )
          const job = yield* queue.submit("hold")
          yield* Deferred.await(held.started).pipe(within(10_000, "the handler to start"))
          const cancelled = yield* queue.cancel(job.id)
          expect(cancelled).toMatchObject({
            id: job.id,
            status: "cancelled",
            attempts: 1,
            error: null,
            result: null
          })
          expect(yield* Deferred.isDone(held.interrupted)).toBe(true)
          // The end of the interrupted attempt records nothing over the cancellation.
          expect(yield* queue.await(job.id)).toEqual(cancelled)
          // The only slot is free again.
          const next = yield* queue.submit("rec")
          expect((yield* awaitAll(queue, [next.id]))[0]!.status).toBe("completed")
          expect(yield* queue.get(job.id)).toEqual(cancelled)
        })
    )

    if (!backend.durable) return

    it.scopedLive(
      "a graceful restart loses nothing: the running job is handed back, pending ones stay pending, a new queue runs them all",
      () =>
        Effect.gen(function* () {
          const location = yield* backend.fresh
          const runs: Array<Run> = []
          const held = yield* makeHeld

          // The first queue: the holder takes the only slot and never finishes on its own.
          const first = yield* closeableScope
          const queue1 = yield* buildQueue(
            backend.store(location),
            [holding("hold", held), recorder("rec", runs, "first")],
            { maxConcurrent: 1, shutdownGraceMs: 50 }
          ).pipe(Scope.extend(first))
          const holder = yield* queue1.submit("hold")
          yield* Deferred.await(held.started).pipe(within(10_000, "the holder to start"))
          const waiting = yield* queue1.submitMany([
            ...Array.from({ length: 5 }, (_, i) => ({ type: "rec", metadata: { i } })),
            { type: "rec", options: { priority: 5 } },
            { type: "rec", options: { delayMs: 300 } },
            { type: "rec", options: { maxAttempts: 3, idempotencyKey: "kept" } }
          ])

          // Stop it as a deploy would: the grace period runs out, the holder is interrupted.
          yield* Scope.close(first, Exit.void)
          expect(yield* Deferred.isDone(held.interrupted)).toBe(true)

          // What the store holds now, read through a new connection.
          const store = yield* openStore(backend.store(location))
          const handedBack = Option.getOrThrow(yield* store.get(holder.id))
          expect(handedBack).toMatchObject({
            status: "pending",
            stage: "queued",
            progress: 0,
            attempts: 1,
            error: null,
            lastError: null,
            finishedAt: null
          })
          for (const job of waiting) expect(yield* store.get(job.id)).toEqual(Option.some(job))
          expect(yield* store.pendingCount).toBe(waiting.length + 1)
          expect(runs).toEqual([])

          // A second queue on the same database runs every job; the idempotency key is still held.
          const queue2 = yield* buildQueue(
            backend.store(location),
            [handler("hold", () => Effect.succeed({ held: false })), recorder("rec", runs, "second")],
            { maxConcurrent: 2 }
          )
          const done = yield* awaitAll(queue2, [holder.id, ...waiting.map((job) => job.id)])
          expect(done.map((job) => job.status)).toEqual(done.map(() => "completed"))
          expect(done[0]).toMatchObject({ attempts: 2, result: { held: false }, lastError: null })
          for (const job of done.slice(1)) expect(job.attempts).toBe(1)
          const delayed = done[7]!
          expect(ms(delayed.startedAt)).toBeGreaterThanOrEqual(ms(waiting[6]!.runAt))
          expect(runs.map((run) => run.node)).toEqual(waiting.map(() => "second"))
          expect(runs.map((run) => run.id).sort()).toEqual(waiting.map((job) => job.id).sort())
          const key = yield* queue2.offer({ type: "rec", options: { idempotencyKey: "kept" } })
          expect(key).toMatchObject({ created: false, job: { id: waiting[7]!.id } })
        })
    )

    it.scopedLive(
      "a claim still on its way when the queue shuts down is handed back too: nothing is left running",
      () =>
        Effect.gen(function* () {
          const location = yield* backend.fresh
          const runs: Array<Run> = []
          const store = yield* openStore(backend.store(location))
          // A claim that takes jobs is done in the database at once; its answer takes 300 ms to come back.
          const committed = yield* Deferred.make<void>()
          const slow: JobStoreService = {
            ...store,
            claim: (options) =>
              Effect.flatMap(store.claim(options), (jobs) =>
                jobs.length === 0
                  ? Effect.succeed(jobs)
                  : Deferred.succeed(committed, undefined).pipe(
                      Effect.zipRight(Effect.sleep(Duration.millis(300))),
                      Effect.as(jobs)
                    )
              )
          }
          const first = yield* closeableScope
          const queue1 = yield* buildQueue(Layer.succeed(JobStore, slow), [
            recorder("rec", runs, "first")
          ]).pipe(Scope.extend(first))
          const job = yield* queue1.submit("rec", {}, { maxAttempts: 1 })
          yield* Deferred.await(committed).pipe(within(10_000, "the claim"))
          // Stopped while the answer is on its way: the job must not stay running under a lease nobody renews.
          yield* Scope.close(first, Exit.void)
          const after = Option.getOrThrow(yield* store.get(job.id))
          expect(after).toMatchObject({ status: "pending", lastError: null })
          expect(runs).toEqual([])

          const queue2 = yield* buildQueue(Layer.succeed(JobStore, store), [recorder("rec", runs, "second")])
          const [done] = yield* awaitAll(queue2, [job.id])
          expect(done).toMatchObject({ status: "completed", lastError: null })
          expect(runs.map((run) => [run.id, run.node])).toEqual([[job.id, "second"]])
        })
    )

    it.scopedLive(
      "a job whose owner died is taken back when its lease runs out and completes; a second stall fails it",
      () =>
        Effect.gen(function* () {
          const location = yield* backend.fresh
          const runs: Array<Run> = []
          const store = yield* openStore(backend.store(location))
          const t = Date.now()
          const at = (offset: number) => new Date(t + offset)
          // Claimed by a node that died: its lease ended in the past and no heartbeat will extend it.
          const stalled = pendingJob("rec", { maxAttempts: 1, at: at(-1_000) })
          // Already stalled once, beyond its single attempt: a second stall fails it.
          const doomed = pendingJob("rec", { maxAttempts: 1, at: at(-1_000) })
          yield* store.insert([doomed], 100)
          expect(
            (yield* store.claim({ limit: 1, now: at(-900), owner: "dead", leaseUntil: at(-800) })).length
          ).toBe(1)
          expect((yield* store.recoverExpired(at(-700))).map((job) => job.status)).toEqual(["pending"])
          yield* store.insert([stalled], 100)
          const claimed = yield* store.claim({ limit: 2, now: at(-600), owner: "dead", leaseUntil: at(-500) })
          expect(claimed.map((job) => [job.id, job.attempts])).toEqual([
            [doomed.id, 2],
            [stalled.id, 1]
          ])

          const queue = yield* buildQueue(Layer.succeed(JobStore, store), [recorder("rec", runs)])
          const [recovered, failed] = yield* awaitAll(queue, [stalled.id, doomed.id])
          expect(recovered).toMatchObject({
            status: "completed",
            attempts: 2,
            lastError: leaseExpiredError,
            error: null,
            result: { attempt: 2 }
          })
          expect(failed).toMatchObject({
            status: "failed",
            attempts: 2,
            error: leaseExpiredError,
            lastError: leaseExpiredError
          })
          expect(ms(failed!.finishedAt)).toBeGreaterThanOrEqual(t)
          // Only the recovered job ran, once, here.
          expect(runs.map((run) => [run.id, run.attempt])).toEqual([[stalled.id, 2]])
        })
    )

    it.scopedLive(
      "a job that runs longer than its lease keeps it: heartbeats extend it, and it runs once",
      () =>
        Effect.gen(function* () {
          const location = yield* backend.fresh
          const runs: Array<Run> = []
          // Leases of 600 ms (a heartbeat every 200 ms, a recovery sweep every 300 ms); the work takes three leases.
          const queue = yield* buildQueue(
            backend.store(location),
            [recorder("slow", runs, "a", Effect.sleep(Duration.millis(1_800)))],
            { leaseMs: 600 }
          )
          const job = yield* queue.submit("slow", {}, { maxAttempts: 3 })
          const done = yield* queue.await(job.id).pipe(within(10_000, "the slow job"))
          expect(done).toMatchObject({
            status: "completed",
            attempts: 1,
            lastError: null,
            result: { attempt: 1 }
          })
          expect(ms(done.finishedAt) - ms(done.startedAt)).toBeGreaterThanOrEqual(1_800)
          expect(runs.map((run) => run.id)).toEqual([job.id])
        })
    )

    if (!backend.multiNode) return

    for (const signals of [true, false]) {
      it.scopedLive(
        signals
          ? "a job running on node A and cancelled through node B stops on A at once (B's signal)"
          : "a job running on node A and cancelled through node B stops on A within a second (A's heartbeat, no signals)",
        () =>
          Effect.gen(function* () {
            const location = yield* backend.fresh
            const held = yield* makeHeld
            const runs: Array<Run> = []
            // With signals, leases of 30 s (a heartbeat every second): the notification must do it, at once.
            // Without, leases of 600 ms: A's heartbeat, which finds the job cancelled, comes every 200 ms.
            const a = yield* buildQueue(
              signals ? backend.store(location) : withoutSignals(backend.store(location)),
              [holding("hold", held), recorder("rec", runs)],
              { maxConcurrent: 1, leaseMs: signals ? 30_000 : 600 }
            )
            // B registers no handler, so it claims nothing: the job can only run on A.
            const b = yield* buildQueue(backend.store(location), [])
            const job = yield* a.submit("hold")
            yield* Deferred.await(held.started).pipe(within(10_000, "the handler to start on A"))

            const requestedAt = yield* Clock.currentTimeMillis
            const cancelled = yield* b.cancel(job.id)
            expect(cancelled).toMatchObject({ id: job.id, status: "cancelled", attempts: 1, error: null })
            const interruptedAt = yield* Deferred.await(held.interrupted).pipe(
              within(5_000, "A's handler to be interrupted")
            )
            expect(interruptedAt - requestedAt).toBeLessThan(signals ? 500 : 1_000)

            // A records nothing over the cancellation, and its slot is free again.
            expect(yield* a.await(job.id).pipe(within(5_000, "A to see the cancellation"))).toEqual(cancelled)
            const next = yield* a.submit("rec")
            yield* awaitAll(a, [next.id])
            expect(yield* b.get(job.id)).toEqual(cancelled)
            expect(runs.map((run) => run.id)).toEqual([next.id])
          })
      )
    }

    it.scopedLive("a subscriber on node B sees the events of jobs that run on node A (A's signals)", () =>
      Effect.gen(function* () {
        const location = yield* backend.fresh
        const runs: Array<Run> = []
        const a = yield* buildQueue(backend.store(location), [recorder("rec", runs)])
        // B registers no handler, so it claims nothing: every job runs on A.
        const b = yield* buildQueue(backend.store(location), [])
        const seen = yield* Deferred.make<JobEvent>()
        const submitted = new Set<string>()
        yield* Effect.forkScoped(
          Stream.runForEach(b.events(), (event) =>
            event.kind === "completed" && submitted.has(event.job.id)
              ? Deferred.succeed(seen, event)
              : Effect.void
          )
        )
        // A relays to the nodes it has heard from: B is known a moment after it starts, so jobs are submitted until
        // one's completion reaches B's subscriber.
        const event = yield* Effect.gen(function* () {
          const job = yield* a.submit("rec")
          submitted.add(job.id)
          yield* awaitAll(a, [job.id])
          return yield* Deferred.await(seen).pipe(Effect.timeout("200 millis"))
        }).pipe(Effect.retry({ times: 50 }), within(30_000, "B's subscriber to see a job of A complete"))
        expect(event.kind).toBe("completed")
        expect(event.job.status).toBe("completed")
        expect(runs.map((run) => run.id)).toContain(event.job.id)
      })
    )

    it.scopedLive(
      "nodes starting together on an empty database all start (their migrations take turns), and share the work",
      () =>
        Effect.gen(function* () {
          const location = yield* backend.fresh
          const runs: Array<Run> = []
          const nodes = yield* Effect.all(
            Array.from({ length: 6 }, (_, i) =>
              buildQueue(backend.store(location), [recorder("rec", runs, `n${i}`)])
            ),
            { concurrency: "unbounded" }
          )
          const jobs = yield* nodes[0]!.submitMany(Array.from({ length: 12 }, () => ({ type: "rec" })))
          const done = yield* awaitAll(nodes[5]!, ids(jobs))
          expect(done.map((job) => job.status)).toEqual(jobs.map(() => "completed"))
          expect(runs.map((run) => run.id).sort()).toEqual(ids(jobs).sort())
        })
    )

    it.scopedLive("two nodes racing one idempotency key create one job", () =>
      Effect.gen(function* () {
        const location = yield* backend.fresh
        const runs: Array<Run> = []
        const a = yield* buildQueue(backend.store(location), [recorder("rec", runs, "a")])
        const b = yield* buildQueue(backend.store(location), [recorder("rec", runs, "b")])
        const offers = yield* Effect.all(
          Array.from({ length: 16 }, (_, i) =>
            (i % 2 === 0 ? a : b).offer({ type: "rec", options: { idempotencyKey: "shared" } })
          ),
          { concurrency: "unbounded" }
        )
        expect(offers.filter((offer) => offer.created)).toHaveLength(1)
        const id = offers.find((offer) => offer.created)!.job.id
        expect(new Set(offers.map((offer) => offer.job.id))).toEqual(new Set([id]))
        yield* awaitAll(a, [id])
        yield* awaitAll(b, [id])
        expect(runs.map((run) => run.id)).toEqual([id])
      })
    )

    it.scopedLive("two nodes share one database: every job runs exactly once", () =>
      Effect.gen(function* () {
        const location = yield* backend.fresh
        const runs: Array<Run> = []
        const work = Effect.sleep(Duration.millis(2))
        const a = yield* buildQueue(backend.store(location), [recorder("rec", runs, "a", work)], {
          maxConcurrent: 3
        })
        const b = yield* buildQueue(backend.store(location), [recorder("rec", runs, "b", work)], {
          maxConcurrent: 3
        })
        const jobs = yield* a.submitMany(
          Array.from({ length: 150 }, (_, i) => ({ type: "rec", metadata: { i } }))
        )
        const done = yield* awaitAll(b, ids(jobs), 20_000)
        expect(done.map((job) => [job.status, job.attempts])).toEqual(jobs.map(() => ["completed", 1]))
        expect(runs.map((run) => run.id).sort()).toEqual(ids(jobs).sort())
      })
    )
  })
}

const ids = (jobs: ReadonlyArray<Job>): Array<JobId> => jobs.map((job) => job.id)

suite(memory)
suite(sqlite)
describePg("JobQueue over PostgreSQL (a database for this file)", () => {
  beforeAll(() => database.create())
  afterAll(() => database.drop())
  suite(postgres)
})
