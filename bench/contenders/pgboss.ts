import PgBoss from "pg-boss"
import { pgUrl, services } from "../lib/services.js"
import { sleep } from "../lib/stats.js"
import { type Data, dataOf, reportError } from "./data.js"
import type { Contender, ContenderOptions } from "./types.js"

/**
 * pg-boss on the same PostgreSQL server. Its `work()` waits out its polling interval (at least 500 ms) after every
 * batch, which would cap it at `concurrency` jobs per half second; so it runs here at its best instead: one loop that
 * fetches up to `concurrency` jobs, runs them at once, completes them in one call (what `work({ batchSize })` does
 * per batch) and fetches again at once, polling every {@link pgBossIdlePollMs} ms only when the queue is empty.
 */
export const makePgBoss = async (options: ContenderOptions): Promise<Contender> => {
  const { onRun } = options
  const name = `bench_${process.pid}`
  const boss = new PgBoss({ connectionString: pgUrl(services.pgBossDatabase), schedule: false })
  boss.on("error", reportError)
  await boss.start()
  await boss.createQueue(name)
  let stopping = false
  const loop = (async () => {
    while (!stopping) {
      const jobs = await boss.fetch<Data>(name, { batchSize: options.concurrency })
      if (jobs.length === 0) {
        await sleep(pgBossIdlePollMs)
        continue
      }
      await Promise.all(
        jobs.map(async (job) => {
          onRun(job.data.i ?? -1)
        })
      )
      await boss.complete(
        name,
        jobs.map((job) => job.id)
      )
    }
  })()
  return {
    submitAll: async (count, from = 0) => {
      for (let i = from; i < from + count; i++) await boss.send(name, dataOf(options, i))
    },
    submitBulk: async (count, chunk) => {
      for (let start = 0; start < count; start += chunk) {
        const jobs: Array<PgBoss.JobInsert<Data>> = []
        for (let i = start; i < Math.min(count, start + chunk); i++)
          jobs.push({ name, data: dataOf(options, i) })
        await boss.insert(jobs)
      }
    },
    submitOne: (i) => {
      boss.send(name, dataOf(options, i)).catch(reportError)
    },
    close: async () => {
      stopping = true
      await loop
      await boss.stop({ graceful: false, wait: true })
    }
  }
}

/** How often the pg-boss loop polls an empty queue, in milliseconds. */
export const pgBossIdlePollMs = 10
