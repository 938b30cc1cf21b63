// Shared set-up for the HTTP tests: the real HTTP app on a test server (a random port on 127.0.0.1), a queue
// with the demo handlers and a deterministic "gated" handler, and helpers that check error bodies.
import { HttpClient, type HttpClientRequest, type HttpClientResponse } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Context, Data, Deferred, Effect, Layer, Queue, Schema, type Scope } from "effect"
import { expect } from "vitest"
import type { JobQueueOptions } from "../../src/config.js"
import { layerDemoHandlers } from "../../src/demo/handlers.js"
import type { JobId } from "../../src/domain/Job.js"
import { makeJobsClient } from "../../src/http/client.js"
import { HttpAppLive } from "../../src/http/server.js"
import { JobHandlers } from "../../src/JobHandlers.js"
import { JobQueue, type JobQueueService } from "../../src/JobQueue.js"
import { JobStore } from "../../src/JobStore.js"

/** The job type of {@link gatedHandler}. */
export const gatedType = "gated"

/**
 * Controls for {@link gatedHandler}: each run offers its job id to `started` once it has reported progress, then
 * waits until `release` is completed. Nothing depends on timing.
 */
export interface Gates {
  readonly started: Queue.Queue<JobId>
  readonly release: Deferred.Deferred<void>
}

/** Fresh {@link Gates}. */
export const makeGates: Effect.Effect<Gates> = Effect.zipWith(
  Queue.unbounded<JobId>(),
  Deferred.make<void>(),
  (started, release) => ({ started, release })
)

/** The failure of a gated job whose metadata says `fail: true`. */
export class GateFailure extends Data.TaggedError("GateFailure")<{ readonly message: string }> {}

/** A test-local handler: reports progress, signals it started, waits for the gate, then succeeds or fails. */
export const gatedHandler = (gates: Gates): Layer.Layer<never, never, JobHandlers> =>
  JobHandlers.register({
    type: gatedType,
    payload: Schema.Struct({ label: Schema.optional(Schema.String), fail: Schema.optional(Schema.Boolean) }),
    handler: ({ label, fail }, { job, progress }) =>
      Effect.gen(function* () {
        yield* Effect.orDie(progress({ stage: "processing", progress: 50, message: "waiting for the gate" }))
        yield* Queue.offer(gates.started, job.id)
        yield* Deferred.await(gates.release)
        if (fail === true) return yield* new GateFailure({ message: `gated job ${label ?? ""} failed` })
        return { label: label ?? null }
      })
  })

/**
 * A queue over a fresh store (in-memory unless one is given) with the demo handlers (no sleeping between steps)
 * and the gated handler. The grace period defaults to 0 so a test that leaves a gated job running ends at once.
 */
export const queueLayer = (
  gates: Gates,
  options: Partial<JobQueueOptions> = {},
  store: Layer.Layer<JobStore> = JobStore.layerMemory
): Layer.Layer<JobQueue> =>
  JobQueue.layer({ shutdownGraceMs: 0, ...options }).pipe(
    Layer.provide(Layer.mergeAll(store, layerDemoHandlers(0), gatedHandler(gates))),
    Layer.provide(JobHandlers.layer)
  )

/** What a test gets from {@link startServer}. */
export interface TestServer {
  /** An HTTP client whose relative URLs go to the test server. */
  readonly http: HttpClient.HttpClient
  /** The typed client of the API (`makeJobsClient`), over {@link http}. */
  readonly api: Effect.Effect.Success<ReturnType<typeof makeJobsClient>>
  /** The queue behind the server: used only to wait for jobs to finish (an event, not a sleep). */
  readonly queue: JobQueueService
  readonly gates: Gates
}

/** Starts the HTTP app over `NodeHttpServer.layerTest` in the current scope; closing the scope stops everything. */
export const startServer = (
  options: Partial<JobQueueOptions> = {},
  store?: Layer.Layer<JobStore>
): Effect.Effect<TestServer, never, Scope.Scope> =>
  Effect.gen(function* () {
    const gates = yield* makeGates
    const context = yield* Layer.build(
      HttpAppLive.pipe(
        Layer.provideMerge(queueLayer(gates, options, store)),
        Layer.provideMerge(NodeHttpServer.layerTest)
      )
    ).pipe(Effect.orDie)
    const http = Context.get(context, HttpClient.HttpClient)
    const api = yield* makeJobsClient("").pipe(Effect.provideService(HttpClient.HttpClient, http))
    return { http, api, queue: Context.get(context, JobQueue), gates }
  })

/** The JSON error body every 4xx and 5xx answer carries. */
export interface ErrorBody {
  readonly _tag: string
  readonly message: string
  readonly [key: string]: unknown
}

/** Whether a response body shows a stack trace. */
export const hasStackTrace = (text: string): boolean => text.includes("    at ") || /\\n\s*at \S/.test(text)

/** Reads an error response: JSON, with string `_tag` and `message`, and no stack trace. */
export const readError = (response: HttpClientResponse.HttpClientResponse): Effect.Effect<ErrorBody> =>
  Effect.gen(function* () {
    const text = yield* Effect.orDie(response.text)
    expect(response.headers["content-type"], text).toMatch(/^application\/json\b/)
    expect(hasStackTrace(text), text).toBe(false)
    const body: unknown = JSON.parse(text)
    expect(body, text).toBeTypeOf("object")
    expect(body, text).not.toBeNull()
    const { _tag, message } = body as Record<string, unknown>
    expect(_tag, text).toBeTypeOf("string")
    expect(message, text).toBeTypeOf("string")
    return body as ErrorBody
  })

/** Sends `request` and checks that it is answered with `status` and an error body tagged `tag`. */
export const expectError = (
  http: HttpClient.HttpClient,
  request: HttpClientRequest.HttpClientRequest,
  status: number,
  tag: string
): Effect.Effect<ErrorBody> =>
  Effect.gen(function* () {
    const response = yield* Effect.orDie(http.execute(request))
    const body = yield* readError(response)
    expect({ status: response.status, tag: body._tag }, JSON.stringify(body)).toEqual({ status, tag })
    return body
  })
