import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, FiberRef, HashSet, Layer, Logger, Schema, Tracer } from "effect"
import { vi } from "vitest"
import { PermanentJobError } from "../../src/domain/errors.js"
import { JobHandlers } from "../../src/JobHandlers.js"
import { JobQueue } from "../../src/JobQueue.js"
import { JobStore } from "../../src/JobStore.js"
import { LoggerLive } from "../../src/logging.js"

interface Line {
  readonly level: string
  readonly message: string
  readonly annotations: Record<string, unknown>
}

// A handler that logs while it works, and fails for good when asked to.
const Chatty = JobHandlers.register({
  type: "chatty",
  payload: Schema.Struct({ fail: Schema.optional(Schema.Boolean) }),
  handler: ({ fail }, { progress }) =>
    Effect.gen(function* () {
      yield* Effect.logInfo("working on it")
      yield* Effect.orDie(progress({ progress: 50 }))
      if (fail === true) return yield* new PermanentJobError({ message: "no luck" })
      return { ok: true }
    })
})

const queueLive = JobQueue.layer({ shutdownGraceMs: 0 }).pipe(
  Layer.provide(Layer.merge(Chatty, JobStore.layerMemory)),
  Layer.provide(JobHandlers.layer)
)

interface SpanRecord {
  readonly name: string
  readonly attributes: Record<string, unknown>
}

describe("logs and spans", () => {
  it.scopedLive("every log line about a job carries its jobId, the handler's own included", () =>
    Effect.gen(function* () {
      const lines: Array<Line> = []
      const capture = Logger.make(({ logLevel, message, annotations }) => {
        lines.push({
          level: logLevel.label,
          message: Array.isArray(message) ? message.map(String).join(" ") : String(message),
          annotations: Object.fromEntries(annotations)
        })
      })
      const context = yield* Layer.build(queueLive).pipe(
        Effect.locally(FiberRef.currentLoggers, HashSet.make(capture))
      )
      const queue = yield* Effect.provide(JobQueue, context)
      const ok = yield* queue.submit("chatty", {})
      const bad = yield* queue.submit("chatty", { fail: true })
      expect((yield* queue.await(ok.id)).status).toBe("completed")
      expect((yield* queue.await(bad.id)).status).toBe("failed")

      const working = lines.filter((line) => line.message === "working on it")
      expect(working.map((line) => line.annotations.jobId).sort()).toEqual([ok.id, bad.id].sort())
      expect(working.every((line) => line.annotations.jobType === "chatty")).toBe(true)
      const failed = lines.filter((line) => line.message.startsWith("Job failed"))
      expect(failed).toHaveLength(1)
      expect(failed[0]!.annotations).toMatchObject({ jobId: bad.id, jobType: "chatty" })
      expect(failed[0]!.level).toBe("WARN")
    })
  )

  it.scopedLive("the service's operations run in spans named after them; the workers make none", () =>
    Effect.gen(function* () {
      const spans: Array<SpanRecord> = []
      const native = yield* Effect.tracer
      const tracer = Tracer.make({
        span: (name, parent, context, links, startTime, kind, options) => {
          spans.push({ name, attributes: { ...options?.attributes } })
          return native.span(name, parent, context, links, startTime, kind, options)
        },
        context: (f, fiber) => native.context(f, fiber)
      })
      const program = Effect.gen(function* () {
        const context = yield* Layer.build(queueLive)
        const queue = yield* Effect.provide(JobQueue, context)
        const job = yield* queue.submit("chatty", {})
        yield* queue.submitMany([{ type: "chatty" }])
        yield* queue.offer({ type: "chatty" })
        yield* queue.get(job.id)
        yield* queue.list({ limit: 5 })
        const pending = yield* queue.submit("chatty", {}, { delayMs: 60_000 })
        yield* queue.cancel(pending.id)
        yield* queue.await(job.id)
        return { job, pending }
      })
      const { job, pending } = yield* program.pipe(Effect.withTracer(tracer))
      expect(spans.map((span) => span.name)).toEqual([
        "JobQueue.submit",
        "JobQueue.submitMany",
        "JobQueue.offer",
        "JobQueue.get",
        "JobQueue.list",
        "JobQueue.submit",
        "JobQueue.cancel"
      ])
      expect(spans[0]!.attributes).toEqual({ "job.type": "chatty" })
      expect(spans[3]!.attributes).toEqual({ "job.id": job.id })
      expect(spans[6]!.attributes).toEqual({ "job.id": pending.id })
    })
  )

  it.effect("APP_LOG_FORMAT=json writes one JSON object per line, with the annotations", () =>
    Effect.gen(function* () {
      const written: Array<string> = []
      const spy = vi.spyOn(console, "log").mockImplementation((...args: Array<unknown>) => {
        written.push(args.map(String).join(" "))
      })
      yield* Effect.logInfo("hello").pipe(
        Effect.annotateLogs({ jobId: "job-1" }),
        Effect.zipRight(Effect.logDebug("not shown at info")),
        Effect.provide(LoggerLive),
        Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["APP_LOG_FORMAT", "json"]]))),
        Effect.ensuring(Effect.sync(() => spy.mockRestore()))
      )
      expect(written).toHaveLength(1)
      const line = JSON.parse(written[0]!) as { message: string; logLevel: string; annotations: object }
      expect(line).toMatchObject({ message: "hello", logLevel: "INFO", annotations: { jobId: "job-1" } })
    })
  )

  it.effect("APP_LOG_LEVEL filters, and the pretty format (the default) writes each line once", () =>
    Effect.gen(function* () {
      const written: Array<string> = []
      const spy = vi.spyOn(console, "log").mockImplementation((...args: Array<unknown>) => {
        written.push(args.map(String).join(" "))
      })
      yield* Effect.logInfo("quiet").pipe(
        Effect.zipRight(Effect.logWarning("loud")),
        Effect.provide(LoggerLive),
        Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["APP_LOG_LEVEL", "warn"]]))),
        Effect.ensuring(Effect.sync(() => spy.mockRestore()))
      )
      expect(written.filter((line) => line.includes("loud"))).toHaveLength(1)
      expect(written.some((line) => line.includes("quiet"))).toBe(false)
    })
  )

  it.effect("a bad APP_LOG_FORMAT or APP_LOG_LEVEL stops start-up naming the variable", () =>
    Effect.gen(function* () {
      const format = yield* Effect.flip(
        Layer.build(LoggerLive).pipe(
          Effect.scoped,
          Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["APP_LOG_FORMAT", "xml"]])))
        )
      )
      expect(String(format)).toContain("APP_LOG_FORMAT must be pretty or json")
      const level = yield* Effect.flip(
        Layer.build(LoggerLive).pipe(
          Effect.scoped,
          Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["APP_LOG_LEVEL", "loud"]])))
        )
      )
      expect(String(level)).toContain("APP_LOG_LEVEL")
    })
  )
})
