/** Called by a contender's handler when a job starts: its index, or -1 for jobs submitted without one. */
export type OnRun = (index: number) => void

/** How to build a contender. */
export interface ContenderOptions {
  /** How many jobs may run at once. */
  readonly concurrency: number
  /** Whether each job carries its index (`{ i }`) to its handler; otherwise its metadata is empty. */
  readonly indexed: boolean
  /** The handler's only work. */
  readonly onRun: OnRun
  /** How many jobs the run submits in all (for retention and pending limits). */
  readonly capacity: number
}

/** A queue under test, started and ready to take jobs. */
export interface Contender {
  /** Submits `count` jobs one at a time (each submission awaited), indexed from `from`. */
  readonly submitAll: (count: number, from?: number) => Promise<void>
  /** Submits `count` jobs in chunks of `chunk` through the contender's bulk API, when it has one. */
  readonly submitBulk?: (count: number, chunk: number) => Promise<void>
  /** Submits job `index` without waiting for the submission (the steady-rate latency test). */
  readonly submitOne: (index: number) => void
  /** Resolves once every submitted job is finished and recorded (the memory test). */
  readonly settled?: () => Promise<void>
  /** Stops the queue and releases what it holds. */
  readonly close: () => Promise<void>
}
