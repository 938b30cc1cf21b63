import { Context, Effect, Either, Layer, ParseResult, Schema } from "effect"
import { InvalidJobInput, type InvalidProgress } from "./domain/errors.js"
import type { Job, JobStage, Json, JsonObject } from "./domain/Job.js"
import type { SubmitDefaults } from "./domain/SubmitOptions.js"

/** A progress report: any of stage, percentage (0–100) and message. */
export interface ProgressUpdate {
  readonly stage?: JobStage | undefined
  readonly progress?: number | undefined
  readonly message?: string | null | undefined
}

/** What a handler gets beside its payload: the job as it started, and a way to report progress. */
export interface JobContext {
  /** The job record at the start of this attempt. */
  readonly job: Job
  /** Records progress on the job; an out-of-range update fails with `InvalidProgress` and changes nothing. */
  readonly progress: (update: ProgressUpdate) => Effect.Effect<void, InvalidProgress>
}

/** A handler for one job type: the schema its metadata must satisfy, and the work to do. */
export interface JobHandlerDefinition<A, I, E, R> {
  /** The job type this handler serves. */
  readonly type: string
  /** The schema of the job's metadata: validated at submit, decoded before the handler runs. */
  readonly payload: Schema.Schema<A, I>
  /**
   * The work: a JSON result, or a failure that fails the attempt (retried while attempts are left; a
   * `PermanentJobError` fails the job at once).
   */
  readonly handler: (payload: A, context: JobContext) => Effect.Effect<Json, E, R>
  /** Defaults for this type's submissions (priority, delay, attempts, timeout); a submission's own values win. */
  readonly defaults?: SubmitDefaults | undefined
}

/** A handler as the queue stores it: its context provided, its payload schema ready to check metadata. */
export interface RegisteredHandler {
  /** The job type. */
  readonly type: string
  /** Checks metadata against the payload schema and returns it in its stored (encoded) form. */
  readonly validate: (metadata: unknown) => Either.Either<JsonObject, InvalidJobInput>
  /** Runs the handler on stored metadata. */
  readonly run: (metadata: JsonObject, context: JobContext) => Effect.Effect<Json, unknown>
  /** The type's submission defaults. */
  readonly defaults: SubmitDefaults
  /**
   * The context `run` provides to the handler, when it provides one: a caller that already runs in it (a worker that
   * switched to it) spares `run` providing it again on each job.
   */
  readonly context?: Context.Context<never> | undefined
}

/** The handler registry: a job type to its payload schema and handler. */
export interface JobHandlersService {
  /** The handler for a type, if one is registered. */
  readonly get: (type: string) => RegisteredHandler | undefined
  /** Every registered type, in registration order. */
  readonly types: () => ReadonlyArray<string>
  /** Adds a handler; a type registered twice keeps the later one. */
  readonly add: (handler: RegisteredHandler) => Effect.Effect<void>
}

const describeIssue = (error: ParseResult.ParseError): { field: string; message: string } => {
  const issue = ParseResult.ArrayFormatter.formatErrorSync(error)[0]
  const field = ["metadata", ...(issue?.path ?? []).map(String)].join(".")
  return { field, message: `${field}: ${issue?.message ?? "is invalid"}` }
}

/** Turns a definition into a {@link RegisteredHandler}, with the handler's requirements provided. */
export const toRegistered = <A, I, E, R>(
  definition: JobHandlerDefinition<A, I, E, R>,
  context: Context.Context<R>
): RegisteredHandler => {
  const decode = Schema.decodeUnknownEither(definition.payload, {
    errors: "first",
    onExcessProperty: "ignore"
  })
  const encode = Schema.encodeEither(definition.payload)
  const invalid = (error: ParseResult.ParseError) => {
    const { field, message } = describeIssue(error)
    return new InvalidJobInput({
      message: `Invalid metadata for job type "${definition.type}": ${message}`,
      field
    })
  }
  return {
    type: definition.type,
    defaults: definition.defaults ?? {},
    validate: (metadata) =>
      Either.flatMap(Either.mapLeft(decode(metadata ?? {}), invalid), (payload) =>
        Either.mapLeft(encode(payload) as Either.Either<JsonObject, ParseResult.ParseError>, invalid)
      ),
    context: context as Context.Context<never>,
    // Providing a context swaps the fiber's context in and out again: on a no-op job that measured about a third of
    // the time per job, so a fiber that already runs in this context (see `context`) is spared it.
    run: (metadata, jobContext) => {
      const work = Effect.flatMap(decode(metadata), (payload) => definition.handler(payload, jobContext))
      return Effect.withFiberRuntime((fiber) =>
        fiber.currentContext === context ? (work as Effect.Effect<Json, E>) : Effect.provide(work, context)
      )
    }
  }
}

/** The handler registry service. Compose `JobHandlers.layer` with one `JobHandlers.register` layer per type. */
export class JobHandlers extends Context.Tag("effect-job-queue/JobHandlers")<
  JobHandlers,
  JobHandlersService
>() {
  /** An empty registry. Provide it once, beneath the queue and every `register` layer. */
  static readonly layer: Layer.Layer<JobHandlers> = Layer.sync(JobHandlers, () => {
    const handlers = new Map<string, RegisteredHandler>()
    return {
      get: (type) => handlers.get(type),
      types: () => Array.from(handlers.keys()),
      add: (handler) => Effect.sync(() => void handlers.set(handler.type, handler))
    }
  })

  /**
   * A layer that registers a handler; whatever the handler requires is taken from the layer's context.
   *
   * @example
   * const Resize = JobHandlers.register({
   *   type: "resize",
   *   payload: Schema.Struct({ url: Schema.String }),
   *   handler: ({ url }, { progress }) => progress({ progress: 50 }).pipe(Effect.as({ url }))
   * })
   */
  static register<A, I, E, R>(
    definition: JobHandlerDefinition<A, I, E, R>
  ): Layer.Layer<never, never, JobHandlers | Exclude<R, never>> {
    return Layer.effectDiscard(
      Effect.gen(function* () {
        const registry = yield* JobHandlers
        const context = yield* Effect.context<R>()
        yield* registry.add(toRegistered(definition, context))
      })
    )
  }
}
