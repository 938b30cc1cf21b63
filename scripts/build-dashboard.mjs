// Builds the web dashboard: src/dashboard/app.ts (and what it imports) bundled by esbuild into
// dist/dashboard/app.js, and the page's static files (HTML, CSS, SVG) copied beside it. Run by `npm run build`,
// and, when the dashboard is stale, by `npm start` and by the dashboard tests.
import { mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs"
import { dirname, extname, join } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")

/** The dashboard's sources. */
export const sourceDir = join(root, "src", "dashboard")

/** Where the built dashboard goes: the server serves it from there (`src/http/dashboard.ts`). */
export const outDir = join(root, "dist", "dashboard")

const copied = new Set([".html", ".css", ".svg"])

const staticFiles = () => readdirSync(sourceDir).filter((name) => copied.has(extname(name)))

const outputs = () => ["app.js", ...staticFiles()].map((name) => join(outDir, name))

const mtime = (path) => {
  try {
    return statSync(path).mtimeMs
  } catch {
    return undefined
  }
}

/** Whether an output is missing or older than a source (the dashboard's, or this script). */
export const isStale = () => {
  const built = outputs().map(mtime)
  if (built.some((time) => time === undefined)) return true
  const newestSource = Math.max(
    mtime(fileURLToPath(import.meta.url)) ?? 0,
    ...readdirSync(sourceDir).map((name) => mtime(join(sourceDir, name)) ?? 0)
  )
  return Math.min(...built) < newestSource
}

// Written under a temporary name, then renamed: a running server, or a build running in parallel (test files run
// in several workers), never reads a half-written file.
const writeAtomically = (path, contents) => {
  const temporary = `${path}.${process.pid}-${Math.random().toString(36).slice(2)}.tmp`
  writeFileSync(temporary, contents)
  renameSync(temporary, path)
}

/** Builds the dashboard into {@link outDir}. */
export const buildDashboard = async () => {
  const esbuild = await import("esbuild")
  const result = await esbuild.build({
    entryPoints: [join(sourceDir, "app.ts")],
    outfile: join(outDir, "app.js"),
    bundle: true,
    format: "esm",
    platform: "browser",
    target: ["es2022"],
    minify: true,
    legalComments: "none",
    write: false,
    logLevel: "silent"
  })
  mkdirSync(outDir, { recursive: true })
  for (const file of result.outputFiles) writeAtomically(file.path, file.contents)
  for (const name of staticFiles()) writeAtomically(join(outDir, name), readFileSync(join(sourceDir, name)))
}

// `node scripts/build-dashboard.mjs [--if-stale]`
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  if (!process.argv.includes("--if-stale") || isStale()) await buildDashboard()
}
