import type { Factory } from "../contenders/index.js"
import type { Contender } from "../contenders/types.js"
import { type ChildResult, monotonicMicros } from "../lib/protocol.js"
import { collectGarbage, type Latch, makeLatch, percentileSorted, sleep } from "../lib/stats.js"

/** Parameters of a throughput run. */
export interface ThroughputParams {
  /** Jobs measured. */
  readonly n: number
  /** Concurrency. */
  readonly c: number
  /** Jobs run before measuring (JIT warm-up); in a separate instance for in-process queues. */
  readonly warmup: number
  /** `one` (a submission per job) or `bulk` (chunks of `chunk` through the bulk API). */
  readonly mode: "one" | "bulk"
  /** The bulk chunk size. */
  readonly chunk: number
  /** Whether the warm-up uses a separate instance (in-process queues) or the measured one (durable queues). */
  readonly separateWarmup: boolean
}

/** Submits `n` no-op jobs and waits until every handler ran: jobs per second from the first submit to the last run. */
export const runThroughput = async (factory: Factory, params: ThroughputParams): Promise<ChildResult> => {
  let latch: Latch = makeLatch(params.warmup)
  const onRun = () => latch.hit()
  const build = (capacity: number) =>
    factory({ concurrency: params.c, indexed: false, onRun, capacity: capacity + params.warmup })
  let contender: Contender
  if (params.warmup > 0 && params.separateWarmup) {
    const warm = await build(params.warmup)
    await warm.submitAll(params.warmup)
    await latch.done
    await warm.close()
    await collectGarbage()
    contender = await build(params.n)
  } else {
    contender = await build(params.n)
    if (params.warmup > 0) {
      await contender.submitAll(params.warmup)
      await latch.done
    }
  }
  await collectGarbage()
  latch = makeLatch(params.n)
  const startMicros = monotonicMicros()
  const start = performance.now()
  if (params.mode === "bulk") {
    if (contender.submitBulk === undefined) throw new Error("this contender has no bulk submission")
    await contender.submitBulk(params.n, params.chunk)
  } else await contender.submitAll(params.n, params.warmup)
  await latch.done
  const ms = performance.now() - start
  const endMicros = monotonicMicros()
  await contender.close()
  return { metrics: { jobsPerSec: params.n / (ms / 1000), ms }, window: [startMicros, endMicros] }
}

/**
 * Submits jobs at a steady rate: a 1 ms interval timer submits every job that is due (one per `intervalMs`),
 * catching up when the timer fires late. Resolves with the latest any job was submitted after its due time (ms).
 */
export const submitSteadily = (
  count: number,
  intervalMs: number,
  submit: (i: number) => void
): Promise<number> =>
  new Promise((resolve) => {
    let next = 0
    let maxLag = 0
    const start = performance.now()
    const tick = () => {
      const now = performance.now()
      const due = Math.min(count, Math.floor((now - start) / intervalMs) + 1)
      if (next < due) maxLag = Math.max(maxLag, now - (start + next * intervalMs))
      while (next < due) submit(next++)
      if (next >= count) {
        clearInterval(timer)
        resolve(maxLag)
      }
    }
    const timer = setInterval(tick, 1)
    tick()
  })

/** Parameters of a latency run. */
export interface LatencyParams {
  /** Jobs measured. */
  readonly count: number
  /** Jobs submitted first at the same rate and not counted. */
  readonly warmup: number
  /** Concurrency. */
  readonly c: number
  /** Time between two submissions, in milliseconds. */
  readonly intervalMs: number
  /** The longest wait for the last handler, in milliseconds. */
  readonly timeoutMs: number
}

/** Submits jobs at a steady rate and measures, for each, the time from its submit call to its handler's start. */
export const runLatency = async (factory: Factory, params: LatencyParams): Promise<ChildResult> => {
  const total = params.warmup + params.count
  const submittedAt = new Float64Array(total)
  const latencies = new Float64Array(params.count)
  const latch = makeLatch(total)
  const contender = await factory({
    concurrency: params.c,
    indexed: true,
    capacity: total,
    onRun: (i) => {
      const now = performance.now()
      if (i >= params.warmup) latencies[i - params.warmup] = now - submittedAt[i]!
      latch.hit()
    }
  })
  await collectGarbage()
  const maxSubmitLagMs = await submitSteadily(total, params.intervalMs, (i) => {
    submittedAt[i] = performance.now()
    contender.submitOne(i)
  })
  const timedOut = await Promise.race([
    latch.done.then(() => false),
    sleep(params.timeoutMs).then(() => true)
  ])
  if (timedOut) throw new Error(`not every job started within ${params.timeoutMs} ms`)
  await contender.close()
  // Whether the queue kept up: a backlog shows as latencies that grow from the first tenth of the run to the last.
  const tenth = Math.max(1, Math.floor(latencies.length / 10))
  const firstTenth = latencies.slice(0, tenth).sort()
  const lastTenth = latencies.slice(latencies.length - tenth).sort()
  latencies.sort()
  let sum = 0
  for (const value of latencies) sum += value
  return {
    metrics: {
      p50Ms: percentileSorted(latencies, 50),
      p99Ms: percentileSorted(latencies, 99),
      maxMs: latencies[latencies.length - 1]!,
      firstTenthP50Ms: percentileSorted(firstTenth, 50),
      lastTenthP50Ms: percentileSorted(lastTenth, 50),
      maxSubmitLagMs,
      meanMs: sum / latencies.length
    }
  }
}

/** Parameters of a memory run. */
export interface MemoryParams {
  /** Finished jobs retained. */
  readonly n: number
  /** Jobs run first in a separate instance (so that compiled code is not counted). */
  readonly warmup: number
}

/**
 * Heap bytes per retained finished job: with the queue built and the heap collected, runs `n` jobs with empty
 * metadata to completion, collects again, and divides the growth of `heapUsed` by `n`.
 */
export const runMemory = async (factory: Factory, params: MemoryParams): Promise<ChildResult> => {
  if ((globalThis as { gc?: unknown }).gc === undefined) throw new Error("run with --expose-gc")
  let latch = makeLatch(params.warmup)
  const onRun = () => latch.hit()
  if (params.warmup > 0) {
    const warm = await factory({ concurrency: 2, indexed: false, onRun, capacity: params.warmup })
    await warm.submitAll(params.warmup)
    await latch.done
    await warm.settled?.()
    await warm.close()
  }
  const contender = await factory({ concurrency: 2, indexed: false, onRun, capacity: params.n })
  if (contender.settled === undefined)
    throw new Error("this contender cannot tell when its jobs are recorded")
  latch = makeLatch(params.n)
  await collectGarbage()
  const before = process.memoryUsage().heapUsed
  await contender.submitAll(params.n)
  await latch.done
  await contender.settled()
  await collectGarbage()
  const after = process.memoryUsage().heapUsed
  const bytesPerJob = (after - before) / params.n
  await contender.close()
  return { metrics: { bytesPerJob, heapGrowthMB: (after - before) / 2 ** 20 } }
}
