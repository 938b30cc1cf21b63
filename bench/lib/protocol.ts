/** One measurement: which workload, which contender, and its parameters. Passed to a child as JSON. */
export interface Spec {
  /** The workload: `w1`, `w2`, `w3`, `w4`, `w4-latency`, `w5-server`, `w5-load`. */
  readonly workload: string
  /** The contender's key, e.g. `jobqueue`, `fastq`, `bullmq`. */
  readonly contender: string
  /** The workload's parameters (job count, concurrency, …). */
  readonly params: Readonly<Record<string, number | string | boolean>>
}

/** What a measurement child reports: its metrics, and for a profiled run the measured window (µs, monotonic). */
export interface ChildResult {
  readonly metrics: Readonly<Record<string, number>>
  readonly window?: readonly [startMicros: number, endMicros: number]
}

/** The prefix of the line on which a child prints its {@link ChildResult}. */
export const resultPrefix = "@@RESULT "

/** The line a server child prints once it listens. */
export const readyLine = "@@READY"

/** The monotonic clock in microseconds, on the same scale as a `.cpuprofile`'s timestamps. */
export const monotonicMicros = (): number => Number(process.hrtime.bigint() / 1000n)
