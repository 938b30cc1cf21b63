import { Data, Effect, Layer, Schema } from "effect"
import { demoStepConfig } from "../config.js"
import type { JobStage } from "../domain/Job.js"
import { type JobContext, JobHandlers } from "../JobHandlers.js"

/** The failure a demo job reports when its metadata asks for `simulateFailure`. */
export class SimulatedFailure extends Data.TaggedError("SimulatedFailure")<{ readonly message: string }> {}

interface SimulatedStep {
  readonly stage: JobStage
  readonly message: string
}

/**
 * Simulates a job: walks its steps, sleeping `stepMs` in each and reporting stage, progress and a message.
 * With `simulateFailure`, fails at the second step. Nothing real is done: it exists so `npm start` shows jobs moving.
 */
export const simulateSteps = (
  steps: ReadonlyArray<SimulatedStep>,
  stepMs: number,
  context: JobContext,
  simulateFailure: boolean
): Effect.Effect<number, SimulatedFailure> =>
  Effect.forEach(
    steps,
    (step, index) =>
      Effect.gen(function* () {
        if (simulateFailure && index === 1)
          return yield* new SimulatedFailure({ message: `Simulated failure at the ${step.stage} step` })
        yield* context.progress({
          stage: step.stage,
          progress: Math.round((index / steps.length) * 100),
          message: step.message
        })
        yield* Effect.sleep(stepMs)
      }).pipe(Effect.catchTag("InvalidProgress", Effect.die)),
    { discard: true }
  ).pipe(Effect.as(steps.length * stepMs))

/** The metadata of a simulated transcription. */
export const TranscriptionPayload = Schema.Struct({
  source: Schema.NonEmptyString.annotations({ description: "What to transcribe (a URL or a path)." }),
  language: Schema.optional(Schema.String),
  simulateFailure: Schema.optional(Schema.Boolean)
})

/** The metadata of a simulated bootstrap or extraction. */
export const ProcessingPayload = Schema.Struct({
  source: Schema.optional(Schema.String),
  notes: Schema.optional(Schema.String),
  simulateFailure: Schema.optional(Schema.Boolean)
})

const transcriptionSteps: ReadonlyArray<SimulatedStep> = [
  { stage: "downloading", message: "Downloading the media (simulated)" },
  { stage: "extracting_audio", message: "Extracting the audio track (simulated)" },
  { stage: "transcribing", message: "Transcribing (simulated)" },
  { stage: "finalizing", message: "Writing the transcript (simulated)" }
]

const processingSteps = (what: string): ReadonlyArray<SimulatedStep> => [
  { stage: "processing", message: `Running the ${what} (simulated)` },
  { stage: "finalizing", message: `Saving the ${what} results (simulated)` }
]

/**
 * The simulated demo handlers served by `npm start`: `transcription`, `bootstrap` and `extraction` walk their
 * stages with sleeps of `stepMs` and return a description of what they pretended to do.
 */
export const layerDemoHandlers = (stepMs: number): Layer.Layer<never, never, JobHandlers> =>
  Layer.mergeAll<[Layer.Layer<never, never, JobHandlers>, ...Array<Layer.Layer<never, never, JobHandlers>>]>(
    JobHandlers.register({
      type: "transcription",
      payload: TranscriptionPayload,
      handler: (payload, context) =>
        Effect.map(
          simulateSteps(transcriptionSteps, stepMs, context, payload.simulateFailure ?? false),
          (simulatedMs) => ({
            simulated: true,
            kind: "transcription",
            source: payload.source,
            language: payload.language ?? "auto",
            steps: transcriptionSteps.map((step) => step.stage),
            simulatedMs
          })
        )
    }),
    ...(["bootstrap", "extraction"] as const).map((type) =>
      JobHandlers.register({
        type,
        payload: ProcessingPayload,
        handler: (payload, context) =>
          Effect.map(
            simulateSteps(processingSteps(type), stepMs, context, payload.simulateFailure ?? false),
            (simulatedMs) => ({
              simulated: true,
              kind: type,
              source: payload.source ?? null,
              steps: ["processing", "finalizing"],
              simulatedMs
            })
          )
      })
    )
  )

/** The demo handlers with their step length read from `APP_DEMO_STEP_MS`. */
export const layerDemoHandlersConfig = Layer.unwrapEffect(Effect.map(demoStepConfig, layerDemoHandlers))
