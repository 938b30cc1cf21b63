// Crash tests: the compiled service (built here into a directory of its own) on a durable store is SIGKILLed while
// jobs run, then started again on the same store. Nothing is lost: every job is still there and ends completed; the
// jobs that were running at the kill are taken back when their leases run out (attempts counted, lastError says
// why), and the others run once.
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect, type Layer } from "effect"
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import type { Job } from "../../src/domain/Job.js"
import { JobStore, leaseExpiredError } from "../../src/JobStore.js"
import * as SqlJobStore from "../../src/SqlJobStore.js"
import { build, buildDir, http, type JobBody, poll, removeBuild, startNode, stopAll } from "../processes.js"
import { describePg, type TestDatabase, testDatabase } from "./pg.js"

beforeAll(build, 180_000)
afterAll(removeBuild)

const cleanups: Array<() => Promise<void> | void> = []
afterEach(async () => {
  // Processes first (they hold the store open), then the store itself.
  await stopAll()
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

/** Every job in the store, read directly (no process is running on it). */
const storedJobs = (store: Layer.Layer<JobStore, unknown>): Promise<ReadonlyArray<Job>> =>
  Effect.runPromise(
    Effect.flatMap(JobStore, (jobs) => Effect.map(jobs.list({ limit: 500 }), (page) => page.items)).pipe(
      Effect.provide(store)
    )
  )

const isTerminal = (status: string) => status === "completed" || status === "failed" || status === "cancelled"

/**
 * Runs the service on `APP_JOB_STORE=<store>`, submits 30 simulated jobs, SIGKILLs it while some run, reads what the
 * store holds, starts the service again on the same store and waits for every job to finish.
 */
const crashAndRestart = async (storeEnv: string, store: Layer.Layer<JobStore, unknown>) => {
  const server = join(buildDir, "main.js")
  const env = {
    APP_JOB_STORE: storeEnv,
    // Steps of 100 ms: a transcription lasts 400 ms, a bootstrap or an extraction 200 ms.
    APP_DEMO_STEP_MS: "100",
    APP_JOB_LEASE_MS: "1000",
    APP_JOB_MAX_CONCURRENT: "4",
    APP_JOB_POLL_INTERVAL_MS: "100"
  }
  const first = await startNode([server], env)
  const types = ["transcription", "bootstrap", "extraction"]
  const submitted: Array<JobBody> = []
  for (let i = 0; i < 30; i++)
    submitted.push(
      await http.submit(first.url, { type: types[i % 3], metadata: { source: `clip-${i}.mp3` } })
    )

  // Kill it while it works: some jobs done, some running, the rest pending.
  await poll(
    "some jobs to complete while others run",
    async () => {
      const jobs = await http.list(first.url)
      const count = (status: string) => jobs.filter((job) => job.status === status).length
      return count("completed") >= 3 && count("running") >= 1 ? true : undefined
    },
    { timeoutMs: 15_000, intervalMs: 10 }
  )
  expect(await first.kill()).toEqual({ code: null, signal: "SIGKILL" })

  const atKill = new Map((await storedJobs(store)).map((job) => [job.id as string, job]))
  expect([...atKill.keys()].sort()).toEqual(submitted.map((job) => job.id).sort())
  const runningAtKill = [...atKill.values()].filter((job) => job.status === "running")
  const doneAtKill = [...atKill.values()].filter((job) => job.status === "completed")
  expect(runningAtKill.length).toBeGreaterThan(0)
  expect(runningAtKill.length).toBeLessThanOrEqual(4)
  expect(doneAtKill.length).toBeGreaterThanOrEqual(3)

  const second = await startNode([server], env)
  const final = await poll(
    "every job to finish after the restart",
    async () => {
      const jobs = await http.list(second.url)
      return jobs.length === submitted.length && jobs.every((job) => isTerminal(job.status))
        ? jobs
        : undefined
    },
    { timeoutMs: 30_000, intervalMs: 50 }
  )
  second.child.kill("SIGTERM")
  expect(await second.exited(15_000)).toEqual({ code: 0, signal: null })

  // None lost, none left running: all completed.
  expect(final.map((job) => job.id).sort()).toEqual(submitted.map((job) => job.id).sort())
  for (const job of final) expect(job.status, JSON.stringify(job)).toBe("completed")
  const byId = new Map(final.map((job) => [job.id, job]))
  for (const job of runningAtKill) {
    // Taken back when the dead process's lease ran out, and run again.
    const after = byId.get(job.id)!
    expect(after.attempts, JSON.stringify(after)).toBeGreaterThanOrEqual(2)
    expect(after.lastError).toContain("lease")
    expect(after.lastError).toBe(leaseExpiredError)
  }
  for (const job of doneAtKill) {
    // Done before the kill: untouched since.
    expect(byId.get(job.id)).toMatchObject({
      attempts: 1,
      lastError: null,
      finishedAt: job.finishedAt!.toISOString()
    })
  }
  const running = new Set(runningAtKill.map((job) => job.id as string))
  for (const job of final.filter((job) => !running.has(job.id)))
    expect(job, JSON.stringify(job)).toMatchObject({ attempts: 1, lastError: null })
  expect(second.output()).not.toMatch(/\bERROR\b|level=ERROR/)
}

describe("a SIGKILLed service on SQLite", () => {
  it("restarts on the same file and loses nothing: the jobs it was running are taken back and finish", async () => {
    const dir = mkdtempSync(join(tmpdir(), "jq-crash-"))
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }))
    const file = join(dir, "jobs.db")
    await crashAndRestart(`sqlite:${file}`, SqlJobStore.layerSqlite(file))
  }, 90_000)
})

describePg("a SIGKILLed service on PostgreSQL", () => {
  it("restarts on the same database and loses nothing: the jobs it was running are taken back and finish", async () => {
    const database: TestDatabase = testDatabase("crash")
    cleanups.push(() => database.drop())
    await database.create()
    await crashAndRestart(database.url, SqlJobStore.layerPg(database.url))
  }, 90_000)
})
