/**
 * The queue's metrics, as Effect `Metric`s in the global registry, and their Prometheus text rendering.
 *
 * Job metrics are updated synchronously (`unsafeUpdate`, no extra fiber work) where the engine's store reports a
 * change: {@link instrumentStore} wraps the store the engine uses, so every transition is counted once, by the
 * process that made it. HTTP metrics are updated by the server's middleware (`src/http/observability.ts`).
 */
import {
  Effect,
  Either,
  Metric,
  MetricBoundaries,
  MetricKeyType,
  MetricLabel,
  type MetricPair,
  MetricState
} from "effect"
import type { Job, JobStatus } from "./domain/Job.js"
import type { InlineWrites, Inserted, JobStoreService } from "./JobStore.js"

/** Jobs created by a submission (not those found by their idempotency key), by `type`. */
export const jobsSubmitted = Metric.counter("job_queue_jobs_submitted_total", {
  description: "Jobs created by a submission, by type.",
  incremental: true
})

/** Jobs that completed, by `type`. */
export const jobsCompleted = Metric.counter("job_queue_jobs_completed_total", {
  description: "Jobs that completed, by type.",
  incremental: true
})

/** Jobs that failed for good (attempts exhausted, a permanent error, or a second stall), by `type`. */
export const jobsFailed = Metric.counter("job_queue_jobs_failed_total", {
  description: "Jobs that failed for good, by type.",
  incremental: true
})

/** Jobs cancelled, by a user or by a shutdown, by `type`. */
export const jobsCancelled = Metric.counter("job_queue_jobs_cancelled_total", {
  description: "Jobs cancelled (by a user, or pending jobs at the shutdown of an in-memory queue), by type.",
  incremental: true
})

/** Failed attempts put back to pending for another try (stalled jobs of a durable store included), by `type`. */
export const jobsRetried = Metric.counter("job_queue_jobs_retried_total", {
  description: "Failed or stalled attempts put back to pending for another try, by type.",
  incremental: true
})

/** The buckets of {@link jobDuration}, in seconds: 5 ms to 1 h. */
export const jobDurationBuckets: ReadonlyArray<number> = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600
]

/**
 * How long the last attempt of a finished job ran (from `startedAt` to `finishedAt`), in seconds, by `type` and
 * final `status` (`completed`, `failed`, or `cancelled` while running).
 */
export const jobDuration = Metric.histogram(
  "job_queue_job_duration_seconds",
  MetricBoundaries.fromIterable(jobDurationBuckets),
  "How long the last attempt of a finished job ran, in seconds, by type and final status."
)

/**
 * Pending jobs (delayed and awaiting-retry ones included). Exact for the in-memory store; with a durable store it
 * follows this process's changes and is reset to the store's count (the whole cluster's) at each lease sweep.
 */
export const jobsPending = Metric.gauge("job_queue_jobs_pending", {
  description: "Pending jobs (delayed and awaiting-retry ones included)."
}).register()

/** Jobs running in this process. */
export const jobsRunning = Metric.gauge("job_queue_jobs_running", {
  description: "Jobs running in this process."
}).register()

/** HTTP requests answered, by `method`, `route` (the route's pattern, not the raw path) and `status`. */
export const httpRequests = Metric.counter("http_requests_total", {
  description: "HTTP requests answered, by method, route pattern and status.",
  incremental: true
})

/** The buckets of {@link httpRequestDuration}, in seconds: 1 ms to 10 s. */
export const httpDurationBuckets: ReadonlyArray<number> = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10
]

/**
 * How long the server took to produce each response (for an event stream: until its headers), in seconds, by
 * `method`, `route` and `status`.
 */
export const httpRequestDuration = Metric.histogram(
  "http_request_duration_seconds",
  MetricBoundaries.fromIterable(httpDurationBuckets),
  "How long the server took to produce a response (for an event stream, until its headers), in seconds."
)

const untagged: ReadonlyArray<MetricLabel.MetricLabel> = []

// Label arrays are cached so that each update finds its series' hook by identity: no key hashing per update.
const typeLabels = new Map<string, ReadonlyArray<MetricLabel.MetricLabel>>()
const byType = (type: string): ReadonlyArray<MetricLabel.MetricLabel> => {
  let labels = typeLabels.get(type)
  if (labels === undefined) {
    labels = [MetricLabel.make("type", type)]
    typeLabels.set(type, labels)
  }
  return labels
}

// By status, then type: no key to build per update.
const durationLabels = new Map<JobStatus, Map<string, ReadonlyArray<MetricLabel.MetricLabel>>>()
const byTypeAndStatus = (type: string, status: JobStatus): ReadonlyArray<MetricLabel.MetricLabel> => {
  let byStatus = durationLabels.get(status)
  if (byStatus === undefined) {
    byStatus = new Map()
    durationLabels.set(status, byStatus)
  }
  let labels = byStatus.get(type)
  if (labels === undefined) {
    labels = [MetricLabel.make("type", type), MetricLabel.make("status", status)]
    byStatus.set(type, labels)
  }
  return labels
}

/** Counts a job starting (`1`) or stopping (`-1`) to run in this process, on {@link jobsRunning}. */
export const trackRunning = (delta: 1 | -1): void => {
  jobsRunning.unsafeModify(delta, untagged)
}

const onInserted = (results: ReadonlyArray<Inserted>): void => {
  let created = 0
  for (const { job, created: isNew } of results) {
    if (!isNew) continue
    created++
    jobsSubmitted.unsafeUpdate(1, byType(job.type))
  }
  if (created > 0) jobsPending.unsafeModify(created, untagged)
}

const onMoved = (from: JobStatus, job: Job): void => {
  if (from === "pending") jobsPending.unsafeModify(-1, untagged)
  switch (job.status) {
    case "pending":
      jobsPending.unsafeModify(1, untagged)
      if (from === "running") jobsRetried.unsafeUpdate(1, byType(job.type))
      return
    case "running":
      return
    case "completed":
      jobsCompleted.unsafeUpdate(1, byType(job.type))
      break
    case "failed":
      jobsFailed.unsafeUpdate(1, byType(job.type))
      break
    case "cancelled":
      jobsCancelled.unsafeUpdate(1, byType(job.type))
      break
  }
  if (from === "running" && job.startedAt !== null && job.finishedAt !== null) {
    const seconds = (job.finishedAt.getTime() - job.startedAt.getTime()) / 1000
    jobDuration.unsafeUpdate(Math.max(seconds, 0), byTypeAndStatus(job.type, job.status))
  }
}

const instrumentInline = (inline: InlineWrites): InlineWrites => ({
  insert: (jobs, maxPending) => {
    const inserted = inline.insert(jobs, maxPending)
    if (Either.isRight(inserted)) onInserted(inserted.right)
    return inserted
  },
  transition: (id, to, detail, now) => {
    const transition = inline.transition(id, to, detail, now)
    if (transition._tag === "Moved") onMoved(transition.from, transition.job)
    return transition
  },
  prune: inline.prune
})

/**
 * The store as the engine uses it, updating the job metrics from what each write reports: creations, status moves
 * (a move from running back to pending is a retry), claims, hand-backs and lease recoveries. One `Effect.map` per
 * write (none for the store's inline writes) and synchronous updates; reads are untouched. The lease sweep of a durable store (`recoverExpired`, every
 * `leaseMs / 2`) also resets {@link jobsPending} to the store's count, which other processes change too.
 */
export const instrumentStore = (store: JobStoreService): JobStoreService => ({
  ...store,
  ...(store.inline === undefined ? {} : { inline: instrumentInline(store.inline) }),
  insert: (jobs, maxPending) =>
    Effect.map(store.insert(jobs, maxPending), (results) => {
      onInserted(results)
      return results
    }),
  transition: (id, to, detail, now) =>
    Effect.map(store.transition(id, to, detail, now), (transition) => {
      if (transition._tag === "Moved") onMoved(transition.from, transition.job)
      return transition
    }),
  claim: (options) =>
    Effect.map(store.claim(options), (jobs) => {
      for (const job of jobs) onMoved("pending", job)
      return jobs
    }),
  release: (owner, ids, now) =>
    Effect.map(store.release(owner, ids, now), (jobs) => {
      if (jobs.length > 0) jobsPending.unsafeModify(jobs.length, untagged)
      return jobs
    }),
  recoverExpired: (now) =>
    Effect.flatMap(store.recoverExpired(now), (jobs) =>
      Effect.map(store.pendingCount, (pending) => {
        for (const job of jobs) onMoved("running", job)
        jobsPending.unsafeUpdate(pending, untagged)
        return jobs
      })
    )
})

// ---------------------------------------------------------------------------------------------------------------
// Prometheus text exposition format (version 0.0.4)
// ---------------------------------------------------------------------------------------------------------------

/** The `Content-Type` of {@link renderPrometheus}'s output. */
export const prometheusContentType = "text/plain; version=0.0.4; charset=utf-8"

const metricName = (name: string): string => {
  const cleaned = name.replace(/[^a-zA-Z0-9_:]/g, "_")
  return /^[0-9]/.test(cleaned) ? `_${cleaned}` : cleaned
}

const labelName = (name: string): string => {
  const cleaned = name.replace(/[^a-zA-Z0-9_]/g, "_")
  return /^[0-9]/.test(cleaned) ? `_${cleaned}` : cleaned
}

const escapeLabelValue = (value: string): string =>
  value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")

const escapeHelp = (text: string): string => text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")

const formatNumber = (value: number | bigint): string => {
  if (typeof value === "bigint") return value.toString()
  if (Number.isNaN(value)) return "NaN"
  if (value === Number.POSITIVE_INFINITY) return "+Inf"
  if (value === Number.NEGATIVE_INFINITY) return "-Inf"
  return String(value)
}

const formatLabels = (labels: ReadonlyArray<readonly [string, string]>): string =>
  labels.length === 0
    ? ""
    : `{${labels.map(([key, value]) => `${labelName(key)}="${escapeLabelValue(value)}"`).join(",")}}`

interface Family {
  readonly type: "counter" | "gauge" | "histogram" | "summary"
  readonly help: string
  readonly series: Array<{ readonly labels: string; readonly lines: ReadonlyArray<string> }>
}

const seriesOf = (
  name: string,
  labels: ReadonlyArray<readonly [string, string]>,
  state: MetricState.MetricState.Untyped,
  incremental: boolean
): { readonly type: Family["type"]; readonly lines: ReadonlyArray<string> } | undefined => {
  if (MetricState.isCounterState(state))
    return {
      // A counter that may be decremented (Effect's `fiber_active`, say) is a gauge to Prometheus.
      type: incremental ? "counter" : "gauge",
      lines: [`${name}${formatLabels(labels)} ${formatNumber(state.count)}`]
    }
  if (MetricState.isGaugeState(state))
    return { type: "gauge", lines: [`${name}${formatLabels(labels)} ${formatNumber(state.value)}`] }
  if (MetricState.isHistogramState(state)) {
    const lines: Array<string> = []
    let sawInfinity = false
    for (const [bound, count] of state.buckets) {
      if (bound === Number.POSITIVE_INFINITY) sawInfinity = true
      lines.push(
        `${name}_bucket${formatLabels([...labels, ["le", formatNumber(bound)]])} ${formatNumber(count)}`
      )
    }
    if (!sawInfinity) lines.push(`${name}_bucket${formatLabels([...labels, ["le", "+Inf"]])} ${state.count}`)
    lines.push(`${name}_sum${formatLabels(labels)} ${formatNumber(state.sum)}`)
    lines.push(`${name}_count${formatLabels(labels)} ${formatNumber(state.count)}`)
    return { type: "histogram", lines }
  }
  if (MetricState.isSummaryState(state)) {
    const lines: Array<string> = []
    for (const [quantile, value] of state.quantiles) {
      if (value._tag === "None") continue
      lines.push(
        `${name}${formatLabels([...labels, ["quantile", formatNumber(quantile)]])} ${formatNumber(value.value)}`
      )
    }
    lines.push(`${name}_sum${formatLabels(labels)} ${formatNumber(state.sum)}`)
    lines.push(`${name}_count${formatLabels(labels)} ${formatNumber(state.count)}`)
    return { type: "summary", lines }
  }
  if (MetricState.isFrequencyState(state)) {
    const lines: Array<string> = []
    for (const [word, count] of state.occurrences) {
      lines.push(`${name}${formatLabels([...labels, ["key", word]])} ${formatNumber(count)}`)
    }
    return { type: "counter", lines }
  }
  return undefined
}

/**
 * Renders metric snapshots (`Metric.snapshot`) in the Prometheus text format: one `# HELP` and `# TYPE` per metric
 * name, its series sorted by labels. Names and label names are made valid; a name reused with another type keeps
 * its first type only.
 */
export const renderPrometheus = (pairs: ReadonlyArray<MetricPair.MetricPair.Untyped>): string => {
  const families = new Map<string, Family>()
  for (const { metricKey, metricState } of pairs) {
    const name = metricName(metricKey.name)
    const labels = metricKey.tags.map((label) => [label.key, label.value] as const)
    const keyType = metricKey.keyType
    const incremental = MetricKeyType.isCounterKey(keyType) && keyType.incremental
    const rendered = seriesOf(name, labels, metricState, incremental)
    if (rendered === undefined) continue
    let family = families.get(name)
    if (family === undefined) {
      const help = metricKey.description._tag === "Some" ? metricKey.description.value : name
      family = { type: rendered.type, help, series: [] }
      families.set(name, family)
    }
    if (family.type !== rendered.type) continue
    family.series.push({ labels: formatLabels(labels), lines: rendered.lines })
  }
  const out: Array<string> = []
  for (const name of Array.from(families.keys()).sort()) {
    const family = families.get(name)!
    out.push(`# HELP ${name} ${escapeHelp(family.help)}`, `# TYPE ${name} ${family.type}`)
    family.series.sort((a, b) => (a.labels < b.labels ? -1 : a.labels > b.labels ? 1 : 0))
    for (const series of family.series) out.push(...series.lines)
  }
  return out.length === 0 ? "" : `${out.join("\n")}\n`
}

/** Every metric of the global registry, in the Prometheus text format. */
export const prometheusText: Effect.Effect<string> = Effect.map(Metric.snapshot, renderPrometheus)
