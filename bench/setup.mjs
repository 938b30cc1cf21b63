// Installs the benchmark's own dependencies from its lockfile (`npm ci`) when they are missing or older than it.
import { execFileSync } from "node:child_process"
import { existsSync, statSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

const here = dirname(fileURLToPath(import.meta.url))
const installed = join(here, "node_modules", ".package-lock.json")
const lock = join(here, "package-lock.json")

if (!existsSync(installed) || statSync(installed).mtimeMs < statSync(lock).mtimeMs) {
  console.log("Installing the benchmark's dependencies (bench/package-lock.json)…")
  execFileSync("npm", ["ci", "--silent", "--no-audit", "--no-fund"], { cwd: here, stdio: "inherit" })
}
