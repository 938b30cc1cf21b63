import {
  HttpApi,
  HttpApiEndpoint,
  HttpApiGroup,
  HttpApiMiddleware,
  HttpApiSchema,
  HttpApiSecurity,
  OpenApi
} from "@effect/platform"
import { Schema } from "effect"
import {
  InvalidCursor,
  InvalidJobInput,
  JobNotCancellable,
  JobNotFound,
  QueueFull,
  QueueShuttingDown
} from "../domain/errors.js"
import { Job, JobId, JobStatus, JobType, JsonObject } from "../domain/Job.js"
import { JobCursor, JobPage, PageLimits } from "../domain/JobPage.js"
import { SubmitOptions } from "../domain/SubmitOptions.js"

/** The body of `POST /jobs`: the job's type and metadata, and its submission options. */
export class SubmitJobPayload extends Schema.Class<SubmitJobPayload>("SubmitJobPayload")({
  type: JobType,
  metadata: Schema.optional(JsonObject).annotations({
    description: "The job's input, checked against its type's payload schema. Defaults to {}."
  }),
  ...SubmitOptions.fields
}) {}

/** The most jobs one `POST /jobs/batch` may submit. */
export const maxBatchSize = 1000

/** The body of `POST /jobs/batch`. */
export class SubmitBatchPayload extends Schema.Class<SubmitBatchPayload>("SubmitBatchPayload")({
  jobs: Schema.Array(SubmitJobPayload).pipe(Schema.minItems(1), Schema.maxItems(maxBatchSize))
}) {}

/** The answer of `POST /jobs/batch`: the jobs, in the order submitted. */
export class SubmittedBatch extends Schema.Class<SubmittedBatch>("SubmittedBatch")({
  jobs: Schema.Array(Job)
}) {}

/** A Server-Sent Events stream: `event:` is the kind, `data:` a JSON `{ "kind", "job" }`. */
export const EventStream = HttpApiSchema.Text({ contentType: "text/event-stream" }).annotations({
  description:
    "Server-Sent Events. Each message has `event:` set to the event kind and `data:` a JSON object { kind, job }; " +
    "a `: heartbeat` comment comes every 15 s."
})

/** The query of `GET /jobs`: `status` and `type` may repeat (OR within one, AND across both). */
export const ListJobsParams = Schema.Struct({
  status: Schema.optional(Schema.Array(JobStatus)).annotations({
    description: "Only jobs in these statuses."
  }),
  type: Schema.optional(Schema.Array(JobType)).annotations({ description: "Only jobs of these types." }),
  limit: Schema.optional(
    Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, PageLimits.max)).annotations({
      description: `Page size, 1 to ${PageLimits.max} (default ${PageLimits.default}).`,
      message: (issue) => ({
        message: `must be an integer from 1 to ${PageLimits.max}, got ${JSON.stringify(issue.actual)}`,
        override: true
      })
    })
  ),
  cursor: Schema.optional(JobCursor)
})

/** The query of `GET /events`: only events of jobs in these statuses and types (as in the list). */
export const EventsParams = ListJobsParams.pick("status", "type")

/** The path of the endpoints about one job. */
export const JobPath = Schema.Struct({ id: JobId })

/** The body of `GET /health`. */
export class Health extends Schema.Class<Health>("Health")({ status: Schema.Literal("ok") }) {}

/** The body of `GET /config`: what a client needs to know (how often to poll, which job types exist). */
export class ClientConfig extends Schema.Class<ClientConfig>("ClientConfig")({
  pollIntervalMs: Schema.Int.annotations({ description: "How often to poll a job's progress (ms)." }),
  maxConcurrent: Schema.Int.annotations({ description: "How many jobs run at once." }),
  types: Schema.Array(JobType).annotations({
    description: "The job types with a registered handler: the types `POST /jobs` accepts."
  })
}) {}

/** No route matches the method and path. */
export class RouteNotFound extends Schema.TaggedError<RouteNotFound>()(
  "RouteNotFound",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {}

/** The request body is not valid JSON. */
export class MalformedBody extends Schema.TaggedError<MalformedBody>()(
  "MalformedBody",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 400 })
) {}

/** The request body is larger than the server accepts. */
export class PayloadTooLarge extends Schema.TaggedError<PayloadTooLarge>()(
  "PayloadTooLarge",
  { message: Schema.String, maxBytes: Schema.Int },
  HttpApiSchema.annotations({ status: 413 })
) {}

/** The request body is not JSON (`Content-Type` must be `application/json`). */
export class UnsupportedMediaType extends Schema.TaggedError<UnsupportedMediaType>()(
  "UnsupportedMediaType",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 415 })
) {}

/** Something went wrong on the server; the details are in its log, never in the response. */
export class InternalServerError extends Schema.TaggedError<InternalServerError>()(
  "InternalServerError",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 500 })
) {}

/** The request lacks the API token the server requires (`Authorization: Bearer <token>`). */
export class Unauthorized extends Schema.TaggedError<Unauthorized>()(
  "Unauthorized",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 401 })
) {}

/**
 * The API token check: when the server has a token (`APP_API_TOKEN`), the endpoints with this middleware answer 401
 * `Unauthorized` without `Authorization: Bearer <token>`. Documented in OpenAPI as the `bearer` security scheme.
 */
export class Authorization extends HttpApiMiddleware.Tag<Authorization>()("Authorization", {
  failure: Unauthorized,
  security: {
    bearer: HttpApiSecurity.bearer.pipe(
      HttpApiSecurity.annotate(
        OpenApi.Description,
        "The server's API token (APP_API_TOKEN), when it has one; without a token set, every route is open."
      )
    )
  }
}) {}

/** The endpoints about jobs. */
export class JobsGroup extends HttpApiGroup.make("jobs")
  .add(
    HttpApiEndpoint.post("submit", "/jobs")
      .setPayload(SubmitJobPayload)
      .addSuccess(Job, { status: 201 })
      .addSuccess(Job.annotations({ description: "A retained job already held this idempotency key." }), {
        status: 200
      })
      .addError(InvalidJobInput)
      .addError(QueueFull)
      .addError(QueueShuttingDown)
      .annotate(OpenApi.Summary, "Submit a job")
  )
  .add(
    HttpApiEndpoint.post("submitBatch", "/jobs/batch")
      .setPayload(SubmitBatchPayload)
      .addSuccess(SubmittedBatch, { status: 201 })
      .addError(InvalidJobInput)
      .addError(QueueFull)
      .addError(QueueShuttingDown)
      .annotate(
        OpenApi.Summary,
        `Submit up to ${maxBatchSize} jobs, all or none (an invalid one is named by its 0-based index)`
      )
  )
  .add(
    HttpApiEndpoint.get("list", "/jobs")
      .setUrlParams(ListJobsParams)
      .addSuccess(JobPage)
      .addError(InvalidCursor)
      .annotate(OpenApi.Summary, "List jobs, newest first")
  )
  .add(
    HttpApiEndpoint.get("get", "/jobs/:id")
      .setPath(JobPath)
      .addSuccess(Job)
      .addError(JobNotFound)
      .annotate(OpenApi.Summary, "Get one job")
  )
  .add(
    HttpApiEndpoint.del("cancel", "/jobs/:id")
      .setPath(JobPath)
      .addSuccess(Job)
      .addError(JobNotFound)
      .addError(JobNotCancellable)
      .annotate(OpenApi.Summary, "Cancel a pending or running job")
  )
  .add(
    HttpApiEndpoint.get("watch", "/jobs/:id/events")
      .setPath(JobPath)
      .addSuccess(EventStream)
      .addError(JobNotFound)
      .annotate(OpenApi.Summary, "Follow one job as Server-Sent Events, until its final event")
  )
  .add(
    HttpApiEndpoint.get("events", "/events")
      .setUrlParams(EventsParams)
      .addSuccess(EventStream)
      .annotate(OpenApi.Summary, "Follow every job's events as Server-Sent Events")
  )
  .middleware(Authorization) {}

/** Health and client configuration. */
export class SystemGroup extends HttpApiGroup.make("system")
  .add(HttpApiEndpoint.get("health", "/health").addSuccess(Health).annotate(OpenApi.Summary, "Liveness"))
  .add(
    HttpApiEndpoint.get("config", "/config")
      .addSuccess(ClientConfig)
      .middleware(Authorization)
      .annotate(OpenApi.Summary, "Settings for clients: the poll interval and the registered job types")
  ) {}

/**
 * The whole HTTP contract: the server, the OpenAPI document and the typed client all derive from it.
 * Errors every endpoint may answer with are declared at the top level.
 */
export class JobsApi extends HttpApi.make("jobs-api")
  .add(JobsGroup)
  .add(SystemGroup)
  .addError(MalformedBody)
  .addError(UnsupportedMediaType)
  .addError(PayloadTooLarge)
  .addError(InternalServerError)
  .annotate(OpenApi.Title, "Job queue API")
  .annotate(OpenApi.Version, "0.1.0")
  .annotate(
    OpenApi.Description,
    "Submit background jobs, follow their progress and cancel them. Every error body is JSON with `_tag` and `message`."
  ) {}
