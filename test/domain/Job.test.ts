import { describe, expect, it } from "@effect/vitest"
import { Arbitrary, Effect, FastCheck as fc, Option, Schema } from "effect"
import {
  canTransition,
  isTerminal,
  Job,
  type JobId,
  JobStatus,
  JobStatuses,
  type JobStatus as JobStatusType,
  makeJobId
} from "../../src/domain/Job.js"
import { compareNewestFirst, cursorAfter, JobCursor, parseCursor } from "../../src/domain/JobPage.js"
import { applyTransition, makeMemory } from "../../src/JobStore.js"

const encodeJob = Schema.encodeSync(Job)
const decodeJob = Schema.decodeUnknownSync(Job)

const arbitraryJob = Arbitrary.make(Job)

/** Every move the spec allows, spelled out independently of the implementation's table. */
const legal = new Set([
  "pending>running",
  "pending>cancelled",
  "running>completed",
  "running>failed",
  "running>cancelled",
  "running>pending"
])

const pendingJob = (createdAt: Date): Job =>
  new Job({
    id: makeJobId(),
    type: "test",
    status: "pending",
    stage: "queued",
    progress: 0,
    message: null,
    metadata: {},
    result: null,
    error: null,
    lastError: null,
    priority: 0,
    attempts: 0,
    maxAttempts: 3,
    timeoutMs: null,
    idempotencyKey: null,
    runAt: createdAt,
    createdAt,
    startedAt: null,
    finishedAt: null,
    updatedAt: createdAt
  })

describe("Job schema", () => {
  it.prop("survives a JSON round trip", [arbitraryJob], ([job]) => {
    const encoded = encodeJob(job)
    const decoded = decodeJob(JSON.parse(JSON.stringify(encoded)))
    expect(decoded).toBeInstanceOf(Job)
    expect(encodeJob(decoded)).toEqual(encoded)
    expect(decoded).toEqual(job)
  })

  it("rejects a record with an out-of-range progress or an unknown status", () => {
    const encoded = encodeJob(pendingJob(new Date(0)))
    expect(() => decodeJob({ ...encoded, progress: 101 })).toThrow(/progress/)
    expect(() => decodeJob({ ...encoded, status: "paused" })).toThrow(/status/)
    expect(() => decodeJob({ ...encoded, maxAttempts: 0 })).toThrow(/maxAttempts/)
    expect(() => decodeJob({ ...encoded, timeoutMs: 0 })).toThrow(/timeoutMs/)
  })
})

describe("transition rule", () => {
  it.prop("canTransition holds exactly for the legal moves", [JobStatus, JobStatus], ([from, to]) => {
    expect(canTransition(from, to)).toBe(legal.has(`${from}>${to}`))
  })

  it("allows exactly six moves, and none out of a terminal status", () => {
    const allowed = JobStatuses.flatMap((from) =>
      JobStatuses.filter((to) => canTransition(from, to)).map((to) => `${from}>${to}`)
    )
    expect(new Set(allowed)).toEqual(legal)
    expect(JobStatuses.filter(isTerminal)).toEqual(["completed", "failed", "cancelled"])
  })

  it.prop(
    "the in-memory store only ever makes legal moves",
    [fc.array(fc.constantFrom(...JobStatuses), { maxLength: 12 })],
    ([targets]) => {
      const store = makeMemory()
      const job = pendingJob(new Date(1_000))
      Effect.runSync(store.insert([job], 10))
      let current: Job = job
      const visited: Array<JobStatusType> = [job.status]
      targets.forEach((to, step) => {
        const now = new Date(2_000 + step)
        // A running job reports progress first, so that a retry visibly resets it.
        if (current.status === "running") {
          const reported = Effect.runSync(
            store.progress(job.id, { stage: "transcribing", progress: 40, message: `step ${step}` }, now)
          )
          expect(Option.isSome(reported)).toBe(true)
          if (Option.isSome(reported)) current = reported.value
        }
        const runAt = new Date(9_000 + step)
        const detail = { result: { step }, error: `why ${step}`, runAt }
        const outcome = Effect.runSync(store.transition(job.id, to, detail, now))
        if (canTransition(current.status, to)) {
          expect(outcome._tag).toBe("Moved")
          if (outcome._tag !== "Moved") return
          expect(outcome.from).toBe(current.status)
          expect(outcome.job.status).toBe(to)
          expect(outcome.job.updatedAt).toEqual(now)
          expect(outcome.job.attempts).toBe(current.attempts + (to === "running" ? 1 : 0))
          expect(outcome.job.startedAt).toEqual(to === "running" ? now : current.startedAt)
          expect(outcome.job.finishedAt).toEqual(isTerminal(to) ? now : null)
          if (to === "completed") {
            expect(outcome.job.progress).toBe(100)
            expect(outcome.job.result).toEqual({ step })
          }
          if (to === "failed" || to === "cancelled") expect(outcome.job.error).toBe(`why ${step}`)
          if (to === "failed") expect(outcome.job.lastError).toBe(`why ${step}`)
          if (to === "cancelled") expect(outcome.job.lastError).toBe(current.lastError)
          if (to === "pending") {
            expect(outcome.job).toMatchObject({
              stage: "queued",
              progress: 0,
              message: null,
              error: null,
              lastError: `why ${step}`,
              result: null
            })
            expect(outcome.job.runAt).toEqual(runAt)
          } else {
            expect(outcome.job.runAt).toEqual(current.runAt)
          }
          current = outcome.job
          visited.push(current.status)
        } else {
          expect(outcome).toEqual({ _tag: "Refused", job: current })
        }
        expect(Effect.runSync(store.get(job.id))).toEqual(Option.some(current))
        expect(Effect.runSync(store.pendingCount)).toBe(current.status === "pending" ? 1 : 0)
      })
      for (let i = 1; i < visited.length; i++) expect(legal).toContain(`${visited[i - 1]}>${visited[i]}`)
    }
  )

  it("applyTransition back to pending records lastError and runAt, and resets stage, progress and message", () => {
    const running = new Job({
      ...pendingJob(new Date(1_000)),
      status: "running",
      stage: "transcribing",
      progress: 40,
      message: "halfway",
      attempts: 1,
      startedAt: new Date(2_000),
      updatedAt: new Date(2_500)
    })
    const now = new Date(3_000)
    const retry = applyTransition(running, "pending", { error: "boom", runAt: new Date(4_000) }, now)
    expect(retry).toBeInstanceOf(Job)
    expect(retry).toEqual(
      new Job({
        ...running,
        status: "pending",
        stage: "queued",
        progress: 0,
        message: null,
        lastError: "boom",
        runAt: new Date(4_000),
        updatedAt: now
      })
    )
    // The attempt count and the latest attempt's start are kept; nothing is finished.
    expect(retry).toMatchObject({ attempts: 1, error: null, finishedAt: null })
    expect(retry.startedAt).toEqual(new Date(2_000))
    // Without a runAt the next attempt is due at once.
    expect(applyTransition(running, "pending", { error: "boom" }, now).runAt).toEqual(now)
  })

  it("reports an unknown id as NotFound", () => {
    const store = makeMemory()
    const outcome = Effect.runSync(store.transition(makeJobId(), "running", {}, new Date(0)))
    expect(outcome).toEqual({ _tag: "NotFound" })
  })
})

/** Jobs the queue can make: created at a non-negative time that fits the cursor's 15 digits. */
const queueMadeJob = fc
  .tuple(arbitraryJob, fc.integer({ min: 0, max: 999_999_999_999_999 }))
  .map(([job, createdAt]) => new Job({ ...job, createdAt: new Date(createdAt) }))

describe("cursor helpers", () => {
  it.prop("parseCursor reads back what cursorAfter wrote", [queueMadeJob], ([job]) => {
    const cursor = cursorAfter(job)
    expect(Schema.is(JobCursor)(cursor)).toBe(true)
    expect(parseCursor(cursor)).toEqual({ createdAt: job.createdAt.getTime(), id: job.id })
  })

  const id = "0b7f6a3e-2c1d-4e5f-8a9b-0c1d2e3f4a5b"
  it.each([
    "",
    "_",
    "garbage",
    "12",
    "12_",
    `_${id}`,
    `abc_${id}`,
    `12_${id}x`,
    `12__${id}`,
    "12_not-a-uuid",
    `1.5_${id}`,
    `1e3_${id}`,
    `-5_${id}`,
    `+5_${id}`,
    ` 12_${id}`,
    `0x1F_${id}`,
    `Infinity_${id}`,
    `1234567890123456_${id}`
  ])("rejects the non-cursor %j", (garbage) => {
    expect(parseCursor(garbage)).toBeUndefined()
    expect(Schema.is(JobCursor)(garbage)).toBe(false)
  })

  const numberish = fc.stringMatching(/^[-+ .0-9a-fA-FxXeEInfity]{0,17}$/)
  it.prop("anything parseCursor accepts is a valid JobCursor", [fc.string(), numberish], ([text, time]) => {
    for (const candidate of [text, `${text}_${id}`, `12_${text}`, `${time}_${id}`]) {
      if (parseCursor(candidate) !== undefined) expect(Schema.is(JobCursor)(candidate)).toBe(true)
    }
  })

  it.prop(
    "compareNewestFirst orders by time descending, then id descending",
    [fc.nat({ max: 3 }), fc.nat({ max: 3 }), fc.uuid(), fc.uuid()],
    ([t1, t2, id1, id2]) => {
      const a = { createdAt: t1, id: id1 as JobId }
      const b = { createdAt: t2, id: id2 as JobId }
      const sign = Math.sign(compareNewestFirst(a, b))
      const expected = t1 !== t2 ? Math.sign(t2 - t1) : id1 === id2 ? 0 : id1 > id2 ? -1 : 1
      expect(sign).toBe(expected)
      expect(Math.sign(compareNewestFirst(b, a))).toBe(-expected || 0)
    }
  )
})
