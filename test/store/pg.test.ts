import * as SqlClient from "@effect/sql/SqlClient"
import * as PgClient from "@effect/sql-pg/PgClient"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Option, Queue, Redacted, Stream } from "effect"
import { JobStore } from "../../src/JobStore.js"
import * as SqlJobStore from "../../src/SqlJobStore.js"
import { at, makeJob, suite } from "./suite.js"

// The real server (CI starts it in .ci/run): user postgres with trust auth, database `test`.
const url = process.env.JOB_QUEUE_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test"

const reachable = await Effect.runPromise(
  Effect.scoped(Layer.build(PgClient.layer({ url: Redacted.make(url), connectTimeout: "5 seconds" }))).pipe(
    Effect.as(true),
    Effect.catchAllCause(() => Effect.succeed(false))
  )
)

/** The URL with a search_path, so the store's tables (and its migrations table) live in that schema alone. */
const inSchema = (schema: string): string => {
  const withPath = new URL(url)
  withPath.searchParams.set("options", `-c search_path=${schema} -c synchronous_commit=off`)
  return withPath.toString()
}

let schemas = 0
/** A schema created for one test and dropped, with everything in it, when the scope closes. */
const freshSchema = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const schema = `job_store_test_${process.pid}_${Date.now()}_${++schemas}`
  yield* sql`CREATE SCHEMA ${sql(schema)}`
  yield* Effect.addFinalizer(() => Effect.orDie(sql`DROP SCHEMA ${sql(schema)} CASCADE`))
  return schema
})

/** The connection that creates and drops the test schemas. */
const admin = PgClient.layer({ url: Redacted.make(url), maxConnections: 1 })

/** A store in a fresh schema, built through `layerPg` as an app would. */
const freshStore = Layer.unwrapScoped(
  Effect.map(freshSchema, (schema) => SqlJobStore.layerPg(inSchema(schema)))
).pipe(Layer.provide(admin))

/** The store and its client in a fresh schema, for tests that look at the database itself. */
const freshStoreWithClient = Layer.unwrapScoped(
  Effect.map(freshSchema, (schema) =>
    SqlJobStore.layer.pipe(Layer.provideMerge(PgClient.layer({ url: Redacted.make(inSchema(schema)) })))
  )
).pipe(Layer.provide(admin))

/** The plan PostgreSQL picks for a statement with sequential scans disabled (so a usable index is always taken). */
const queryPlan = (statement: { readonly compile: () => readonly [string, ReadonlyArray<unknown>] }) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const [text, params] = statement.compile()
    return yield* sql.withTransaction(
      Effect.gen(function* () {
        yield* sql`SET LOCAL enable_seqscan = off`
        const rows = yield* sql.unsafe<{ readonly "QUERY PLAN": string }>(`EXPLAIN ${text}`, params)
        return rows.map((row) => row["QUERY PLAN"]).join("\n")
      })
    )
  })

/** A table like a live one: mostly finished jobs, some pending (due or delayed), a few running. */
const sampleJob = (i: number) =>
  i % 10 < 7
    ? makeJob({ status: "completed", createdAt: at(i), finishedAt: at(i + 1), type: i % 3 === 0 ? "a" : "b" })
    : i % 10 === 9
      ? makeJob({ status: "running", createdAt: at(i), startedAt: at(i + 1), type: "a" })
      : makeJob({
          createdAt: at(i),
          runAt: at(i % 20 === 7 ? 10_000 : i),
          priority: i % 5,
          type: i % 3 === 0 ? "a" : "b"
        })

if (!reachable && process.env.CI) {
  // In CI a missing server is a failure, never a silent skip.
  describe("SQL adapter on PostgreSQL", () => {
    it("reaches PostgreSQL", () => {
      throw new Error(
        `cannot connect to PostgreSQL at ${url} (is it running, with a database \`test\`? .ci/run starts it)`
      )
    })
  })
} else if (!reachable) {
  console.warn(
    `\n[pg.test.ts] SKIPPED: PostgreSQL is not reachable at ${url} (set JOB_QUEUE_TEST_PG_URL, or start it)\n`
  )
  describe.skip(`SQL adapter on PostgreSQL (skipped: not reachable at ${url})`, () => {
    it("reaches PostgreSQL", () => {})
  })
} else {
  suite("JobStore contract: SQL adapter on PostgreSQL", freshStore)

  describe("SQL adapter on PostgreSQL", () => {
    it.live("is durable: records survive a new connection pool, migrations run once", () =>
      Effect.gen(function* () {
        const schema = yield* freshSchema
        const job = makeJob({ metadata: { kept: true } })
        yield* Effect.flatMap(JobStore, (store) => {
          expect(store.durable).toBe(true)
          return store.insert([job], 10)
        }).pipe(Effect.provide(SqlJobStore.layerPg(inSchema(schema))))
        const reopened = SqlJobStore.layer.pipe(
          Layer.provideMerge(PgClient.layer({ url: Redacted.make(inSchema(schema)) }))
        )
        const [found, migrations] = yield* Effect.gen(function* () {
          const store = yield* JobStore
          const sql = yield* SqlClient.SqlClient
          return [
            yield* store.get(job.id),
            yield* sql<{
              readonly migration_id: number
            }>`SELECT migration_id FROM ${sql(SqlJobStore.migrationsTable)}`
          ] as const
        }).pipe(Effect.provide(reopened))
        expect(found).toEqual(Option.some(job))
        expect(migrations.map((row) => row.migration_id)).toEqual([1, 2, 3])
      }).pipe(Effect.scoped, Effect.provide(admin))
    )

    it.live("signals: messages sent at once all arrive, each once, in order", () =>
      Effect.gen(function* () {
        const signals = (yield* JobStore).signals!
        const inbox = yield* Queue.unbounded<string>()
        yield* Effect.forkScoped(Stream.runForEach(signals.receive, (message) => Queue.offer(inbox, message)))
        // The listener is up once a probe comes back (probes sent before it listened are lost).
        yield* signals
          .send("probe")
          .pipe(
            Effect.zipRight(Effect.timeout(Queue.take(inbox), "100 millis")),
            Effect.retry({ times: 100 })
          )
        const messages = Array.from({ length: 20 }, (_, i) => `m${i}`)
        yield* Effect.forEach(messages, signals.send, { concurrency: "unbounded", discard: true })
        const received: Array<string> = []
        while (received.length < messages.length) {
          const message = yield* Queue.take(inbox)
          if (message !== "probe") received.push(message)
        }
        expect(received).toEqual(messages)
      }).pipe(Effect.scoped, Effect.provide(freshStore))
    )

    it.live("the claim, list and count queries use their indexes", () =>
      Effect.gen(function* () {
        const store = yield* JobStore
        const sql = yield* SqlClient.SqlClient
        yield* store.insert(
          Array.from({ length: 2_000 }, (_, i) => sampleJob(i)),
          10_000
        )
        yield* sql`ANALYZE jobs`
        const q = SqlJobStore.statements(sql)
        const claim = { limit: 10, now: at(500), owner: "node", leaseUntil: at(1_000) }

        for (const options of [claim, { ...claim, types: ["a"] }]) {
          const plan = yield* queryPlan(q.claim(options))
          expect(plan).toMatch(/Index Scan using jobs_pending_idx/)
          expect(plan).not.toContain("Sort")
          expect(plan).toContain("LockRows")
          expect(plan).toMatch(/Index Scan using jobs_pkey on jobs/)
          expect(plan).not.toContain("Seq Scan")
        }

        const cursor = { createdAt: at(1_000).getTime(), id: makeJob().id }
        for (const plan of [
          yield* queryPlan(q.list({}, undefined, 51)),
          yield* queryPlan(q.list({}, cursor, 51)),
          yield* queryPlan(q.list({ type: ["a"] }, cursor, 51))
        ]) {
          expect(plan).toMatch(/Index Scan using jobs_created_idx on jobs/)
          expect(plan).not.toContain("Sort")
        }
        // By status: the status index, or the creation index filtered when the planner reckons that cheaper.
        const pending = yield* queryPlan(q.list({ status: ["pending"] }, undefined, 51))
        expect(pending).toMatch(/Index Scan using jobs_status_created_idx on jobs/)
        expect(pending).not.toContain("Sort")
        const pendingPage = yield* queryPlan(q.list({ status: ["pending"] }, cursor, 51))
        expect(pendingPage).toMatch(/Index Scan using jobs_(status_)?created_idx on jobs/)
        expect(pendingPage).not.toContain("Sort")

        // Counting pending jobs reads the pending index (or one that leads with status).
        const count = yield* queryPlan(q.pendingCount)
        expect(count).toMatch(/(Bitmap )?Index (Only )?Scan (using|on) jobs_(pending|status_created)_idx/)
        expect(count).not.toContain("Seq Scan")
      }).pipe(Effect.provide(freshStoreWithClient))
    )
  })
}
