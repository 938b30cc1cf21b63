import { FetchHttpClient, HttpApiClient } from "@effect/platform"
import { Effect } from "effect"
import { JobsApi } from "./Api.js"

/**
 * A typed client for the job queue's HTTP API, derived from the same definition as the server.
 *
 * @example
 * const program = Effect.gen(function* () {
 *   const client = yield* makeJobsClient("http://127.0.0.1:8080")
 *   const job = yield* client.jobs.submit({ payload: { type: "transcription", metadata: { source: "a.mp3" } } })
 *   return yield* client.jobs.get({ path: { id: job.id } })
 * }).pipe(Effect.provide(FetchHttpClient.layer))
 */
export const makeJobsClient = (baseUrl: string) => HttpApiClient.make(JobsApi, { baseUrl })

/** The client's type. */
export type JobsClient = Effect.Effect.Success<ReturnType<typeof makeJobsClient>>

/** {@link makeJobsClient} with the platform's `fetch` as its HTTP client: nothing else to provide. */
export const makeFetchJobsClient = (baseUrl: string) =>
  makeJobsClient(baseUrl).pipe(Effect.provide(FetchHttpClient.layer))
