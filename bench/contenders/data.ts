import type { ContenderOptions } from "./types.js"

/** The index a job carries, or nothing for an unindexed job. */
export type Data = { readonly i?: number }

/** The data of job `i`: its index when the run is indexed. */
export const dataOf = (options: ContenderOptions, i: number): Data => (options.indexed ? { i } : {})

/** Reports an error of a peer's background work on stderr. */
export const reportError = (error: unknown): void => {
  console.error(error)
}
