import { FetchHttpClient, HttpApiClient, HttpClient, HttpClientRequest } from "@effect/platform"
import { Effect, type Redacted } from "effect"
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
export const makeJobsClient = (baseUrl: string, options: JobsClientOptions = {}) => {
  const token = options.token
  return HttpApiClient.make(JobsApi, {
    baseUrl,
    transformClient:
      token === undefined ? undefined : HttpClient.mapRequest(HttpClientRequest.bearerToken(token))
  })
}

/** Options of {@link makeJobsClient}. */
export interface JobsClientOptions {
  /** The server's API token (`APP_API_TOKEN`), sent as `Authorization: Bearer <token>` with every request. */
  readonly token?: string | Redacted.Redacted<string> | undefined
}

/** The client's type. */
export type JobsClient = Effect.Effect.Success<ReturnType<typeof makeJobsClient>>

/** {@link makeJobsClient} with the platform's `fetch` as its HTTP client: nothing else to provide. */
export const makeFetchJobsClient = (baseUrl: string, options: JobsClientOptions = {}) =>
  makeJobsClient(baseUrl, options).pipe(Effect.provide(FetchHttpClient.layer))
