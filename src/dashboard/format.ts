// How the dashboard writes times, durations and percentages.

const second = 1000
const minute = 60 * second
const hour = 60 * minute
const day = 24 * hour

/** How long ago something happened, coarsely: "12 s", "3 min", "2 h", "4 d". */
export const formatAge = (ms: number): string => {
  const elapsed = Math.max(0, ms)
  if (elapsed < minute) return `${Math.floor(elapsed / second)} s`
  if (elapsed < hour) return `${Math.floor(elapsed / minute)} min`
  if (elapsed < day) return `${Math.floor(elapsed / hour)} h`
  return `${Math.floor(elapsed / day)} d`
}

/** A duration, precise while short: "340 ms", "2.4 s", "3 min 5 s", "2 h 10 min", "4 d 3 h". */
export const formatDuration = (ms: number): string => {
  const duration = Math.max(0, Math.round(ms))
  if (duration < second) return `${duration} ms`
  if (duration < minute) return `${(Math.floor(duration / 100) / 10).toFixed(1)} s`
  if (duration < hour)
    return `${Math.floor(duration / minute)} min ${Math.floor((duration % minute) / second)} s`
  if (duration < day) return `${Math.floor(duration / hour)} h ${Math.floor((duration % hour) / minute)} min`
  return `${Math.floor(duration / day)} d ${Math.floor((duration % day) / hour)} h`
}

/** A percentage as shown beside a progress bar: whole, from 0 % to 100 %. */
export const formatPercent = (progress: number): string =>
  `${Math.min(100, Math.max(0, Math.round(progress)))}%`

/** A stage's name in words: `extracting_audio` → "extracting audio". */
export const formatStage = (stage: string): string => stage.replaceAll("_", " ")

/** A job's run time: from its start to its end, or to `now` while it runs; undefined before it starts. */
export const runTime = (
  job: { readonly startedAt: string | null; readonly finishedAt: string | null },
  now: number
): number | undefined =>
  job.startedAt === null
    ? undefined
    : (job.finishedAt === null ? now : Date.parse(job.finishedAt)) - Date.parse(job.startedAt)

/** A timestamp in the reader's locale, with seconds (in en-US: "Nov 28, 2026, 10:01:59 AM"). */
export const formatTimestamp = (iso: string): string =>
  new Date(iso).toLocaleString(undefined, {
    year: "numeric",
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit"
  })

/** The first block of a UUID, enough to tell jobs apart on one screen. */
export const shortId = (id: string): string => id.slice(0, 8)
