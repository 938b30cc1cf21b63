import { Effect, Exit, HashMap, Queue, Ref, Scope } from "effect"
import { sleep } from "../lib/stats.js"
import type { Contender, ContenderOptions } from "./types.js"

/** A job record of the naive design: the same fields as our `Job`, as a plain object. */
export interface NaiveJob {
  readonly id: string
  readonly type: string
  readonly status: "pending" | "running" | "completed"
  readonly stage: string
  readonly progress: number
  readonly message: string | null
  readonly metadata: { readonly i?: number }
  readonly result: unknown
  readonly error: string | null
  readonly lastError: string | null
  readonly priority: number
  readonly attempts: number
  readonly maxAttempts: number
  readonly timeoutMs: number | null
  readonly idempotencyKey: string | null
  readonly runAt: Date
  readonly createdAt: Date
  readonly startedAt: Date | null
  readonly finishedAt: Date | null
  readonly updatedAt: Date
}

const newJob = (metadata: NaiveJob["metadata"], now: Date): NaiveJob => ({
  id: crypto.randomUUID(),
  type: "bench",
  status: "pending",
  stage: "queued",
  progress: 0,
  message: null,
  metadata,
  result: null,
  error: null,
  lastError: null,
  priority: 0,
  attempts: 0,
  maxAttempts: 1,
  timeoutMs: null,
  idempotencyKey: null,
  runAt: now,
  createdAt: now,
  startedAt: null,
  finishedAt: null,
  updatedAt: now
})

const runScoped = async <A>(make: Effect.Effect<A, never, Scope.Scope>) => {
  const scope = Effect.runSync(Scope.make())
  const value = await Effect.runPromise(Scope.extend(make, scope))
  return { value, close: () => Effect.runPromise(Scope.close(scope, Exit.void)) }
}

/**
 * The naive Effect design the issue compares against: an unbounded `Queue` of ids, `concurrency` worker fibers, a
 * `Ref<HashMap>` of job records updated under a `Semaphore` (each read-modify-write of a record holds it), and
 * `Date` timestamps on every move (pending → running → completed).
 */
export const makeNaive = async (options: ContenderOptions): Promise<Contender> => {
  const { onRun } = options
  const make = Effect.gen(function* () {
    const queue = yield* Queue.unbounded<string>()
    const records = yield* Ref.make(HashMap.empty<string, NaiveJob>())
    const lock = yield* Effect.makeSemaphore(1)
    const move = (id: string, change: (job: NaiveJob, now: Date) => NaiveJob) =>
      lock.withPermits(1)(
        Ref.modify(records, (map): [NaiveJob | undefined, HashMap.HashMap<string, NaiveJob>] => {
          const job = HashMap.get(map, id)
          if (job._tag === "None") return [undefined, map]
          const next = change(job.value, new Date())
          return [next, HashMap.set(map, id, next)]
        })
      )
    // Records the job under the lock, then queues its id.
    const submitJob = (metadata: NaiveJob["metadata"]) =>
      lock
        .withPermits(1)(
          Effect.suspend(() => {
            const job = newJob(metadata, new Date())
            return Effect.as(Ref.update(records, HashMap.set(job.id, job)), job.id)
          })
        )
        .pipe(Effect.flatMap((id) => Queue.offer(queue, id)))
    const worker = Effect.forever(
      Effect.flatMap(Queue.take(queue), (id) =>
        Effect.flatMap(
          move(id, (job, now) => ({
            ...job,
            status: "running",
            attempts: job.attempts + 1,
            startedAt: now,
            updatedAt: now
          })),
          (job) =>
            job === undefined
              ? Effect.void
              : Effect.flatMap(
                  Effect.sync(() => {
                    onRun(job.metadata.i ?? -1)
                    return null
                  }),
                  (result) =>
                    move(id, (current, now) => ({
                      ...current,
                      status: "completed",
                      progress: 100,
                      result,
                      finishedAt: now,
                      updatedAt: now
                    }))
                )
        )
      )
    )
    yield* Effect.forkScoped(
      Effect.all(
        Array.from({ length: options.concurrency }, () => worker),
        { concurrency: "unbounded", discard: true }
      )
    )
    const unfinished = Effect.map(Ref.get(records), (map) => {
      let count = 0
      for (const job of HashMap.values(map)) if (job.status !== "completed") count++
      return count
    })
    return { submitJob, unfinished }
  })
  const { value, close } = await runScoped(make)
  const metadata = (i: number) => (options.indexed ? { i } : {})
  return {
    submitAll: (count, from = 0) =>
      Effect.runPromise(
        Effect.gen(function* () {
          for (let i = from; i < from + count; i++) yield* value.submitJob(metadata(i))
        })
      ),
    submitOne: (i) => {
      Effect.runFork(value.submitJob(metadata(i)))
    },
    settled: async () => {
      while ((await Effect.runPromise(value.unfinished)) > 0) await sleep(20)
    },
    close
  }
}

/** The bare Effect floor: an unbounded `Queue` of indexes and `concurrency` fibers taking from it; no records. */
export const makeBare = async (options: ContenderOptions): Promise<Contender> => {
  const { onRun } = options
  const make = Effect.gen(function* () {
    const queue = yield* Queue.unbounded<number>()
    const worker = Effect.forever(Effect.flatMap(Queue.take(queue), (i) => Effect.sync(() => onRun(i))))
    yield* Effect.forkScoped(
      Effect.all(
        Array.from({ length: options.concurrency }, () => worker),
        { concurrency: "unbounded", discard: true }
      )
    )
    return queue
  })
  const { value: queue, close } = await runScoped(make)
  return {
    submitAll: (count, from = 0) =>
      Effect.runPromise(
        Effect.gen(function* () {
          for (let i = from; i < from + count; i++) yield* Queue.offer(queue, options.indexed ? i : -1)
        })
      ),
    submitOne: (i) => {
      Effect.runFork(Queue.offer(queue, i))
    },
    close
  }
}
