import type { Contender, ContenderOptions } from "./types.js"

/** Builds a contender. */
export type Factory = (options: ContenderOptions) => Promise<Contender>

// Each contender's module is loaded on demand, so that a child process loads only what it measures.

/** The in-process contenders (W1–W3), by key. */
export const memoryContenders: Readonly<Record<string, Factory>> = {
  jobqueue: async (options) => (await import("./jobqueue.js")).makeJobQueue(options),
  fastq: async (options) => (await import("./promise.js")).makeFastq(options),
  "p-queue": async (options) => (await import("./promise.js")).makePQueue(options),
  naive: async (options) => (await import("./effect.js")).makeNaive(options),
  bare: async (options) => (await import("./effect.js")).makeBare(options)
}

/** The durable contenders (W4), by key. */
export const durableContenders: Readonly<Record<string, Factory>> = {
  "jq-sqlite": async (options) => (await import("./sql.js")).makeSqlite(options),
  "jq-pg": async (options) => (await import("./sql.js")).makePg(options),
  bullmq: async (options) => (await import("./bullmq.js")).makeBullmq(options),
  "pg-boss": async (options) => (await import("./pgboss.js")).makePgBoss(options)
}
