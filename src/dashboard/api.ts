// The dashboard's calls to the HTTP API: the same public endpoints as any other client. The wire types come from
// the API's own schemas (type-only imports: nothing of them reaches the bundle).
import type { InvalidJobInput } from "../domain/errors.js"
import type { Job, JobStatus } from "../domain/Job.js"
import type { JobEvent } from "../domain/JobEvent.js"
import type { JobPage } from "../domain/JobPage.js"
import type { ClientConfig } from "../http/Api.js"

/** A job as the API sends it (dates are ISO-8601 strings). */
export type JobJson = typeof Job.Encoded

/** A page of `GET /jobs`. */
export type JobPageJson = typeof JobPage.Encoded

/** The body of `GET /config`. */
export type ClientConfigJson = typeof ClientConfig.Encoded

/** One message of `GET /events`. */
export type JobEventJson = typeof JobEvent.Encoded

/** The body of a 400 `InvalidJobInput`: its message, and the field at fault. */
export type InvalidJobInputJson = typeof InvalidJobInput.Encoded

/** Every job status, in the order of a job's life. */
export const jobStatuses = [
  "pending",
  "running",
  "completed",
  "failed",
  "cancelled"
] as const satisfies ReadonlyArray<JobStatus>

// Fails to compile when the API gains a status this list lacks.
const _everyStatus: Exclude<JobStatus, (typeof jobStatuses)[number]> extends never ? true : never = true
void _everyStatus

/** Whether a job in this status can still be cancelled. */
export const isCancellable = (status: string): boolean => status === "pending" || status === "running"

/** The error body every 4xx and 5xx answer carries, with whatever else its tag adds (`field` for InvalidJobInput). */
export interface ErrorBody {
  readonly _tag: string
  readonly message: string
  readonly field?: string | undefined
}

/** An answer with an error status. */
export class ApiError extends Error {
  /** The HTTP status. */
  readonly status: number
  /** The error body (its `_tag` and `message`, or one made up when the body was not JSON). */
  readonly body: ErrorBody

  constructor(status: number, body: ErrorBody) {
    super(body.message)
    this.name = "ApiError"
    this.status = status
    this.body = body
  }
}

// The API token (for a server with `APP_API_TOKEN`) lives in the tab's sessionStorage: it survives a reload but not
// the browser session, and other tabs and sites never see it.
const tokenKey = "effect-job-queue:api-token"

/** The API token this tab uses, if one was entered. */
export const storedToken = (): string | undefined => {
  try {
    return sessionStorage.getItem(tokenKey) ?? undefined
  } catch {
    return undefined
  }
}

/** Keeps the API token for this tab's session (or forgets it, given `undefined`). */
export const storeToken = (token: string | undefined): void => {
  try {
    if (token === undefined) sessionStorage.removeItem(tokenKey)
    else sessionStorage.setItem(tokenKey, token)
  } catch {
    // Storage disabled: the token cannot be kept, and requests go without it.
  }
}

/**
 * The headers of every request the dashboard makes, the event stream's included: `Authorization: Bearer <token>`
 * when a token was entered.
 */
export const requestHeaders = (): Record<string, string> => {
  const token = storedToken()
  return token === undefined
    ? { accept: "application/json" }
    : { accept: "application/json", authorization: `Bearer ${token}` }
}

let unauthorizedListener: (() => void) | undefined

/** Calls `listener` whenever the server answers 401 (the server wants a token, or another one). */
export const onUnauthorized = (listener: () => void): void => {
  unauthorizedListener = listener
}

/** Tells the listener of {@link onUnauthorized} that the server refused a request's token. */
export const reportUnauthorized = (): void => unauthorizedListener?.()

/** An API path resolved against the page, so the dashboard also works behind a proxy that adds a path prefix. */
export const apiUrl = (path: string): string => new URL(path, document.baseURI).href

const readErrorBody = (status: number, text: string): ErrorBody => {
  try {
    const body: unknown = JSON.parse(text)
    if (typeof body === "object" && body !== null && "message" in body && typeof body.message === "string") {
      return body as ErrorBody
    }
  } catch {
    // Not JSON (a proxy's error page): described by its status below.
  }
  return { _tag: "HttpError", message: `The server answered ${status}` }
}

const request = async <A>(method: string, path: string, body?: unknown): Promise<A> => {
  const headers = requestHeaders()
  if (body !== undefined) headers["content-type"] = "application/json"
  const response = await fetch(apiUrl(path), {
    method,
    headers,
    cache: "no-store",
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })
  const text = await response.text()
  if (response.status === 401) reportUnauthorized()
  if (!response.ok) throw new ApiError(response.status, readErrorBody(response.status, text))
  return JSON.parse(text) as A
}

/** What to list: filters (empty for any), page size and where the page starts. */
export interface ListQuery {
  readonly status: string
  readonly type: string
  readonly limit: number
  readonly cursor: string | null
}

/** `GET /config`. */
export const getConfig = (): Promise<ClientConfigJson> => request("GET", "config")

/** `GET /jobs`, newest first. */
export const listJobs = (query: ListQuery): Promise<JobPageJson> => {
  const params = new URLSearchParams({ limit: String(query.limit) })
  if (query.status !== "") params.append("status", query.status)
  if (query.type !== "") params.append("type", query.type)
  if (query.cursor !== null) params.append("cursor", query.cursor)
  return request("GET", `jobs?${params}`)
}

/** `GET /jobs/{id}`. */
export const getJob = (id: string): Promise<JobJson> => request("GET", `jobs/${encodeURIComponent(id)}`)

/** `POST /jobs`. */
export const submitJob = (type: string, metadata: Record<string, unknown>): Promise<JobJson> =>
  request("POST", "jobs", { type, metadata })

/** `DELETE /jobs/{id}`: cancels a pending or running job. */
export const cancelJob = (id: string): Promise<JobJson> => request("DELETE", `jobs/${encodeURIComponent(id)}`)
