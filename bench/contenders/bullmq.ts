import { Queue, Worker } from "bullmq"
import { services } from "../lib/services.js"
import { type Data, dataOf, reportError } from "./data.js"
import type { Contender, ContenderOptions } from "./types.js"

/** BullMQ on the local Redis: a `Queue` to add to and a `Worker` of the given concurrency. */
export const makeBullmq = async (options: ContenderOptions): Promise<Contender> => {
  const { onRun } = options
  const url = new URL(services.redisUrl)
  const connection = { host: url.hostname, port: Number(url.port || 6379), maxRetriesPerRequest: null }
  const name = `bench-${process.pid}`
  const prefix = services.redisPrefix
  const queue = new Queue<Data>(name, { connection, prefix })
  const worker = new Worker<Data>(
    name,
    async (job) => {
      onRun(job.data.i ?? -1)
      return null
    },
    { connection, prefix, concurrency: options.concurrency }
  )
  worker.on("error", reportError)
  await queue.waitUntilReady()
  await worker.waitUntilReady()
  return {
    submitAll: async (count, from = 0) => {
      for (let i = from; i < from + count; i++) await queue.add("bench", dataOf(options, i))
    },
    submitBulk: async (count, chunk) => {
      for (let start = 0; start < count; start += chunk) {
        const jobs: Array<{ name: string; data: Data }> = []
        for (let i = start; i < Math.min(count, start + chunk); i++)
          jobs.push({ name: "bench", data: dataOf(options, i) })
        await queue.addBulk(jobs)
      }
    },
    submitOne: (i) => {
      queue.add("bench", dataOf(options, i)).catch(reportError)
    },
    close: async () => {
      await worker.close()
      await queue.obliterate({ force: true })
      await queue.close()
    }
  }
}
