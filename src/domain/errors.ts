import { HttpApiSchema } from "@effect/platform"
import { Schema } from "effect"
import { JobId, JobStatus } from "./Job.js"

/** No job has this id (or it is no longer retained). */
export class JobNotFound extends Schema.TaggedError<JobNotFound>()(
  "JobNotFound",
  { id: Schema.String, message: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {
  /** Builds the error for an id, with its message. */
  static of(id: string): JobNotFound {
    return new JobNotFound({ id, message: `No job with id ${id}` })
  }
}

/** The job has already finished, so it cannot be cancelled. */
export class JobNotCancellable extends Schema.TaggedError<JobNotCancellable>()(
  "JobNotCancellable",
  { id: JobId, status: JobStatus, message: Schema.String },
  HttpApiSchema.annotations({ status: 409 })
) {
  /** Builds the error for a job in a final status, with its message. */
  static of(id: JobId, status: JobStatus): JobNotCancellable {
    return new JobNotCancellable({
      id,
      status,
      message: `Job ${id} is already ${status} and cannot be cancelled`
    })
  }
}

/** A submission was rejected: an unknown type, or metadata that fails the type's schema (the message names the field). */
export class InvalidJobInput extends Schema.TaggedError<InvalidJobInput>()(
  "InvalidJobInput",
  {
    message: Schema.String,
    field: Schema.optional(Schema.String),
    index: Schema.optional(Schema.Int).annotations({
      description: "In a batch: the 0-based index of the invalid job."
    })
  },
  HttpApiSchema.annotations({ status: 400 })
) {}

/** The queue is shutting down and accepts no more jobs. */
export class QueueShuttingDown extends Schema.TaggedError<QueueShuttingDown>()(
  "QueueShuttingDown",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 503 })
) {
  /** The error with its standard message. */
  static readonly instance = new QueueShuttingDown({
    message: "The job queue is shutting down and accepts no new jobs"
  })
}

/** A handler reported progress that is out of range; the job's record is left as it was. */
export class InvalidProgress extends Schema.TaggedError<InvalidProgress>()("InvalidProgress", {
  message: Schema.String
}) {}

/** A list cursor that is malformed or was not made by this queue. */
export class InvalidCursor extends Schema.TaggedError<InvalidCursor>()(
  "InvalidCursor",
  { cursor: Schema.String, message: Schema.String },
  HttpApiSchema.annotations({ status: 400 })
) {}

/** The queue holds its limit of pending jobs (`APP_JOB_MAX_PENDING`); retry later. */
export class QueueFull extends Schema.TaggedError<QueueFull>()(
  "QueueFull",
  { message: Schema.String, maxPending: Schema.Int },
  HttpApiSchema.annotations({ status: 503 })
) {}

/** A handler fails with this to fail its job for good, skipping any attempts left. */
export class PermanentJobError extends Schema.TaggedError<PermanentJobError>()("PermanentJobError", {
  message: Schema.String
}) {}

/** An attempt ran longer than its job's `timeoutMs` and was interrupted. */
export class JobTimeout extends Schema.TaggedError<JobTimeout>()("JobTimeout", {
  message: Schema.String,
  timeoutMs: Schema.Int
}) {}
