// `npm start`: compile when dist/ is missing or older than src/ (and build the web dashboard when it is stale),
// then run the compiled server in this process (so SIGTERM and SIGINT reach it directly).
//
// The server runs from a bundle of dist/main.js (dist/start/, made by esbuild when missing or older than dist/):
// loading dist/ as it is means resolving, reading and compiling some 800 ES modules of effect and @effect/*, about
// 0.8 s of a 1.2 s start-up; the bundle starts in about 0.45 s (measured to a healthy /health, memory store). The
// database drivers stay outside the bundle, loaded from node_modules with the SQL stores that use them. Without
// esbuild (a production install), dist/main.js runs as it is.
import { execFileSync } from "node:child_process"
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs"
import { dirname, join, relative } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const dist = join(root, "dist")
const entry = join(dist, "main.js")
const bundleDir = join(dist, "start")
const bundled = join(bundleDir, "main.js")

// The newest modification time of the files under `dir`, leaving out the folders named in `skip`.
const newest = (dir, skip = new Set()) =>
  readdirSync(dir, { withFileTypes: true }).reduce((latest, item) => {
    const path = join(dir, item.name)
    if (skip.has(path)) return latest
    return Math.max(latest, item.isDirectory() ? newest(path, skip) : statSync(path).mtimeMs)
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

// Bundles dist/main.js into dist/start/ (code splitting keeps the SQL stores in chunks loaded on demand). Files are
// written under temporary names and renamed, the entry last, so that a server starting meanwhile never reads a
// half-written bundle; chunks of earlier bundles are removed.
const bundle = async () => {
  const esbuild = await import("esbuild")
  const result = await esbuild.build({
    entryPoints: [entry],
    outdir: bundleDir,
    bundle: true,
    splitting: true,
    format: "esm",
    platform: "node",
    target: "node20",
    write: false,
    logLevel: "warning",
    // Bundled CommonJS packages (ws, undici…) call `require` for Node's modules.
    banner: {
      js: 'import { createRequire as __createRequire } from "node:module"; const require = __createRequire(import.meta.url);'
    },
    external: ["better-sqlite3", "pg", "pg-*", "bufferutil", "utf-8-validate"]
  })
  mkdirSync(bundleDir, { recursive: true })
  const written = new Set()
  const outputs = [...result.outputFiles].sort((a, b) => (a.path === bundled) - (b.path === bundled))
  for (const file of outputs) {
    const temporary = `${file.path}.${process.pid}.tmp`
    writeFileSync(temporary, file.contents)
    renameSync(temporary, file.path)
    written.add(relative(bundleDir, file.path))
  }
  // Another `npm start` may be writing its own `.tmp` files here: those are left alone.
  for (const name of readdirSync(bundleDir))
    if (!written.has(name) && !name.endsWith(".tmp")) rmSync(join(bundleDir, name), { force: true })
}

// The bundle holds the installed packages too, so an install (which rewrites node_modules/.package-lock.json) makes
// it stale as well as a new build.
const installedAt = () => {
  const lock = join(root, "node_modules", ".package-lock.json")
  return existsSync(lock) ? statSync(lock).mtimeMs : 0
}

const bundleIsStale = () =>
  !existsSync(bundled) ||
  statSync(bundled).mtimeMs <
    Math.max(
      newest(dist, new Set([bundleDir, dashboard.outDir])),
      statSync(fileURLToPath(import.meta.url)).mtimeMs,
      installedAt()
    )

// Any failure to bundle (no esbuild in a production install, a read-only dist/, an optional driver package missing)
// leaves the server to run from dist/main.js as it is: slower to start, the same server.
let server = entry
try {
  if (bundleIsStale()) await bundle()
  server = bundled
} catch (error) {
  if (error?.code !== "ERR_MODULE_NOT_FOUND")
    console.warn(
      `Starting without the bundle (${error?.message?.split("\n")[0] ?? error}): dist/main.js runs as it is`
    )
}

await import(pathToFileURL(server).href)
