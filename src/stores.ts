import { mkdirSync } from "node:fs"
import { dirname } from "node:path"
import { Config, ConfigError, Effect, Either, Layer, Redacted } from "effect"
import { JobStore } from "./JobStore.js"

/** Which store holds the jobs: in memory, a SQLite file, or a PostgreSQL database. */
export type StoreSelection =
  | { readonly _tag: "Memory" }
  | { readonly _tag: "Sqlite"; readonly filename: string }
  | { readonly _tag: "Postgres"; readonly url: Redacted.Redacted<string> }

/** Reads a store selection: `memory`, `sqlite:PATH` or a `postgres://` (or `postgresql://`) URL. */
export const parseStoreSelection = (value: string): Either.Either<StoreSelection, string> => {
  const trimmed = value.trim()
  if (trimmed === "" || trimmed === "memory") return Either.right({ _tag: "Memory" })
  if (trimmed.startsWith("sqlite:")) {
    const filename = trimmed.slice("sqlite:".length)
    return filename === ""
      ? Either.left("sqlite: needs a file path")
      : Either.right({ _tag: "Sqlite", filename })
  }
  if (/^postgres(ql)?:\/\//.test(trimmed))
    return Either.right({ _tag: "Postgres", url: Redacted.make(trimmed) })
  return Either.left("must be memory, sqlite:PATH or a postgres:// URL")
}

/** `APP_JOB_STORE` (default `memory`). The URL is kept redacted: it may hold a password. */
export const storeConfig: Config.Config<StoreSelection> = Config.string("APP_JOB_STORE").pipe(
  Config.withDefault("memory"),
  Config.mapOrFail((value) =>
    Either.mapLeft(parseStoreSelection(value), (problem) =>
      ConfigError.InvalidData(["APP_JOB_STORE"], `APP_JOB_STORE ${problem}, got ${JSON.stringify(value)}`)
    )
  ),
  Config.withDescription("Where jobs are stored: memory (default), sqlite:PATH, or a postgres:// URL.")
)

/**
 * The store a selection names. The SQL stores are loaded on demand, so the in-memory one needs neither `@effect/sql`
 * nor a database driver; a SQLite file's folder is created when missing.
 */
export const layerStore = (selection: StoreSelection): Layer.Layer<JobStore, unknown> => {
  switch (selection._tag) {
    case "Memory":
      return JobStore.layerMemory
    case "Sqlite":
      return Layer.unwrapEffect(
        Effect.map(
          Effect.zipRight(
            Effect.sync(() => mkdirSync(dirname(selection.filename), { recursive: true })),
            Effect.promise(() => import("./SqlJobStore.js"))
          ),
          (sql) => sql.layerSqlite(selection.filename)
        )
      )
    case "Postgres":
      return Layer.unwrapEffect(
        Effect.map(
          Effect.promise(() => import("./SqlJobStore.js")),
          (sql) => sql.layerPg(selection.url)
        )
      )
  }
}

/** The store named by `APP_JOB_STORE`. */
export const layerStoreConfig: Layer.Layer<JobStore, unknown> = Layer.unwrapEffect(
  Effect.map(storeConfig, layerStore)
)
