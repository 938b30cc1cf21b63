import { HttpClient, HttpClientError, HttpClientRequest } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import {
  Chunk,
  Context,
  Deferred,
  Effect,
  Either,
  Exit,
  Fiber,
  FiberRef,
  FastCheck as fc,
  HashSet,
  Layer,
  Logger,
  Queue,
  Runtime,
  Scope,
  Stream
} from "effect"
import { JobNotCancellable, JobNotFound } from "../../src/domain/errors.js"
import { type Job, type JobId, type JobStatus, JobStatuses } from "../../src/domain/Job.js"
import { compareNewestFirst } from "../../src/domain/JobPage.js"
import { SubmitJobPayload } from "../../src/http/Api.js"
import { maxBodyBytes, maxJsonDepth } from "../../src/http/errors.js"
import { HttpAppLive } from "../../src/http/server.js"
import { JobStore, makeMemory } from "../../src/JobStore.js"
import {
  expectError,
  gatedType,
  hasStackTrace,
  makeGates,
  queueLayer,
  readError,
  startServer,
  type TestServer
} from "./support.js"

// ---------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------

const submitRequest = (body: string, contentType = "application/json") =>
  HttpClientRequest.post("/jobs").pipe(HttpClientRequest.bodyText(body, contentType))

const submitJson = (body: unknown) => submitRequest(JSON.stringify(body))

/** Submits through the typed client and checks the 201. */
const submit = (server: TestServer, type: string, metadata?: Record<string, string | boolean>) =>
  Effect.gen(function* () {
    const [job, response] = yield* server.api.jobs.submit({
      payload: new SubmitJobPayload(metadata === undefined ? { type } : { type, metadata }),
      withResponse: true
    })
    expect(response.status).toBe(201)
    expect(job).toMatchObject({ type, status: "pending", stage: "queued", progress: 0, attempts: 0 })
    return job
  })

/** Submits a job and waits (an event, not a sleep) until it is completed, failed or cancelled. */
const submitAndFinish = (server: TestServer, type: string, metadata?: Record<string, string | boolean>) =>
  Effect.flatMap(submit(server, type, metadata), (job) => server.queue.await(job.id))

/** Submits a gated job and waits until its handler runs. */
const submitRunning = (server: TestServer, label: string) =>
  Effect.gen(function* () {
    const job = yield* submit(server, gatedType, { label })
    const started = yield* Queue.take(server.gates.started)
    expect(started).toBe(job.id)
    return job
  })

const newestFirst = (jobs: ReadonlyArray<Job>): Array<JobId> =>
  [...jobs]
    .sort((a, b) =>
      compareNewestFirst(
        { createdAt: a.createdAt.getTime(), id: a.id },
        { createdAt: b.createdAt.getTime(), id: b.id }
      )
    )
    .map((job) => job.id)

const idsOf = (jobs: ReadonlyArray<Job>): Array<JobId> => jobs.map((job) => job.id)

/** GETs a URL and returns the status and the parsed JSON body. */
const getJson = (http: HttpClient.HttpClient, url: string) =>
  Effect.gen(function* () {
    const response = yield* Effect.orDie(http.get(url))
    const body: unknown = yield* Effect.orDie(response.json)
    return { status: response.status, body }
  })

// ---------------------------------------------------------------------------------------------------------
// The typed client: the happy paths
// ---------------------------------------------------------------------------------------------------------

describe("typed client", () => {
  it.scopedLive("submits (201), gets (200) and follows a job to completion", () =>
    Effect.gen(function* () {
      const server = yield* startServer()
      const job = yield* submit(server, "transcription", { source: "talk.mp3", language: "en" })
      expect(job.metadata).toEqual({ source: "talk.mp3", language: "en" })
      expect(job.createdAt).toBeInstanceOf(Date)

      const [got, response] = yield* server.api.jobs.get({ path: { id: job.id }, withResponse: true })
      expect(response.status).toBe(200)
      expect(got.id).toBe(job.id)

      yield* server.queue.await(job.id)
      const done = yield* server.api.jobs.get({ path: { id: job.id } })
      expect(done).toMatchObject({ status: "completed", progress: 100, attempts: 1, error: null })
      expect(done.result).toMatchObject({ simulated: true, kind: "transcription", source: "talk.mp3" })
      expect(done.finishedAt).toBeInstanceOf(Date)
    })
  )

  it.scopedLive("shows a running job's progress, and a failed job's error", () =>
    Effect.gen(function* () {
      const server = yield* startServer()
      const running = yield* submitRunning(server, "a")
      const seen = yield* server.api.jobs.get({ path: { id: running.id } })
      expect(seen).toMatchObject({
        status: "running",
        stage: "processing",
        progress: 50,
        message: "waiting for the gate"
      })
      yield* Deferred.succeed(server.gates.release, undefined)
      yield* server.queue.await(running.id)

      const failed = yield* submitAndFinish(server, "bootstrap", { simulateFailure: true })
      const got = yield* server.api.jobs.get({ path: { id: failed.id } })
      expect(got.status).toBe("failed")
      expect(got.error).toContain("SimulatedFailure")
    })
  )

  it.scopedLive("lists with status and type filters: OR within one, AND across both", () =>
    Effect.gen(function* () {
      // One worker, so the gated job holds the only slot and later jobs stay pending.
      const server = yield* startServer({ maxConcurrent: 1 })
      const completed1 = yield* submitAndFinish(server, "bootstrap")
      const failed = yield* submitAndFinish(server, "bootstrap", { simulateFailure: true })
      const completed2 = yield* submitAndFinish(server, "transcription", { source: "a.mp3" })
      const running = yield* submitRunning(server, "running")
      const pending = yield* submit(server, "extraction")
      const cancelled = yield* submit(server, gatedType, { label: "cancelled" })
      const [cancelledNow, cancelResponse] = yield* server.api.jobs.cancel({
        path: { id: cancelled.id },
        withResponse: true
      })
      expect(cancelResponse.status).toBe(200)
      expect(cancelledNow.status).toBe("cancelled")

      const byId = new Map<JobId, Job>()
      const all = yield* server.api.jobs.list({ urlParams: {} })
      for (const job of all.items) byId.set(job.id, job)
      expect(all.items).toHaveLength(6)
      expect(all.nextCursor).toBeNull()
      expect(idsOf(all.items)).toEqual(newestFirst(all.items))
      expect(byId.get(pending.id)?.status).toBe("pending")
      expect(byId.get(running.id)?.status).toBe("running")

      const expected = (
        statuses: ReadonlyArray<JobStatus> | undefined,
        types: ReadonlyArray<string> | undefined
      ) =>
        newestFirst(
          all.items.filter(
            (job) =>
              (statuses === undefined || statuses.includes(job.status)) &&
              (types === undefined || types.includes(job.type))
          )
        )

      const cases: ReadonlyArray<{
        status?: Array<JobStatus>
        type?: Array<string>
        ids: ReadonlyArray<JobId>
      }> = [
        { status: ["completed"], ids: [completed2.id, completed1.id] },
        { status: ["completed", "failed"], ids: [completed2.id, failed.id, completed1.id] },
        { status: ["running"], ids: [running.id] },
        { status: ["pending"], ids: [pending.id] },
        { status: ["cancelled"], ids: [cancelled.id] },
        { type: ["bootstrap"], ids: [failed.id, completed1.id] },
        { type: ["bootstrap", gatedType], ids: [cancelled.id, running.id, failed.id, completed1.id] },
        { status: ["completed"], type: ["bootstrap"], ids: [completed1.id] },
        {
          status: ["completed", "running"],
          type: ["transcription", gatedType],
          ids: [running.id, completed2.id]
        },
        { status: ["pending"], type: ["bootstrap"], ids: [] },
        { type: ["no-such-type"], ids: [] }
      ]
      for (const { ids, ...filters } of cases) {
        const page = yield* server.api.jobs.list({ urlParams: filters })
        const got = idsOf(page.items)
        expect(new Set(got), JSON.stringify(filters)).toEqual(new Set(ids))
        expect(got, JSON.stringify(filters)).toEqual(expected(filters.status, filters.type))

        // The same filters as repeated query parameters on the wire.
        const query = new URLSearchParams()
        for (const status of filters.status ?? []) query.append("status", status)
        for (const type of filters.type ?? []) query.append("type", type)
        const raw = yield* getJson(server.http, `/jobs?${query.toString()}`)
        expect(raw.status).toBe(200)
        expect((raw.body as { items: Array<{ id: string }> }).items.map((job) => job.id)).toEqual(got)
      }
    })
  )

  it.scopedLive("pages through every job with nextCursor, newest first, without repeats", () =>
    Effect.gen(function* () {
      const server = yield* startServer()
      const jobs: Array<Job> = []
      for (let i = 0; i < 7; i++)
        jobs.push(yield* submitAndFinish(server, i % 2 === 0 ? "bootstrap" : "extraction"))
      const order = newestFirst(jobs)

      const seen: Array<JobId> = []
      const sizes: Array<number> = []
      let cursor: string | null = null
      let late: Job | undefined
      do {
        const page: { items: ReadonlyArray<Job>; nextCursor: string | null } = yield* server.api.jobs.list({
          urlParams: cursor === null ? { limit: 3 } : { limit: 3, cursor }
        })
        sizes.push(page.items.length)
        seen.push(...idsOf(page.items))
        cursor = page.nextCursor
        // A job submitted between pages is newer than the cursor: it does not show up on later pages.
        if (late === undefined) late = yield* submit(server, "transcription", { source: "late.mp3" })
      } while (cursor !== null)
      expect(sizes).toEqual([3, 3, 1])
      expect(seen).toEqual(order)
      expect(seen).not.toContain(late?.id)

      // Pagination composes with a filter.
      const bootstraps = newestFirst(jobs.filter((job) => job.type === "bootstrap"))
      const first = yield* server.api.jobs.list({ urlParams: { type: ["bootstrap"], limit: 2 } })
      expect(idsOf(first.items)).toEqual(bootstraps.slice(0, 2))
      expect(first.nextCursor).toBeTypeOf("string")
      const second = yield* server.api.jobs.list({
        urlParams: { type: ["bootstrap"], limit: 2, cursor: first.nextCursor! }
      })
      expect(idsOf(second.items)).toEqual(bootstraps.slice(2, 4))
      expect(second.nextCursor).toBeNull()

      // The default page holds them all; limit=500 is accepted.
      const everything = yield* server.api.jobs.list({ urlParams: { limit: 500 } })
      expect(everything.items).toHaveLength(8)
      expect(everything.nextCursor).toBeNull()
    })
  )

  it.scopedLive("cancels a running job (200) and a pending one; a second cancel is refused", () =>
    Effect.gen(function* () {
      const server = yield* startServer({ maxConcurrent: 1 })
      const running = yield* submitRunning(server, "running")
      const pending = yield* submit(server, gatedType, { label: "pending" })

      // The pending job first: once the running one is cancelled, the freed worker would pick it up.
      const cancelledPending = yield* server.api.jobs.cancel({ path: { id: pending.id } })
      expect(cancelledPending).toMatchObject({ id: pending.id, status: "cancelled", attempts: 0 })

      const [cancelled, response] = yield* server.api.jobs.cancel({
        path: { id: running.id },
        withResponse: true
      })
      expect(response.status).toBe(200)
      expect(cancelled).toMatchObject({ id: running.id, status: "cancelled", attempts: 1 })
      expect((yield* server.api.jobs.get({ path: { id: running.id } })).status).toBe("cancelled")
      // The cancelled handler never got past its gate: nothing else started.
      expect(yield* Queue.size(server.gates.started)).toBe(0)

      const again = yield* Effect.flip(server.api.jobs.cancel({ path: { id: running.id } }))
      expect(again).toBeInstanceOf(JobNotCancellable)
      expect(again).toMatchObject({ _tag: "JobNotCancellable", id: running.id, status: "cancelled" })
    })
  )

  it.scopedLive("answers typed errors: JobNotFound on get and cancel", () =>
    Effect.gen(function* () {
      const server = yield* startServer()
      const id = crypto.randomUUID() as JobId
      const notFound = yield* Effect.flip(server.api.jobs.get({ path: { id } }))
      expect(notFound).toBeInstanceOf(JobNotFound)
      expect(notFound).toMatchObject({ _tag: "JobNotFound", id })
      const notFoundCancel = yield* Effect.flip(server.api.jobs.cancel({ path: { id } }))
      expect(notFoundCancel).toMatchObject({ _tag: "JobNotFound", id })
    })
  )

  it.scopedLive("health is ok and config reports the queue's options and job types", () =>
    Effect.gen(function* () {
      const server = yield* startServer({ pollIntervalMs: 250, maxConcurrent: 3 })
      const [health, healthResponse] = yield* server.api.system.health({ withResponse: true })
      expect(healthResponse.status).toBe(200)
      expect(health).toEqual({ status: "ok" })
      const config = yield* server.api.system.config()
      expect({ ...config, types: [...config.types].sort() }).toEqual({
        pollIntervalMs: 250,
        maxConcurrent: 3,
        types: ["bootstrap", "extraction", "gated", "transcription"]
      })
    })
  )
})

// ---------------------------------------------------------------------------------------------------------
// Raw requests: every bad input is a JSON error with _tag and message
// ---------------------------------------------------------------------------------------------------------

describe("bad input", () => {
  it.scopedLive("POST /jobs with an unknown type: 400 InvalidJobInput naming the type field", () =>
    Effect.gen(function* () {
      const { http } = yield* startServer()
      const body = yield* expectError(http, submitJson({ type: "nope" }), 400, "InvalidJobInput")
      expect(body.field).toBe("type")
      expect(body.message).toMatch(/^type: /)
      expect(body.message).toContain('"nope"')
    })
  )

  it.scopedLive(
    "POST /jobs with metadata failing the type's schema: 400 InvalidJobInput naming the field",
    () =>
      Effect.gen(function* () {
        const { http } = yield* startServer()
        const wrongType = yield* expectError(
          http,
          submitJson({ type: "transcription", metadata: { source: 42 } }),
          400,
          "InvalidJobInput"
        )
        expect(wrongType.field).toBe("metadata.source")
        expect(wrongType.message).toContain("metadata.source")

        const missing = yield* expectError(
          http,
          submitJson({ type: "transcription", metadata: {} }),
          400,
          "InvalidJobInput"
        )
        expect(missing.field).toBe("metadata.source")
        expect(missing.message).toContain("metadata.source")

        const wrongFlag = yield* expectError(
          http,
          submitJson({ type: "bootstrap", metadata: { simulateFailure: "yes" } }),
          400,
          "InvalidJobInput"
        )
        expect(wrongFlag.message).toContain("metadata.simulateFailure")
      })
  )

  it.scopedLive("POST /jobs with a body that is not JSON: 400 MalformedBody", () =>
    Effect.gen(function* () {
      const { http } = yield* startServer()
      for (const text of ["{not json", '{"type":', "undefined", '{"type":"bootstrap"}}', "NaN"]) {
        yield* expectError(http, submitRequest(text), 400, "MalformedBody")
      }
    })
  )

  it.scopedLive("POST /jobs with JSON that is not an object, or lacks the type: 400", () =>
    Effect.gen(function* () {
      const { http } = yield* startServer()
      for (const text of ["[1]", '"x"', "null", "42", "true", "{}", '{"type":1}', '{"type":""}']) {
        const body = yield* expectError(http, submitRequest(text), 400, "HttpApiDecodeError")
        expect(body.message.length, text).toBeGreaterThan(0)
      }
      for (const metadata of ["[]", "null", '"x"']) {
        const text = `{"type":"bootstrap","metadata":${metadata}}`
        const body = yield* expectError(http, submitRequest(text), 400, "HttpApiDecodeError")
        expect(body.message, text).toContain("metadata")
      }
      // An empty body is no object either.
      yield* expectError(http, HttpClientRequest.post("/jobs"), 400, "HttpApiDecodeError")
    })
  )

  it.scopedLive("POST /jobs with JSON nested too deeply: 400 MalformedBody, never a 500", () =>
    Effect.gen(function* () {
      const { http } = yield* startServer()
      const nested = (levels: number) => "[".repeat(levels) + "]".repeat(levels)
      // The body object and metadata are two levels; the arrays bring it to exactly the limit.
      const atLimit = `{"type":"bootstrap","metadata":{"notes":"x","deep":${nested(maxJsonDepth - 2)}}}`
      const accepted = yield* Effect.orDie(http.execute(submitRequest(atLimit)))
      expect(accepted.status).toBe(201)
      const overLimit = `{"type":"bootstrap","metadata":{"notes":"x","deep":${nested(maxJsonDepth - 1)}}}`
      const body = yield* expectError(http, submitRequest(overLimit), 400, "MalformedBody")
      expect(body.message).toContain(String(maxJsonDepth))
      // Deep enough to overflow the stack of a recursive walk, in metadata and in a field of the wrong type.
      yield* expectError(
        http,
        submitRequest(`{"type":"bootstrap","metadata":{"deep":${nested(100_000)}}}`),
        400,
        "MalformedBody"
      )
      yield* expectError(http, submitRequest(`{"type":${nested(100_000)}}`), 400, "MalformedBody")
      // Brackets inside strings are text, not nesting.
      const inString = JSON.stringify({ type: "bootstrap", metadata: { notes: `${"[{".repeat(5000)}\\"` } })
      const text = yield* Effect.orDie(http.execute(submitRequest(inString)))
      expect(text.status).toBe(201)
    })
  )

  it.scopedLive("POST /jobs with a content type that is not JSON: 415 UnsupportedMediaType", () =>
    Effect.gen(function* () {
      const { http } = yield* startServer()
      const json = JSON.stringify({ type: "bootstrap" })
      for (const contentType of [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/octet-stream",
        "application/jsonx",
        // The API parses only application/json as JSON, so +json types are refused up front too.
        "application/vnd.api+json"
      ]) {
        const body = yield* expectError(http, submitRequest(json, contentType), 415, "UnsupportedMediaType")
        expect(body.message, contentType).toContain(contentType)
      }
      // Even without a body: the platform would wait forever for the parts of an empty multipart body.
      for (const contentType of ["multipart/form-data; boundary=x", "text/plain"]) {
        yield* expectError(
          http,
          HttpClientRequest.post("/jobs").pipe(HttpClientRequest.setHeader("content-type", contentType)),
          415,
          "UnsupportedMediaType"
        ).pipe(Effect.timeout("5 seconds"))
      }
      // application/json with parameters, in any case, and a body without a content type are read as JSON.
      for (const contentType of ["application/json; charset=utf-8", "Application/JSON", ""]) {
        const response = yield* Effect.orDie(http.execute(submitRequest(json, contentType)))
        expect(response.status, contentType).toBe(201)
      }
    })
  )

  it.scopedLive("POST /jobs with a body over 1 MiB: 413 PayloadTooLarge; exactly 1 MiB is accepted", () =>
    Effect.gen(function* () {
      // Metadata this large passes only with the metadata limit (64 KiB by default) raised to the body's.
      const { http } = yield* startServer({ maxMetadataBytes: maxBodyBytes })
      const base = JSON.stringify({ type: "bootstrap", metadata: { notes: "" } })
      const exact = JSON.stringify({
        type: "bootstrap",
        metadata: { notes: "x".repeat(maxBodyBytes - base.length) }
      })
      expect(Buffer.byteLength(exact)).toBe(maxBodyBytes)
      const accepted = yield* Effect.orDie(http.execute(submitRequest(exact)))
      expect(accepted.status).toBe(201)

      const over = JSON.stringify({
        type: "bootstrap",
        metadata: { notes: "x".repeat(maxBodyBytes - base.length + 1) }
      })
      const body = yield* expectError(http, submitRequest(over), 413, "PayloadTooLarge")
      expect(body.maxBytes).toBe(maxBodyBytes)
      // The size is checked before the content type or the JSON.
      yield* expectError(
        http,
        submitRequest("x".repeat(2 * maxBodyBytes), "text/plain"),
        413,
        "PayloadTooLarge"
      )
    })
  )

  it.scopedLive(
    "POST /jobs with a chunked body over 1 MiB is cut off without a 5xx; the server goes on",
    () =>
      Effect.gen(function* () {
        const { http } = yield* startServer()
        const chunk = new Uint8Array(64 * 1024).fill(0x20)
        const request = HttpClientRequest.post("/jobs").pipe(
          HttpClientRequest.bodyStream(
            Stream.fromChunk(Chunk.makeBy(maxBodyBytes / chunk.length + 1, () => chunk)),
            { contentType: "application/json" }
          )
        )
        const answer = yield* Effect.either(http.execute(request))
        if (Either.isRight(answer)) {
          const body = yield* readError(answer.right)
          expect({ status: answer.right.status, tag: body._tag }).toEqual({
            status: 413,
            tag: "PayloadTooLarge"
          })
        } else {
          // The platform drops the connection once the limit is passed, before the 413 can be written.
          expect(answer.left).toBeInstanceOf(HttpClientError.RequestError)
        }
        const health = yield* Effect.orDie(http.get("/health"))
        expect(health.status).toBe(200)
      })
  )

  it.scopedLive("GET and DELETE /jobs/:id: 400 for a bad id, 404 JobNotFound for an unknown one", () =>
    Effect.gen(function* () {
      const { http } = yield* startServer()
      const badGet = yield* expectError(
        http,
        HttpClientRequest.get("/jobs/not-a-uuid"),
        400,
        "HttpApiDecodeError"
      )
      expect(badGet.message).toContain("not-a-uuid")
      yield* expectError(http, HttpClientRequest.del("/jobs/not-a-uuid"), 400, "HttpApiDecodeError")

      const id = crypto.randomUUID()
      const notFound = yield* expectError(http, HttpClientRequest.get(`/jobs/${id}`), 404, "JobNotFound")
      expect(notFound.id).toBe(id)
      expect(notFound.message).toContain(id)
      const notFoundDelete = yield* expectError(
        http,
        HttpClientRequest.del(`/jobs/${id}`),
        404,
        "JobNotFound"
      )
      expect(notFoundDelete.id).toBe(id)
    })
  )

  it.scopedLive("DELETE a finished job: 409 JobNotCancellable with its status", () =>
    Effect.gen(function* () {
      const server = yield* startServer()
      const completed = yield* submitAndFinish(server, "bootstrap")
      expect(completed.status).toBe("completed")
      const body = yield* expectError(
        server.http,
        HttpClientRequest.del(`/jobs/${completed.id}`),
        409,
        "JobNotCancellable"
      )
      expect(body).toMatchObject({ id: completed.id, status: "completed" })
      const failed = yield* submitAndFinish(server, "extraction", { simulateFailure: true })
      const failedBody = yield* expectError(
        server.http,
        HttpClientRequest.del(`/jobs/${failed.id}`),
        409,
        "JobNotCancellable"
      )
      expect(failedBody).toMatchObject({ id: failed.id, status: "failed" })
      // The job is unchanged.
      const after = yield* server.api.jobs.get({ path: { id: completed.id } })
      expect(after.status).toBe("completed")
    })
  )

  it.scopedLive("GET /jobs with a bad limit, status or cursor: 400", () =>
    Effect.gen(function* () {
      const { http } = yield* startServer()
      for (const limit of ["501", "0", "abc", "-1", "1.5", ""]) {
        const body = yield* expectError(
          http,
          HttpClientRequest.get("/jobs").pipe(HttpClientRequest.setUrlParam("limit", limit)),
          400,
          "HttpApiDecodeError"
        )
        expect(body.message, limit).toContain("limit")
        expect(body.message, limit).toContain("must be an integer from 1 to 500")
      }
      for (const query of ["status=bogus", "status=completed&status=bogus", "status="]) {
        const body = yield* expectError(
          http,
          HttpClientRequest.get(`/jobs?${query}`),
          400,
          "HttpApiDecodeError"
        )
        expect(body.message, query).toContain("must be one of pending, running, completed, failed, cancelled")
      }
      // Not the shape of a cursor, two cursors, and the right shape but not a position in the list.
      yield* expectError(http, HttpClientRequest.get("/jobs?cursor=bad"), 400, "HttpApiDecodeError")
      yield* expectError(
        http,
        HttpClientRequest.get(`/jobs?cursor=1_${crypto.randomUUID()}&cursor=2_${crypto.randomUUID()}`),
        400,
        "HttpApiDecodeError"
      )
      const cursor = `1_${"-".repeat(36)}`
      const invalid = yield* expectError(
        http,
        HttpClientRequest.get(`/jobs?cursor=${cursor}`),
        400,
        "InvalidCursor"
      )
      expect(invalid.cursor).toBe(cursor)
    })
  )

  it.scopedLive("an unknown route: 404 RouteNotFound naming the method and path", () =>
    Effect.gen(function* () {
      const { http } = yield* startServer()
      const nope = yield* expectError(http, HttpClientRequest.get("/nope"), 404, "RouteNotFound")
      expect(nope.message).toContain("GET /nope")
      const put = yield* expectError(http, HttpClientRequest.put("/jobs"), 404, "RouteNotFound")
      expect(put.message).toContain("PUT /jobs")
      yield* expectError(http, HttpClientRequest.patch(`/jobs/${crypto.randomUUID()}`), 404, "RouteNotFound")
      yield* expectError(http, HttpClientRequest.post("/health"), 404, "RouteNotFound")
      yield* expectError(http, HttpClientRequest.get("/jobs/a/b"), 404, "RouteNotFound")
    })
  )

  it.scopedLive("an unexpected failure: 500 InternalServerError, logged, with no detail in the body", () =>
    Effect.gen(function* () {
      const broken = Layer.sync(JobStore, () => ({
        ...makeMemory(),
        list: () => Effect.die(new Error("the disk is on fire"))
      }))
      const logged: Array<string> = []
      const capture = Logger.make(({ message, cause }) => {
        logged.push(`${String(message)} ${String(cause)}`)
      })
      const { http } = yield* startServer({}, broken).pipe(
        Effect.locally(FiberRef.currentLoggers, HashSet.make(capture))
      )
      const body = yield* expectError(http, HttpClientRequest.get("/jobs"), 500, "InternalServerError")
      expect(body.message).toBe("Internal server error")
      expect(JSON.stringify(body)).not.toContain("disk")
      expect(logged.some((line) => line.includes("GET /jobs") && line.includes("the disk is on fire"))).toBe(
        true
      )
    })
  )
})

// ---------------------------------------------------------------------------------------------------------
// Shutdown: 503 while the queue drains
// ---------------------------------------------------------------------------------------------------------

describe("shutdown", () => {
  it.scopedLive("POST /jobs answers 503 QueueShuttingDown while the queue waits for a running job", () =>
    Effect.gen(function* () {
      // The server lives in the test's scope; the queue in an inner scope that the test closes while a gated job
      // runs, so the server is still up while the queue shuts down.
      const server = yield* Layer.build(NodeHttpServer.layerTest).pipe(Effect.orDie)
      const http = Context.get(server, HttpClient.HttpClient)
      const gates = yield* makeGates
      const shuttingDown = yield* Deferred.make<void>()
      const logged: Array<string> = []
      const capture = Logger.make(({ message }) => {
        const text = Array.isArray(message) ? message.join(" ") : String(message)
        logged.push(text)
        if (text.startsWith("JobQueue shutting down")) Deferred.unsafeDone(shuttingDown, Exit.void)
      })
      const queueScope = yield* Scope.make()
      yield* Effect.addFinalizer(() => Scope.close(queueScope, Exit.void))
      const queue = yield* Layer.buildWithScope(
        queueLayer(gates, { shutdownGraceMs: 60_000 }),
        queueScope
      ).pipe(Effect.locally(FiberRef.currentLoggers, HashSet.make(capture)))
      yield* Layer.build(
        HttpAppLive.pipe(Layer.provide(Layer.succeedContext(Context.merge(server, queue))))
      ).pipe(Effect.orDie)

      const submitted = yield* Effect.orDie(http.execute(submitJson({ type: gatedType, metadata: {} })))
      expect(submitted.status).toBe(201)
      const job = (yield* Effect.orDie(submitted.json)) as { id: JobId }
      expect(yield* Queue.take(gates.started)).toBe(job.id)

      const closing = yield* Effect.fork(Scope.close(queueScope, Exit.void))
      yield* Deferred.await(shuttingDown)

      const refused = yield* expectError(http, submitJson({ type: "bootstrap" }), 503, "QueueShuttingDown")
      expect(refused.message).toContain("shutting down")
      // Everything else still answers meanwhile: the running job can still be followed.
      expect((yield* getJson(http, "/health")).status).toBe(200)
      const during = yield* getJson(http, `/jobs/${job.id}`)
      expect(during.body).toMatchObject({ status: "running" })

      yield* Deferred.succeed(gates.release, undefined)
      yield* Fiber.join(closing)
      const after = yield* getJson(http, `/jobs/${job.id}`)
      expect(after.body).toMatchObject({ status: "completed" })
      expect(logged).toContainEqual(
        "JobQueue shut down: 1 of 1 running job(s) finished in the grace period, 0 interrupted and cancelled, " +
          "0 pending job(s) cancelled"
      )
      yield* expectError(http, submitJson({ type: "bootstrap" }), 503, "QueueShuttingDown")
    })
  )
})

// ---------------------------------------------------------------------------------------------------------
// Property: whatever is sent, no 5xx, and every error is JSON with _tag and message
// ---------------------------------------------------------------------------------------------------------

const methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] as const

/** Characters a request target may carry as they are (no space, `?` or `#`), including `%` escapes good and bad. */
const rawText = fc.stringMatching(/^[A-Za-z0-9._~!$&'()*+,;=:@%-]{0,24}$/)

const escapes = fc.constantFrom(
  "%",
  "%Z",
  "%ZZ",
  "%00",
  "%2F",
  "%2f",
  "%25",
  "%C0%AF",
  "%E0%A4",
  "%FF",
  "%0A",
  "%20"
)

const segment = fc.oneof(
  fc.webSegment(),
  fc.string().map(encodeURIComponent),
  fc.fullUnicodeString({ maxLength: 8 }).map(encodeURIComponent),
  rawText,
  escapes,
  fc.constantFrom("", ".", "..", "jobs", "health", "config", "openapi.json", "docs", "not-a-uuid")
)

const path = fc.oneof(
  fc.constantFrom("/", "/jobs", "/jobs/", "/health", "/config", "/openapi.json", "/docs", "//jobs"),
  fc.uuid().map((id) => `/jobs/${id}`),
  segment.map((s) => `/jobs/${s}`),
  fc.tuple(fc.uuid(), segment).map(([id, s]) => `/jobs/${id}/${s}`),
  fc.array(segment, { minLength: 1, maxLength: 4 }).map((segments) => `/${segments.join("/")}`)
)

const queryValue = fc.oneof(
  fc.constantFrom(
    ...JobStatuses,
    "transcription",
    "bootstrap",
    gatedType,
    "0",
    "1",
    "500",
    "501",
    "-1",
    "1e3"
  ),
  fc.constantFrom("1_00000000-0000-0000-0000-000000000000", `1_${"-".repeat(36)}`, "999999999999999_x"),
  fc.tuple(fc.nat(), fc.uuid()).map(([time, id]) => `${time}_${id}`),
  fc.string().map(encodeURIComponent),
  rawText,
  escapes
)

const query = fc
  .array(
    fc.tuple(fc.oneof(fc.constantFrom("status", "type", "limit", "cursor"), rawText), fc.option(queryValue)),
    { maxLength: 5 }
  )
  .map((pairs) =>
    pairs.length === 0
      ? ""
      : `?${pairs.map(([key, value]) => (value === null ? key : `${key}=${value}`)).join("&")}`
  )

const jsonValue = fc.jsonValue({ maxDepth: 4 })

const body = fc.option(
  fc.oneof(
    fc.string(),
    fc.json({ maxDepth: 4 }),
    fc
      .record(
        {
          type: fc.oneof(
            fc.constantFrom("transcription", "bootstrap", "extraction", "nope", ""),
            fc.string(),
            jsonValue
          ),
          metadata: fc.oneof(fc.dictionary(fc.string(), jsonValue, { maxKeys: 4 }), jsonValue)
        },
        { requiredKeys: [] }
      )
      .map((value) => JSON.stringify(value)),
    // Close to a valid submission: a known type and metadata whose fields are right or wrong.
    {
      weight: 3,
      arbitrary: fc
        .record({
          type: fc.constantFrom("transcription", "bootstrap", "extraction"),
          metadata: fc.record(
            {
              source: fc.oneof(fc.string(), jsonValue),
              notes: fc.string(),
              language: fc.oneof(fc.string(), jsonValue),
              simulateFailure: fc.oneof(fc.boolean(), jsonValue),
              extra: jsonValue
            },
            { requiredKeys: [] }
          )
        })
        .map((value) => JSON.stringify(value))
    }
  ),
  { nil: undefined }
)

const contentType = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom("application/json", "application/json; charset=utf-8", "") },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      "text/plain",
      "application/x-www-form-urlencoded",
      "multipart/form-data; boundary=x",
      "application/octet-stream",
      "application/vnd.api+json",
      "nonsense"
    )
  }
)

type Method = (typeof methods)[number]

interface RandomRequest {
  readonly method: Method
  readonly url: string
  readonly body: string | undefined
  readonly contentType: string
}

/** Requests aimed at each endpoint (so most get past the router), and requests of any shape. */
const randomRequest: fc.Arbitrary<RandomRequest> = fc.oneof(
  fc.record({ method: fc.constant<Method>("POST"), url: fc.constant("/jobs"), body, contentType }),
  fc.record({
    method: fc.constant<Method>("GET"),
    url: query.map((q) => `/jobs${q}`),
    body: fc.constant(undefined),
    contentType
  }),
  fc.record({
    method: fc.constantFrom<Method>("GET", "DELETE"),
    url: fc.oneof(fc.uuid(), segment).map((id) => `/jobs/${id}`),
    body: fc.constant(undefined),
    contentType
  }),
  fc.record({
    method: fc.constantFrom(...methods),
    url: fc.tuple(path, query).map(([p, q]) => `${p}${q}`),
    body,
    contentType
  })
)

describe("property", () => {
  it.scopedLive("random requests never get a 5xx, and every error is JSON with _tag and message", () =>
    Effect.gen(function* () {
      const { http } = yield* startServer({ maxConcurrent: 4 })
      const runtime = yield* Effect.runtime<never>()
      const check = ({ method, url, body: text, contentType: type }: RandomRequest) =>
        Effect.gen(function* () {
          let request = HttpClientRequest.make(method)(url)
          if (text !== undefined) request = HttpClientRequest.bodyText(request, text, type)
          const response = yield* http.execute(request).pipe(Effect.timeout("10 seconds"))
          const label = `${method} ${url} ${type} ${text?.slice(0, 200)}`
          expect(response.status, label).toBeLessThan(500)
          if (response.status >= 400) {
            if (method === "HEAD") {
              expect(response.headers["content-type"], label).toMatch(/^application\/json\b/)
            } else {
              yield* readError(response)
            }
          } else if (method !== "HEAD") {
            const text = yield* response.text
            expect(hasStackTrace(text), label).toBe(false)
          }
        }).pipe(Effect.orDie)
      yield* Effect.promise(() =>
        fc.assert(
          fc.asyncProperty(randomRequest, (request) => Runtime.runPromise(runtime)(check(request))),
          { numRuns: 300 }
        )
      )
      const health = yield* getJson(http, "/health")
      expect(health).toEqual({ status: 200, body: { status: "ok" } })
    })
  )
})
