import { Schema } from "effect"
import { Job, JobId, type JobStatus, type JobType } from "./Job.js"

/** An opaque position in the newest-first job list: the `nextCursor` of the previous page. */
export const JobCursor = Schema.String.pipe(
  Schema.pattern(/^\d{1,15}_[0-9a-fA-F-]{36}$/),
  Schema.annotations({
    identifier: "JobCursor",
    description: "Where the next page starts: the nextCursor of the previous page."
  })
)

/** A decoded cursor: the sort key (creation time, then id) of the last job on the previous page. */
export interface CursorPosition {
  readonly createdAt: number
  readonly id: string
}

/** Makes the cursor that points just past a job. */
export const cursorAfter = (job: Job): string => `${job.createdAt.getTime()}_${job.id}`

/** Reads a cursor made by {@link cursorAfter}; undefined when it is not one. */
export const parseCursor = (cursor: string): CursorPosition | undefined => {
  const at = cursor.indexOf("_")
  const time = cursor.slice(0, at)
  const id = cursor.slice(at + 1)
  // Digits only, as JobCursor requires: `Number` alone would also read "1e3", "-5", " 12" or "0x1F".
  return at > 0 && /^\d{1,15}$/.test(time) && Schema.is(JobId)(id)
    ? { createdAt: Number(time), id }
    : undefined
}

/** Newest-first order: creation time descending, ties broken by id descending. Negative when `a` comes first. */
export const compareNewestFirst = (a: CursorPosition, b: CursorPosition): number =>
  b.createdAt - a.createdAt || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0)

/** What to list: filters (OR within one, AND across both), page size and where to start. */
export interface JobQuery {
  readonly status?: ReadonlyArray<JobStatus> | undefined
  readonly type?: ReadonlyArray<JobType> | undefined
  readonly limit?: number | undefined
  readonly cursor?: string | undefined
}

/** The default and the largest page size. */
export const PageLimits = { default: 50, max: 500 } as const

/** One page of jobs, newest first, and the cursor of the next page (null on the last). */
export class JobPage extends Schema.Class<JobPage>("JobPage")({
  items: Schema.Array(Job),
  nextCursor: Schema.NullOr(JobCursor)
}) {}
