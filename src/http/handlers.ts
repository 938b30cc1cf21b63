import { HttpApiBuilder, type HttpApp, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect, Layer, Schema } from "effect"
import type { QueueFull } from "../domain/errors.js"
import { type Job, JobId } from "../domain/Job.js"
import { JobQueue, type JobQueueService, type JobRequest } from "../JobQueue.js"
import { ClientConfig, Health, JobsApi, SubmitJobPayload, SubmittedBatch } from "./Api.js"
import { errorBody } from "./errors.js"
import { eventStreamResponse } from "./sse.js"

/**
 * A job's wire form, exactly what `Schema.encodeSync(Job)` makes of it (same fields, same order, dates as ISO-8601
 * strings; the tests compare both on arbitrary jobs), written out because the Schema encoder took about 9 µs a job,
 * a tenth of a whole `GET /jobs/{id}` (this takes well under 1 µs). Typed as `Job`'s encoded form, so a field added
 * to `Job` fails to compile here.
 */
export const jobToJson = (job: Job): Schema.Schema.Encoded<typeof Job> => ({
  id: job.id,
  type: job.type,
  status: job.status,
  stage: job.stage,
  progress: job.progress,
  message: job.message,
  metadata: job.metadata,
  result: job.result,
  error: job.error,
  lastError: job.lastError,
  priority: job.priority,
  attempts: job.attempts,
  maxAttempts: job.maxAttempts,
  timeoutMs: job.timeoutMs,
  idempotencyKey: job.idempotencyKey,
  runAt: job.runAt.toISOString(),
  createdAt: job.createdAt.toISOString(),
  startedAt: job.startedAt === null ? null : job.startedAt.toISOString(),
  finishedAt: job.finishedAt === null ? null : job.finishedAt.toISOString(),
  updatedAt: job.updatedAt.toISOString()
})

// A job answered as a ready response: the endpoint's own success encoding (a union of both statuses' schemas,
// looked up per request) cost about 30 µs more per POST. The body and `Content-Type` are the same.
const jobResponse = (job: Job, status: number) => HttpServerResponse.unsafeJson(jobToJson(job), { status })

/** How long a client refused with `QueueFull` is told to wait before retrying, in seconds. */
export const queueFullRetryAfterSeconds = 1

const toRequest = ({ type, metadata, ...options }: SubmitJobPayload): JobRequest => ({
  type,
  metadata,
  options
})

// QueueFull is a 503 with a Retry-After header, which a declared error cannot carry: answer it directly.
const queueFullResponse = (error: QueueFull) =>
  errorBody(
    503,
    error._tag,
    error.message,
    { maxPending: error.maxPending },
    { "retry-after": String(queueFullRetryAfterSeconds) }
  )

/** The `jobs` group: each endpoint delegates to {@link JobQueue}. */
export const JobsGroupLive = HttpApiBuilder.group(JobsApi, "jobs", (handlers) =>
  Effect.map(JobQueue, (queue) =>
    handlers
      .handle("submit", ({ payload }) =>
        queue.offer(toRequest(payload)).pipe(
          Effect.map(({ created, job }) => jobResponse(job, created ? 201 : 200)),
          Effect.catchTag("QueueFull", (error) => Effect.succeed(queueFullResponse(error)))
        )
      )
      .handle("submitBatch", ({ payload }) =>
        queue.submitMany(payload.jobs.map(toRequest)).pipe(
          Effect.map((jobs) => new SubmittedBatch({ jobs })),
          Effect.catchTag("QueueFull", (error) => Effect.succeed(queueFullResponse(error)))
        )
      )
      .handle("list", ({ urlParams }) => queue.list(urlParams))
      .handle("get", ({ path }) => Effect.map(queue.get(path.id), (job) => jobResponse(job, 200)))
      .handle("cancel", ({ path }) => queue.cancel(path.id))
      .handle("watch", ({ path }) =>
        Effect.map(queue.get(path.id), () => eventStreamResponse(queue.watch(path.id)))
      )
      .handle("events", ({ urlParams }) => Effect.succeed(eventStreamResponse(queue.subscribe(urlParams))))
  )
)

const healthy = new Health({ status: "ok" })

/** The `system` group: health and the settings polling clients need. */
export const SystemGroupLive = HttpApiBuilder.group(JobsApi, "system", (handlers) =>
  Effect.map(JobQueue, (queue) =>
    handlers
      .handle("health", () => Effect.succeed(healthy))
      .handle("config", () =>
        Effect.sync(
          () =>
            new ClientConfig({
              pollIntervalMs: queue.options.pollIntervalMs,
              maxConcurrent: queue.options.maxConcurrent,
              types: queue.types()
            })
        )
      )
  )
)

/** The API with every group implemented; requires the {@link JobQueue}. */
export const ApiLive = HttpApiBuilder.api(JobsApi).pipe(Layer.provide([JobsGroupLive, SystemGroupLive]))

const isJobId = Schema.is(JobId)
const decodePayload = Schema.decodeUnknownEither(SubmitJobPayload)
const jobsPrefix = "/jobs/"

const parseJson = (text: string): { readonly ok: boolean; readonly value?: unknown } => {
  try {
    return { ok: true, value: text === "" ? null : JSON.parse(text) }
  } catch {
    return { ok: false }
  }
}

/**
 * A shortcut through the API's two busiest answers, taken before its router: `GET /jobs/{id}` of an existing job,
 * and `POST /jobs` whose body decodes and whose job the queue accepts (or refuses as full), answered as the
 * `get` and `submit` handlers above answer them (the same schemas, {@link jobToJson}, statuses and headers).
 * Anything else, a failure included, goes on to `app` unchanged, which then answers it as if the shortcut were
 * not there (a failed lookup or submission changes nothing, so doing it again is harmless). It skips the router's
 * and the endpoint's per-request machinery (route context, middleware, path and payload decoding through
 * effects, the success schema), about 30 µs of the ~85 µs a `GET /jobs/{id}` took in-process.
 *
 * Mount it inside {@link jsonErrors} (which has read and checked the body) and the server's token check: the
 * endpoints' own `Authorization` middleware is not run here.
 */
export const jobsShortcut =
  (queue: JobQueueService) =>
  <E, R>(
    app: HttpApp.HttpApp<HttpServerResponse.HttpServerResponse, E, R>
  ): HttpApp.HttpApp<HttpServerResponse.HttpServerResponse, E, R> =>
    Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
      const url = request.url
      // The queue is asked in an interruptible region, as a route's handler is; `app` runs outside it, as it would
      // have without the shortcut.
      if (request.method === "GET" && url.startsWith(jobsPrefix)) {
        const id = url.slice(jobsPrefix.length)
        if (!isJobId(id)) return app
        return Effect.flatMap(Effect.interruptible(Effect.either(queue.get(id))), (found) =>
          found._tag === "Right" ? Effect.succeed(jobResponse(found.right, 200)) : app
        )
      }
      if (request.method === "POST" && url === "/jobs") {
        return Effect.flatMap(Effect.either(request.text), (text) => {
          if (text._tag === "Left") return app
          const json = parseJson(text.right)
          if (!json.ok) return app
          const payload = decodePayload(json.value)
          if (payload._tag === "Left") return app
          const offer = Effect.either(queue.offer(toRequest(payload.right)))
          return Effect.flatMap(Effect.interruptible(offer), (offered) => {
            if (offered._tag === "Right") {
              const { created, job } = offered.right
              return Effect.succeed(jobResponse(job, created ? 201 : 200))
            }
            return offered.left._tag === "QueueFull" ? Effect.succeed(queueFullResponse(offered.left)) : app
          })
        })
      }
      return app
    })
