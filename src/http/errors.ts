import { STATUS_CODES } from "node:http"
import {
  FileSystem,
  type HttpApp,
  HttpIncomingMessage,
  HttpMethod,
  HttpServerError,
  HttpServerRequest,
  HttpServerResponse
} from "@effect/platform"
import { Cause, Effect, Option } from "effect"

type Response = HttpServerResponse.HttpServerResponse

/** The largest request body the server reads: 1 MiB. */
export const maxBodyBytes = 1024 * 1024

/**
 * An error answer as every route gives it: a JSON body with `_tag`, `message` and any `extra` fields, with `headers`.
 */
export const errorBody = (
  status: number,
  tag: string,
  message: string,
  extra: Record<string, unknown> = {},
  headers: Record<string, string> = {}
): Response => HttpServerResponse.unsafeJson({ _tag: tag, message, ...extra }, { status, headers })

const maxBodySize = Option.some(FileSystem.Size(maxBodyBytes))

const tooLarge = () =>
  errorBody(413, "PayloadTooLarge", `The request body is larger than ${maxBodyBytes} bytes`, {
    maxBytes: maxBodyBytes
  })

/** How deeply a request body's JSON may nest (arrays and objects): deeper bodies are refused before parsing. */
export const maxJsonDepth = 64

// Only `application/json` (with parameters): the API reads other types, `+json` ones included, as raw bytes.
const isJsonContentType = (value: string) => /^application\/json\s*(;|$)/i.test(value.trim())

/**
 * Whether `text` opens more than `limit` nested arrays or objects, brackets inside strings aside. Checked before
 * the body is parsed, because schema checks and error messages walk the value recursively: a deeply nested body
 * would overflow the stack there (a 500) instead of being refused.
 */
const nestsDeeperThan = (text: string, limit: number): boolean => {
  let depth = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 0x5c) i++
      else if (c === 0x22) inString = false
    } else if (c === 0x22) inString = true
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > limit) return true
    } else if (c === 0x5d || c === 0x7d) depth--
  }
  return false
}

const hasBody = (request: HttpServerRequest.HttpServerRequest) =>
  HttpMethod.hasBody(request.method) &&
  (request.headers["transfer-encoding"] !== undefined ||
    (request.headers["content-length"] !== undefined && request.headers["content-length"] !== "0"))

const describe = (request: HttpServerRequest.HttpServerRequest) =>
  `${request.method} ${request.url.split("?")[0]}`

const fromCause = (request: HttpServerRequest.HttpServerRequest, cause: Cause.Cause<unknown>) => {
  if (Cause.isInterruptedOnly(cause)) return Effect.failCause(cause as Cause.Cause<never>)
  const error = Cause.squash(cause)
  if (HttpServerError.isServerError(error)) {
    if (error._tag === "RouteNotFound") {
      return Effect.succeed(errorBody(404, "RouteNotFound", `No route for ${describe(request)}`))
    }
    if (error._tag === "RequestError") {
      const reason = error.cause instanceof Error ? error.cause.message : ""
      if (reason.includes("maxBytes")) return Effect.succeed(tooLarge())
      return Effect.succeed(errorBody(400, "MalformedBody", "The request body is not valid JSON"))
    }
  }
  return Effect.as(
    Effect.logError(`Unhandled error answering ${describe(request)}`, cause),
    errorBody(500, "InternalServerError", "Internal server error")
  )
}

const withJsonBody = (response: Response): Response =>
  response.status >= 400 && response.body._tag === "Empty"
    ? errorBody(response.status, "HttpError", STATUS_CODES[response.status] ?? "Error")
    : response

/**
 * The server-wide middleware that makes every error a JSON body with `_tag` and `message`: unknown routes (404),
 * malformed JSON or JSON nested deeper than {@link maxJsonDepth} (400), bodies over {@link maxBodyBytes} (413), a
 * non-JSON content type (415), and anything unexpected (500, logged, with no detail in the response).
 */
export const jsonErrors = <E, R>(app: HttpApp.HttpApp<Response, E, R>) =>
  Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
    // The content type is checked even when the body is empty: the platform would wait forever for the parts
    // of an empty multipart body.
    if (HttpMethod.hasBody(request.method)) {
      const length = Number(request.headers["content-length"])
      if (length > maxBodyBytes) return Effect.succeed(tooLarge())
      const contentType = request.headers["content-type"]
      if (contentType !== undefined && !isJsonContentType(contentType)) {
        return Effect.succeed(
          errorBody(415, "UnsupportedMediaType", `Content-Type must be application/json, got ${contentType}`)
        )
      }
    }
    // The body is read once and cached by the request, so the router reads the same text afterwards. The size
    // limit is provided only where there is a body to read (each `provideService` costs a context copy).
    const checked: Effect.Effect<
      Response,
      E | HttpServerError.RequestError,
      R | HttpServerRequest.HttpServerRequest
    > = hasBody(request)
      ? Effect.provideService(
          Effect.flatMap(request.text, (text) =>
            nestsDeeperThan(text, maxJsonDepth)
              ? Effect.succeed(
                  errorBody(400, "MalformedBody", `The request body nests deeper than ${maxJsonDepth} levels`)
                )
              : app
          ),
          HttpIncomingMessage.MaxBodySize,
          maxBodySize
        )
      : app
    return checked.pipe(
      Effect.catchAllCause((cause) => fromCause(request, cause)),
      Effect.map(withJsonBody)
    )
  })
