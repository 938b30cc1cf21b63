import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { layerPg, layerSqlite } from "../../dist/SqlJobStore.js"
import { pgUrl, services } from "../lib/services.js"
import { makeJobQueue } from "./jobqueue.js"
import type { Contender, ContenderOptions } from "./types.js"

/** Our `JobQueue` on the SQLite store, in a fresh file in a temporary folder removed on close. */
export const makeSqlite = async (options: ContenderOptions): Promise<Contender> => {
  const dir = mkdtempSync(join(tmpdir(), "jq-bench-"))
  const contender = await makeJobQueue(options, layerSqlite(join(dir, "jobs.db")))
  return {
    ...contender,
    close: async () => {
      await contender.close()
      rmSync(dir, { recursive: true, force: true })
    }
  }
}

/** Our `JobQueue` on the PostgreSQL store, in the benchmark database (reset by the runner before each run). */
export const makePg = (options: ContenderOptions): Promise<Contender> =>
  makeJobQueue(options, layerPg(pgUrl(services.pgDatabase)))
