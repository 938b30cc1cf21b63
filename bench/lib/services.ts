import { createConnection } from "node:net"
import { Redis } from "ioredis"
import pg from "pg"

// The run's id, in the names of its databases and keys: runs from several checkouts may share the servers, and one
// must not drop another's database mid-measurement. The runner picks it (its pid); its children inherit it.
process.env.BENCH_RUN_ID ??= String(process.pid)
const runId = process.env.BENCH_RUN_ID

/** Where the benchmark finds PostgreSQL and Redis (overridable with BENCH_PG_URL and BENCH_REDIS_URL). */
export const services = {
  /** The server URL without a database: each benchmark database is created and dropped on it. */
  pgServer: process.env.BENCH_PG_URL ?? "postgres://postgres@127.0.0.1:5432",
  /** Redis, for BullMQ. */
  redisUrl: process.env.BENCH_REDIS_URL ?? "redis://127.0.0.1:6379",
  /** The database our PostgreSQL store uses. */
  pgDatabase: `jq_bench_${runId}`,
  /** The database pg-boss uses (on the same server). */
  pgBossDatabase: `jq_bench_pgboss_${runId}`,
  /** The key prefix of BullMQ's queues, removed between measurements. */
  redisPrefix: `jqbench${runId}`
}

/** The connection URL of one benchmark database. */
export const pgUrl = (database: string): string => `${services.pgServer}/${database}`

const hostPort = (url: string, fallbackPort: number): { host: string; port: number } => {
  const parsed = new URL(url)
  return { host: parsed.hostname || "127.0.0.1", port: Number(parsed.port || fallbackPort) }
}

/** Whether a TCP port accepts connections within `timeoutMs`. */
export const reachable = (url: string, fallbackPort: number, timeoutMs = 1000): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = createConnection(hostPort(url, fallbackPort))
    const done = (ok: boolean) => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(timeoutMs, () => done(false))
    socket.once("connect", () => done(true))
    socket.once("error", () => done(false))
  })

/** Drops and re-creates the given PostgreSQL databases (closing their connections first). */
export const resetPostgres = async (databases: ReadonlyArray<string>): Promise<void> => {
  const client = new pg.Client({ connectionString: `${services.pgServer}/postgres` })
  await client.connect()
  try {
    for (const database of databases) {
      await client.query(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`)
      await client.query(`CREATE DATABASE "${database}"`)
    }
  } finally {
    await client.end()
  }
}

/** Drops the given PostgreSQL databases. */
export const dropPostgres = async (databases: ReadonlyArray<string>): Promise<void> => {
  const client = new pg.Client({ connectionString: `${services.pgServer}/postgres` })
  await client.connect()
  try {
    for (const database of databases) await client.query(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`)
  } finally {
    await client.end()
  }
}

/** Deletes every Redis key under the benchmark's BullMQ prefix. */
export const resetRedis = async (): Promise<void> => {
  const redis = new Redis(services.redisUrl, { maxRetriesPerRequest: 1, lazyConnect: true })
  await redis.connect()
  try {
    let cursor = "0"
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", `${services.redisPrefix}:*`, "COUNT", 1000)
      cursor = next
      if (keys.length > 0) await redis.del(...keys)
    } while (cursor !== "0")
  } finally {
    redis.disconnect()
  }
}

/** The servers' versions, for the report. */
export const serverVersions = async (pgUp: boolean, redisUp: boolean) => {
  let postgres = "not reachable"
  let redis = "not reachable"
  if (pgUp) {
    const client = new pg.Client({ connectionString: `${services.pgServer}/postgres` })
    await client.connect()
    postgres = String((await client.query("SHOW server_version")).rows[0]?.server_version ?? "?")
    await client.end()
  }
  if (redisUp) {
    const client = new Redis(services.redisUrl, { maxRetriesPerRequest: 1, lazyConnect: true })
    await client.connect()
    const info = await client.info("server")
    redis = /redis_version:(\S+)/.exec(info)?.[1] ?? "?"
    client.disconnect()
  }
  return { postgres, redis }
}
