// `npm start`: compile when dist/ is missing or older than src/ (and build the web dashboard when it is stale),
// then run the compiled server in this process (so SIGTERM and SIGINT reach it directly).
import { execFileSync } from "node:child_process"
import { existsSync, readdirSync, statSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const entry = join(root, "dist", "main.js")

const newest = (dir) =>
  readdirSync(dir, { withFileTypes: true }).reduce((latest, item) => {
    const path = join(dir, item.name)
    return Math.max(latest, item.isDirectory() ? newest(path) : statSync(path).mtimeMs)
  }, 0)

if (!existsSync(entry) || statSync(entry).mtimeMs < newest(join(root, "src"))) {
  console.log("Building…")
  execFileSync(
    process.execPath,
    [join(root, "node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.build.json"],
    {
      cwd: root,
      stdio: "inherit"
    }
  )
}

const dashboard = await import("./build-dashboard.mjs")
if (dashboard.isStale()) {
  console.log("Building the dashboard…")
  await dashboard.buildDashboard()
}

await import(pathToFileURL(entry).href)
