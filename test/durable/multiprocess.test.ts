// Several queue processes on one PostgreSQL database (test/fixtures/node.ts, run through tsx): they share the work
// without running a job twice, a SIGKILLed process's jobs are taken back by the others when their leases run out,
// and a job cancelled through one process's HTTP API stops in the process running it. The fixture's `record` handler
// writes each attempt (and each interruption) into a `runs` table, so the test knows which process ran what.
import { join } from "node:path"
import { Effect } from "effect"
import { afterEach, expect, it } from "vitest"
import { leaseExpiredError } from "../../src/JobStore.js"
import { http, poll, root, startNode, stopAll } from "../processes.js"
import { describePg, openSql, type SqlSession, type TestDatabase, testDatabase } from "./pg.js"

const fixture = ["--import", "tsx", join(root, "test", "fixtures", "node.ts")]

interface RunRow {
  readonly job_id: string
  readonly pid: number
  readonly event: "started" | "interrupted"
  readonly at_ms: string
}

interface JobRow {
  readonly id: string
  readonly status: string
  readonly attempts: number
  readonly last_error: string | null
}

let database: TestDatabase | undefined
let session: SqlSession | undefined

afterEach(async () => {
  // Whatever happened: no process, no connection and no database is left behind.
  await stopAll()
  await session?.close()
  session = undefined
  await database?.drop()
  database = undefined
})

/** A fresh database with the fixture's `runs` table (the nodes create the store's tables themselves). */
const freshDatabase = async (tag: string): Promise<{ url: string; sql: SqlSession }> => {
  database = testDatabase(tag)
  await database.create()
  session = openSql(database.url)
  await session.run((sql) =>
    sql`CREATE TABLE runs (
      seq bigserial PRIMARY KEY,
      job_id uuid NOT NULL,
      pid integer NOT NULL,
      event text NOT NULL,
      at_ms bigint NOT NULL
    )`.pipe(Effect.asVoid)
  )
  return { url: database.url, sql: session }
}

describePg("several processes on one PostgreSQL database", () => {
  it("2000 jobs on 3 processes, one SIGKILLed midway: all complete, and only its running jobs ran twice", async () => {
    const { sql, url } = await freshDatabase("multi")
    const maxConcurrent = 8
    const env = {
      APP_JOB_STORE: url,
      APP_JOB_MAX_CONCURRENT: String(maxConcurrent),
      // Leases of 2 s (a heartbeat every 667 ms): a busy live process keeps them with room to spare.
      APP_JOB_LEASE_MS: "2000",
      APP_JOB_POLL_INTERVAL_MS: "50",
      APP_JOB_SHUTDOWN_GRACE_MS: "5000"
    }
    const nodes = await Promise.all([1, 2, 3].map(() => startNode(fixture, env)))
    const [entry, victim, third] = nodes as [(typeof nodes)[0], (typeof nodes)[0], (typeof nodes)[0]]
    const live = new Set([entry.pid, third.pid])

    // Most jobs take 5 ms; every 20th takes 400 ms, so that the victim can be caught in the middle of one.
    const batch = Array.from({ length: 1_000 }, (_, i) => ({
      type: "record",
      metadata: { sleepMs: i % 20 === 0 ? 400 : 5 }
    }))
    const submitted = [
      ...(await http.submitBatch(entry.url, batch)),
      ...(await http.submitBatch(entry.url, batch))
    ]
    expect(submitted).toHaveLength(2_000)

    // Midway: a quarter of the jobs done, and the victim in the middle of a long job (it has just started it, so
    // it is still running it when the kill lands).
    await poll(
      "a quarter of the jobs to complete, and the victim to run a long job",
      async () => {
        const [row] = await sql.run(
          (q) => q<{ readonly completed: string; readonly holding: string }>`SELECT
            (SELECT count(*) FROM jobs WHERE status = 'completed') AS completed,
            (SELECT count(*) FROM jobs j WHERE j.status = 'running' AND (j.metadata->>'sleepMs')::int >= 400
              AND EXISTS (SELECT 1 FROM runs r WHERE r.job_id = j.id AND r.pid = ${victim.pid})) AS holding`
        )
        return Number(row!.completed) >= 500 && Number(row!.holding) > 0 ? true : undefined
      },
      { timeoutMs: 30_000, intervalMs: 10 }
    )
    expect(await victim.kill()).toEqual({ code: null, signal: "SIGKILL" })

    // What the victim was running when it died: running jobs whose latest attempt it started. Nothing can move them
    // until their leases run out, up to 2 s from now.
    const runningAtKill = (
      await sql.run(
        (q) => q<{ readonly id: string }>`SELECT id FROM jobs j WHERE status = 'running' AND (
          SELECT pid FROM runs r WHERE r.job_id = j.id AND r.event = 'started' ORDER BY seq DESC LIMIT 1
        ) = ${victim.pid}`
      )
    ).map((row) => row.id)
    expect(runningAtKill.length).toBeGreaterThan(0)

    await poll(
      "every job to complete",
      async () => {
        const [row] = await sql.run(
          (q) => q<{ readonly n: string }>`SELECT count(*) AS n FROM jobs WHERE status = 'completed'`
        )
        return Number(row!.n) === 2_000 ? true : undefined
      },
      { timeoutMs: 60_000, intervalMs: 100 }
    )
    // The survivors stop cleanly.
    for (const node of [entry, third]) node.child.kill("SIGTERM")
    for (const node of [entry, third]) expect(await node.exited(15_000)).toEqual({ code: 0, signal: null })

    const jobs = await sql.run((q) => q<JobRow>`SELECT id, status, attempts, last_error FROM jobs`)
    const runs = await sql.run((q) => q<RunRow>`SELECT job_id, pid, event, at_ms FROM runs ORDER BY seq`)
    expect(jobs.map((job) => job.id).sort()).toEqual(submitted.map((job) => job.id).sort())
    expect(runs.filter((run) => run.event !== "started")).toEqual([])

    const runsOf = new Map<string, Array<number>>()
    for (const run of runs) runsOf.set(run.job_id, [...(runsOf.get(run.job_id) ?? []), run.pid])
    const recovered: Array<string> = []
    for (const job of jobs) {
      const pids = runsOf.get(job.id) ?? []
      const context = { job, pids, victim: victim.pid }
      expect(job.status, JSON.stringify(context)).toBe("completed")
      // Every job ran once on a live process, or once on the victim (completing before the kill)...
      expect(pids.filter((pid) => live.has(pid)).length, JSON.stringify(context)).toBeLessThanOrEqual(1)
      expect(pids.filter((pid) => pid === victim.pid).length, JSON.stringify(context)).toBeLessThanOrEqual(1)
      // ...and a job that ran twice ran first on the victim, then on a live process.
      if (pids.length > 1) expect(pids, JSON.stringify(context)).toEqual([victim.pid, expect.any(Number)])
      if (Number(job.attempts) === 1) {
        expect(pids, JSON.stringify(context)).toHaveLength(1)
        expect(job.last_error).toBeNull()
      } else {
        // Taken back from the victim (which may have died before its handler wrote the first run down).
        recovered.push(job.id)
        expect(Number(job.attempts), JSON.stringify(context)).toBe(2)
        expect(job.last_error).toBe(leaseExpiredError)
        expect(live.has(pids[pids.length - 1]!), JSON.stringify(context)).toBe(true)
        if (pids.length === 2) expect(pids[0]).toBe(victim.pid)
      }
    }
    // Exactly the victim's jobs: those it was seen running, and at most as many as it could run at once.
    expect(recovered).toEqual(expect.arrayContaining(runningAtKill))
    expect(recovered.length).toBeLessThanOrEqual(maxConcurrent)
    const twice = jobs.filter((job) => (runsOf.get(job.id) ?? []).length > 1).map((job) => job.id)
    expect(recovered).toEqual(expect.arrayContaining(twice))
  }, 180_000)

  it.each([
    { signals: true, how: "at once (B's notification)" },
    { signals: false, how: "within a second (A's heartbeat, no notifications)" }
  ])(
    "a long job running in process A, cancelled through process B's HTTP API, stops in A $how",
    async ({ signals }) => {
      const { sql, url } = await freshDatabase("cancel")
      // With notifications, leases of 30 s (a heartbeat every second): the notification must do it, at once.
      // Without, leases of 900 ms: A's heartbeat, which finds the job cancelled, comes every 300 ms.
      const env = {
        APP_JOB_STORE: url,
        APP_JOB_LEASE_MS: signals ? "30000" : "900",
        APP_JOB_POLL_INTERVAL_MS: "50",
        FIXTURE_SIGNALS: String(signals)
      }
      // Both start together; the job runs on whichever claims it first (A), and B reaches it only through the database.
      const nodes = await Promise.all([startNode(fixture, env), startNode(fixture, env)])
      const job = await http.submit(nodes[0].url, { type: "record", metadata: { sleepMs: 60_000 } })
      const started = await poll(
        "the job to start",
        async () => {
          const rows = await sql.run((q) => q<RunRow>`SELECT * FROM runs WHERE job_id = ${job.id}`)
          return rows.length > 0 ? rows : undefined
        },
        { timeoutMs: 10_000 }
      )
      const a = nodes.find((node) => node.pid === started[0]!.pid)!
      const b = nodes.find((node) => node !== a)!
      expect(started.map((run) => [run.pid, run.event])).toEqual([[a.pid, "started"]])

      const requestedAt = Date.now()
      const cancelled = await http.cancel(b.url, job.id)
      expect(cancelled).toMatchObject({ id: job.id, status: "cancelled", attempts: 1, error: null })
      const interrupted = await poll(
        "A's handler to be interrupted",
        async () => {
          const [row] = await sql.run(
            (q) => q<RunRow>`SELECT * FROM runs WHERE job_id = ${job.id} AND event = 'interrupted'`
          )
          return row
        },
        { timeoutMs: 5_000, intervalMs: 10 }
      )
      expect(interrupted.pid).toBe(a.pid)
      expect(Number(interrupted.at_ms) - requestedAt).toBeLessThan(signals ? 500 : 1_000)

      // A records nothing over the cancellation; both processes answer the same.
      for (const node of [a, b])
        expect(await http.get(node.url, job.id)).toMatchObject({
          status: "cancelled",
          attempts: 1,
          error: null
        })
      // The processes go on: a new job completes.
      const next = await http.submit(b.url, { type: "record" })
      await poll(
        "the next job to complete",
        async () => ((await http.get(a.url, next.id)).status === "completed" ? true : undefined),
        { timeoutMs: 10_000 }
      )
      for (const node of [a, b]) node.child.kill("SIGTERM")
      for (const node of [a, b]) expect(await node.exited(15_000)).toEqual({ code: 0, signal: null })
      const runs = await sql.run((q) => q<RunRow>`SELECT * FROM runs WHERE job_id = ${job.id} ORDER BY seq`)
      expect(runs.map((run) => [run.pid, run.event])).toEqual([
        [a.pid, "started"],
        [a.pid, "interrupted"]
      ])
    },
    90_000
  )
})
