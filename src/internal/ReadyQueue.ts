import { Effect } from "effect"

/** A job waiting for a worker: its id, type and priority, and its place in line. */
export interface ReadyEntry {
  readonly id: string
  readonly type: string
  readonly priority: number
  readonly seq: number
}

/** A first-in first-out run of entries, popped from the front without shifting the array each time. */
class Fifo {
  private items: Array<ReadyEntry> = []
  private head = 0

  get size(): number {
    return this.items.length - this.head
  }

  push(entry: ReadyEntry): void {
    this.items.push(entry)
  }

  peek(): ReadyEntry | undefined {
    return this.items[this.head]
  }

  shift(): ReadyEntry | undefined {
    const entry = this.items[this.head]
    if (entry === undefined) return undefined
    this.items[this.head++] = undefined as never
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head)
      this.head = 0
    }
    return entry
  }

  drain(): Array<ReadyEntry> {
    const out = this.items.slice(this.head)
    this.items = []
    this.head = 0
    return out
  }
}

/** The ready jobs of one type: one FIFO per priority, its concurrency limit, and how many of its jobs run. */
class Lane {
  readonly buckets = new Map<number, Fifo>()
  /** Priorities present in `buckets`, highest first. Only an empty lane may hold an empty bucket, and only one. */
  priorities: Array<number> = []
  size = 0
  running = 0

  constructor(public limit: number) {}

  push(entry: ReadyEntry): void {
    let bucket = this.buckets.get(entry.priority)
    if (bucket === undefined) {
      // The only empty bucket there can be is the one kept when the lane emptied (see `shift`).
      if (this.size === 0 && this.priorities.length > 0) {
        this.buckets.clear()
        this.priorities = []
      }
      bucket = new Fifo()
      this.buckets.set(entry.priority, bucket)
      let i = 0
      while (i < this.priorities.length && this.priorities[i]! > entry.priority) i++
      this.priorities.splice(i, 0, entry.priority)
    }
    bucket.push(entry)
    this.size++
  }

  peek(): ReadyEntry | undefined {
    const top = this.priorities[0]
    return top === undefined ? undefined : this.buckets.get(top)!.peek()
  }

  shift(): ReadyEntry {
    const top = this.priorities[0]!
    const bucket = this.buckets.get(top)!
    const entry = bucket.shift()!
    // A lane's last bucket is kept when it empties: with one priority in use (the usual case) a queue that drains at
    // each job would otherwise build a bucket, and its place in `priorities`, for every job.
    if (bucket.size === 0 && this.priorities.length > 1) {
      this.buckets.delete(top)
      this.priorities.shift()
    }
    this.size--
    return entry
  }
}

/**
 * The jobs that are ready to run, in dispatch order: higher priority first, first in first out within one priority.
 * Each job type may have a concurrency limit: taking a job counts against its type until `release`, and a type at its
 * limit is skipped, so it never holds up the other types. Workers wait in `take` until an eligible job is there.
 */
export class ReadyQueue {
  private readonly lanes = new Map<string, Lane>()
  private readonly takers: Array<(entry: ReadyEntry) => void> = []
  private seq = 0
  private total = 0

  /** `limitOf` gives a type's concurrency limit (`Infinity` for none); it is asked once per type. */
  constructor(private readonly limitOf: (type: string) => number = () => Number.POSITIVE_INFINITY) {}

  /** How many jobs wait in the queue. */
  get size(): number {
    return this.total
  }

  private lane(type: string): Lane {
    let lane = this.lanes.get(type)
    if (lane === undefined) {
      lane = new Lane(this.limitOf(type))
      this.lanes.set(type, lane)
    }
    return lane
  }

  /** The best eligible entry, taken and counted against its type; undefined when none is eligible. */
  private tryTake(): ReadyEntry | undefined {
    let best: Lane | undefined
    let bestEntry: ReadyEntry | undefined
    for (const lane of this.lanes.values()) {
      if (lane.size === 0 || lane.running >= lane.limit) continue
      const entry = lane.peek()!
      if (
        bestEntry === undefined ||
        entry.priority > bestEntry.priority ||
        (entry.priority === bestEntry.priority && entry.seq < bestEntry.seq)
      ) {
        best = lane
        bestEntry = entry
      }
    }
    if (best === undefined) return undefined
    best.running++
    this.total--
    return best.shift()
  }

  private handOff(): void {
    while (this.takers.length > 0) {
      const entry = this.tryTake()
      if (entry === undefined) return
      this.takers.shift()!(entry)
    }
  }

  /** Adds a ready job, or hands it straight to a waiting worker. */
  offer(id: string, type: string, priority: number): void {
    this.lane(type).push({ id, type, priority, seq: this.seq++ })
    this.total++
    if (this.takers.length > 0) this.handOff()
  }

  /** How many jobs of a type hold a slot now. */
  runningOf(type: string): number {
    return this.lanes.get(type)?.running ?? 0
  }

  /** Gives back a type's slot taken by `take`, when its job ends. */
  release(type: string): void {
    const lane = this.lanes.get(type)
    if (lane === undefined) return
    lane.running--
    if (this.takers.length > 0 && lane.size > 0) this.handOff()
  }

  /** Waits for the best eligible job and takes it (counted against its type until `release`). */
  readonly take: Effect.Effect<ReadyEntry> = Effect.suspend(() => {
    const entry = this.tryTake()
    if (entry !== undefined) return Effect.succeed(entry)
    return Effect.async<ReadyEntry>((resume) => {
      const taker = (taken: ReadyEntry) => resume(Effect.succeed(taken))
      this.takers.push(taker)
      return Effect.sync(() => {
        const index = this.takers.indexOf(taker)
        if (index >= 0) this.takers.splice(index, 1)
      })
    })
  })

  /** Removes and returns every waiting job (at shutdown). */
  drain(): Array<ReadyEntry> {
    const out: Array<ReadyEntry> = []
    for (const lane of this.lanes.values()) {
      for (const bucket of lane.buckets.values()) out.push(...bucket.drain())
      lane.buckets.clear()
      lane.priorities = []
      lane.size = 0
    }
    this.total = 0
    return out.sort((a, b) => a.seq - b.seq)
  }
}
