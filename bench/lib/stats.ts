/** The median of some numbers (the mean of the middle two for an even count); NaN for none. */
export const median = (values: ReadonlyArray<number>): number => {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

/** The nearest-rank percentile `p` (0–100) of samples sorted in ascending order; NaN for none. */
export const percentileSorted = (sorted: ArrayLike<number>, p: number): number => {
  if (sorted.length === 0) return Number.NaN
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length))
  return sorted[Math.min(rank, sorted.length) - 1]!
}

/** The median, min and max of one metric over the rounds. */
export interface Summary {
  readonly median: number
  readonly min: number
  readonly max: number
  readonly n: number
}

/** Summarises one metric's values over the rounds. */
export const summarise = (values: ReadonlyArray<number>): Summary => ({
  median: median(values),
  min: values.length === 0 ? Number.NaN : Math.min(...values),
  max: values.length === 0 ? Number.NaN : Math.max(...values),
  n: values.length
})

/** A latch that opens once `hit` has been called `count` times. */
export interface Latch {
  /** Counts one arrival. */
  readonly hit: () => void
  /** Resolves when the count is reached. */
  readonly done: Promise<void>
}

/** Makes a {@link Latch} for `count` arrivals. */
export const makeLatch = (count: number): Latch => {
  let left = count
  let open: () => void = () => {}
  const done = new Promise<void>((resolve) => {
    open = resolve
  })
  if (count <= 0) open()
  return {
    hit: () => {
      left--
      if (left === 0) open()
    },
    done
  }
}

/** Resolves after `ms` milliseconds. */
export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Runs `gc()` a few times when the process was started with `--expose-gc`. */
export const collectGarbage = async (): Promise<void> => {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc === undefined) return
  for (let i = 0; i < 3; i++) {
    gc()
    await sleep(10)
  }
}
