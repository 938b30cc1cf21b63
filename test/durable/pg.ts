// PostgreSQL for the durable tests: whether the server is reachable (in CI a missing server fails the tests, as in
// test/store/pg.test.ts, never skips them silently), and throwaway databases named jq_test_*, dropped afterwards.
import * as SqlClient from "@effect/sql/SqlClient"
import * as PgClient from "@effect/sql-pg/PgClient"
import { describe, it } from "@effect/vitest"
import { Effect, Layer, ManagedRuntime, Redacted } from "effect"

// The real server (CI starts it in .ci/run): user postgres with trust auth, database `test`.
export const pgUrl = process.env.JOB_QUEUE_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test"

export const pgReachable: boolean = await Effect.runPromise(
  Effect.scoped(Layer.build(PgClient.layer({ url: Redacted.make(pgUrl), connectTimeout: "5 seconds" }))).pipe(
    Effect.as(true),
    Effect.catchAllCause(() => Effect.succeed(false))
  )
)

/**
 * `describe` for tests that need PostgreSQL: when the server cannot be reached the block fails under CI and is
 * skipped, with a warning, elsewhere.
 */
export const describePg = (title: string, body: () => void): void => {
  if (pgReachable) {
    describe(title, body)
  } else if (process.env.CI) {
    describe(title, () => {
      it("reaches PostgreSQL", () => {
        throw new Error(
          `cannot connect to PostgreSQL at ${pgUrl} (is it running, with a database \`test\`? .ci/run starts it)`
        )
      })
    })
  } else {
    console.warn(
      `\n[${title}] SKIPPED: PostgreSQL is not reachable at ${pgUrl} (set JOB_QUEUE_TEST_PG_URL)\n`
    )
    describe.skip(`${title} (skipped: PostgreSQL not reachable at ${pgUrl})`, () => {
      it("reaches PostgreSQL", () => {})
    })
  }
}

/** The server's URL with another database (and, optionally, a search_path: the tables then live in that schema). */
export const urlFor = (database: string, schema?: string): string => {
  const url = new URL(pgUrl)
  url.pathname = `/${database}`
  if (schema !== undefined) url.searchParams.set("options", `-c search_path=${schema}`)
  return url.toString()
}

/** Runs statements on one connection to `url`, closed afterwards. */
export const withSql = <A, E>(
  url: string,
  f: (sql: SqlClient.SqlClient) => Effect.Effect<A, E>
): Promise<A> =>
  Effect.runPromise(
    Effect.flatMap(SqlClient.SqlClient, f).pipe(
      Effect.provide(PgClient.layer({ url: Redacted.make(url), maxConnections: 1 }))
    )
  )

/** A connection pool to `url` kept open across calls (for polling); `close` ends it. */
export interface SqlSession {
  readonly run: <A, E>(f: (sql: SqlClient.SqlClient) => Effect.Effect<A, E>) => Promise<A>
  readonly close: () => Promise<void>
}

export const openSql = (url: string): SqlSession => {
  const runtime = ManagedRuntime.make(PgClient.layer({ url: Redacted.make(url), maxConnections: 2 }))
  return {
    run: (f) => runtime.runPromise(Effect.flatMap(SqlClient.SqlClient, f)),
    close: () => runtime.dispose()
  }
}

let databases = 0

/** A database to create, use and drop: `jq_test_<tag>_<pid>_<n>`, unique to this process. */
export interface TestDatabase {
  readonly name: string
  readonly url: string
  readonly create: () => Promise<void>
  /** Drops it, closing whatever connections are still open to it (safe to call twice, or before `create`). */
  readonly drop: () => Promise<void>
}

export const testDatabase = (tag: string): TestDatabase => {
  const name = `jq_test_${tag}_${process.pid}_${Date.now().toString(36)}_${++databases}`
  return {
    name,
    url: urlFor(name),
    create: () => withSql(pgUrl, (sql) => Effect.asVoid(sql`CREATE DATABASE ${sql(name)}`)),
    drop: () => withSql(pgUrl, (sql) => Effect.asVoid(sql`DROP DATABASE IF EXISTS ${sql(name)} WITH (FORCE)`))
  }
}
