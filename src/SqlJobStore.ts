/**
 * The SQL adapter of the `JobStore` port: one module over `@effect/sql`'s `SqlClient`, for SQLite and PostgreSQL.
 * Records outlive the process (`durable: true`), and several processes may share one database: claims hand a job to
 * one claimer only (on PostgreSQL with `FOR UPDATE SKIP LOCKED`), and leases let a crashed node's jobs be recovered.
 *
 * Dates are stored as epoch milliseconds (SQLite `INTEGER`) or `timestamptz` (PostgreSQL), both exact to the
 * millisecond; metadata and results as JSON text (SQLite) or `jsonb` (PostgreSQL). Besides a column per job field,
 * the `jobs` table has `seq` (insert order, for FIFO claims), `lease_owner` and `lease_until` (who runs a claimed job,
 * and until when), and `previous_status` (set by every move, so one `UPDATE ... RETURNING` reports where the job moved
 * from). The schema is created by the migrations below, run when the store is made. Database errors are defects: the
 * port has no error channel for them (deadlocks and serialization failures are retried first).
 */
import * as Migrator from "@effect/sql/Migrator"
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import type { Fragment, Statement } from "@effect/sql/Statement"
import { type ConfigError, Data, Effect, Either, Layer, Option, Redacted, Stream } from "effect"
import type { QueueFull } from "./domain/errors.js"
import {
  canTransition,
  Job,
  type JobId,
  type JobStage,
  type JobStatus,
  JobStatuses,
  type Json,
  type JsonObject
} from "./domain/Job.js"
import { cursorAfter, JobPage, type JobQuery, PageLimits, parseCursor } from "./domain/JobPage.js"
import { batching } from "./internal/batching.js"
import {
  type ClaimOptions,
  type Inserted,
  invalidCursor,
  JobStore,
  type JobStoreService,
  leaseExpiredError,
  type ProgressPatch,
  queueFull,
  type RetentionPolicy,
  type Transition,
  type TransitionDetail
} from "./JobStore.js"

/** The table that records which of this store's migrations have run (apart from any migrations of the app). */
export const migrationsTable = "effect_job_queue_migrations"

const statusCheck = `CHECK (status IN (${JobStatuses.map((status) => `'${status}'`).join(", ")}))`

const insertColumns =
  "id, type, status, stage, progress, message, metadata, result, error, last_error, priority, attempts, " +
  "max_attempts, timeout_ms, idempotency_key, run_at, created_at, started_at, finished_at, updated_at"

/**
 * PostgreSQL's insert, as a function so that it takes one round trip (and one commit): it takes the insert lock,
 * inserts the rows (given as JSON, `metadata` and `result` as JSON text), skips those whose idempotency key is held,
 * and, when it stored pending jobs, counts pending jobs (a statement of its own, so its snapshot, taken after the
 * lock, sees every insert committed before) and fails with SQLSTATE JQ001 above `max_pending`. It returns the ids
 * stored. Through `withTransaction`, with the lock and the count apart, an insert took five round trips.
 */
const insertFunction = `CREATE FUNCTION effect_job_queue_insert(new_jobs jsonb, max_pending bigint)
RETURNS SETOF uuid LANGUAGE plpgsql AS $fn$
DECLARE
  stored uuid[];
  added bigint;
  counted bigint;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('effect-job-queue'), hashtext(current_schema()));
  WITH inserted AS (
    INSERT INTO jobs (${insertColumns})
    SELECT r.id, r.type, r.status, r.stage, r.progress, r.message, r.metadata::jsonb, r.result::jsonb, r.error,
      r.last_error, r.priority, r.attempts, r.max_attempts, r.timeout_ms, r.idempotency_key, r.run_at, r.created_at,
      r.started_at, r.finished_at, r.updated_at
    FROM jsonb_to_recordset(new_jobs) AS r (id uuid, type text, status text, stage text, progress double precision,
      message text, metadata text, result text, error text, last_error text, priority bigint, attempts bigint,
      max_attempts bigint, timeout_ms bigint, idempotency_key text, run_at timestamptz, created_at timestamptz,
      started_at timestamptz, finished_at timestamptz, updated_at timestamptz)
    ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING jobs.id, jobs.status
  )
  SELECT array_agg(inserted.id), count(*) FILTER (WHERE inserted.status = 'pending') INTO stored, added FROM inserted;
  IF added > 0 THEN
    SELECT count(*) INTO counted FROM jobs WHERE status = 'pending';
    IF counted > max_pending THEN
      RAISE EXCEPTION 'the queue is full' USING ERRCODE = 'JQ001';
    END IF;
  END IF;
  RETURN QUERY SELECT unnest(stored);
END
$fn$`

/** The store's migrations, in code: run in order, each once, by {@link migrate}. */
export const migrations: Migrator.Loader = Migrator.fromRecord({
  "1_create_jobs": Effect.gen(function* () {
    const sql = (yield* SqlClient.SqlClient).withoutTransforms()
    yield* sql.onDialectOrElse({
      pg: () => sql`CREATE TABLE jobs (
        seq bigint GENERATED ALWAYS AS IDENTITY,
        id uuid PRIMARY KEY,
        type text NOT NULL,
        status text NOT NULL ${sql.literal(statusCheck)},
        stage text NOT NULL,
        progress double precision NOT NULL,
        message text,
        metadata jsonb NOT NULL,
        result jsonb NOT NULL,
        error text,
        last_error text,
        priority bigint NOT NULL,
        attempts bigint NOT NULL,
        max_attempts bigint NOT NULL,
        timeout_ms bigint,
        idempotency_key text,
        run_at timestamptz NOT NULL,
        created_at timestamptz NOT NULL,
        started_at timestamptz,
        finished_at timestamptz,
        updated_at timestamptz NOT NULL,
        lease_owner text,
        lease_until timestamptz,
        previous_status text
      )`,
      orElse: () => sql`CREATE TABLE jobs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL,
        status TEXT NOT NULL ${sql.literal(statusCheck)},
        stage TEXT NOT NULL,
        progress REAL NOT NULL,
        message TEXT,
        metadata TEXT NOT NULL,
        result TEXT NOT NULL,
        error TEXT,
        last_error TEXT,
        priority INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        max_attempts INTEGER NOT NULL,
        timeout_ms INTEGER,
        idempotency_key TEXT,
        run_at INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        started_at INTEGER,
        finished_at INTEGER,
        updated_at INTEGER NOT NULL,
        lease_owner TEXT,
        lease_until INTEGER,
        previous_status TEXT
      )`
    })
    // The claim path: due pending jobs, highest priority first, then in insert order (replaced by migration 2).
    yield* sql`CREATE INDEX jobs_claim_idx ON jobs (status, run_at, priority DESC, seq)`
    // The list path, unfiltered and by status: newest first, ties by id.
    yield* sql`CREATE INDEX jobs_created_idx ON jobs (created_at DESC, id DESC)`
    yield* sql`CREATE INDEX jobs_status_created_idx ON jobs (status, created_at DESC, id DESC)`
    // One job per idempotency key, enforced by the database so concurrent inserts cannot both win.
    yield* sql`CREATE UNIQUE INDEX jobs_idempotency_key_idx ON jobs (idempotency_key)
      WHERE idempotency_key IS NOT NULL`
    // Retention (finished jobs, earliest finished first) and lease recovery (running jobs under a lease).
    yield* sql`CREATE INDEX jobs_finished_idx ON jobs (finished_at, seq) WHERE finished_at IS NOT NULL`
    yield* sql`CREATE INDEX jobs_lease_idx ON jobs (lease_until) WHERE lease_until IS NOT NULL`
  }),
  // The claim path again, in the claim's own order: a claim walks pending jobs highest priority first and stops
  // after `limit` due ones. Led by status and `run_at`, the first index made it read and sort every due pending job
  // (about 9 ms a claim with 10,000 pending on PostgreSQL); this one, partial, holds pending jobs only.
  "2_claim_order": Effect.gen(function* () {
    const sql = (yield* SqlClient.SqlClient).withoutTransforms()
    yield* sql`CREATE INDEX jobs_pending_idx ON jobs (priority DESC, seq) WHERE status = 'pending'`
    yield* sql`DROP INDEX jobs_claim_idx`
  }),
  // PostgreSQL: an insert in one round trip (see `insertFunction`).
  "3_insert_function": Effect.gen(function* () {
    const sql = (yield* SqlClient.SqlClient).withoutTransforms()
    yield* sql.onDialectOrElse({
      pg: () => sql.unsafe(insertFunction),
      orElse: () => Effect.void
    })
  })
})

const runMigrations = Migrator.make({})({ loader: migrations, table: migrationsTable })

/** Runs the store's pending migrations (in a transaction; on PostgreSQL under a lock, so nodes may race here). */
export const migrate: Effect.Effect<
  ReadonlyArray<readonly [id: number, name: string]>,
  Migrator.MigrationError | SqlError,
  SqlClient.SqlClient
> = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  sql.onDialectOrElse({
    // The migrator creates its table before it takes its lock, so nodes starting together on an empty database
    // would race to create it (and all but one fail). A session advisory lock, held on a connection of its own
    // while the migrations run (and released with the session should the process die), lets one node in at a time.
    pg: () =>
      Effect.scoped(
        Effect.flatMap(sql.reserve, (connection) => {
          const lock = (call: string) =>
            connection.executeRaw(
              `SELECT ${call}(hashtext('effect-job-queue:migrate'), hashtext(current_schema()))`,
              []
            )
          return Effect.acquireUseRelease(
            lock("pg_advisory_lock"),
            () => runMigrations,
            () => Effect.ignore(lock("pg_advisory_unlock"))
          )
        })
      ),
    orElse: () => runMigrations
  })
)

/** A row of the `jobs` table, as the driver returns it. */
type Row = { readonly [column: string]: unknown }

const terminal: ReadonlyArray<JobStatus> = JobStatuses.filter(
  (status) => !JobStatuses.some((to) => canTransition(status, to))
)

/** The statuses a job may move to `to` from (the transition rule, read backwards). */
const sources = (to: JobStatus): ReadonlyArray<JobStatus> =>
  JobStatuses.filter((from) => canTransition(from, to))

// Rows per INSERT statement: well under SQLite's and PostgreSQL's bound-parameter limits at 21 columns a row.
const insertChunk = 500

const readDate = (value: unknown): Date => (value instanceof Date ? value : new Date(Number(value)))
const readNullableDate = (value: unknown): Date | null =>
  value === null || value === undefined ? null : readDate(value)
const readNullableString = (value: unknown): string | null =>
  value === null || value === undefined ? null : String(value)

/**
 * The statements the SQL store runs, built for one client's dialect. The store is made from them; they are exported
 * so that tests can check their query plans (that the claim and list queries use their indexes).
 */
export const statements = (client: SqlClient.SqlClient) => {
  const sql = client.withoutTransforms()
  const pg = sql.onDialectOrElse({ pg: () => true, orElse: () => false })
  /** A time as a parameter: a `Date` for `timestamptz`, epoch ms for SQLite's `INTEGER`. */
  const time: (date: Date) => Date | number = pg ? (date) => date : (date) => date.getTime()
  /** A JSON column as read: `pg` parses `jsonb` itself, SQLite returns the text. */
  const readJson: (value: unknown) => Json = pg
    ? (value) => (value === undefined ? null : (value as Json))
    : (value) => (value === null || value === undefined ? null : (JSON.parse(String(value)) as Json))

  const decode = (row: Row): Job =>
    new Job(
      {
        id: String(row.id) as JobId,
        type: String(row.type),
        status: row.status as JobStatus,
        stage: row.stage as JobStage,
        progress: Number(row.progress),
        message: readNullableString(row.message),
        metadata: readJson(row.metadata) as JsonObject,
        result: readJson(row.result),
        error: readNullableString(row.error),
        lastError: readNullableString(row.last_error),
        priority: Number(row.priority),
        attempts: Number(row.attempts),
        maxAttempts: Number(row.max_attempts),
        timeoutMs: row.timeout_ms === null || row.timeout_ms === undefined ? null : Number(row.timeout_ms),
        idempotencyKey: readNullableString(row.idempotency_key),
        runAt: readDate(row.run_at),
        createdAt: readDate(row.created_at),
        startedAt: readNullableDate(row.started_at),
        finishedAt: readNullableDate(row.finished_at),
        updatedAt: readDate(row.updated_at)
      },
      true
    )

  const encode = (job: Job) => ({
    id: job.id,
    type: job.type,
    status: job.status,
    stage: job.stage,
    progress: job.progress,
    message: storableText(job.message),
    metadata: JSON.stringify(job.metadata),
    result: storableJson(job.result),
    error: storableText(job.error),
    last_error: storableText(job.lastError),
    priority: job.priority,
    attempts: job.attempts,
    max_attempts: job.maxAttempts,
    timeout_ms: job.timeoutMs,
    idempotency_key: job.idempotencyKey,
    run_at: time(job.runAt),
    created_at: time(job.createdAt),
    started_at: job.startedAt === null ? null : time(job.startedAt),
    finished_at: job.finishedAt === null ? null : time(job.finishedAt),
    updated_at: time(job.updatedAt)
  })

  /** One move of a batch: a job, where to, and what the move records. */
  type Move = { readonly id: JobId; readonly detail: TransitionDetail; readonly now: Date }

  /**
   * What a move to `to` writes besides the status (the effects of `applyTransition`, as SQL), read from the batch's
   * row `v` of values.
   */
  const batchEffects = (to: JobStatus): string => {
    switch (to) {
      case "running":
        return "attempts = attempts + 1, started_at = v.moved_at"
      case "pending":
        return "stage = 'queued', progress = 0, message = NULL, last_error = v.error, run_at = v.run_at"
      case "completed":
        return "progress = 100, result = v.result, finished_at = v.moved_at"
      case "failed":
        return "error = v.error, last_error = v.error, finished_at = v.moved_at"
      case "cancelled":
        return "error = v.error, finished_at = v.moved_at"
    }
  }

  /**
   * Moves several jobs (distinct ids) to `to` in one statement, each with its own detail and time. RETURNING gives
   * the jobs that moved; the others were refused (or are gone). `previous_status = jobs.status` is evaluated on the
   * row as it was, so RETURNING tells where each job moved from.
   */
  const transitionMany = (to: JobStatus, moves: ReadonlyArray<Move>): Statement<Row> => {
    const values = moves.map(({ detail, id, now }) => {
      const result = storableJson(detail.result ?? null)
      const runAt = time(detail.runAt ?? now)
      return pg
        ? sql`(${id}::uuid, ${time(now)}::timestamptz, ${result}::jsonb, ${storableText(detail.error ?? null)}::text,
            ${runAt}::timestamptz)`
        : sql`(${id}, ${time(now)}, ${result}, ${storableText(detail.error ?? null)}, ${runAt})`
    })
    // The values' columns are named by a CTE (SQLite's subqueries take no column list); `RETURNING jobs.*` on
    // PostgreSQL keeps v's columns (one is named `error` too) out of the rows.
    const set = sql`previous_status = jobs.status, status = ${to}, updated_at = v.moved_at,
      lease_owner = NULL, lease_until = NULL, ${sql.literal(batchEffects(to))}`
    return pg
      ? // The rows are locked in id order first, as the heartbeat locks them: two statements that update several
        // of the same rows, each in its own order, can deadlock (found after PostgreSQL's 1 s deadlock_timeout).
        sql<Row>`WITH v (id, moved_at, result, error, run_at) AS (VALUES ${sql.csv(values)}),
          locked AS MATERIALIZED (
            SELECT jobs.id FROM jobs JOIN v ON jobs.id = v.id ORDER BY jobs.id FOR NO KEY UPDATE OF jobs
          )
          UPDATE jobs SET ${set}
          FROM v, locked WHERE jobs.id = v.id AND jobs.id = locked.id AND jobs.status IN ${sql.in(sources(to))}
          RETURNING jobs.*`
      : sql<Row>`WITH v (id, moved_at, result, error, run_at) AS (VALUES ${sql.csv(values)})
          UPDATE jobs SET ${set}
          FROM v WHERE jobs.id = v.id AND jobs.status IN ${sql.in(sources(to))}
          RETURNING *`
  }

  const claim = (options: ClaimOptions): Statement<Row> => {
    const due = sql.and([
      sql`status = 'pending'`,
      sql`run_at <= ${time(options.now)}`,
      ...(options.types === undefined ? [] : [sql`type IN ${sql.in(options.types)}`])
    ])
    const set = sql`previous_status = status, status = 'running', attempts = attempts + 1,
      started_at = ${time(options.now)}, updated_at = ${time(options.now)},
      lease_owner = ${options.owner}, lease_until = ${time(options.leaseUntil)}`
    return sql.onDialectOrElse({
      // Rows another claimer has locked are skipped, not waited for: concurrent claimers take disjoint jobs. The
      // locking SELECT is a materialized CTE so it runs once: as an `IN (...)` subquery the planner may run it again
      // per row, and a second run skips the rows this statement has just updated and locks further ones.
      pg: () => sql<Row>`WITH claimed AS MATERIALIZED (
          SELECT id FROM jobs WHERE ${due}
          ORDER BY priority DESC, seq
          LIMIT ${options.limit}
          FOR UPDATE SKIP LOCKED
        )
        UPDATE jobs SET ${set}
        FROM claimed WHERE jobs.id = claimed.id
        RETURNING jobs.*`,
      // SQLite runs one writer at a time: the statement is atomic as it stands. Its planner, left to itself, reads
      // pending jobs by the status index and sorts them all; the pending index is read in the claim's order.
      orElse: () => sql<Row>`UPDATE jobs SET ${set}
        WHERE seq IN (
          SELECT seq FROM jobs INDEXED BY jobs_pending_idx WHERE ${due}
          ORDER BY priority DESC, seq
          LIMIT ${options.limit}
        )
        RETURNING *`
    })
  }

  const list = (
    query: JobQuery,
    after: { readonly createdAt: number; readonly id: string } | undefined,
    limit: number
  ): Statement<Row> => {
    const where: Array<Fragment> = []
    if (query.status !== undefined && query.status.length > 0)
      where.push(sql`status IN ${sql.in(query.status)}`)
    if (query.type !== undefined && query.type.length > 0) where.push(sql`type IN ${sql.in(query.type)}`)
    if (after !== undefined)
      where.push(sql`(created_at, id) < (${time(new Date(after.createdAt))}, ${after.id})`)
    return sql<Row>`SELECT * FROM jobs WHERE ${sql.and(where)} ORDER BY created_at DESC, id DESC LIMIT ${limit}`
  }

  const pendingCount: Statement<Row> = sql<Row>`SELECT COUNT(*) AS n FROM jobs WHERE status = 'pending'`

  return { sql, pg, time, decode, encode, transitionMany, claim, list, pendingCount } as const
}

const isTransient = (error: SqlError): boolean => {
  const code = (error.cause as { readonly code?: unknown } | undefined)?.code
  // PostgreSQL: deadlock detected, serialization failure; SQLite: the database stayed locked past the busy timeout.
  return code === "40P01" || code === "40001" || code === "SQLITE_BUSY"
}

/** Retries what a transient database conflict aborted, and turns every other database error into a defect. */
const run = <A, E>(effect: Effect.Effect<A, E | SqlError>): Effect.Effect<A, Exclude<E, SqlError>> =>
  effect.pipe(
    Effect.retry({
      times: 5,
      while: (error) =>
        (error as { readonly _tag?: unknown })._tag === "SqlError" && isTransient(error as SqlError)
    }),
    Effect.catchIf(
      (error): error is SqlError => (error as { readonly _tag?: unknown })._tag === "SqlError",
      (error) => Effect.die(error)
    )
  ) as Effect.Effect<A, Exclude<E, SqlError>>

// PostgreSQL refuses U+0000 and lone surrogates in text and jsonb. What handlers write (a result, an error, a
// progress message) is stored with each replaced by U+FFFD, rather than failing the job's write (and leaving it
// running); job metadata never holds a U+0000 (the queue refuses it at submit).
// biome-ignore lint/suspicious/noControlCharactersInRegex: U+0000 is what this matches.
const unstorable = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g
const escapedUnstorable = /\\u(?:0000|d[89a-f])/i
const storableText = <S extends string | null | undefined>(text: S): S =>
  (typeof text === "string" ? text.replace(unstorable, "\ufffd") : text) as S
const storableJson = (value: unknown): string => {
  const text = JSON.stringify(value)
  return escapedUnstorable.test(text)
    ? JSON.stringify(value, (_key, inner: unknown) =>
        typeof inner === "string" ? storableText(inner) : inner
      )
    : text
}

/** An idempotency key's holder vanished between the insert and the read (pruned meanwhile): the insert is retried. */
class HolderVanished {
  readonly _tag = "HolderVanished"
}

/**
 * Makes the SQL store over the `SqlClient` in context (SQLite or PostgreSQL), after running its migrations.
 * The client's name transforms, if any, are bypassed: the store names its own columns.
 */
export const make: Effect.Effect<JobStoreService, SqlError | Migrator.MigrationError, SqlClient.SqlClient> =
  Effect.gen(function* () {
    const client = yield* SqlClient.SqlClient
    // The context the batch writers run in (see `batching`).
    const runtime = yield* Effect.runtime<never>()
    const supported = client.onDialectOrElse({ pg: () => true, sqlite: () => true, orElse: () => false })
    if (!supported) return yield* Effect.dieMessage("SqlJobStore supports SQLite and PostgreSQL only")
    yield* migrate
    const q = statements(client)
    const { sql, time, decode } = q

    const fetch = (id: JobId) =>
      Effect.map(sql<Row>`SELECT * FROM jobs WHERE id = ${id}`, (rows) =>
        rows[0] === undefined ? Option.none() : Option.some(decode(rows[0]))
      )

    type InsertCall = { readonly jobs: ReadonlyArray<Job>; readonly maxPending: number }

    // Each call's results, from the ids stored: a job not stored gets the job that holds its idempotency key.
    const resultsOf = (calls: ReadonlyArray<InsertCall>, created: ReadonlySet<string>) =>
      Effect.gen(function* () {
        const keys: Array<string> = []
        for (const call of calls)
          for (const job of call.jobs)
            if (!created.has(job.id.toLowerCase()) && job.idempotencyKey !== null)
              keys.push(job.idempotencyKey)
        const holders = new Map<string, Job>()
        if (keys.length > 0) {
          const rows = yield* sql<Row>`SELECT * FROM jobs WHERE idempotency_key IN ${sql.in(keys)}`
          for (const row of rows) holders.set(String(row.idempotency_key), decode(row))
        }
        const results: Array<ReadonlyArray<Inserted>> = []
        for (const call of calls) {
          const inserted: Array<Inserted> = []
          for (const job of call.jobs) {
            if (created.has(job.id.toLowerCase())) {
              inserted.push({ job, created: true })
              continue
            }
            const holder = job.idempotencyKey === null ? undefined : holders.get(job.idempotencyKey)
            if (holder === undefined) return yield* Effect.fail(new HolderVanished())
            inserted.push({ job: holder, created: false })
          }
          results.push(inserted)
        }
        return results
      })

    // SQLite: the calls' jobs in one transaction (SQLite runs one writer at a time, so the count is exact). Fails
    // with `QueueFull` when the pending count ends above any of the calls' limits (one call alone: exactly its own).
    const insertSqlite = (calls: ReadonlyArray<InsertCall>) =>
      Effect.gen(function* () {
        const batch = calls.flatMap((call) => call.jobs)
        const created = new Set<string>()
        for (let start = 0; start < batch.length; start += insertChunk) {
          const rows =
            yield* sql<Row>`INSERT INTO jobs ${sql.insert(batch.slice(start, start + insertChunk).map(q.encode))}
            ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
            RETURNING id`
          for (const row of rows) created.add(String(row.id).toLowerCase())
        }
        let limit = Number.POSITIVE_INFINITY
        for (const call of calls)
          for (const job of call.jobs)
            if (job.status === "pending" && created.has(job.id.toLowerCase()))
              limit = Math.min(limit, call.maxPending)
        if (limit !== Number.POSITIVE_INFINITY) {
          const [row] = yield* q.pendingCount
          if (Number(row?.n) > limit) return yield* queueFull(limit)
        }
        return yield* resultsOf(calls, created)
      }).pipe(sql.withTransaction)

    // PostgreSQL: one call of `effect_job_queue_insert` (one round trip, one commit), then the holders of the keys
    // that were taken, if any. Its limit is the lowest of the calls that insert pending jobs: when that is too
    // strict for some call, each call runs again alone and gets its exact outcome (see `insertBatched`).
    const insertPg = (calls: ReadonlyArray<InsertCall>) =>
      Effect.gen(function* () {
        let limit = Number.POSITIVE_INFINITY
        for (const call of calls)
          if (call.jobs.some((job) => job.status === "pending")) limit = Math.min(limit, call.maxPending)
        const rows = JSON.stringify(calls.flatMap((call) => call.jobs.map(q.encode)))
        const stored = yield* sql<Row>`SELECT id FROM effect_job_queue_insert(${rows}::jsonb,
          ${Number.isFinite(limit) ? Math.floor(limit) : Number.MAX_SAFE_INTEGER}) AS id`.pipe(
          Effect.catchIf(
            (error) => (error.cause as { readonly code?: unknown } | undefined)?.code === "JQ001",
            () => queueFull(limit)
          )
        )
        return yield* resultsOf(calls, new Set(stored.map((row) => String(row.id).toLowerCase())))
      })

    const insertOnce = (calls: ReadonlyArray<InsertCall>) => (q.pg ? insertPg(calls) : insertSqlite(calls))

    const insertCalls = (calls: ReadonlyArray<InsertCall>) =>
      run(insertOnce(calls)).pipe(
        Effect.retry({ times: 5, while: (error) => error instanceof HolderVanished }),
        Effect.catchIf(
          (error): error is HolderVanished => error instanceof HolderVanished,
          () => Effect.dieMessage("an idempotency key's job vanished while inserting, five times in a row")
        )
      )

    // Inserts that arrive together share a transaction (and its commit). Should their jobs together pass a limit,
    // each insert runs again on its own, so each gets exactly the outcome it would have had alone.
    const insertBatched = batching(
      runtime,
      (
        calls: ReadonlyArray<InsertCall>
      ): Effect.Effect<ReadonlyArray<Either.Either<ReadonlyArray<Inserted>, QueueFull>>> =>
        calls.length === 1
          ? Effect.map(Effect.either(insertCalls(calls)), (result) => [Either.map(result, (all) => all[0]!)])
          : Effect.catchAll(
              Effect.map(insertCalls(calls), (all) =>
                all.map((inserted) => Either.right<ReadonlyArray<Inserted>>(inserted))
              ),
              (_full: QueueFull) =>
                Effect.forEach(calls, (call) =>
                  Effect.map(Effect.either(insertCalls([call])), (result) =>
                    Either.map(result, (all) => all[0]!)
                  )
                )
            )
    )

    // PostgreSQL's autovacuum analyzes a table at most once a minute (by default): after a burst of inserts the
    // planner still thinks the pending index tiny, and plans claims that read and sort every pending job (a bitmap
    // scan: about 9 ms a claim with 10,000 pending) instead of walking the index in order. So after every 1,000 rows
    // inserted here (and at most once a second) the table is analyzed, in the background.
    let insertedSinceAnalyze = 0
    let analyzedAt = 0
    const analyzeAfter = (count: number): Effect.Effect<void> =>
      Effect.suspend(() => {
        insertedSinceAnalyze += count
        const at = Date.now()
        if (!q.pg || insertedSinceAnalyze < 1000 || at - analyzedAt < 1000) return Effect.void
        insertedSinceAnalyze = 0
        analyzedAt = at
        return Effect.asVoid(Effect.forkDaemon(Effect.ignore(sql`ANALYZE jobs`)))
      })

    const insert: JobStoreService["insert"] = (jobs, maxPending) =>
      jobs.length === 0
        ? Effect.succeed([])
        : Effect.tap(Effect.flatten(insertBatched({ jobs, maxPending })), () => analyzeAfter(jobs.length))

    const list: JobStoreService["list"] = (query) =>
      Effect.suspend(() => {
        let after: { readonly createdAt: number; readonly id: string } | undefined
        if (query.cursor !== undefined) {
          after = parseCursor(query.cursor)
          if (after === undefined) return Effect.fail(invalidCursor(query.cursor))
        }
        const limit = Math.max(1, Math.min(query.limit ?? PageLimits.default, PageLimits.max))
        return run(
          Effect.map(q.list(query, after, limit + 1), (rows) => {
            const items = rows.slice(0, limit).map(decode)
            const last = items[items.length - 1]
            return new JobPage(
              { items, nextCursor: rows.length > limit && last !== undefined ? cursorAfter(last) : null },
              true
            )
          })
        )
      })

    type Move = {
      readonly id: JobId
      readonly to: JobStatus
      readonly detail: TransitionDetail
      readonly now: Date
    }

    // The moves of a batch, as statements: one per target status, of distinct jobs (a job moved twice in one batch
    // is moved again by a later statement, which sees the first move). Several statements share one transaction.
    const moveMany = (moves: ReadonlyArray<Move>): Effect.Effect<ReadonlyArray<Transition>, SqlError> => {
      const rounds: Array<{ readonly to: JobStatus; readonly ids: Set<string>; readonly at: Array<number> }> =
        []
      moves.forEach((move, i) => {
        const id = move.id.toLowerCase()
        let round = rounds.find(
          (round) => round.to === move.to && !round.ids.has(id) && round.at.length < insertChunk
        )
        if (round === undefined) {
          round = { to: move.to, ids: new Set(), at: [] }
          rounds.push(round)
        }
        round.ids.add(id)
        round.at.push(i)
      })
      const moved = new Array<Transition | undefined>(moves.length)
      const statements = Effect.forEach(
        rounds,
        (round) =>
          Effect.map(
            q.transitionMany(
              round.to,
              round.at.map((i) => moves[i]!)
            ),
            (rows) => {
              const byId = new Map(rows.map((row) => [String(row.id).toLowerCase(), row]))
              for (const i of round.at) {
                const row = byId.get(moves[i]!.id.toLowerCase())
                if (row !== undefined)
                  moved[i] = { _tag: "Moved", from: row.previous_status as JobStatus, job: decode(row) }
              }
            }
          ),
        { discard: true }
      )
      return Effect.gen(function* () {
        yield* rounds.length > 1 ? sql.withTransaction(statements) : statements
        const refused = moves.filter((_, i) => moved[i] === undefined).map((move) => move.id)
        const found = new Map<string, Job>()
        if (refused.length > 0) {
          const rows = yield* sql<Row>`SELECT * FROM jobs WHERE id IN ${sql.in(refused)}`
          for (const row of rows) found.set(String(row.id).toLowerCase(), decode(row))
        }
        return moves.map((move, i): Transition => {
          const done = moved[i]
          if (done !== undefined) return done
          const job = found.get(move.id.toLowerCase())
          return job === undefined ? { _tag: "NotFound" } : { _tag: "Refused", job }
        })
      })
    }

    const moveBatched = batching(runtime, (moves: ReadonlyArray<Move>) => run(moveMany(moves)))

    // Moves that arrive together (the completions of a claimed batch, say) are written together.
    const transition: JobStoreService["transition"] = (id, to, detail, now) =>
      moveBatched({ id, to, detail, now })

    const progress = (id: JobId, patch: ProgressPatch, now: Date) => {
      const set: Array<Fragment> = [sql`updated_at = ${time(now)}`]
      if (patch.stage !== undefined) set.push(sql`stage = ${patch.stage}`)
      if (patch.progress !== undefined) set.push(sql`progress = ${patch.progress}`)
      if (patch.message !== undefined) set.push(sql`message = ${storableText(patch.message)}`)
      return run(
        Effect.map(
          sql<Row>`UPDATE jobs SET ${sql.csv(set)} WHERE id = ${id} AND status = 'running' RETURNING *`,
          ([row]) => (row === undefined ? Option.none() : Option.some(decode(row)))
        )
      )
    }

    const prune = (policy: RetentionPolicy, now: Date) =>
      run(
        Effect.gen(function* () {
          let pruned = 0
          if (Number.isFinite(policy.maxAgeMs)) {
            const oldest = new Date(now.getTime() - policy.maxAgeMs)
            const aged = yield* sql`DELETE FROM jobs
              WHERE finished_at IS NOT NULL AND finished_at <= ${time(oldest)} AND status IN ${sql.in(terminal)}
              RETURNING seq`
            pruned += aged.length
          }
          if (Number.isFinite(policy.maxCount)) {
            const keep = Math.max(0, Math.floor(policy.maxCount))
            const finished = sql`SELECT seq FROM jobs WHERE finished_at IS NOT NULL AND status IN ${sql.in(terminal)}
              ORDER BY finished_at DESC, seq DESC`
            const over = yield* sql.onDialectOrElse({
              pg: () => sql`DELETE FROM jobs WHERE id IN (
                SELECT id FROM jobs WHERE finished_at IS NOT NULL AND status IN ${sql.in(terminal)}
                ORDER BY finished_at DESC, seq DESC OFFSET ${keep}
              ) RETURNING seq`,
              orElse: () =>
                sql`DELETE FROM jobs WHERE seq IN (${finished} LIMIT -1 OFFSET ${keep}) RETURNING seq`
            })
            pruned += over.length
          }
          return pruned
        }).pipe(sql.withTransaction)
      )

    const claim: JobStoreService["claim"] = (options) =>
      options.limit < 1 || options.types?.length === 0
        ? Effect.succeed([])
        : run(
            Effect.map(q.claim({ ...options, limit: Math.floor(options.limit) }), (rows) =>
              [...rows]
                .sort((a, b) => Number(b.priority) - Number(a.priority) || Number(a.seq) - Number(b.seq))
                .map(decode)
            )
          )

    const heartbeat: JobStoreService["heartbeat"] = (owner, ids, leaseUntil) =>
      ids.length === 0
        ? Effect.succeed([])
        : run(
            Effect.map(
              sql.onDialectOrElse({
                // In id order, as batched moves lock them (see `transitionMany`), so the two cannot deadlock.
                pg: () => sql<Row>`WITH held AS MATERIALIZED (
                    SELECT id FROM jobs
                    WHERE status = 'running' AND lease_owner = ${owner} AND id IN ${sql.in(ids)}
                    ORDER BY id FOR NO KEY UPDATE
                  )
                  UPDATE jobs SET lease_until = ${time(leaseUntil)}
                  FROM held WHERE jobs.id = held.id AND jobs.status = 'running' AND jobs.lease_owner = ${owner}
                  RETURNING jobs.id`,
                orElse: () => sql<Row>`UPDATE jobs SET lease_until = ${time(leaseUntil)}
                  WHERE status = 'running' AND lease_owner = ${owner} AND id IN ${sql.in(ids)}
                  RETURNING id`
              }),
              (rows) => {
                const held = new Set(rows.map((row) => String(row.id).toLowerCase()))
                return ids.filter((id) => held.has(id.toLowerCase()))
              }
            )
          )

    // A stalled job (its process died) is retried while attempts remain, and once more beyond them: a stall is the
    // process's fault, not the job's. A second stall with no attempts left fails it, so a job that crashes its
    // process cannot loop forever.
    const retry = sql`(attempts < max_attempts OR last_error IS NULL OR last_error <> ${leaseExpiredError})`
    const recoverExpired: JobStoreService["recoverExpired"] = (now) =>
      run(
        Effect.map(
          sql<Row>`UPDATE jobs SET previous_status = status,
            status = CASE WHEN ${retry} THEN 'pending' ELSE 'failed' END,
            stage = CASE WHEN ${retry} THEN 'queued' ELSE stage END,
            progress = CASE WHEN ${retry} THEN 0 ELSE progress END,
            message = CASE WHEN ${retry} THEN NULL ELSE message END,
            run_at = CASE WHEN ${retry} THEN ${time(now)} ELSE run_at END,
            error = CASE WHEN ${retry} THEN error ELSE ${leaseExpiredError} END,
            last_error = ${leaseExpiredError},
            finished_at = CASE WHEN ${retry} THEN finished_at ELSE ${time(now)} END,
            updated_at = ${time(now)}, lease_owner = NULL, lease_until = NULL
            WHERE status = 'running' AND lease_until < ${time(now)}
            RETURNING *`,
          (rows) => rows.map(decode)
        )
      )

    const release: JobStoreService["release"] = (owner, ids, now) =>
      ids.length === 0
        ? Effect.succeed([])
        : run(
            Effect.map(
              sql<Row>`UPDATE jobs SET previous_status = status, status = 'pending', stage = 'queued', progress = 0,
                message = NULL, updated_at = ${time(now)}, lease_owner = NULL, lease_until = NULL
                WHERE status = 'running' AND lease_owner = ${owner} AND id IN ${sql.in(ids)}
                RETURNING *`,
              (rows) => rows.map(decode)
            )
          )

    return {
      durable: true,
      insert,
      get: (id) => run(fetch(id)),
      list,
      transition,
      progress,
      pendingCount: run(Effect.map(q.pendingCount, ([row]) => Number(row?.n ?? 0))),
      prune,
      claim,
      heartbeat,
      recoverExpired,
      release
    } satisfies JobStoreService
  })

/** The SQL store as a layer over a `SqlClient`; its migrations run when the layer is built. */
export const layer: Layer.Layer<JobStore, SqlError | Migrator.MigrationError, SqlClient.SqlClient> =
  Layer.effect(JobStore, make)

/** A database driver (an optional peer dependency) that is not installed. */
class MissingDriver extends Data.TaggedError("MissingDriver")<{
  readonly message: string
  readonly cause: unknown
}> {}

// The drivers are optional peers: each is loaded only by the layer that needs it.
const loadDriver = <A>(name: string, load: () => Promise<A>): Effect.Effect<A> =>
  Effect.orDie(
    Effect.tryPromise({
      try: load,
      catch: (cause) =>
        new MissingDriver({
          message: `SqlJobStore needs the optional peer dependency ${name}: npm install ${name}`,
          cause
        })
    })
  )

/** The SQL store on a SQLite database file (created if missing; WAL mode), through `@effect/sql-sqlite-node`. */
export const layerSqlite = (
  filename: string
): Layer.Layer<JobStore, SqlError | Migrator.MigrationError | ConfigError.ConfigError> =>
  Layer.unwrapEffect(
    Effect.map(
      loadDriver("@effect/sql-sqlite-node", () => import("@effect/sql-sqlite-node/SqliteClient")),
      (SqliteClient) => Layer.provide(layer, SqliteClient.layer({ filename }))
    )
  )

/** The LISTEN/NOTIFY channel the nodes sharing a PostgreSQL store talk on. */
export const signalChannel = "effect_job_queue"

/**
 * The SQL store on a PostgreSQL database given by a connection URL, through `@effect/sql-pg`, with LISTEN/NOTIFY
 * signals between the nodes that share it.
 */
export const layerPg = (
  url: string | Redacted.Redacted<string>
): Layer.Layer<JobStore, SqlError | Migrator.MigrationError> =>
  Layer.unwrapEffect(
    Effect.map(
      loadDriver("@effect/sql-pg", () => import("@effect/sql-pg/PgClient")),
      (PgClient) =>
        Layer.provide(
          Layer.effect(
            JobStore,
            Effect.gen(function* () {
              const store = yield* make
              const client = yield* PgClient.PgClient
              const runtime = yield* Effect.runtime<never>()
              // pg_notify, not the client's `notify`: NOTIFY cannot take its payload as a bound parameter. Messages
              // sent together go in one statement: a NOTIFY is a commit of its own (and commits that notify take a
              // lock in turn), so one a message cost a commit each.
              const send = batching(runtime, (messages: ReadonlyArray<string>) =>
                Effect.as(
                  Effect.orDie(
                    messages.length === 1
                      ? client`SELECT pg_notify(${signalChannel}, ${messages[0]!})`
                      : client`SELECT pg_notify(${signalChannel}, message)
                          FROM unnest(${messages as Array<string>}::text[]) WITH ORDINALITY AS m (message, n)`
                  ),
                  messages.map(() => undefined)
                )
              )
              return {
                ...store,
                signals: {
                  send,
                  receive: Stream.orDie(client.listen(signalChannel))
                }
              } satisfies JobStoreService
            })
          ),
          PgClient.layer({
            url: Redacted.isRedacted(url) ? url : Redacted.make(url),
            applicationName: "effect-job-queue"
          })
        )
    )
  )
