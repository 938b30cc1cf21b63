/**
 * The contract of the `JobStore` port, run against every adapter (as Effect's SQL packages and River's driver tests
 * share one suite across drivers). Each test builds the layer afresh, so each starts from an empty store.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, FastCheck as fc, type Layer, Option } from "effect"
import { Job, type JobId, type JobStatus, JobStatuses, makeJobId } from "../../src/domain/Job.js"
import { cursorAfter, type JobQuery } from "../../src/domain/JobPage.js"
import {
  applyProgress,
  applyTransition,
  type ClaimOptions,
  JobStore,
  type JobStoreService,
  leaseExpiredError,
  type Transition
} from "../../src/JobStore.js"

/** A fixed instant with a millisecond part, so round trips that drop milliseconds show. */
const base = 1_700_000_000_123

/** The instant `ms` milliseconds after the base. */
export const at = (ms: number): Date => new Date(base + ms)

type JobFields = ConstructorParameters<typeof Job>[0]

/** A pending job due at the base instant, with any field overridden (validated, so test data is well formed). */
export const makeJob = (fields: Partial<JobFields> = {}): Job =>
  new Job({
    id: makeJobId(),
    type: "a",
    status: "pending",
    stage: "queued",
    progress: 0,
    message: null,
    metadata: {},
    result: null,
    error: null,
    lastError: null,
    priority: 0,
    attempts: 0,
    maxAttempts: 3,
    timeoutMs: null,
    idempotencyKey: null,
    runAt: at(0),
    createdAt: at(0),
    startedAt: null,
    finishedAt: null,
    updatedAt: at(0),
    ...fields
  })

const noLimit = 1_000_000

const insertAll = (store: JobStoreService, jobs: ReadonlyArray<Job>): Effect.Effect<ReadonlyArray<Job>> =>
  Effect.orDie(Effect.map(store.insert(jobs, noLimit), (results) => results.map((result) => result.job)))

const moved = (transition: Transition): Job => {
  if (transition._tag !== "Moved") throw new Error(`expected a move, got ${transition._tag}`)
  return transition.job
}

const getJob = (store: JobStoreService, id: JobId): Effect.Effect<Job> =>
  Effect.map(store.get(id), (job) => Option.getOrThrowWith(job, () => new Error(`no job ${id}`)))

const claimOptions = (fields: Partial<ClaimOptions> = {}): ClaimOptions => ({
  limit: 100,
  now: at(10),
  owner: "node-a",
  leaseUntil: at(1_000),
  ...fields
})

const ids = (jobs: ReadonlyArray<Job>): Array<JobId> => jobs.map((job) => job.id)
const sortedIds = (jobs: ReadonlyArray<Job>): Array<JobId> => ids(jobs).sort()
const byId = (jobs: ReadonlyArray<Job>): Array<Job> => [...jobs].sort((a, b) => (a.id < b.id ? -1 : 1))

/** The list order, written out here rather than taken from the store: newest first, ties by id descending. */
const newestFirst = (jobs: ReadonlyArray<Job>): Array<Job> =>
  [...jobs].sort(
    (a, b) => b.createdAt.getTime() - a.createdAt.getTime() || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0)
  )

const matches = (query: JobQuery) => (job: Job) =>
  (query.status === undefined || query.status.length === 0 || query.status.includes(job.status)) &&
  (query.type === undefined || query.type.length === 0 || query.type.includes(job.type))

/** Walks every page of a query; returns the jobs in order and the page sizes. */
const listAll = (store: JobStoreService, query: JobQuery) =>
  Effect.gen(function* () {
    const items: Array<Job> = []
    const sizes: Array<number> = []
    let cursor: string | undefined
    for (let page = 0; page < 1_000; page++) {
      const result = yield* store.list({ ...query, cursor })
      items.push(...result.items)
      sizes.push(result.items.length)
      if (result.nextCursor === null) return { items, sizes }
      cursor = result.nextCursor
    }
    throw new Error("list did not end")
  })

/** A job moved to running by the engine's path (`transition`), so it holds no lease. */
const started = (store: JobStoreService, job: Job, now: Date) =>
  Effect.map(store.transition(job.id, "running", {}, now), moved)

/** A job taken through running to a final status at `now`. */
const finish = (store: JobStoreService, job: Job, to: "completed" | "failed" | "cancelled", now: Date) =>
  Effect.zipRight(started(store, job, now), Effect.map(store.transition(job.id, to, {}, now), moved))

/**
 * Registers the port's contract tests for the adapter that `layer` builds. The layer is built once per test (an
 * adapter that keeps records outside the process must make each build a fresh, empty store).
 */
export const suite = <E>(name: string, layer: Layer.Layer<JobStore, E>): void => {
  describe(name, () => {
    const test = (title: string, body: (store: JobStoreService) => Effect.Effect<void, unknown>) =>
      it.live(title, () => Effect.flatMap(JobStore, body).pipe(Effect.provide(layer)))

    // --- insert and get -------------------------------------------------------------------------------------

    test("insert then get round-trips every field exactly", (store) =>
      Effect.gen(function* () {
        const jobs = [
          makeJob({
            type: "transcription",
            status: "running",
            stage: "transcribing",
            progress: 42.5,
            message: "héllo ✓ 日本",
            metadata: {
              url: "https://example.com/a?b=c",
              n: 1.5,
              big: 2 ** 53 - 1,
              nested: { a: [1, "two", null, true] },
              "": ""
            },
            result: { ok: true, list: [0.1, -3, "x"] },
            error: "boom",
            lastError: "previous",
            priority: -7,
            attempts: 2,
            maxAttempts: 5,
            timeoutMs: 3_000_000_000,
            idempotencyKey: "key-1",
            runAt: at(1),
            createdAt: at(2),
            startedAt: at(3),
            finishedAt: at(4),
            updatedAt: at(5)
          }),
          makeJob({
            status: "completed",
            progress: 100,
            result: "done",
            createdAt: new Date(0),
            finishedAt: new Date(999)
          }),
          makeJob({
            result: 0.1,
            metadata: { empty: {}, list: [] },
            runAt: new Date(Date.UTC(2999, 11, 31, 23, 59, 59, 999))
          }),
          makeJob({ result: [], priority: 2 ** 40, createdAt: at(-1) }),
          makeJob({ result: false, message: "" })
        ]
        const inserted = yield* store.insert(jobs, noLimit)
        expect(inserted.map((result) => result.created)).toEqual(jobs.map(() => true))
        expect(inserted.map((result) => result.job)).toEqual(jobs)
        for (const job of jobs) expect(yield* getJob(store, job.id)).toEqual(job)
        expect((yield* store.list({})).items).toEqual(newestFirst(jobs))
      }))

    test("get finds nothing for an unknown id", (store) =>
      Effect.gen(function* () {
        yield* insertAll(store, [makeJob()])
        expect(Option.isNone(yield* store.get(makeJobId()))).toBe(true)
      }))

    test("insert returns the holder of an idempotency key instead of storing a second job", (store) =>
      Effect.gen(function* () {
        const first = makeJob({ idempotencyKey: "k" })
        expect(yield* store.insert([first], noLimit)).toEqual([{ job: first, created: true }])
        const again = makeJob({ idempotencyKey: "k", type: "b" })
        expect(yield* store.insert([again], noLimit)).toEqual([{ job: first, created: false }])
        expect(Option.isNone(yield* store.get(again.id))).toBe(true)

        // Within one batch the first job with a key holds it; jobs without a key never collide.
        const batch = [
          makeJob({ idempotencyKey: "k2" }),
          makeJob({ idempotencyKey: "k2" }),
          makeJob(),
          makeJob()
        ]
        const results = yield* store.insert(batch, noLimit)
        expect(results.map((result) => result.created)).toEqual([true, false, true, true])
        expect(results[1]!.job).toEqual(batch[0])
        expect(yield* store.pendingCount).toBe(4)
      }))

    test("concurrent inserts with one idempotency key store one job; the others get it back", (store) =>
      Effect.gen(function* () {
        const contenders = Array.from({ length: 12 }, (_, i) =>
          makeJob({ idempotencyKey: "race", priority: i })
        )
        const results = yield* Effect.all(
          contenders.map((job) => store.insert([job], noLimit)),
          { concurrency: "unbounded" }
        )
        const winners = results.filter(([result]) => result!.created)
        expect(winners).toHaveLength(1)
        const winner = winners[0]![0]!.job
        for (const [result] of results) expect(result!.job).toEqual(winner)
        expect(yield* store.pendingCount).toBe(1)
        expect((yield* store.list({})).items).toEqual([winner])
      }))

    test("insert is all or nothing, and fails with QueueFull past maxPending", (store) =>
      Effect.gen(function* () {
        yield* store.insert([makeJob(), makeJob({ idempotencyKey: "held" })], 3)
        const refused = [makeJob(), makeJob()]
        const error = yield* Effect.flip(store.insert(refused, 3))
        expect(error._tag).toBe("QueueFull")
        expect(error.maxPending).toBe(3)
        for (const job of refused) expect(Option.isNone(yield* store.get(job.id))).toBe(true)
        expect(yield* store.pendingCount).toBe(2)

        yield* store.insert([makeJob()], 3)
        expect(yield* store.pendingCount).toBe(3)
        // At the limit, jobs that add nothing pending still go in: a finished job, a key already held.
        const done = makeJob({ status: "completed", finishedAt: at(1) })
        const results = yield* store.insert([done, makeJob({ idempotencyKey: "held" })], 3)
        expect(results.map((result) => result.created)).toEqual([true, false])
        // A batch with one pending job too many stores none of its jobs, not even the key-holding ones.
        const mixed = [
          makeJob({ idempotencyKey: "fresh" }),
          makeJob({ status: "cancelled", finishedAt: at(1) })
        ]
        expect((yield* Effect.flip(store.insert(mixed, 3)))._tag).toBe("QueueFull")
        for (const job of mixed) expect(Option.isNone(yield* store.get(job.id))).toBe(true)
        expect(yield* store.pendingCount).toBe(3)
        expect(yield* store.insert([], 3)).toEqual([])
      }))

    test("concurrent inserts together never pass maxPending", (store) =>
      Effect.gen(function* () {
        const exits = yield* Effect.all(
          Array.from({ length: 16 }, () => Effect.exit(store.insert([makeJob()], 5))),
          { concurrency: "unbounded" }
        )
        expect(exits.filter((exit) => exit._tag === "Success")).toHaveLength(5)
        expect(yield* store.pendingCount).toBe(5)
      }))

    // --- list ----------------------------------------------------------------------------------------------

    test("list: newest first, ties by id; filters OR within one, AND across both", (store) =>
      Effect.gen(function* () {
        const jobs = [
          makeJob({ type: "a", createdAt: at(1) }),
          makeJob({ type: "b", createdAt: at(1) }),
          makeJob({ type: "a", createdAt: at(1), status: "completed", finishedAt: at(2) }),
          makeJob({ type: "c", createdAt: at(3), status: "running", startedAt: at(3) }),
          makeJob({ type: "b", createdAt: at(0), status: "failed", finishedAt: at(2) }),
          makeJob({ type: "a", createdAt: at(5), status: "cancelled", finishedAt: at(6) })
        ]
        yield* insertAll(store, jobs)
        const queries: ReadonlyArray<JobQuery> = [
          {},
          { status: ["pending"] },
          { status: ["pending", "completed"] },
          { type: ["a"] },
          { type: ["a", "c"] },
          { status: ["pending", "running"], type: ["a", "c"] },
          { status: ["failed"], type: ["a"] },
          { status: [], type: [] }
        ]
        for (const query of queries) {
          expect(ids((yield* store.list(query)).items)).toEqual(ids(newestFirst(jobs.filter(matches(query)))))
        }
        // Page sizes are clamped to at least one.
        const one = yield* store.list({ limit: 0 })
        expect(one.items).toHaveLength(1)
        expect(one.nextCursor).toBe(cursorAfter(one.items[0]!))
      }))

    test("list: walking the pages yields the filtered order exactly once (property)", (store) =>
      Effect.gen(function* () {
        const types = ["a", "b", "c"]
        const shapes = fc.sample(
          fc.record({
            createdAt: fc.integer({ min: 0, max: 8 }),
            status: fc.constantFrom(...JobStatuses),
            type: fc.constantFrom(...types)
          }),
          { seed: 20_240_601, numRuns: 90 }
        )
        const jobs = shapes.map(({ createdAt, status, type }) =>
          makeJob({ createdAt: at(createdAt), status, type })
        )
        yield* insertAll(store, jobs)
        const queries = fc.sample(
          fc.record({
            status: fc.subarray([...JobStatuses]),
            type: fc.subarray(types),
            limit: fc.integer({ min: 1, max: 40 })
          }),
          { seed: 7, numRuns: 40 }
        )
        for (const query of queries) {
          const expected = ids(newestFirst(jobs.filter(matches(query))))
          const { items, sizes } = yield* listAll(store, query)
          expect(ids(items)).toEqual(expected)
          // Every page but the last is full, and no page is empty unless the whole result is.
          for (const size of sizes.slice(0, -1)) expect(size).toBe(query.limit)
          if (expected.length > 0) expect(sizes[sizes.length - 1]).toBeGreaterThan(0)
        }
      }))

    test("list: a cursor is a position, even of a job that is gone; a malformed one fails with InvalidCursor", (store) =>
      Effect.gen(function* () {
        const jobs = [0, 1, 2, 3].map((ms) => makeJob({ createdAt: at(ms) }))
        yield* insertAll(store, jobs)
        const ghost = makeJob({ createdAt: at(2) })
        const after = (yield* store.list({ cursor: cursorAfter(ghost) })).items
        const position = ghost.createdAt.getTime()
        const expected = newestFirst(jobs).filter(
          (job) =>
            job.createdAt.getTime() < position || (job.createdAt.getTime() === position && job.id < ghost.id)
        )
        expect(ids(after)).toEqual(ids(expected))
        for (const cursor of [
          "nope",
          "123_not-a-uuid",
          `1e3_${ghost.id}`,
          `_${ghost.id}`,
          `-5_${ghost.id}`
        ]) {
          const error = yield* Effect.flip(store.list({ cursor }))
          expect(error._tag).toBe("InvalidCursor")
          expect(error.cursor).toBe(cursor)
        }
      }))

    // --- transition and progress ---------------------------------------------------------------------------

    test("transition: each legal move has applyTransition's effects and reports where it moved from", (store) =>
      Effect.gen(function* () {
        const [a, b, c, d] = yield* insertAll(store, [makeJob(), makeJob(), makeJob(), makeJob()])
        const step = (
          job: Job,
          to: JobStatus,
          detail: Parameters<JobStoreService["transition"]>[2],
          now: Date
        ) =>
          Effect.gen(function* () {
            const before = yield* getJob(store, job.id)
            const transition = yield* store.transition(job.id, to, detail, now)
            const expected = applyTransition(before, to, detail, now)
            expect(transition).toEqual({ _tag: "Moved", from: before.status, job: expected })
            expect(yield* getJob(store, job.id)).toEqual(expected)
            return expected
          })
        yield* step(a!, "running", {}, at(1))
        yield* store.progress(a!.id, { stage: "downloading", progress: 30, message: "half" }, at(2))
        const retried = yield* step(a!, "pending", { error: "flaky", runAt: at(500) }, at(3))
        expect(retried).toMatchObject({ stage: "queued", progress: 0, message: null, lastError: "flaky" })
        const again = yield* step(a!, "running", {}, at(501))
        expect(again.attempts).toBe(2)
        const done = yield* step(a!, "completed", { result: { words: 12 } }, at(502))
        expect(done).toMatchObject({ progress: 100, result: { words: 12 }, finishedAt: at(502) })

        yield* step(b!, "cancelled", { error: "not needed" }, at(4))
        yield* step(c!, "running", {}, at(5))
        const cancelled = yield* step(c!, "cancelled", { error: null }, at(6))
        expect(cancelled.attempts).toBe(1)
        yield* step(d!, "running", {}, at(7))
        const failed = yield* step(d!, "failed", { error: "bad input" }, at(8))
        expect(failed).toMatchObject({ error: "bad input", lastError: "bad input", finishedAt: at(8) })
      }))

    test("transition: refused moves leave the job as it is; an unknown id is NotFound", (store) =>
      Effect.gen(function* () {
        const [pending, running, completed] = yield* insertAll(store, [makeJob(), makeJob(), makeJob()])
        yield* started(store, running!, at(1))
        yield* finish(store, completed!, "completed", at(2))
        const refusals: ReadonlyArray<readonly [Job, JobStatus]> = [
          [pending!, "completed"],
          [pending!, "failed"],
          [pending!, "pending"],
          [running!, "running"],
          [completed!, "running"],
          [completed!, "pending"],
          [completed!, "cancelled"]
        ]
        for (const [job, to] of refusals) {
          const before = yield* getJob(store, job.id)
          expect(yield* store.transition(job.id, to, { error: "x", result: 1 }, at(9))).toEqual({
            _tag: "Refused",
            job: before
          })
          expect(yield* getJob(store, job.id)).toEqual(before)
        }
        expect(yield* store.transition(makeJobId(), "running", {}, at(9))).toEqual({ _tag: "NotFound" })
      }))

    test("what a handler writes may hold U+0000 (stored as U+FFFD where the database cannot hold it), and the moves written with it still land", (store) =>
      Effect.gen(function* () {
        const jobs = yield* insertAll(
          store,
          Array.from({ length: 6 }, () => makeJob())
        )
        for (const job of jobs) yield* started(store, job, at(1))
        const [withResult, withError, withMessage, ...others] = jobs
        yield* store.progress(withMessage!.id, { message: "step\u0000one" }, at(2))
        const outcomes = yield* Effect.all(
          [
            store.transition(
              withResult!.id,
              "completed",
              { result: { text: "a\u0000b", half: "x\ud800" } },
              at(5)
            ),
            store.transition(withError!.id, "failed", { error: "bad\u0000byte" }, at(5)),
            ...others.map((job) => store.transition(job.id, "completed", { result: { ok: true } }, at(5)))
          ],
          { concurrency: "unbounded" }
        )
        expect(outcomes).toHaveLength(5)
        for (const outcome of outcomes) expect(outcome._tag).toBe("Moved")
        const result = (yield* getJob(store, withResult!.id)).result as { text: string }
        expect(["a\u0000b", "a\ufffdb"]).toContain(result.text)
        expect(["bad\u0000byte", "bad\ufffdbyte"]).toContain((yield* getJob(store, withError!.id)).error)
        expect(["step\u0000one", "step\ufffdone"]).toContain((yield* getJob(store, withMessage!.id)).message)
        for (const job of others) expect((yield* getJob(store, job.id)).status).toBe("completed")
      }))

    test("concurrent transitions each get the outcome of some order of them, one at a time", (store) =>
      Effect.gen(function* () {
        const jobs = yield* insertAll(
          store,
          Array.from({ length: 12 }, () => makeJob())
        )
        for (const job of jobs.slice(0, 10)) yield* started(store, job, at(1))
        const [twice, ...others] = jobs
        const unknown = makeJobId()
        // Several moves at once, some of one job: a store that writes moves together must still apply them in turn.
        const outcomes = yield* Effect.all(
          [
            store.transition(twice!.id, "completed", { result: { n: 1 } }, at(5)),
            store.transition(twice!.id, "completed", { result: { n: 2 } }, at(6)),
            store.transition(twice!.id, "cancelled", { error: "stop" }, at(7)),
            store.transition(unknown, "completed", { result: null }, at(5)),
            ...others.map((job, i) =>
              i % 3 === 0
                ? store.transition(job.id, "failed", { error: `e${i}` }, at(5 + i))
                : i % 3 === 1
                  ? store.transition(job.id, "completed", { result: [i] }, at(5 + i))
                  : store.transition(job.id, "pending", { error: `r${i}`, runAt: at(100 + i) }, at(5 + i))
            )
          ],
          { concurrency: "unbounded" }
        )
        const onTwice = outcomes.slice(0, 3)
        expect(onTwice.filter((outcome) => outcome._tag === "Moved")).toHaveLength(1)
        expect(onTwice.filter((outcome) => outcome._tag === "Refused")).toHaveLength(2)
        const final = yield* getJob(store, twice!.id)
        for (const outcome of onTwice)
          if (outcome._tag === "Refused") expect(outcome.job).toEqual(final)
          else if (outcome._tag === "Moved") expect(outcome.job).toEqual(final)
        expect(outcomes[3]).toEqual({ _tag: "NotFound" })
        for (const [i, job] of others.entries()) {
          const outcome = outcomes[4 + i]!
          // The last two were never started: a pending job can neither fail nor complete.
          if (i >= 9) {
            expect(outcome).toEqual({ _tag: "Refused", job })
            continue
          }
          const to = i % 3 === 0 ? "failed" : i % 3 === 1 ? "completed" : "pending"
          const detail =
            i % 3 === 0
              ? { error: `e${i}` }
              : i % 3 === 1
                ? { result: [i] }
                : { error: `r${i}`, runAt: at(100 + i) }
          const after = applyTransition(applyTransition(job, "running", {}, at(1)), to, detail, at(5 + i))
          expect(outcome).toEqual({ _tag: "Moved", from: "running", job: after })
          expect(yield* getJob(store, job.id)).toEqual(after)
        }
      }))

    test("progress: recorded on running jobs only, as applyProgress does", (store) =>
      Effect.gen(function* () {
        const [pending, job, done] = yield* insertAll(store, [makeJob(), makeJob(), makeJob()])
        yield* finish(store, done!, "completed", at(1))
        expect(Option.isNone(yield* store.progress(pending!.id, { progress: 5 }, at(2)))).toBe(true)
        expect(yield* getJob(store, pending!.id)).toEqual(pending)
        expect(Option.isNone(yield* store.progress(done!.id, { progress: 5 }, at(2)))).toBe(true)
        expect(Option.isNone(yield* store.progress(makeJobId(), { progress: 5 }, at(2)))).toBe(true)

        let current = yield* started(store, job!, at(3))
        const patches = [
          { stage: "downloading", progress: 12.5, message: "fetching" },
          { progress: 60 },
          { stage: "finalizing" },
          { message: null },
          {}
        ] as const
        for (const [i, patch] of patches.entries()) {
          const expected = applyProgress(current, patch, at(10 + i))
          expect(yield* store.progress(job!.id, patch, at(10 + i))).toEqual(Option.some(expected))
          expect(yield* getJob(store, job!.id)).toEqual(expected)
          current = expected
        }
        expect(current).toMatchObject({ stage: "finalizing", progress: 60, message: null })
      }))

    test("pendingCount counts pending jobs, delayed and awaiting-retry ones included", (store) =>
      Effect.gen(function* () {
        expect(yield* store.pendingCount).toBe(0)
        const [a, b] = yield* insertAll(store, [
          makeJob(),
          makeJob(),
          makeJob({ runAt: at(1_000_000) }),
          makeJob({ status: "completed", finishedAt: at(1) })
        ])
        expect(yield* store.pendingCount).toBe(3)
        yield* started(store, a!, at(1))
        expect(yield* store.pendingCount).toBe(2)
        yield* store.transition(a!.id, "pending", { error: "retry", runAt: at(100) }, at(2))
        expect(yield* store.pendingCount).toBe(3)
        yield* store.transition(b!.id, "cancelled", {}, at(3))
        expect(yield* store.pendingCount).toBe(2)
      }))

    // --- prune ---------------------------------------------------------------------------------------------

    test("prune by count: the earliest finished go first; pending and running jobs never", (store) =>
      Effect.gen(function* () {
        const old = { createdAt: at(-1_000_000), runAt: at(-1_000_000) }
        const [f1, f2, f3, f4, running, pending] = yield* insertAll(store, [
          makeJob(old),
          makeJob(),
          makeJob(old),
          makeJob(),
          makeJob(old),
          makeJob(old)
        ])
        yield* finish(store, f1!, "completed", at(10))
        yield* finish(store, f2!, "failed", at(20))
        yield* finish(store, f3!, "cancelled", at(30))
        yield* finish(store, f4!, "completed", at(40))
        yield* started(store, running!, at(41))
        expect(yield* store.prune({ maxAgeMs: 1e12, maxCount: 2 }, at(50))).toBe(2)
        const left = yield* listAll(store, {})
        expect(sortedIds(left.items)).toEqual(sortedIds([f3!, f4!, running!, pending!]))
        expect(yield* store.prune({ maxAgeMs: 1e12, maxCount: 2 }, at(50))).toBe(0)
        expect(yield* store.prune({ maxAgeMs: 1e12, maxCount: 0 }, at(50))).toBe(2)
        expect(sortedIds((yield* listAll(store, {})).items)).toEqual(sortedIds([running!, pending!]))
      }))

    test("prune by age: finished at or before now − maxAgeMs go; pending and running jobs never", (store) =>
      Effect.gen(function* () {
        const old = { createdAt: at(-1_000_000), runAt: at(-1_000_000) }
        const [f1, f2, f3, running, pending] = yield* insertAll(store, [
          makeJob(),
          makeJob(),
          makeJob(),
          makeJob(old),
          makeJob(old)
        ])
        yield* finish(store, f1!, "completed", at(10))
        yield* finish(store, f2!, "failed", at(20))
        yield* finish(store, f3!, "cancelled", at(30))
        yield* started(store, running!, at(31))
        expect(yield* store.prune({ maxAgeMs: 100, maxCount: noLimit }, at(119))).toBe(1)
        expect(yield* store.prune({ maxAgeMs: 100, maxCount: noLimit }, at(120))).toBe(1)
        expect(sortedIds((yield* listAll(store, {})).items)).toEqual(sortedIds([f3!, running!, pending!]))
        expect(yield* store.prune({ maxAgeMs: 0, maxCount: noLimit }, at(1_000_000))).toBe(1)
        expect(sortedIds((yield* listAll(store, {})).items)).toEqual(sortedIds([running!, pending!]))
      }))

    // --- claim and leases ----------------------------------------------------------------------------------

    test("claim: highest priority first, then insert order; only due jobs, only the given types", (store) =>
      Effect.gen(function* () {
        // Creation times run against insert order, so the FIFO below is insert order, not age.
        const batch = [
          makeJob({ type: "a", priority: 0, createdAt: at(9) }),
          makeJob({ type: "a", priority: 5, createdAt: at(8) }),
          makeJob({ type: "b", priority: 0, createdAt: at(7) }),
          makeJob({ type: "b", priority: 5, createdAt: at(6) }),
          makeJob({ type: "a", priority: 10, createdAt: at(5) }),
          makeJob({ type: "a", priority: 10, runAt: at(100) }),
          makeJob({ type: "a", priority: 100, status: "completed", finishedAt: at(1) }),
          makeJob({ type: "a", priority: 100, status: "running", startedAt: at(1), attempts: 1 })
        ]
        const [a0, a5, b0, b5, a10, later] = yield* insertAll(store, batch)
        const [a1] = yield* insertAll(store, [makeJob({ type: "a", priority: 1, createdAt: at(-5) })])

        expect(yield* store.claim(claimOptions({ types: [] }))).toEqual([])
        expect(yield* store.claim(claimOptions({ limit: 0 }))).toEqual([])

        const now = at(10)
        const first = yield* store.claim(claimOptions({ limit: 3, types: ["a", "c"], now }))
        expect(first).toEqual([a10!, a5!, a1!].map((job) => applyTransition(job, "running", {}, now)))
        for (const job of first) expect(yield* getJob(store, job.id)).toEqual(job)

        const second = yield* store.claim(claimOptions({ now: at(11) }))
        expect(ids(second)).toEqual(ids([b5!, a0!, b0!]))
        expect(second.every((job) => job.status === "running" && job.attempts === 1)).toBe(true)
        expect(yield* store.claim(claimOptions({ now: at(99) }))).toEqual([])
        expect(yield* store.pendingCount).toBe(1)
        expect(ids(yield* store.claim(claimOptions({ now: at(100) })))).toEqual([later!.id])
        expect(yield* store.pendingCount).toBe(0)
      }))

    test("claim: concurrent claimers never take the same job", (store) =>
      Effect.gen(function* () {
        const jobs = Array.from({ length: 40 }, (_, i) => makeJob({ priority: i % 3 }))
        yield* insertAll(store, jobs)
        const rounds = yield* Effect.all(
          Array.from({ length: 8 }, (_, i) => store.claim(claimOptions({ limit: 7, owner: `node-${i}` }))),
          { concurrency: "unbounded" }
        )
        const taken = rounds.flatMap(ids)
        expect(new Set(taken).size).toBe(taken.length)
        for (let i = 0; i < 10 && taken.length < jobs.length; i++) {
          taken.push(...ids(yield* store.claim(claimOptions({ owner: "sweeper" }))))
        }
        expect([...taken].sort()).toEqual(sortedIds(jobs))
        for (const job of jobs)
          expect(yield* getJob(store, job.id)).toMatchObject({ status: "running", attempts: 1 })
      }))

    test("heartbeat extends only the owner's leases, on running jobs", (store) =>
      Effect.gen(function* () {
        yield* insertAll(store, [makeJob({ priority: 2 }), makeJob({ priority: 1 }), makeJob()])
        const [a1, a2] = yield* store.claim(claimOptions({ limit: 2, owner: "a", leaseUntil: at(100) }))
        const [b1] = yield* store.claim(claimOptions({ limit: 1, owner: "b", leaseUntil: at(100) }))
        const unknown = makeJobId()
        expect(yield* store.heartbeat("a", [a1!.id, unknown, b1!.id, a2!.id], at(200))).toEqual([
          a1!.id,
          a2!.id
        ])
        expect(yield* store.heartbeat("a", [], at(200))).toEqual([])
        yield* store.transition(a2!.id, "completed", {}, at(20))
        expect(yield* store.heartbeat("a", [a1!.id, a2!.id], at(300))).toEqual([a1!.id])
        // A heartbeat does not touch the job's record.
        expect(yield* getJob(store, a1!.id)).toEqual(a1)
        // Only b's lease (until 100) has run out at 150; a's was extended.
        expect(ids(yield* store.recoverExpired(at(150)))).toEqual([b1!.id])
        expect(yield* store.recoverExpired(at(300))).toEqual([])
        expect(ids(yield* store.recoverExpired(at(301)))).toEqual([a1!.id])
      }))

    test("recoverExpired: expired jobs go back to pending, once beyond their attempts; a second stall fails", (store) =>
      Effect.gen(function* () {
        const [retry, last, waiting, engine] = yield* insertAll(store, [
          makeJob({ priority: 2, maxAttempts: 3 }),
          makeJob({ priority: 1, maxAttempts: 1 }),
          makeJob({ runAt: at(10_000) }),
          makeJob({ priority: -1 })
        ])
        const claimed = yield* store.claim(claimOptions({ limit: 2, now: at(10), leaseUntil: at(100) }))
        expect(ids(claimed)).toEqual([retry!.id, last!.id])
        yield* started(store, engine!, at(11))
        expect(yield* store.recoverExpired(at(100))).toEqual([])

        const now = at(101)
        const recovered = yield* store.recoverExpired(now)
        // Both are retried: `last` has no attempts left, but a stall is the process's fault, not the job's.
        const expected = [
          applyTransition(claimed[0]!, "pending", { error: leaseExpiredError, runAt: now }, now),
          applyTransition(claimed[1]!, "pending", { error: leaseExpiredError, runAt: now }, now)
        ]
        expect(byId(recovered)).toEqual(byId(expected))
        for (const job of expected) expect(yield* getJob(store, job.id)).toEqual(job)
        expect(expected[0]).toMatchObject({
          status: "pending",
          lastError: leaseExpiredError,
          attempts: 1,
          runAt: now
        })
        // The engine's own running job (no lease) and the delayed pending job are untouched.
        expect((yield* getJob(store, engine!.id)).status).toBe("running")
        expect(yield* getJob(store, waiting!.id)).toEqual(waiting)
        expect(yield* store.pendingCount).toBe(3)
        // The lease is gone: the old owner's heartbeat finds nothing, and a second sweep takes nothing.
        expect(yield* store.heartbeat("node-a", [retry!.id], at(500))).toEqual([])
        expect(yield* store.recoverExpired(at(101))).toEqual([])

        // Claimed again and stalled again: `retry` still has attempts; `last` stalled twice and fails.
        const again = yield* store.claim(
          claimOptions({ limit: 2, now: at(102), owner: "node-b", leaseUntil: at(200) })
        )
        expect(again.map((job) => [job.id, job.attempts])).toEqual([
          [retry!.id, 2],
          [last!.id, 2]
        ])
        const later = at(201)
        const second = yield* store.recoverExpired(later)
        expect(byId(second)).toEqual(
          byId([
            applyTransition(again[0]!, "pending", { error: leaseExpiredError, runAt: later }, later),
            applyTransition(again[1]!, "failed", { error: leaseExpiredError }, later)
          ])
        )
        expect(yield* getJob(store, last!.id)).toMatchObject({
          status: "failed",
          error: leaseExpiredError,
          finishedAt: later
        })
      }))

    test("release: the owner's running jobs go back to pending with their attempts", (store) =>
      Effect.gen(function* () {
        yield* insertAll(store, [
          makeJob({ priority: 3 }),
          makeJob({ priority: 2, lastError: "earlier" }),
          makeJob()
        ])
        const [j1, j2] = yield* store.claim(claimOptions({ limit: 2, owner: "a", leaseUntil: at(100) }))
        const [j3] = yield* store.claim(claimOptions({ limit: 1, owner: "b", leaseUntil: at(100) }))
        yield* store.progress(j1!.id, { stage: "processing", progress: 50, message: "busy" }, at(20))
        const j1Busy = yield* getJob(store, j1!.id)
        expect(yield* store.release("b", [j1!.id], at(30))).toEqual([])
        expect(yield* store.release("a", [], at(30))).toEqual([])

        const now = at(30)
        const released = yield* store.release("a", [j1!.id, j2!.id, j3!.id, makeJobId()], now)
        const expected = [j1Busy, j2!].map((job) =>
          applyTransition(job, "pending", { error: job.lastError, runAt: job.runAt }, now)
        )
        expect(byId(released)).toEqual(byId(expected))
        expect(expected.map((job) => job.attempts)).toEqual([1, 1])
        expect(expected[1]!.lastError).toBe("earlier")
        expect(expected[0]).toMatchObject({ stage: "queued", progress: 0, message: null })
        expect((yield* getJob(store, j3!.id)).status).toBe("running")
        expect(yield* store.heartbeat("a", [j1!.id, j2!.id], at(200))).toEqual([])
        expect(ids(yield* store.recoverExpired(at(101)))).toEqual([j3!.id])
        const again = yield* store.claim(claimOptions({ limit: 2, now: at(102), owner: "c" }))
        expect(ids(again)).toEqual([j1!.id, j2!.id])
        expect(again.map((job) => job.attempts)).toEqual([2, 2])
      }))

    test("a move out of running ends the job's lease", (store) =>
      Effect.gen(function* () {
        yield* insertAll(store, [makeJob({ priority: 1 }), makeJob()])
        const [done, retried] = yield* store.claim(claimOptions({ limit: 2, leaseUntil: at(100) }))
        yield* store.transition(done!.id, "completed", { result: 1 }, at(20))
        yield* store.transition(retried!.id, "pending", { error: "again", runAt: at(30) }, at(21))
        expect(yield* store.recoverExpired(at(500))).toEqual([])
        expect(yield* store.heartbeat("node-a", [done!.id, retried!.id], at(600))).toEqual([])
        // The retried job is claimable again, and moved to running by the engine it holds no lease.
        yield* started(store, retried!, at(40))
        expect(yield* store.recoverExpired(at(700))).toEqual([])
        expect(yield* store.release("node-a", [retried!.id], at(701))).toEqual([])
      }))
  })
}
