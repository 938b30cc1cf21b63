// The semantics of the newer parts of the HTTP contract: submission options, idempotency, batches, the pending
// limit (503 with Retry-After), the two Server-Sent Events endpoints read incrementally over a real connection,
// and what /openapi.json says about all of it. Everything waits on events (gates, job ends, stream messages):
// nothing sleeps.
import { HttpClient, HttpClientRequest, HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import {
  Chunk,
  Clock,
  Context,
  Deferred,
  Duration,
  Effect,
  Either,
  Layer,
  Option,
  Queue,
  type Scope,
  Stream,
  SubscriptionRef,
  TestClock
} from "effect"
import type { JobQueueOptions } from "../../src/config.js"
import { QueueFull } from "../../src/domain/errors.js"
import type { JobId } from "../../src/domain/Job.js"
import { JobEventKinds } from "../../src/domain/JobEvent.js"
import { MaxAttemptsLimit } from "../../src/domain/SubmitOptions.js"
import { maxBatchSize, SubmitBatchPayload, SubmitJobPayload } from "../../src/http/Api.js"
import { makeJobsClient } from "../../src/http/client.js"
import { queueFullRetryAfterSeconds } from "../../src/http/handlers.js"
import { HttpAppLive } from "../../src/http/server.js"
import { heartbeatInterval } from "../../src/http/sse.js"
import { JobQueue, type JobQueueService } from "../../src/JobQueue.js"
import {
  expectError,
  gatedType,
  makeGates,
  queueLayer,
  readError,
  startServer,
  type TestServer
} from "./support.js"

// ---------------------------------------------------------------------------------------------------------
// Helpers: plain JSON over the test client
// ---------------------------------------------------------------------------------------------------------

/** A job as it is on the wire. */
interface JobJson {
  readonly id: string
  readonly type: string
  readonly status: string
  readonly metadata: Record<string, unknown>
  readonly createdAt: string
  readonly runAt: string
  readonly [key: string]: unknown
}

/** Every field of a job on the wire. */
const jobFields = [
  "attempts",
  "createdAt",
  "error",
  "finishedAt",
  "id",
  "idempotencyKey",
  "lastError",
  "maxAttempts",
  "message",
  "metadata",
  "priority",
  "progress",
  "result",
  "runAt",
  "stage",
  "startedAt",
  "status",
  "timeoutMs",
  "type",
  "updatedAt"
]

const postJson = (http: HttpClient.HttpClient, url: string, body: unknown) =>
  Effect.orDie(
    http.execute(
      HttpClientRequest.post(url).pipe(HttpClientRequest.bodyText(JSON.stringify(body), "application/json"))
    )
  )

/** POSTs JSON and returns the status and the parsed body. */
const post = (http: HttpClient.HttpClient, url: string, body: unknown) =>
  Effect.gen(function* () {
    const response = yield* postJson(http, url, body)
    const json: unknown = yield* Effect.orDie(response.json)
    return { status: response.status, body: json }
  })

/** GETs a URL and returns the status and the parsed body. */
const getJson = (http: HttpClient.HttpClient, url: string) =>
  Effect.gen(function* () {
    const response = yield* Effect.orDie(http.get(url))
    const body: unknown = yield* Effect.orDie(response.json)
    return { status: response.status, body }
  })

/** POST /jobs, expecting `status` (201 by default); returns the job as sent on the wire. */
const submitJson = (http: HttpClient.HttpClient, body: Record<string, unknown>, status = 201) =>
  Effect.gen(function* () {
    const answer = yield* post(http, "/jobs", body)
    expect(answer.status, JSON.stringify(answer.body)).toBe(status)
    return answer.body as JobJson
  })

/** The job as GET /jobs/{id} shows it. */
const getJob = (http: HttpClient.HttpClient, id: string) =>
  Effect.gen(function* () {
    const answer = yield* getJson(http, `/jobs/${id}`)
    expect(answer.status).toBe(200)
    return answer.body as JobJson
  })

/** The ids GET /jobs lists (the tests here stay below one page). */
const listedIds = (http: HttpClient.HttpClient) =>
  Effect.gen(function* () {
    const answer = yield* getJson(http, "/jobs?limit=500")
    expect(answer.status).toBe(200)
    return (answer.body as { items: ReadonlyArray<JobJson> }).items.map((job) => job.id)
  })

/** Submits through the queue and waits for the job's end (an event, not a sleep). */
const runToEnd = (server: TestServer, type: string, metadata: Record<string, string | boolean> = {}) =>
  Effect.orDie(Effect.flatMap(server.queue.submit(type, metadata), (job) => server.queue.await(job.id)))

/** A delay that keeps a job pending for the whole test. */
const anHour = 60 * 60 * 1000

// ---------------------------------------------------------------------------------------------------------
// Helpers: a server on a real port, and a Server-Sent Events reader over Node's fetch
// ---------------------------------------------------------------------------------------------------------

/** What {@link startSseServer} gives beside a {@link TestServer}. */
interface SseServer extends TestServer {
  /** `http://127.0.0.1:<port>` of the test server. */
  readonly baseUrl: string
  /**
   * How many event streams (`events` or `watch`) the server holds open. The engine's subscription lives in each
   * stream's scope, so this falls back when a stream's scope closes, and with it the subscription.
   */
  readonly openStreams: SubscriptionRef.SubscriptionRef<number>
}

/** Counts one open stream in `open` for as long as the scope lasts. */
const opened = (open: SubscriptionRef.SubscriptionRef<number>) =>
  Effect.acquireRelease(
    SubscriptionRef.update(open, (n) => n + 1),
    () => SubscriptionRef.update(open, (n) => n - 1)
  )

const counted = <A, E>(open: SubscriptionRef.SubscriptionRef<number>, stream: Stream.Stream<A, E>) =>
  Stream.unwrapScoped(Effect.as(opened(open), stream))

/**
 * Like `startServer`, over the same queue layer, but the server's queue counts the event streams it hands out (a
 * decoration in the test: nothing in src/ is added for it), and the real listening address is known.
 */
const startSseServer = (
  options: Partial<JobQueueOptions> = {}
): Effect.Effect<SseServer, never, Scope.Scope> =>
  Effect.gen(function* () {
    const gates = yield* makeGates
    const openStreams = yield* SubscriptionRef.make(0)
    const queue = Context.get(yield* Layer.build(queueLayer(gates, options)), JobQueue)
    const decorated: JobQueueService = {
      ...queue,
      events: (filter) => counted(openStreams, queue.events(filter)),
      subscribe: (filter) => Effect.zipRight(opened(openStreams), queue.subscribe(filter)),
      watch: (id) => counted(openStreams, queue.watch(id))
    }
    const context = yield* Layer.build(
      HttpAppLive.pipe(
        Layer.provide(Layer.succeed(JobQueue, decorated)),
        Layer.provideMerge(NodeHttpServer.layerTest)
      )
    ).pipe(Effect.orDie)
    const address = Context.get(context, HttpServer.HttpServer).address
    if (address._tag !== "TcpAddress") return yield* Effect.dieMessage("the test server has no TCP address")
    const http = Context.get(context, HttpClient.HttpClient)
    const api = yield* makeJobsClient("").pipe(Effect.provideService(HttpClient.HttpClient, http))
    return { http, api, queue, gates, openStreams, baseUrl: `http://127.0.0.1:${address.port}` }
  })

/** One block of an event stream: a message (`event:`, `data:`) or comments only. */
interface SseBlock {
  readonly _tag: "Block"
  readonly event: string | undefined
  readonly data: string | undefined
  readonly comments: ReadonlyArray<string>
  /** Lines that are neither a comment nor `event:` or `data:` (there should be none). */
  readonly other: ReadonlyArray<string>
}

/** The body finished (or failed), with whatever text was left after the last complete block. */
interface SseEnd {
  readonly _tag: "End"
  readonly failed: boolean
  readonly rest: string
}

const parseBlock = (raw: string): SseBlock => {
  let event: string | undefined
  const data: Array<string> = []
  const comments: Array<string> = []
  const other: Array<string> = []
  for (const line of raw.split("\n")) {
    if (line.startsWith(":")) comments.push(line.slice(1).trim())
    else if (line.startsWith("event:")) event = line.slice("event:".length).trim()
    else if (line.startsWith("data:")) data.push(line.slice("data:".length).replace(/^ /, ""))
    else other.push(line)
  }
  return { _tag: "Block", event, data: data.length > 0 ? data.join("\n") : undefined, comments, other }
}

/** An open `text/event-stream` response, read incrementally. */
interface SseConnection {
  readonly response: Response
  /** The next block, waiting for it; `End` once the body has finished. */
  readonly next: Effect.Effect<SseBlock | SseEnd>
  /** The next block if one has already arrived. */
  readonly poll: Effect.Effect<Option.Option<SseBlock | SseEnd>>
  /** Drops the connection, as a client that goes away does. */
  readonly abort: Effect.Effect<void>
}

/** GETs `url` with Node's fetch and parses its body as Server-Sent Events as the bytes come in. */
const connect = (url: string): Effect.Effect<SseConnection, never, Scope.Scope> =>
  Effect.gen(function* () {
    const controller = new AbortController()
    const abort = Effect.sync(() => controller.abort())
    yield* Effect.addFinalizer(() => abort)
    const response = yield* Effect.promise(() =>
      fetch(url, { headers: { accept: "text/event-stream" }, signal: controller.signal })
    )
    const blocks = yield* Queue.unbounded<SseBlock | SseEnd>()
    const body = response.body
    if (body === null) {
      yield* Queue.offer(blocks, { _tag: "End", failed: false, rest: "" })
    } else {
      const reader = body.getReader()
      const decoder = new TextDecoder()
      let buffer = ""
      const readAll: Effect.Effect<void> = Effect.gen(function* () {
        for (;;) {
          const chunk = yield* Effect.either(Effect.tryPromise(() => reader.read()))
          if (Either.isLeft(chunk) || chunk.right.done) {
            yield* Queue.offer(blocks, { _tag: "End", failed: Either.isLeft(chunk), rest: buffer })
            return
          }
          buffer += decoder.decode(chunk.right.value, { stream: true })
          for (let at = buffer.indexOf("\n\n"); at >= 0; at = buffer.indexOf("\n\n")) {
            yield* Queue.offer(blocks, parseBlock(buffer.slice(0, at)))
            buffer = buffer.slice(at + 2)
          }
        }
      })
      yield* Effect.forkScoped(readAll)
    }
    // After the end, every further read sees the end again.
    const remember = (block: SseBlock | SseEnd): Effect.Effect<SseBlock | SseEnd> =>
      block._tag === "End" ? Effect.as(Queue.offer(blocks, block), block) : Effect.succeed(block)
    return {
      response,
      next: Effect.flatMap(Queue.take(blocks), remember),
      poll: Effect.flatMap(Queue.poll(blocks), (block) =>
        Option.isNone(block) ? Effect.succeedNone : Effect.map(remember(block.value), Option.some)
      ),
      abort
    }
  })

/** A message's content: `event:` names the kind, `data:` is `{ kind, job }` and nothing else. */
interface SseMessage {
  readonly event: string
  readonly kind: string
  readonly job: JobJson
}

/** Checks a block is a well-formed message and returns it. */
const toMessage = (block: SseBlock): SseMessage => {
  const label = JSON.stringify(block)
  expect(block.other, label).toEqual([])
  expect(block.comments, label).toEqual([])
  expect(block.event, label).toBeDefined()
  expect(block.data, label).toBeDefined()
  const data = JSON.parse(block.data ?? "null") as { kind: string; job: JobJson }
  expect(Object.keys(data).sort(), label).toEqual(["job", "kind"])
  expect(data.kind, label).toBe(block.event)
  expect(JobEventKinds as ReadonlyArray<string>, label).toContain(data.kind)
  expect(Object.keys(data.job).sort(), label).toEqual(jobFields)
  return { event: block.event ?? "", kind: data.kind, job: data.job }
}

/** The comments a stream may carry between messages. */
const knownComments = ["connected", "heartbeat"]

/** The next message, skipping comment blocks; `undefined` once the body has finished. */
const nextMessage = (sse: SseConnection): Effect.Effect<SseMessage | undefined> =>
  Effect.gen(function* () {
    for (;;) {
      const block = yield* sse.next
      if (block._tag === "End") {
        expect(block, "the stream ended cleanly").toEqual({ _tag: "End", failed: false, rest: "" })
        return undefined
      }
      if (block.event === undefined && block.data === undefined) {
        expect(block.other).toEqual([])
        for (const comment of block.comments) expect(knownComments).toContain(comment)
        continue
      }
      return toMessage(block)
    }
  })

/** The next message, which must come (the stream must not end first). */
const expectMessage = (sse: SseConnection) =>
  Effect.map(nextMessage(sse), (message) => {
    expect(message, "a message before the end of the stream").toBeDefined()
    return message as SseMessage
  })

/** Reads messages up to and including the first one `last` accepts. */
const readUntil = (sse: SseConnection, last: (message: SseMessage) => boolean) =>
  Effect.gen(function* () {
    const messages: Array<SseMessage> = []
    for (;;) {
      const message = yield* expectMessage(sse)
      messages.push(message)
      if (last(message)) return messages
    }
  })

/** Checks the body finishes after the messages read so far. */
const expectEnd = (sse: SseConnection) =>
  Effect.map(nextMessage(sse), (message) => expect(message, "no message after the last one").toBeUndefined())

/** Lets Node's event loop run (socket reads and writes) once: a yield, not a timed wait. */
const yieldToEventLoop = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))

const probeNotes = "probe"
const isProbe = (message: SseMessage) => message.job.metadata.notes === probeNotes

/**
 * Waits until an `/events` subscription is live. The stream has no message of its own to say so, so this runs
 * probe jobs that the stream's filter lets through (each marked `notes: "probe"`), one after another, until one
 * of their messages arrives. Later probe messages still in flight are skipped by {@link readEvents}.
 */
const awaitSubscribed = (sse: SseConnection, probe: Effect.Effect<unknown>) =>
  Effect.gen(function* () {
    for (;;) {
      yield* probe
      yield* yieldToEventLoop
      for (;;) {
        const block = yield* sse.poll
        if (Option.isNone(block)) break
        expect(block.value._tag, "the stream is still open").toBe("Block")
        if (block.value._tag === "End" || block.value.data === undefined) continue
        expect(isProbe(toMessage(block.value)), "only probe jobs have run so far").toBe(true)
        return
      }
    }
  })

/** Reads an `/events` stream's messages, probes aside, up to and including the first one `last` accepts. */
const readEvents = (sse: SseConnection, last: (message: SseMessage) => boolean) =>
  Effect.map(
    readUntil(sse, (message) => !isProbe(message) && last(message)),
    (messages) => messages.filter((message) => !isProbe(message))
  )

const waitForOpenStreams = (server: SseServer, count: number) =>
  server.openStreams.changes.pipe(
    Stream.filter((n) => n === count),
    Stream.runHead
  )

// ---------------------------------------------------------------------------------------------------------
// POST /jobs with submission options
// ---------------------------------------------------------------------------------------------------------

describe("POST /jobs with submission options", () => {
  it.scopedLive("returns the job with its options; delayMs sets runAt = createdAt + delayMs", () =>
    Effect.gen(function* () {
      const { http } = yield* startServer()
      const job = yield* submitJson(http, {
        type: "bootstrap",
        metadata: { notes: "options" },
        priority: 7,
        delayMs: 90_000,
        maxAttempts: 3,
        timeoutMs: 2500,
        idempotencyKey: "options-1"
      })
      expect(job).toMatchObject({
        type: "bootstrap",
        status: "pending",
        stage: "queued",
        priority: 7,
        maxAttempts: 3,
        timeoutMs: 2500,
        idempotencyKey: "options-1",
        attempts: 0,
        lastError: null
      })
      expect(Object.keys(job).sort()).toEqual(jobFields)
      expect(job.runAt).toBe(new Date(Date.parse(job.createdAt) + 90_000).toISOString())
      // Delayed, so still pending, and so is what GET shows.
      expect(yield* getJob(http, job.id)).toEqual(job)

      // Without options: the defaults, and runAt is the creation time.
      const plain = yield* submitJson(http, { type: "extraction" })
      expect(plain).toMatchObject({ priority: 0, maxAttempts: 1, timeoutMs: null, idempotencyKey: null })
      expect(plain.runAt).toBe(plain.createdAt)
      const zero = yield* submitJson(http, { type: gatedType, delayMs: 0, priority: -2 })
      expect(zero).toMatchObject({ priority: -2 })
      expect(zero.runAt).toBe(zero.createdAt)

      // The bounds themselves are accepted.
      const low = yield* submitJson(http, {
        type: "bootstrap",
        maxAttempts: 1,
        timeoutMs: 1,
        delayMs: anHour
      })
      expect(low).toMatchObject({ maxAttempts: 1, timeoutMs: 1 })
      const high = yield* submitJson(http, {
        type: "bootstrap",
        maxAttempts: MaxAttemptsLimit,
        delayMs: anHour,
        idempotencyKey: "k".repeat(200)
      })
      expect(high).toMatchObject({ maxAttempts: MaxAttemptsLimit, idempotencyKey: "k".repeat(200) })
    })
  )

  it.scopedLive("accepts runAt as an ISO-8601 string and returns it in UTC", () =>
    Effect.gen(function* () {
      const { http } = yield* startServer()
      const utc = yield* submitJson(http, { type: "bootstrap", runAt: "2099-01-02T03:04:05.678Z" })
      expect(utc).toMatchObject({ status: "pending", runAt: "2099-01-02T03:04:05.678Z" })
      const offset = yield* submitJson(http, { type: "bootstrap", runAt: "2099-01-02T05:04:05.678+02:00" })
      expect(offset.runAt).toBe("2099-01-02T03:04:05.678Z")
      expect((yield* getJob(http, utc.id)).runAt).toBe("2099-01-02T03:04:05.678Z")
      // A runAt in the past is due at once: the job runs.
      const past = yield* submitJson(http, { type: "bootstrap", runAt: "2000-01-01T00:00:00.000Z" })
      expect(past.runAt).toBe("2000-01-01T00:00:00.000Z")
    })
  )

  it.scopedLive("delayMs together with runAt: 400 InvalidJobInput, and nothing is created", () =>
    Effect.gen(function* () {
      const { http } = yield* startServer()
      const body = yield* expectError(
        http,
        HttpClientRequest.post("/jobs").pipe(
          HttpClientRequest.bodyText(
            JSON.stringify({ type: "bootstrap", delayMs: 1000, runAt: "2099-01-01T00:00:00.000Z" }),
            "application/json"
          )
        ),
        400,
        "InvalidJobInput"
      )
      expect(body.message).toContain("delayMs")
      expect(body.message).toContain("runAt")
      expect(body.field).toBe("delayMs")
      expect(body.index).toBeUndefined()
      expect(yield* listedIds(http)).toEqual([])
    })
  )

  it.scopedLive("options out of range or of the wrong type: 400 with _tag and message naming the field", () =>
    Effect.gen(function* () {
      const { http } = yield* startServer()
      const cases: ReadonlyArray<readonly [string, unknown]> = [
        ["maxAttempts", 0],
        ["maxAttempts", MaxAttemptsLimit + 1],
        ["maxAttempts", 1.5],
        ["timeoutMs", 0],
        ["timeoutMs", -1],
        ["priority", 1.5],
        ["priority", "1"],
        ["delayMs", -1],
        ["delayMs", 0.5],
        ["runAt", "not a date"],
        ["runAt", 12],
        ["idempotencyKey", ""],
        ["idempotencyKey", "k".repeat(201)]
      ]
      for (const [field, value] of cases) {
        const label = `${field}=${JSON.stringify(value)}`
        const response = yield* postJson(http, "/jobs", { type: "bootstrap", [field]: value })
        expect(response.status, label).toBe(400)
        const body = yield* readError(response)
        expect(body._tag, label).toBe("HttpApiDecodeError")
        expect(body.message, label).toContain(field)
        const issues = body.issues as ReadonlyArray<{ path: ReadonlyArray<unknown> }>
        expect(
          issues.some((issue) => issue.path[0] === field),
          label
        ).toBe(true)
      }
      expect(yield* listedIds(http)).toEqual([])
    })
  )
})

// ---------------------------------------------------------------------------------------------------------
// Idempotency
// ---------------------------------------------------------------------------------------------------------

describe("idempotency over HTTP", () => {
  it.scopedLive(
    "the first POST with a key answers 201, the next 200 with the same job; nothing else is created",
    () =>
      Effect.gen(function* () {
        const { http } = yield* startServer()
        const first = yield* submitJson(http, {
          type: "bootstrap",
          metadata: { notes: "first" },
          delayMs: anHour,
          idempotencyKey: "order-42"
        })
        // Another body with the same key: the retained job comes back as it is.
        const second = yield* submitJson(
          http,
          { type: "extraction", metadata: { notes: "second" }, priority: 9, idempotencyKey: "order-42" },
          200
        )
        expect(second).toEqual(first)
        const third = yield* submitJson(http, { type: "bootstrap", idempotencyKey: "order-42" }, 200)
        expect(third.id).toBe(first.id)
        const other = yield* submitJson(http, {
          type: "bootstrap",
          delayMs: anHour,
          idempotencyKey: "order-43"
        })
        expect(other.id).not.toBe(first.id)
        expect(new Set(yield* listedIds(http))).toEqual(new Set([first.id, other.id]))
      })
  )

  it.scopedLive("the typed client decodes both the 201 and the 200", () =>
    Effect.gen(function* () {
      const { api } = yield* startServer()
      const payload = new SubmitJobPayload({
        type: "bootstrap",
        metadata: { notes: "typed" },
        delayMs: anHour,
        priority: 3,
        idempotencyKey: "typed-1"
      })
      const [created, createdResponse] = yield* api.jobs.submit({ payload, withResponse: true })
      expect(createdResponse.status).toBe(201)
      const [again, againResponse] = yield* api.jobs.submit({ payload, withResponse: true })
      expect(againResponse.status).toBe(200)
      expect(again.id).toBe(created.id)
      expect(again).toEqual(created)
      expect(again.runAt).toBeInstanceOf(Date)
      expect(again).toMatchObject({ priority: 3, idempotencyKey: "typed-1", status: "pending" })
      expect(again.runAt.getTime() - again.createdAt.getTime()).toBe(anHour)
    })
  )
})

// ---------------------------------------------------------------------------------------------------------
// POST /jobs/batch
// ---------------------------------------------------------------------------------------------------------

describe("POST /jobs/batch", () => {
  it.scopedLive("answers 201 with the jobs in the order submitted, each with its own options", () =>
    Effect.gen(function* () {
      const { http, api } = yield* startServer()
      const entries = [
        { type: "bootstrap", metadata: { notes: "0" }, delayMs: anHour, priority: 1 },
        { type: "extraction", metadata: { notes: "1" }, delayMs: anHour, maxAttempts: 4 },
        { type: "transcription", metadata: { source: "2.mp3" }, runAt: "2099-01-01T00:00:00.000Z" },
        { type: "bootstrap", metadata: { notes: "3" }, delayMs: anHour, idempotencyKey: "batch-3" },
        { type: "extraction", metadata: { notes: "4" }, delayMs: anHour, timeoutMs: 5000 }
      ]
      const answer = yield* post(http, "/jobs/batch", { jobs: entries })
      expect(answer.status, JSON.stringify(answer.body)).toBe(201)
      const jobs = (answer.body as { jobs: ReadonlyArray<JobJson> }).jobs
      expect(Object.keys(answer.body as object)).toEqual(["jobs"])
      expect(jobs.map((job) => [job.type, job.metadata])).toEqual(
        entries.map((entry) => [entry.type, entry.metadata])
      )
      expect(new Set(jobs.map((job) => job.id)).size).toBe(entries.length)
      expect(jobs[0]).toMatchObject({ priority: 1, maxAttempts: 1, status: "pending" })
      expect(jobs[1]).toMatchObject({ priority: 0, maxAttempts: 4 })
      expect(jobs[2]?.runAt).toBe("2099-01-01T00:00:00.000Z")
      expect(jobs[3]).toMatchObject({ idempotencyKey: "batch-3" })
      expect(jobs[4]).toMatchObject({ timeoutMs: 5000 })
      for (const job of jobs) expect(yield* getJob(http, job.id)).toEqual(job)

      // The typed client decodes the answer; a key already held brings back the retained job in its place.
      const [batch, response] = yield* api.jobs.submitBatch({
        payload: new SubmitBatchPayload({
          jobs: [
            new SubmitJobPayload({ type: "bootstrap", delayMs: anHour, idempotencyKey: "batch-3" }),
            new SubmitJobPayload({ type: "extraction", delayMs: anHour })
          ]
        }),
        withResponse: true
      })
      expect(response.status).toBe(201)
      expect(batch.jobs.map((job) => job.id)[0]).toBe(jobs[3]?.id)
      expect(batch.jobs[1]?.type).toBe("extraction")
      expect((yield* listedIds(http)).length).toBe(entries.length + 1)
    })
  )

  it.scopedLive(`takes up to ${maxBatchSize} jobs; ${maxBatchSize + 1} or none is a 400`, () =>
    Effect.gen(function* () {
      const { http } = yield* startServer()
      const entry = { type: "bootstrap", delayMs: anHour }
      const tooMany = yield* postJson(http, "/jobs/batch", {
        jobs: Array.from({ length: maxBatchSize + 1 }, () => entry)
      })
      expect(tooMany.status).toBe(400)
      const tooManyBody = yield* readError(tooMany)
      expect(tooManyBody._tag).toBe("HttpApiDecodeError")
      expect(tooManyBody.message).toContain(String(maxBatchSize))
      const none = yield* postJson(http, "/jobs/batch", { jobs: [] })
      expect(none.status).toBe(400)
      expect((yield* readError(none))._tag).toBe("HttpApiDecodeError")
      expect(yield* listedIds(http)).toEqual([])

      const full = yield* post(http, "/jobs/batch", {
        jobs: Array.from({ length: maxBatchSize }, (_, i) => ({ ...entry, metadata: { notes: String(i) } }))
      })
      expect(full.status).toBe(201)
      const jobs = (full.body as { jobs: ReadonlyArray<JobJson> }).jobs
      expect(jobs.map((job) => job.metadata.notes)).toEqual(
        Array.from({ length: maxBatchSize }, (_, i) => String(i))
      )
    })
  )

  it.scopedLive("an invalid entry fails the whole batch with 400 InvalidJobInput naming its index", () =>
    Effect.gen(function* () {
      const { http } = yield* startServer()
      const valid = (i: number) => ({ type: "bootstrap", metadata: { notes: String(i) } })
      const unknownType = yield* postJson(http, "/jobs/batch", {
        jobs: [valid(0), valid(1), valid(2), { type: "no-such-type" }, valid(4)]
      })
      expect(unknownType.status).toBe(400)
      const body = yield* readError(unknownType)
      expect(body).toMatchObject({ _tag: "InvalidJobInput", index: 3, field: "jobs[3].type" })
      expect(body.message).toMatch(/^jobs\[3\]/)
      expect(body.message).toContain("no-such-type")
      expect(yield* listedIds(http)).toEqual([])

      const badMetadata = yield* postJson(http, "/jobs/batch", {
        jobs: [valid(0), { type: "transcription", metadata: { language: "en" } }]
      })
      const metadataBody = yield* readError(badMetadata)
      expect({ status: badMetadata.status, ...metadataBody }).toMatchObject({
        status: 400,
        _tag: "InvalidJobInput",
        index: 1,
        field: "jobs[1].metadata.source"
      })
      expect(metadataBody.message).toMatch(/^jobs\[1\]: /)
      expect(metadataBody.message).toContain("metadata.source")

      const both = yield* postJson(http, "/jobs/batch", {
        jobs: [valid(0), valid(1), { type: "bootstrap", delayMs: 5, runAt: "2099-01-01T00:00:00.000Z" }]
      })
      const bothBody = yield* readError(both)
      expect({ status: both.status, ...bothBody }).toMatchObject({
        status: 400,
        _tag: "InvalidJobInput",
        index: 2,
        field: "jobs[2].delayMs"
      })
      expect(bothBody.message).toMatch(/^jobs\[2\]\.delayMs: /)
      expect(yield* listedIds(http)).toEqual([])
    })
  )

  it.scopedLive("an entry that fails the schema (no type): 400 whose issue path names the index", () =>
    Effect.gen(function* () {
      const { http } = yield* startServer()
      const response = yield* postJson(http, "/jobs/batch", {
        jobs: [{ type: "bootstrap" }, { type: "extraction" }, { metadata: {} }]
      })
      expect(response.status).toBe(400)
      const body = yield* readError(response)
      expect(body._tag).toBe("HttpApiDecodeError")
      expect(body.issues).toEqual([expect.objectContaining({ path: ["jobs", 2, "type"] })])
      const wrongOption = yield* postJson(http, "/jobs/batch", {
        jobs: [{ type: "bootstrap", maxAttempts: 0 }]
      })
      const wrongBody = yield* readError(wrongOption)
      expect(wrongOption.status).toBe(400)
      const paths = (wrongBody.issues as ReadonlyArray<{ path: ReadonlyArray<unknown> }>).map(
        (issue) => issue.path
      )
      expect(paths).toContainEqual(["jobs", 0, "maxAttempts"])
      expect(yield* listedIds(http)).toEqual([])
    })
  )
})

// ---------------------------------------------------------------------------------------------------------
// QueueFull
// ---------------------------------------------------------------------------------------------------------

describe("QueueFull", () => {
  it.scopedLive(
    "past maxPending: 503 QueueFull with a JSON body and Retry-After; a batch creates nothing",
    () =>
      Effect.gen(function* () {
        const { http, api } = yield* startServer({ maxPending: 3 })
        const delayed = (notes: string, extra: Record<string, unknown> = {}) => ({
          type: "bootstrap",
          metadata: { notes },
          delayMs: anHour,
          ...extra
        })
        const a = yield* submitJson(http, delayed("a", { idempotencyKey: "a" }))
        const b = yield* submitJson(http, delayed("b"))

        // One place left: a batch of two takes neither.
        const batch = yield* postJson(http, "/jobs/batch", { jobs: [delayed("c"), delayed("d")] })
        expect(batch.status).toBe(503)
        expect(batch.headers["retry-after"]).toBe(String(queueFullRetryAfterSeconds))
        expect(yield* readError(batch)).toMatchObject({ _tag: "QueueFull", maxPending: 3 })
        expect(new Set(yield* listedIds(http))).toEqual(new Set([a.id, b.id]))

        const c = yield* submitJson(http, delayed("c"))
        const overflow = yield* postJson(http, "/jobs", delayed("e"))
        expect(overflow.status).toBe(503)
        const retryAfter = overflow.headers["retry-after"]
        expect(retryAfter).toBe(String(queueFullRetryAfterSeconds))
        expect(Number(retryAfter)).toBeGreaterThanOrEqual(1)
        const body = yield* readError(overflow)
        expect(body).toEqual({ _tag: "QueueFull", message: body.message, maxPending: 3 })
        expect(body.message).toContain("3")
        const single = yield* postJson(http, "/jobs/batch", { jobs: [delayed("f")] })
        expect(single.status).toBe(503)
        expect(single.headers["retry-after"]).toBe(String(queueFullRetryAfterSeconds))
        expect((yield* readError(single))._tag).toBe("QueueFull")

        // The typed client decodes the 503 as QueueFull.
        const refused = yield* Effect.flip(api.jobs.submit({ payload: new SubmitJobPayload(delayed("g")) }))
        expect(refused).toBeInstanceOf(QueueFull)
        expect(refused).toMatchObject({ _tag: "QueueFull", maxPending: 3 })

        // A key a retained job holds creates nothing, so it is answered even when the queue is full.
        const again = yield* submitJson(http, delayed("a2", { idempotencyKey: "a" }), 200)
        expect(again.id).toBe(a.id)
        expect(new Set(yield* listedIds(http))).toEqual(new Set([a.id, b.id, c.id]))

        // A cancelled job frees its place.
        expect((yield* Effect.orDie(http.execute(HttpClientRequest.del(`/jobs/${b.id}`)))).status).toBe(200)
        yield* submitJson(http, delayed("h"))
        expect((yield* postJson(http, "/jobs", delayed("i"))).status).toBe(503)
      })
  )
})

// ---------------------------------------------------------------------------------------------------------
// GET /jobs/{id}/events
// ---------------------------------------------------------------------------------------------------------

describe("GET /jobs/{id}/events over a real connection", () => {
  it.scopedLive(
    "follows a running job: its current state first, then each change, ending after its final event",
    () =>
      Effect.gen(function* () {
        const server = yield* startSseServer()
        const job = yield* submitJson(server.http, { type: gatedType, metadata: { label: "watched" } })
        expect(yield* Queue.take(server.gates.started)).toBe(job.id)

        const sse = yield* connect(`${server.baseUrl}/jobs/${job.id}/events`)
        expect(sse.response.status).toBe(200)
        expect(sse.response.headers.get("content-type")).toMatch(/^text\/event-stream\b/)
        expect(sse.response.headers.get("cache-control")).toBe("no-cache")

        const first = yield* expectMessage(sse)
        expect(first.event).toBe("progress")
        expect(first.job).toMatchObject({
          id: job.id,
          type: gatedType,
          status: "running",
          stage: "processing",
          progress: 50,
          message: "waiting for the gate",
          metadata: { label: "watched" },
          attempts: 1
        })
        expect(first.job).toEqual(yield* getJob(server.http, job.id))

        yield* Deferred.succeed(server.gates.release, undefined)
        const rest = yield* readUntil(sse, (message) => message.event === "completed")
        expect(rest.map((message) => message.event)).toEqual(["completed"])
        const last = rest[rest.length - 1]!
        expect(last.job).toMatchObject({
          id: job.id,
          status: "completed",
          progress: 100,
          result: { label: "watched" },
          error: null
        })
        expect(last.job.finishedAt).toEqual(expect.any(String))
        expect(last.job).toEqual(yield* getJob(server.http, job.id))
        // The body finishes after the final event.
        yield* expectEnd(sse)
        yield* waitForOpenStreams(server, 0)
      })
  )

  it.scopedLive("a pending job: first `submitted`, then `cancelled` when it is cancelled, and the end", () =>
    Effect.gen(function* () {
      const server = yield* startSseServer()
      const job = yield* submitJson(server.http, { type: "bootstrap", delayMs: anHour })
      const sse = yield* connect(`${server.baseUrl}/jobs/${job.id}/events`)
      const first = yield* expectMessage(sse)
      expect(first.event).toBe("submitted")
      expect(first.job).toEqual(job)
      const cancelled = yield* Effect.orDie(server.http.execute(HttpClientRequest.del(`/jobs/${job.id}`)))
      expect(cancelled.status).toBe(200)
      const last = yield* expectMessage(sse)
      expect(last.event).toBe("cancelled")
      expect(last.job).toEqual(yield* getJob(server.http, job.id))
      yield* expectEnd(sse)
    })
  )

  it.scopedLive("a finished job: its final state as the only message, then the end", () =>
    Effect.gen(function* () {
      const server = yield* startSseServer()
      const completed = yield* runToEnd(server, "bootstrap", { notes: "done" })
      const failed = yield* runToEnd(server, "bootstrap", { simulateFailure: true })
      const cancelled = yield* Effect.orDie(server.queue.submit("bootstrap", {}, { delayMs: anHour }))
      yield* Effect.orDie(server.queue.cancel(cancelled.id))
      for (const [id, kind] of [
        [completed.id, "completed"],
        [failed.id, "failed"],
        [cancelled.id, "cancelled"]
      ] as const) {
        const sse = yield* connect(`${server.baseUrl}/jobs/${id}/events`)
        expect(sse.response.status).toBe(200)
        const only = yield* expectMessage(sse)
        expect(only.event, kind).toBe(kind)
        expect(only.job.status, kind).toBe(kind)
        expect(only.job, kind).toEqual(yield* getJob(server.http, id))
        yield* expectEnd(sse)
      }
    })
  )

  it.scopedLive("an unknown id: 404 JobNotFound as JSON; an id that is not a UUID: 400", () =>
    Effect.gen(function* () {
      const server = yield* startSseServer()
      const id = crypto.randomUUID()
      const missing = yield* expectError(
        server.http,
        HttpClientRequest.get(`/jobs/${id}/events`),
        404,
        "JobNotFound"
      )
      expect(missing).toMatchObject({ id })
      expect(missing.message).toContain(id)
      const bad = yield* expectError(
        server.http,
        HttpClientRequest.get("/jobs/not-a-uuid/events"),
        400,
        "HttpApiDecodeError"
      )
      expect(bad.message).toContain("not-a-uuid")
      // The same over fetch: a JSON answer, not an event stream.
      const response = yield* Effect.promise(() => fetch(`${server.baseUrl}/jobs/${id}/events`))
      expect(response.status).toBe(404)
      expect(response.headers.get("content-type")).toMatch(/^application\/json\b/)
      expect(yield* Effect.promise(() => response.json())).toMatchObject({ _tag: "JobNotFound", id })
      expect(yield* SubscriptionRef.get(server.openStreams)).toBe(0)
    })
  )
})

// ---------------------------------------------------------------------------------------------------------
// GET /events
// ---------------------------------------------------------------------------------------------------------

describe("GET /events over a real connection", () => {
  it.scopedLive("answers at once with the event-stream headers, before any event", () =>
    Effect.gen(function* () {
      const server = yield* startSseServer()
      // No job exists, so nothing is published: the response (and its first comment) must come anyway.
      const sse = yield* connect(`${server.baseUrl}/events`)
      expect(sse.response.status).toBe(200)
      expect(sse.response.headers.get("content-type")).toMatch(/^text\/event-stream\b/)
      const first = yield* sse.next
      expect(first).toMatchObject({
        _tag: "Block",
        event: undefined,
        data: undefined,
        comments: ["connected"]
      })
    })
  )

  it.scopedLive("?type=X shows only X's events, every kind of them, in order", () =>
    Effect.gen(function* () {
      const server = yield* startSseServer()
      const sse = yield* connect(`${server.baseUrl}/events?type=extraction`)
      yield* awaitSubscribed(sse, runToEnd(server, "extraction", { notes: probeNotes }))

      const other = yield* runToEnd(server, "bootstrap", { notes: "other" })
      const otherFailed = yield* runToEnd(server, "transcription", { source: "x.mp3", simulateFailure: true })
      const mine = yield* runToEnd(server, "extraction", { notes: "mine" })
      expect(mine.status).toBe("completed")
      const seen = yield* readEvents(
        sse,
        (message) => message.job.id === mine.id && message.event === "completed"
      )
      expect(seen.every((message) => message.job.type === "extraction")).toBe(true)
      expect(seen.map((message) => message.job.id)).not.toContain(other.id)
      expect(seen.map((message) => message.job.id)).not.toContain(otherFailed.id)
      expect(new Set(seen.map((message) => message.job.id))).toEqual(new Set([mine.id]))
      const kinds = seen.map((message) => message.event)
      expect(kinds[0]).toBe("submitted")
      expect(kinds[1]).toBe("started")
      expect(kinds.slice(2, -1).every((kind) => kind === "progress")).toBe(true)
      expect(kinds.length).toBeGreaterThan(3)
      expect(kinds[kinds.length - 1]).toBe("completed")
      expect(seen[seen.length - 1]?.job).toEqual(yield* getJob(server.http, mine.id))
    })
  )

  it.scopedLive("?status=completed shows only events after which the job is completed; filters combine", () =>
    Effect.gen(function* () {
      const server = yield* startSseServer()
      const completedOnly = yield* connect(`${server.baseUrl}/events?status=completed`)
      yield* awaitSubscribed(completedOnly, runToEnd(server, "bootstrap", { notes: probeNotes }))
      // OR within status, AND with type.
      const failedBootstraps = yield* connect(
        `${server.baseUrl}/events?status=failed&status=cancelled&type=bootstrap`
      )
      yield* awaitSubscribed(
        failedBootstraps,
        runToEnd(server, "bootstrap", { notes: probeNotes, simulateFailure: true })
      )

      const failed = yield* runToEnd(server, "bootstrap", { notes: "failed", simulateFailure: true })
      const failedExtraction = yield* runToEnd(server, "extraction", { notes: "x", simulateFailure: true })
      const cancelled = yield* Effect.orDie(
        server.queue.submit("bootstrap", { notes: "cancelled" }, { delayMs: anHour })
      )
      yield* Effect.orDie(server.queue.cancel(cancelled.id))
      const done = yield* runToEnd(server, "bootstrap", { notes: "done" })

      const completedSeen = yield* readEvents(completedOnly, (message) => message.job.id === done.id)
      expect(completedSeen.map((message) => [message.event, message.job.status, message.job.id])).toEqual([
        ["completed", "completed", done.id]
      ])
      const failedSeen = yield* readEvents(failedBootstraps, (message) => message.job.id === cancelled.id)
      expect(failedSeen.map((message) => [message.event, message.job.status, message.job.id])).toEqual([
        ["failed", "failed", failed.id],
        ["cancelled", "cancelled", cancelled.id]
      ])
      expect(failedSeen.map((message) => message.job.id)).not.toContain(failedExtraction.id)

      yield* expectError(
        server.http,
        HttpClientRequest.get("/events?status=bogus"),
        400,
        "HttpApiDecodeError"
      )
    })
  )

  it.scopedLive(
    "a client that disconnects frees its subscription; jobs still run and new subscribers work",
    () =>
      Effect.gen(function* () {
        const server = yield* startSseServer()
        const running = yield* submitJson(server.http, {
          type: gatedType,
          metadata: { label: "left behind" }
        })
        expect(yield* Queue.take(server.gates.started)).toBe(running.id)
        const watcher = yield* connect(`${server.baseUrl}/jobs/${running.id}/events`)
        expect((yield* expectMessage(watcher)).job.id).toBe(running.id)
        const follower = yield* connect(`${server.baseUrl}/events`)
        yield* waitForOpenStreams(server, 2)

        yield* watcher.abort
        yield* follower.abort
        // Both streams' scopes close, and the subscriptions in them with them.
        yield* waitForOpenStreams(server, 0)

        // The queue goes on: the job the watcher left finishes, new jobs run, and a fresh subscriber sees them.
        yield* Deferred.succeed(server.gates.release, undefined)
        expect((yield* server.queue.await(running.id as JobId)).status).toBe("completed")
        expect((yield* runToEnd(server, "bootstrap")).status).toBe("completed")
        const fresh = yield* connect(`${server.baseUrl}/events?type=extraction`)
        yield* awaitSubscribed(fresh, runToEnd(server, "extraction", { notes: probeNotes }))
        expect(yield* SubscriptionRef.get(server.openStreams)).toBe(1)
        const job = yield* submitJson(server.http, { type: "extraction", metadata: { notes: "after" } })
        const seen = yield* readEvents(
          fresh,
          (message) => message.job.id === job.id && message.event === "completed"
        )
        expect(seen[0]?.event).toBe("submitted")
        expect(seen.map((message) => message.job.id).every((id) => id === job.id)).toBe(true)
        yield* fresh.abort
        yield* waitForOpenStreams(server, 0)
      })
  )
})

// ---------------------------------------------------------------------------------------------------------
// The heartbeat, with the server under the test's clock
// ---------------------------------------------------------------------------------------------------------

/** How many sleeps on the TestClock end at `at` (the server's fibers run on the test's clock). */
const sleepsUntil = (at: number) =>
  Effect.map(TestClock.sleeps(), (times) => Chunk.size(Chunk.filter(times, (time) => time === at)))

/**
 * Waits until more than `before` fibers sleep until `at`. The TestClock keeps the sleep of an interrupted fiber in
 * its list, so a count, not the mere presence of one, tells that a new sleep began.
 */
const awaitSleepUntil = (at: number, before = 0) =>
  Effect.gen(function* () {
    while ((yield* sleepsUntil(at)) <= before) yield* yieldToEventLoop
  })

const expectHeartbeat = (sse: SseConnection) =>
  Effect.map(sse.next, (block) =>
    expect(block).toEqual({
      _tag: "Block",
      event: undefined,
      data: undefined,
      comments: ["heartbeat"],
      other: []
    })
  )

describe("the heartbeat", () => {
  // it.scoped runs on the TestClock, and so do the server and the queue it builds: time moves only when the
  // test adjusts it, and the job's own timestamps start at the epoch.
  it.scoped("comes every 15 s on an open stream, between the events, and stops with the stream", () =>
    Effect.gen(function* () {
      const server = yield* startSseServer()
      expect(Duration.toMillis(heartbeatInterval)).toBe(15_000)
      const start = yield* Clock.currentTimeMillis
      const job = yield* submitJson(server.http, { type: gatedType, metadata: { label: "slow" } })
      expect(job.createdAt).toBe(new Date(start).toISOString())
      yield* Queue.take(server.gates.started)

      const sse = yield* connect(`${server.baseUrl}/jobs/${job.id}/events`)
      expect(yield* sse.next).toMatchObject({ comments: ["connected"] })
      expect((yield* expectMessage(sse)).event).toBe("progress")

      yield* awaitSleepUntil(start + 15_000)
      yield* TestClock.adjust("15 seconds")
      yield* expectHeartbeat(sse)
      yield* awaitSleepUntil(start + 30_000)
      yield* TestClock.adjust("15 seconds")
      yield* expectHeartbeat(sse)

      // An event still comes between heartbeats, and the final one ends the stream (and its heartbeat).
      yield* Deferred.succeed(server.gates.release, undefined)
      const last = yield* expectMessage(sse)
      expect(last.event).toBe("completed")
      expect(last.job.finishedAt).toBe(new Date(start + 30_000).toISOString())
      yield* expectEnd(sse)

      // An idle /events stream gets its heartbeat too (the ended stream's heartbeat may have left a sleep at the
      // same time: only a further one is the new stream's).
      const now = yield* Clock.currentTimeMillis
      const stale = yield* sleepsUntil(now + 15_000)
      const idle = yield* connect(`${server.baseUrl}/events`)
      expect(yield* idle.next).toMatchObject({ comments: ["connected"] })
      yield* awaitSleepUntil(now + 15_000, stale)
      yield* TestClock.adjust("15 seconds")
      yield* expectHeartbeat(idle)
    })
  )
})

// ---------------------------------------------------------------------------------------------------------
// OpenAPI
// ---------------------------------------------------------------------------------------------------------

interface JsonSchema {
  readonly $ref?: string
  readonly type?: string
  readonly anyOf?: ReadonlyArray<JsonSchema>
  readonly allOf?: ReadonlyArray<JsonSchema>
  readonly items?: JsonSchema
  readonly required?: ReadonlyArray<string>
  readonly properties?: Record<string, JsonSchema>
  readonly minItems?: number
  readonly maxItems?: number
  readonly minimum?: number
  readonly maximum?: number
  readonly minLength?: number
  readonly maxLength?: number
  readonly exclusiveMinimum?: number
  readonly enum?: ReadonlyArray<unknown>
}

interface Content {
  readonly schema: JsonSchema
}

interface Operation {
  readonly parameters?: ReadonlyArray<{
    readonly name: string
    readonly in: string
    readonly required?: boolean
  }>
  readonly requestBody?: { readonly content: Record<string, Content> }
  readonly responses: Record<string, { readonly content?: Record<string, Content> }>
}

interface OpenApiDocument {
  readonly paths: Record<string, Record<string, Operation>>
  readonly components: { readonly schemas: Record<string, JsonSchema> }
}

const refName = (schema: JsonSchema | undefined) => schema?.$ref?.replace("#/components/schemas/", "")

/** The component names a schema refers to, directly or as alternatives. */
const refNames = (schema: JsonSchema | undefined): Array<string> => {
  if (schema === undefined) return []
  const name = refName(schema)
  if (name !== undefined) return [name]
  return [...(schema.anyOf ?? []), ...(schema.allOf ?? [])].flatMap(refNames)
}

describe("GET /openapi.json", () => {
  it.scopedLive(
    "documents the job's new fields, the submission options, the batch and the SSE endpoints",
    () =>
      Effect.gen(function* () {
        const { http } = yield* startServer()
        const answer = yield* getJson(http, "/openapi.json")
        expect(answer.status).toBe(200)
        const document = answer.body as OpenApiDocument
        const schemas = document.components.schemas
        const component = (name: string | undefined) => {
          const schema = name === undefined ? undefined : schemas[name]
          expect(schema, name).toBeDefined()
          return schema ?? {}
        }
        /** A property's schema, with a top-level $ref replaced by its component's fields (annotations kept). */
        const property = (schema: JsonSchema, name: string): JsonSchema => {
          const own = schema.properties?.[name]
          expect(own, name).toBeDefined()
          const ref = refName(own)
          return ref === undefined ? (own ?? {}) : { ...component(ref), ...own }
        }

        // Job: every new field, all required.
        const job = component("Job")
        const newJobFields = [
          "priority",
          "runAt",
          "maxAttempts",
          "lastError",
          "attempts",
          "timeoutMs",
          "idempotencyKey"
        ]
        expect(Object.keys(job.properties ?? {})).toEqual(expect.arrayContaining(newJobFields))
        expect(job.required).toEqual(expect.arrayContaining(newJobFields))
        expect(Object.keys(job.properties ?? {}).sort()).toEqual(jobFields)
        expect(property(job, "priority").type).toBe("integer")
        expect(property(job, "maxAttempts").minimum).toBe(1)
        expect(property(job, "timeoutMs").anyOf).toEqual(
          expect.arrayContaining([{ type: "null" }, expect.objectContaining({ exclusiveMinimum: 0 })])
        )
        expect(property(job, "attempts").type).toBe("integer")
        expect(property(job, "idempotencyKey").anyOf).toEqual(
          expect.arrayContaining([{ type: "string" }, { type: "null" }])
        )
        expect(property(job, "lastError").anyOf).toEqual(expect.arrayContaining([{ type: "null" }]))

        // POST /jobs: the options in its body, 201 for a new job and 200 for one found by its key, 503 QueueFull.
        const submit = document.paths["/jobs"]?.post
        expect(submit).toBeDefined()
        const submitBody = submit?.requestBody?.content["application/json"]?.schema
        expect(refName(submitBody)).toBe("SubmitJobPayload")
        const payload = component("SubmitJobPayload")
        const options = ["priority", "delayMs", "runAt", "maxAttempts", "timeoutMs", "idempotencyKey"]
        expect(Object.keys(payload.properties ?? {})).toEqual(
          expect.arrayContaining(["type", "metadata", ...options])
        )
        expect(payload.required).toEqual(["type"])
        expect(property(payload, "priority").type).toBe("integer")
        expect(property(payload, "maxAttempts")).toMatchObject({ minimum: 1, maximum: MaxAttemptsLimit })
        expect(property(payload, "timeoutMs").exclusiveMinimum).toBe(0)
        expect(property(payload, "idempotencyKey")).toMatchObject({ minLength: 1, maxLength: 200 })
        expect(Object.keys(submit?.responses ?? {})).toEqual(
          expect.arrayContaining(["200", "201", "400", "503"])
        )
        expect(refNames(submit?.responses["201"]?.content?.["application/json"]?.schema)).toEqual(["Job"])
        expect(refNames(submit?.responses["200"]?.content?.["application/json"]?.schema)).toEqual(["Job"])
        expect(refNames(submit?.responses["400"]?.content?.["application/json"]?.schema)).toContain(
          "InvalidJobInput"
        )
        expect(refNames(submit?.responses["503"]?.content?.["application/json"]?.schema)).toContain(
          "QueueFull"
        )
        expect(Object.keys(component("QueueFull").properties ?? {})).toEqual(
          expect.arrayContaining(["_tag", "message", "maxPending"])
        )
        expect(Object.keys(component("InvalidJobInput").properties ?? {})).toEqual(
          expect.arrayContaining(["_tag", "message", "field", "index"])
        )

        // POST /jobs/batch: 1 to maxBatchSize submissions in, 201 with the jobs out.
        const batch = document.paths["/jobs/batch"]?.post
        expect(batch).toBeDefined()
        expect(refName(batch?.requestBody?.content["application/json"]?.schema)).toBe("SubmitBatchPayload")
        const jobs = property(component("SubmitBatchPayload"), "jobs")
        expect(jobs).toMatchObject({ type: "array", minItems: 1, maxItems: maxBatchSize })
        expect(refName(jobs.items)).toBe("SubmitJobPayload")
        expect(Object.keys(batch?.responses ?? {}).filter((status) => Number(status) < 400)).toEqual(["201"])
        expect(refNames(batch?.responses["201"]?.content?.["application/json"]?.schema)).toEqual([
          "SubmittedBatch"
        ])
        const submitted = property(component("SubmittedBatch"), "jobs")
        expect(submitted.type).toBe("array")
        expect(refName(submitted.items)).toBe("Job")
        expect(refNames(batch?.responses["400"]?.content?.["application/json"]?.schema)).toContain(
          "InvalidJobInput"
        )
        expect(refNames(batch?.responses["503"]?.content?.["application/json"]?.schema)).toContain(
          "QueueFull"
        )

        // The two event streams: 200 as text/event-stream only.
        const watch = document.paths["/jobs/{id}/events"]?.get
        const events = document.paths["/events"]?.get
        for (const [name, operation] of [
          ["watch", watch],
          ["events", events]
        ] as const) {
          expect(operation, name).toBeDefined()
          expect(Object.keys(operation?.responses["200"]?.content ?? {}), name).toEqual(["text/event-stream"])
          expect(operation?.responses["200"]?.content?.["text/event-stream"]?.schema.type, name).toBe(
            "string"
          )
        }
        expect(watch?.parameters).toEqual([
          expect.objectContaining({ name: "id", in: "path", required: true })
        ])
        expect(refNames(watch?.responses["404"]?.content?.["application/json"]?.schema)).toEqual([
          "JobNotFound"
        ])
        expect(events?.parameters?.map(({ name, in: where }) => `${where}:${name}`).sort()).toEqual([
          "query:status",
          "query:type"
        ])
      })
  )
})
