/** A job waiting for its `runAt`: its id, type, priority and due time (epoch ms). */
export interface DelayedEntry {
  readonly id: string
  readonly type: string
  readonly priority: number
  readonly dueAt: number
}

/**
 * Jobs that are not due yet, as a binary min-heap on their due time, so the scheduler always knows the next one.
 * Ties keep insertion order.
 */
export class DelayedJobs {
  private readonly heap: Array<DelayedEntry & { readonly seq: number }> = []
  private seq = 0

  /** How many jobs wait for their time. */
  get size(): number {
    return this.heap.length
  }

  /** The due time of the next job, if any. */
  nextDueAt(): number | undefined {
    return this.heap[0]?.dueAt
  }

  private before(a: number, b: number): boolean {
    const x = this.heap[a]!
    const y = this.heap[b]!
    return x.dueAt < y.dueAt || (x.dueAt === y.dueAt && x.seq < y.seq)
  }

  private swap(a: number, b: number): void {
    const x = this.heap[a]!
    this.heap[a] = this.heap[b]!
    this.heap[b] = x
  }

  /** Adds a job that becomes ready at `dueAt`. */
  push(entry: DelayedEntry): void {
    this.heap.push({ ...entry, seq: this.seq++ })
    let i = this.heap.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!this.before(i, parent)) break
      this.swap(i, parent)
      i = parent
    }
  }

  private pop(): DelayedEntry {
    const top = this.heap[0]!
    const last = this.heap.pop()!
    if (this.heap.length > 0) {
      this.heap[0] = last
      let i = 0
      for (;;) {
        const left = 2 * i + 1
        const right = left + 1
        let smallest = i
        if (left < this.heap.length && this.before(left, smallest)) smallest = left
        if (right < this.heap.length && this.before(right, smallest)) smallest = right
        if (smallest === i) break
        this.swap(i, smallest)
        i = smallest
      }
    }
    return top
  }

  /** Removes and returns the jobs due at or before `now`, earliest first. */
  takeDue(now: number): Array<DelayedEntry> {
    const due: Array<DelayedEntry> = []
    while (this.heap.length > 0 && this.heap[0]!.dueAt <= now) due.push(this.pop())
    return due
  }

  /** Removes and returns every waiting job (at shutdown). */
  drain(): Array<DelayedEntry> {
    return this.takeDue(Number.POSITIVE_INFINITY)
  }
}
