import { Effect, Layer, ManagedRuntime, Schema } from "effect"
import type { JsonObject } from "../../dist/domain/Job.js"
import { JobHandlers } from "../../dist/JobHandlers.js"
import { JobQueue, type JobRequest } from "../../dist/JobQueue.js"
import { JobStore } from "../../dist/JobStore.js"
import { sleep } from "../lib/stats.js"
import type { Contender, ContenderOptions } from "./types.js"

const jobType = "bench"

/**
 * Our `JobQueue` over the given store layer (the in-memory one by default), with one no-op job type whose handler
 * calls `onRun`. Retention and the pending limit are raised to the run's size so that every record is kept.
 */
export const makeJobQueue = async (
  options: ContenderOptions,
  store: Layer.Layer<JobStore, unknown> = JobStore.layerMemory
): Promise<Contender> => {
  const { onRun } = options
  const handler = options.indexed
    ? JobHandlers.register({
        type: jobType,
        payload: Schema.Struct({ i: Schema.Number }),
        handler: ({ i }) =>
          Effect.sync(() => {
            onRun(i)
            return null
          })
      })
    : JobHandlers.register({
        type: jobType,
        payload: Schema.Struct({}),
        handler: () =>
          Effect.sync(() => {
            onRun(-1)
            return null
          })
      })
  const limit = Math.max(options.capacity * 2, 100_000)
  const layer = JobQueue.layer({
    maxConcurrent: options.concurrency,
    retentionMax: limit,
    maxPending: limit
  }).pipe(Layer.provide(Layer.merge(handler, store)), Layer.provide(JobHandlers.layer))
  const runtime = ManagedRuntime.make(layer)
  const queue = await runtime.runPromise(JobQueue)
  const metadata = (i: number): JsonObject => (options.indexed ? { i } : {})

  return {
    submitAll: (count, from = 0) =>
      runtime.runPromise(
        Effect.gen(function* () {
          for (let i = from; i < from + count; i++) yield* queue.submit(jobType, metadata(i))
        })
      ),
    submitBulk: (count, chunk) =>
      runtime.runPromise(
        Effect.gen(function* () {
          for (let start = 0; start < count; start += chunk) {
            const requests: Array<JobRequest> = []
            for (let i = start; i < Math.min(count, start + chunk); i++)
              requests.push({ type: jobType, metadata: metadata(i) })
            yield* queue.submitMany(requests)
          }
        })
      ),
    submitOne: (i) => {
      runtime.runFork(queue.submit(jobType, metadata(i)))
    },
    settled: async () => {
      for (;;) {
        const page = await runtime.runPromise(queue.list({ status: ["pending", "running"], limit: 1 }))
        if (page.items.length === 0) return
        await sleep(20)
      }
    },
    close: () => runtime.dispose()
  }
}
