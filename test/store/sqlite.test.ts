import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as SqlClient from "@effect/sql/SqlClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Option } from "effect"
import { JobStore } from "../../src/JobStore.js"
import * as SqlJobStore from "../../src/SqlJobStore.js"
import { at, makeJob, suite } from "./suite.js"

// One temporary directory for this run, a database file per test inside it; all of it is deleted afterwards.
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "job-store-sqlite-"))
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

let files = 0
/** A fresh database file name, removed (with its WAL files) when the scope closes. */
const freshFile = Effect.acquireRelease(
  Effect.sync(() => path.join(dir, `store-${++files}.db`)),
  (file) =>
    Effect.sync(() => {
      for (const suffix of ["", "-wal", "-shm"]) fs.rmSync(file + suffix, { force: true })
    })
)

suite(
  "JobStore contract: SQL adapter on SQLite",
  Layer.unwrapScoped(Effect.map(freshFile, SqlJobStore.layerSqlite))
)

/** The store and its client on one fresh file, for tests that look at the database itself. */
const withClient = Layer.unwrapScoped(
  Effect.map(freshFile, (filename) =>
    SqlJobStore.layer.pipe(Layer.provideMerge(SqliteClient.layer({ filename })))
  )
)

/** The query plan SQLite picks for a statement, one line per step. */
const queryPlan = (statement: { readonly compile: () => readonly [string, ReadonlyArray<unknown>] }) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const [text, params] = statement.compile()
    const rows = yield* sql.unsafe<{ readonly detail: string }>(`EXPLAIN QUERY PLAN ${text}`, params)
    return rows.map((row) => row.detail).join("\n")
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

describe("SQL adapter on SQLite", () => {
  it.live("is durable: records survive closing and reopening the database, migrations run once", () =>
    Effect.gen(function* () {
      const filename = yield* freshFile
      const job = makeJob({ metadata: { kept: true } })
      yield* Effect.flatMap(JobStore, (store) => {
        expect(store.durable).toBe(true)
        return store.insert([job], 10)
      }).pipe(Effect.provide(SqlJobStore.layerSqlite(filename)))
      const reopened = SqlJobStore.layer.pipe(Layer.provideMerge(SqliteClient.layer({ filename })))
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
    }).pipe(Effect.scoped)
  )

  it.live("the claim, list and count queries use their indexes", () =>
    Effect.gen(function* () {
      const store = yield* JobStore
      const sql = yield* SqlClient.SqlClient
      yield* store.insert(
        Array.from({ length: 400 }, (_, i) => sampleJob(i)),
        1_000
      )
      yield* sql`ANALYZE`
      const q = SqlJobStore.statements(sql)
      const claim = { limit: 10, now: at(50), owner: "node", leaseUntil: at(1_000) }

      for (const options of [claim, { ...claim, types: ["a"] }]) {
        const plan = yield* queryPlan(q.claim(options))
        expect(plan).toContain("SCAN jobs USING INDEX jobs_pending_idx")
        expect(plan).not.toContain("TEMP B-TREE")
        expect(plan).toContain("USING INTEGER PRIMARY KEY (rowid=?)")
        expect(plan).not.toMatch(/SCAN jobs(?! USING)/)
      }

      const newest = yield* queryPlan(q.list({}, undefined, 51))
      expect(newest).toContain("SCAN jobs USING INDEX jobs_created_idx")
      expect(newest).not.toContain("TEMP B-TREE")
      const page = yield* queryPlan(q.list({}, { createdAt: at(100).getTime(), id: makeJob().id }, 51))
      expect(page).toContain("SEARCH jobs USING INDEX jobs_created_idx")
      expect(page).not.toContain("TEMP B-TREE")
      const pending = yield* queryPlan(
        q.list({ status: ["pending"] }, { createdAt: at(100).getTime(), id: makeJob().id }, 51)
      )
      expect(pending).toContain("SEARCH jobs USING INDEX jobs_status_created_idx (status=? AND")
      expect(pending).not.toContain("TEMP B-TREE")

      expect(yield* queryPlan(q.pendingCount)).toMatch(
        /USING COVERING INDEX jobs_(pending|status_created)_idx/
      )
    }).pipe(Effect.provide(withClient))
  )
})
