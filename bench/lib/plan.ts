import type { Spec } from "./protocol.js"

/** How a metric reads: its key in a child's result, its label and unit, and which way is better. */
export interface Metric {
  readonly key: string
  readonly label: string
  readonly unit: string
  readonly better: "higher" | "lower"
  readonly digits: number
}

/** How one measurement is taken. */
export type Runner =
  | { readonly kind: "child"; readonly spec: Spec; readonly reset?: "postgres" | "pg-boss" | "redis" }
  | {
      readonly kind: "http"
      readonly server: "ours" | "node:http" | "effect" | "express" | "fastify"
      readonly route: "get" | "post"
    }
  | { readonly kind: "startup"; readonly via: "node" | "npm" }

/** One measurement of the plan: taken once per round, each time in a fresh process. */
export interface Measurement {
  /** Unique key. */
  readonly key: string
  /** The workload's name in the report (W1, W2, …). */
  readonly workload: string
  /** The configuration within the workload (concurrency, route…); measurements of one group are compared. */
  readonly config: string
  /** The contender's name in the report. */
  readonly contender: string
  /** Whether the contender is ours (the others are peers and floors). */
  readonly ours: boolean
  readonly runner: Runner
  readonly metrics: ReadonlyArray<Metric>
  /** A server the measurement needs (skipped, and said so, when it is not reachable). */
  readonly needs?: "postgres" | "redis" | undefined
}

/** The sizes of a run: the full run's (the issue's) or `--quick`'s. */
export interface Settings {
  readonly rounds: number
  /**
   * How many measurements run at once (1 when absent, as in a full run). `--quick` runs five lanes that share
   * nothing ({@link laneOf}): its figures are not worth comparing anyway.
   */
  readonly lanes?: number | undefined
  readonly w1Jobs: number
  readonly w1Warmup: number
  readonly latencyJobs: number
  readonly latencyWarmup: number
  readonly w3Jobs: number
  readonly w3Warmup: number
  readonly w4Jobs: number
  readonly w4Warmup: number
  readonly w4Concurrency: ReadonlyArray<number>
  readonly w4LatencyJobs: number
  readonly bulkChunk: number
  readonly httpSeconds: number
  readonly httpWarmupSeconds: number
  readonly httpConnections: number
  readonly startupVia: ReadonlyArray<"node" | "npm">
  readonly childTimeoutMs: number
}

/** The issue's sizes. */
export const fullSettings: Settings = {
  rounds: 3,
  w1Jobs: 100_000,
  w1Warmup: 10_000,
  latencyJobs: 2000,
  latencyWarmup: 200,
  w3Jobs: 100_000,
  w3Warmup: 5000,
  w4Jobs: 10_000,
  w4Warmup: 200,
  w4Concurrency: [2, 64],
  w4LatencyJobs: 2000,
  bulkChunk: 1000,
  httpSeconds: 4,
  httpWarmupSeconds: 1,
  httpConnections: 50,
  startupVia: ["node", "npm"],
  childTimeoutMs: 1_500_000
}

/**
 * `--quick`: one round of small runs, to check that every measurement works (CI), not to measure. It must finish
 * within a minute on a loaded 2-core machine: most of its time is the fresh process of each of its 36 measurements
 * (and the servers of W5), so the sizes are the smallest that still run every code path.
 */
export const quickSettings: Settings = {
  rounds: 1,
  lanes: 5,
  w1Jobs: 1000,
  w1Warmup: 100,
  latencyJobs: 50,
  latencyWarmup: 10,
  w3Jobs: 1000,
  w3Warmup: 100,
  w4Jobs: 50,
  w4Warmup: 5,
  w4Concurrency: [64],
  w4LatencyJobs: 20,
  bulkChunk: 25,
  httpSeconds: 0.3,
  httpWarmupSeconds: 0,
  httpConnections: 50,
  startupVia: ["node"],
  childTimeoutMs: 60_000
}

const jobsPerSec: Metric = { key: "jobsPerSec", label: "jobs/s", unit: "jobs/s", better: "higher", digits: 0 }
const p50: Metric = { key: "p50Ms", label: "p50", unit: "ms", better: "lower", digits: 3 }
const p99: Metric = { key: "p99Ms", label: "p99", unit: "ms", better: "lower", digits: 3 }
const bytes: Metric = { key: "bytesPerJob", label: "heap/job", unit: "B", better: "lower", digits: 0 }
const rps: Metric = { key: "rps", label: "req/s", unit: "req/s", better: "higher", digits: 0 }
const ms: Metric = { key: "ms", label: "time", unit: "ms", better: "lower", digits: 0 }

const memoryNames: Readonly<Record<string, string>> = {
  jobqueue: "JobQueue (memory)",
  fastq: "fastq",
  "p-queue": "p-queue",
  naive: "naive Effect design",
  bare: "bare Effect (floor)"
}

const durableNames: Readonly<Record<string, string>> = {
  "jq-sqlite": "JobQueue (SQLite)",
  "jq-pg": "JobQueue (PostgreSQL)",
  bullmq: "BullMQ (Redis)",
  "pg-boss": "pg-boss (PostgreSQL)"
}

const durableNeeds: Readonly<Record<string, "postgres" | "redis" | undefined>> = {
  "jq-sqlite": undefined,
  "jq-pg": "postgres",
  bullmq: "redis",
  "pg-boss": "postgres"
}

const durableReset: Readonly<Record<string, "postgres" | "pg-boss" | "redis" | undefined>> = {
  "jq-sqlite": undefined,
  "jq-pg": "postgres",
  bullmq: "redis",
  "pg-boss": "pg-boss"
}

const httpNames: Readonly<Record<string, string>> = {
  ours: "JobQueue server (dist/main.js)",
  "node:http": "node:http (floor)",
  effect: "bare @effect/platform (its floor)",
  express: "Express 5",
  fastify: "Fastify 5"
}

/**
 * The lane a measurement runs in when a run has several (`--quick`): the memory queues and the start-up; our
 * PostgreSQL store and BullMQ; our SQLite store and pg-boss; the HTTP servers of `GET`; those of `POST`. No two
 * measurements running at once share a database, a server or a port (our PostgreSQL store and pg-boss each have
 * their own database).
 */
export const laneOf = (m: Measurement): number => {
  if (m.runner.kind === "http") return m.runner.route === "get" ? 3 : 4
  if (!m.workload.startsWith("W4")) return 0
  return m.contender.includes("PostgreSQL") === m.ours ? 1 : 2
}

/** Every measurement of a run, in report order. */
export const makePlan = (s: Settings): ReadonlyArray<Measurement> => {
  const plan: Array<Measurement> = []
  for (const c of [2, 64])
    for (const contender of ["jobqueue", "fastq", "p-queue", "naive", "bare"])
      plan.push({
        key: `w1/c${c}/${contender}`,
        workload: "W1 throughput",
        config: `${s.w1Jobs} no-op jobs, C=${c}`,
        contender: memoryNames[contender]!,
        ours: contender === "jobqueue",
        runner: {
          kind: "child",
          spec: { workload: "w1", contender, params: { n: s.w1Jobs, c, warmup: s.w1Warmup } }
        },
        metrics: [jobsPerSec]
      })
  for (const contender of ["jobqueue", "p-queue", "bare"])
    plan.push({
      key: `w2/${contender}`,
      workload: "W2 latency",
      config: `${s.latencyJobs} jobs, 1 per ms, C=2`,
      contender: memoryNames[contender]!,
      ours: contender === "jobqueue",
      runner: {
        kind: "child",
        spec: {
          workload: "w2",
          contender,
          params: { count: s.latencyJobs, warmup: s.latencyWarmup, c: 2, intervalMs: 1, timeoutMs: 60_000 }
        }
      },
      metrics: [p50, p99]
    })
  for (const contender of ["jobqueue", "naive"])
    plan.push({
      key: `w3/${contender}`,
      workload: "W3 memory",
      config: `${s.w3Jobs} finished jobs retained, empty metadata`,
      contender: memoryNames[contender]!,
      ours: contender === "jobqueue",
      runner: {
        kind: "child",
        spec: { workload: "w3", contender, params: { n: s.w3Jobs, warmup: s.w3Warmup } }
      },
      metrics: [bytes]
    })
  for (const c of s.w4Concurrency)
    for (const mode of ["one", "bulk"] as const)
      for (const contender of ["jq-sqlite", "jq-pg", "bullmq", "pg-boss"]) {
        const reset = durableReset[contender]
        plan.push({
          key: `w4/c${c}/${mode}/${contender}`,
          workload: "W4 durable throughput",
          config: `${s.w4Jobs} no-op jobs, C=${c}, ${mode === "one" ? "added one by one" : `added in bulk (${s.bulkChunk} a call)`}`,
          contender: durableNames[contender]!,
          ours: contender.startsWith("jq-"),
          needs: durableNeeds[contender],
          runner: {
            kind: "child",
            spec: {
              workload: "w4",
              contender,
              params: { n: s.w4Jobs, c, warmup: s.w4Warmup, mode, chunk: s.bulkChunk }
            },
            ...(reset === undefined ? {} : { reset })
          },
          metrics: [jobsPerSec]
        })
      }
  for (const contender of ["jq-sqlite", "jq-pg", "bullmq", "pg-boss"]) {
    const reset = durableReset[contender]
    plan.push({
      key: `w4-latency/${contender}`,
      workload: "W4 durable latency",
      config: `${s.w4LatencyJobs} jobs, 1 per ms, C=2`,
      contender: durableNames[contender]!,
      ours: contender.startsWith("jq-"),
      needs: durableNeeds[contender],
      runner: {
        kind: "child",
        spec: {
          workload: "w4-latency",
          contender,
          params: { count: s.w4LatencyJobs, warmup: s.latencyWarmup, c: 2, intervalMs: 1, timeoutMs: 300_000 }
        },
        ...(reset === undefined ? {} : { reset })
      },
      metrics: [p50, p99]
    })
  }
  for (const route of ["get", "post"] as const)
    for (const server of ["ours", "node:http", "effect", "express", "fastify"] as const)
      plan.push({
        key: `w5/${route}/${server}`,
        workload: "W5 HTTP",
        config: `${route === "get" ? "GET /jobs/{id}" : "POST /jobs"}, ${s.httpConnections} connections, ${s.httpSeconds} s`,
        contender: httpNames[server]!,
        ours: server === "ours",
        runner: { kind: "http", server, route },
        metrics: [rps]
      })
  for (const via of s.startupVia)
    plan.push({
      key: `startup/${via}`,
      workload: "Start-up",
      config: "to a healthy /health, memory store, fresh dist/",
      contender: via === "node" ? "node scripts/start.mjs" : "npm start (adds npm's own start-up)",
      ours: true,
      runner: { kind: "startup", via },
      metrics: [ms]
    })
  return plan
}
