// Shared helpers for the JobQueue tests: queues over a fresh in-memory store, handlers that ignore their metadata,
// gates that hold a handler until the test lets it go, and a list walker that checks every page.
import { expect } from "@effect/vitest"
import { Deferred, Effect, Layer, Schema, TestClock } from "effect"
import type { JobQueueOptions } from "../src/config.js"
import type { Job, JobId, Json } from "../src/domain/Job.js"
import { cursorAfter, type JobQuery, PageLimits } from "../src/domain/JobPage.js"
import type { SubmitDefaults } from "../src/domain/SubmitOptions.js"
import { type JobContext, JobHandlers } from "../src/JobHandlers.js"
import { JobQueue, type JobQueueService } from "../src/JobQueue.js"
import { JobStore } from "../src/JobStore.js"

/** A layer that registers one handler. */
export type HandlerLayer = Layer.Layer<never, never, JobHandlers>

/** A handler for `type` that ignores its metadata (and, optionally, declares submission defaults). */
export const handler = <E>(
  type: string,
  run: (context: JobContext) => Effect.Effect<Json, E>,
  defaults?: SubmitDefaults
): HandlerLayer =>
  JobHandlers.register({ type, payload: Schema.Struct({}), handler: (_, context) => run(context), defaults })

/** A handler that completes at once with `{ ok: true }`. */
export const ok = (type = "ok"): HandlerLayer => handler(type, () => Effect.succeed({ ok: true }))

/**
 * A queue over a fresh in-memory store with the given handlers. The grace period defaults to 0 so a test that
 * leaves a job running does not hang on its way out under the TestClock.
 */
export const queueLayer = (
  handlers: ReadonlyArray<HandlerLayer>,
  options: Partial<JobQueueOptions> = {}
): Layer.Layer<JobQueue> =>
  JobQueue.layer({ shutdownGraceMs: 0, ...options }).pipe(
    Layer.provide(Layer.mergeAll(JobStore.layerMemory, ...handlers)),
    Layer.provide(JobHandlers.layer)
  )

/** Runs `f` against a queue built from `handlers` and `options`; the queue shuts down when `f` ends. */
export const withQueue = <A, E>(
  handlers: ReadonlyArray<HandlerLayer>,
  options: Partial<JobQueueOptions>,
  f: (queue: JobQueueService) => Effect.Effect<A, E>
): Effect.Effect<A, E> => Effect.flatMap(JobQueue, f).pipe(Effect.provide(queueLayer(handlers, options)))

/** A gate a handler waits on, with a signal the handler raises once it has started. */
export interface Gate {
  readonly started: Deferred.Deferred<void>
  readonly open: Deferred.Deferred<void>
}

/** A fresh, closed {@link Gate}. */
export const makeGate: Effect.Effect<Gate> = Effect.zipWith(
  Deferred.make<void>(),
  Deferred.make<void>(),
  (started, open) => ({ started, open })
)

/** A handler that signals it started, waits for its gate, then completes with `result`. */
export const gated = (type: string, gate: Gate, result: Json = { gated: true }): HandlerLayer =>
  handler(type, () =>
    Deferred.succeed(gate.started, undefined).pipe(
      Effect.zipRight(Deferred.await(gate.open)),
      Effect.as(result)
    )
  )

/** The ids of some jobs, in order. */
export const ids = (jobs: ReadonlyArray<Job>): Array<JobId> => jobs.map((job) => job.id)

/** Sorts jobs newest first, ties by id descending: the order `list` promises (written out, not the store's own). */
export const newestFirst = (jobs: ReadonlyArray<Job>): Array<Job> =>
  [...jobs].sort(
    (a, b) => b.createdAt.getTime() - a.createdAt.getTime() || (a.id === b.id ? 0 : a.id > b.id ? -1 : 1)
  )

/** Follows `nextCursor` from the first page to the last, checking each page's size. */
export const listAll = (queue: JobQueueService, query: JobQuery = {}, limit: number = PageLimits.max) =>
  Effect.gen(function* () {
    const pages: Array<ReadonlyArray<Job>> = []
    let cursor: string | undefined
    for (;;) {
      const page = yield* queue.list({ ...query, limit, cursor })
      pages.push(page.items)
      expect(page.items.length).toBeLessThanOrEqual(limit)
      if (page.nextCursor === null) break
      expect(page.items.length).toBe(limit)
      expect(page.nextCursor).toBe(cursorAfter(page.items[page.items.length - 1]!))
      cursor = page.nextCursor
      if (pages.length > 1_000) throw new Error("list never reached its last page")
    }
    return pages.flat()
  })

/** Yields to the scheduler `n` times. */
export const yields = (n: number) =>
  Effect.forEach(Array.from({ length: n }), () => Effect.yieldNow(), { discard: true })

/**
 * Lets every fiber that can run do so before the test looks (the TestClock waits until the fibers it knows of are
 * suspended, with real timer turns in between); moves no time.
 */
export const settle: Effect.Effect<void> = TestClock.adjust(0)
