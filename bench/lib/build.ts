import { execFileSync } from "node:child_process"
import { cpSync, existsSync, readdirSync, rmSync, statSync } from "node:fs"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { build } from "esbuild"

/** This folder (`bench/`). */
export const benchDir = resolve(dirname(fileURLToPath(import.meta.url)), "..")

/** The project's root. */
export const rootDir = resolve(benchDir, "..")

const newest = (dir: string): number =>
  readdirSync(dir, { withFileTypes: true }).reduce((latest, item) => {
    const path = join(dir, item.name)
    return Math.max(latest, item.isDirectory() ? newest(path) : statSync(path).mtimeMs)
  }, 0)

/** Whether `dist/` is missing or older than `src/` (the rule `npm start` uses to decide to compile first). */
export const distIsStale = (): boolean => {
  const entry = join(rootDir, "dist", "main.js")
  return !existsSync(entry) || statSync(entry).mtimeMs < newest(join(rootDir, "src"))
}

/** Builds the project (`npm run build`: `src/` to `dist/`, and whatever else the build makes) when `dist/` is stale. */
export const ensureDist = (): boolean => {
  if (!distIsStale()) return false
  execFileSync("npm", ["run", "build", "--silent"], { cwd: rootDir, stdio: "inherit" })
  return true
}

/** Where the run's copy of `dist/` lives. */
export const snapshotDir = join(benchDir, "out", "dist")

/**
 * Compiles `dist/` when stale, then copies it to `out/dist/`: every measurement of the run uses that copy, so that
 * the run measures one version of the code even when others edit and rebuild `src/` meanwhile (the tree is shared).
 * Packages resolve from there as from `dist/` (the root's `node_modules`; `bench/node_modules` holds none of ours).
 */
export const snapshotDist = (): void => {
  ensureDist()
  rmSync(snapshotDir, { recursive: true, force: true })
  cpSync(join(rootDir, "dist"), snapshotDir, { recursive: true })
}

/** The commit measured, and how many files under `src/` differ from it (uncommitted work in the shared tree). */
export const sourceState = (): { readonly commit: string; readonly changedFiles: number } => {
  const git = (...args: Array<string>) => execFileSync("git", args, { cwd: rootDir, encoding: "utf8" }).trim()
  try {
    const changed = git("status", "--porcelain", "--", "src")
    return {
      commit: git("rev-parse", "--short", "HEAD"),
      changedFiles: changed === "" ? 0 : changed.split("\n").length
    }
  } catch {
    return { commit: "?", changedFiles: 0 }
  }
}

// The packages bundled into the children by `--quick`: effect and @effect/* with their own dependencies (ESM).
const effectPackages = /^(effect|@effect\/|find-my-way-ts|fast-check|pure-rand|multipasta|@standard-schema\/)/

/**
 * Bundles the measurement child (`child.ts`) to `out/child.js`, so that children run plain JavaScript with no loader
 * hooks: packages stay external (resolved from `bench/node_modules`, then the root's), and so does our package,
 * imported from the run's copy of `dist/` by its absolute path. Dynamic imports stay dynamic (code splitting), so each child loads only
 * the libraries of its own measurement.
 *
 * With `bundleEffect` (`--quick`), the run's copy of `dist/`, effect and @effect/* are bundled in as well: loading
 * them as some 800 separate modules was most of the CPU time of a quick run (about a second per child that uses
 * them, more on a loaded machine), and a quick run measures nothing anyway. The database drivers and the peers stay
 * external.
 */
export const buildChild = async (options: { readonly bundleEffect?: boolean } = {}): Promise<string> => {
  const outdir = join(benchDir, "out")
  const bundleEffect = options.bundleEffect === true
  await build({
    entryPoints: [join(benchDir, "child.ts")],
    outdir,
    bundle: true,
    splitting: true,
    format: "esm",
    platform: "node",
    target: "node20",
    logLevel: "warning",
    ...(bundleEffect
      ? {
          // Bundled CommonJS code calls `require` for Node's modules.
          banner: {
            js: 'import { createRequire as __createRequire } from "node:module"; const require = __createRequire(import.meta.url);'
          }
        }
      : { packages: "external" as const }),
    plugins: [
      {
        name: "dist-external",
        setup: (builder) => {
          builder.onResolve({ filter: /\/dist\// }, (args) => {
            const path = resolve(args.resolveDir, args.path).replace(join(rootDir, "dist"), snapshotDir)
            return bundleEffect && path.startsWith(snapshotDir) ? { path } : { path, external: true }
          })
          if (bundleEffect)
            builder.onResolve({ filter: /^[^./]/ }, (args) =>
              effectPackages.test(args.path) || args.path.startsWith("node:")
                ? undefined
                : { path: args.path, external: true }
            )
        }
      }
    ]
  })
  return join(outdir, "child.js")
}
