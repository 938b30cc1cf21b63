import { readFileSync } from "node:fs"
import { cpus, loadavg, release, totalmem, type } from "node:os"
import { join } from "node:path"
import { benchDir } from "./build.js"

/** What the report says about the machine and the software measured. */
export interface MachineInfo {
  readonly cpuModel: string
  readonly cores: number
  readonly memoryGiB: number
  readonly node: string
  readonly os: string
  readonly versions: Readonly<Record<string, string>>
}

/** The load average (1, 5, 15 minutes) now. */
export const loadAverage = (): readonly [number, number, number] => {
  const [one = 0, five = 0, fifteen = 0] = loadavg()
  return [one, five, fifteen]
}

const versionOf = (pkg: string, from: string): string => {
  try {
    return (
      JSON.parse(readFileSync(join(from, "node_modules", pkg, "package.json"), "utf8")) as { version: string }
    ).version
  } catch {
    return "?"
  }
}

/** The machine, Node, and the installed versions of every library measured. */
export const machineInfo = (): MachineInfo => {
  const root = join(benchDir, "..")
  const peers = ["fastq", "p-queue", "bullmq", "ioredis", "pg-boss", "autocannon", "express", "fastify"]
  const ours = ["effect", "@effect/platform", "@effect/sql", "@effect/sql-pg", "@effect/sql-sqlite-node"]
  return {
    cpuModel: cpus()[0]?.model ?? "?",
    cores: cpus().length,
    memoryGiB: totalmem() / 2 ** 30,
    node: process.version,
    os: `${type()} ${release()}`,
    versions: Object.fromEntries([
      ...ours.map((pkg) => [pkg, versionOf(pkg, root)]),
      ...peers.map((pkg) => [pkg, versionOf(pkg, benchDir)])
    ])
  }
}
