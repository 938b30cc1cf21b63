import { Schema } from "effect"

/** How many attempts a job may be given at most. */
export const MaxAttemptsLimit = 100

/**
 * Options of one submission. A job type may declare defaults for them when its handler is registered; a submission's
 * own values win.
 */
export const SubmitOptions = Schema.Struct({
  priority: Schema.optional(
    Schema.Int.annotations({
      description: "Higher runs first among ready jobs (default 0); FIFO within one priority."
    })
  ),
  delayMs: Schema.optional(
    Schema.NonNegativeInt.annotations({
      description: "Run no sooner than this many ms from now. Not with runAt."
    })
  ),
  runAt: Schema.optional(
    Schema.Date.annotations({ description: "Run no sooner than this time (ISO-8601). Not with delayMs." })
  ),
  maxAttempts: Schema.optional(
    Schema.Int.pipe(Schema.between(1, MaxAttemptsLimit)).annotations({
      description: `Attempts before the job fails for good, 1 to ${MaxAttemptsLimit} (default 1: no retry).`
    })
  ),
  timeoutMs: Schema.optional(
    Schema.Int.pipe(Schema.positive()).annotations({
      description:
        "An attempt running longer is interrupted and fails with a timeout (then the retry rule applies)."
    })
  ),
  idempotencyKey: Schema.optional(
    Schema.String.pipe(Schema.minLength(1), Schema.maxLength(200)).annotations({
      description:
        "A second submission with a key that a retained job holds returns that job and creates nothing."
    })
  )
})

/** The type of {@link SubmitOptions}. */
export type SubmitOptions = typeof SubmitOptions.Type

/** The defaults a job type may declare for its submissions. */
export type SubmitDefaults = Pick<SubmitOptions, "priority" | "delayMs" | "maxAttempts" | "timeoutMs">
