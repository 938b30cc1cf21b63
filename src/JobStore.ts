import { Context, Effect, Layer, Option } from "effect"
import { InvalidCursor } from "./domain/errors.js"
import { canTransition, Job, type JobId, type JobStage, type JobStatus, type Json } from "./domain/Job.js"
import {
  type CursorPosition,
  compareNewestFirst,
  cursorAfter,
  JobPage,
  type JobQuery,
  PageLimits,
  parseCursor
} from "./domain/JobPage.js"

/** The error for a cursor a store cannot read. */
export const invalidCursor = (cursor: string): InvalidCursor =>
  new InvalidCursor({ cursor, message: "cursor is not a cursor returned by this queue's list" })

/** What a move to a new status records beside the status itself. */
export interface TransitionDetail {
  /** The handler's result (on `completed`). */
  readonly result?: Json
  /** Why the job failed or was cancelled. */
  readonly error?: string | null
}

/** The outcome of a status change: made, refused by the transition rule (with the job as it is), or no such job. */
export type Transition =
  | { readonly _tag: "Moved"; readonly from: JobStatus; readonly job: Job }
  | { readonly _tag: "Refused"; readonly job: Job }
  | { readonly _tag: "NotFound" }

/** A progress report from a running job's handler, already validated. */
export interface ProgressPatch {
  readonly stage?: JobStage | undefined
  readonly progress?: number | undefined
  readonly message?: string | null | undefined
}

/**
 * The storage port behind `JobQueue`: where job records live. Every method is atomic for one job.
 * Moves between statuses follow `canTransition`; a move to `running` counts an attempt and stamps `startedAt`,
 * a move to a final status stamps `finishedAt` (and `completed` sets progress to 100).
 */
export interface JobStoreService {
  /** Whether records outlive the process (pending jobs are then left pending at shutdown). */
  readonly durable: boolean
  /** Stores a new job. */
  readonly insert: (job: Job) => Effect.Effect<void>
  /** Reads one job. */
  readonly get: (id: JobId) => Effect.Effect<Option.Option<Job>>
  /** Lists jobs newest first (ties broken by id), filtered, one page from a cursor. */
  readonly list: (query: JobQuery) => Effect.Effect<JobPage, InvalidCursor>
  /** Moves a job to a new status if the rule allows it from its current one. */
  readonly transition: (
    id: JobId,
    to: Exclude<JobStatus, "pending">,
    detail: TransitionDetail,
    now: Date
  ) => Effect.Effect<Transition>
  /** Records progress on a running job; none when the job is not running. */
  readonly progress: (id: JobId, patch: ProgressPatch, now: Date) => Effect.Effect<Option.Option<Job>>
}

/** The storage port: a `Context.Tag` for {@link JobStoreService}. `JobStore.layerMemory` is the in-memory adapter. */
export class JobStore extends Context.Tag("effect-job-queue/JobStore")<JobStore, JobStoreService>() {
  /** A layer with a fresh in-memory store: nothing to install, nothing survives the process. */
  static get layerMemory(): Layer.Layer<JobStore> {
    return layerMemory
  }
}

/** Builds the job a transition leads to (shared by every adapter, so the rule lives in one place). */
export const applyTransition = (
  job: Job,
  to: Exclude<JobStatus, "pending">,
  detail: TransitionDetail,
  now: Date
): Job => {
  const base = { ...job, status: to, updatedAt: now }
  switch (to) {
    case "running":
      return new Job({ ...base, attempts: job.attempts + 1, startedAt: now }, true)
    case "completed":
      return new Job({ ...base, progress: 100, result: detail.result ?? null, finishedAt: now }, true)
    case "failed":
    case "cancelled":
      return new Job({ ...base, error: detail.error ?? null, finishedAt: now }, true)
  }
}

/** Builds the job a progress report leads to. */
export const applyProgress = (job: Job, patch: ProgressPatch, now: Date): Job =>
  new Job(
    {
      ...job,
      stage: patch.stage ?? job.stage,
      progress: patch.progress ?? job.progress,
      message: patch.message === undefined ? job.message : patch.message,
      updatedAt: now
    },
    true
  )

const positionOf = (job: Job): CursorPosition => ({ createdAt: job.createdAt.getTime(), id: job.id })

/**
 * The in-memory adapter. Records live in a `Map` (one record replaced per change, never the whole store) and
 * an array of ids kept oldest-first for listing. Each method runs as one synchronous step, so every
 * change is atomic with respect to other fibers.
 */
export const makeMemory = (): JobStoreService => {
  const jobs = new Map<string, Job>()
  const order: Array<string> = []
  const at = (index: number): CursorPosition => positionOf(jobs.get(order[index]!)!)

  const indexAfter = (position: CursorPosition): number => {
    let lo = 0
    let hi = order.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (compareNewestFirst(at(mid), position) > 0) lo = mid + 1
      else hi = mid
    }
    return lo
  }

  const insertOrdered = (job: Job) => {
    if (order.length === 0 || compareNewestFirst(positionOf(job), at(order.length - 1)) < 0)
      order.push(job.id)
    else order.splice(indexAfter(positionOf(job)), 0, job.id)
  }

  const replace = (job: Job) => {
    jobs.set(job.id, job)
  }

  return {
    durable: false,
    insert: (job) =>
      Effect.sync(() => {
        jobs.set(job.id, job)
        insertOrdered(job)
      }),
    get: (id) => Effect.sync(() => Option.fromNullable(jobs.get(id))),
    list: (query) =>
      Effect.suspend(() => {
        let start = order.length - 1
        if (query.cursor !== undefined) {
          const position = parseCursor(query.cursor)
          if (position === undefined) return Effect.fail(invalidCursor(query.cursor))
          start = indexAfter(position) - 1
        }
        const limit = query.limit ?? PageLimits.default
        const statuses = query.status && query.status.length > 0 ? new Set<string>(query.status) : undefined
        const types = query.type && query.type.length > 0 ? new Set<string>(query.type) : undefined
        const items: Array<Job> = []
        let more = false
        for (let i = start; i >= 0; i--) {
          const job = jobs.get(order[i]!)!
          if (statuses && !statuses.has(job.status)) continue
          if (types && !types.has(job.type)) continue
          if (items.length === limit) {
            more = true
            break
          }
          items.push(job)
        }
        const last = items[items.length - 1]
        return Effect.succeed(
          new JobPage({ items, nextCursor: more && last ? cursorAfter(last) : null }, true)
        )
      }),
    transition: (id, to, detail, now) =>
      Effect.sync((): Transition => {
        const job = jobs.get(id)
        if (job === undefined) return { _tag: "NotFound" }
        if (!canTransition(job.status, to)) return { _tag: "Refused", job }
        const next = applyTransition(job, to, detail, now)
        replace(next)
        return { _tag: "Moved", from: job.status, job: next }
      }),
    progress: (id, patch, now) =>
      Effect.sync(() => {
        const job = jobs.get(id)
        if (job === undefined || job.status !== "running") return Option.none()
        const next = applyProgress(job, patch, now)
        replace(next)
        return Option.some(next)
      })
  }
}

/** A layer with a fresh in-memory store: nothing to install, nothing survives the process. */
export const layerMemory: Layer.Layer<JobStore> = Layer.sync(JobStore, makeMemory)
