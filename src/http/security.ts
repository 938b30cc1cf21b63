import { createHash, timingSafeEqual } from "node:crypto"
import { createServer, type Server, STATUS_CODES } from "node:http"
import { isIP } from "node:net"
import type { Duplex } from "node:stream"
import { type HttpApp, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { type ConfigError, Context, Effect, Layer, Option, Redacted } from "effect"
import { apiTokenConfig, type HttpLimitsOptions, serverConfig } from "../config.js"
import { Authorization, Unauthorized } from "./Api.js"
import { errorBody } from "./errors.js"
import { pathOf } from "./observability.js"

/** What the server checks of a request's credentials. */
export interface ApiAccessService {
  /** Whether requests to protected routes need `Authorization: Bearer <token>` (`APP_API_TOKEN` is set). */
  readonly tokenRequired: boolean
  /**
   * Whether an `Authorization` header carries the token: scheme `Bearer` (any case), the token compared in constant
   * time (both sides hashed with SHA-256 first, so that the comparison never depends on the length either). Always
   * true when no token is required.
   */
  readonly isAuthorized: (authorization: string | undefined) => boolean
}

const digest = (text: string): Buffer => createHash("sha256").update(text, "utf8").digest()

// `Bearer`, spaces, the token (visible characters), optional trailing spaces. Linear: the parts cannot overlap.
const bearer = /^bearer +(\S+) *$/i

/** Builds an {@link ApiAccessService} for a token, or for none (every request is authorized). */
export const makeApiAccess = (token: Option.Option<Redacted.Redacted<string>>): ApiAccessService => {
  if (Option.isNone(token)) return { tokenRequired: false, isAuthorized: () => true }
  const expected = digest(Redacted.value(token.value))
  return {
    tokenRequired: true,
    isAuthorized: (authorization) => {
      if (authorization === undefined) return false
      const match = bearer.exec(authorization)
      return match !== null && timingSafeEqual(digest(match[1]!), expected)
    }
  }
}

/** The API's access rule: whether a bearer token is required, and checking it. */
export class ApiAccess extends Context.Tag("effect-job-queue/ApiAccess")<ApiAccess, ApiAccessService>() {
  /** Access with the given token; `Option.none()` leaves every route open. */
  static layer(token: Option.Option<Redacted.Redacted<string>>): Layer.Layer<ApiAccess> {
    return Layer.succeed(ApiAccess, makeApiAccess(token))
  }

  /** Access with the token of `APP_API_TOKEN`, when it is set. */
  static readonly layerConfig: Layer.Layer<ApiAccess, ConfigError.ConfigError> = Layer.effect(
    ApiAccess,
    Effect.map(apiTokenConfig, makeApiAccess)
  )
}

const unauthorized = new Unauthorized({
  message: "This route requires the header Authorization: Bearer <token> with the server's API token"
})

/**
 * The {@link Authorization} middleware of the API's protected endpoints: fails with `Unauthorized` (401) unless the
 * request carries the token. The server-wide {@link secured} middleware already refuses such requests before they
 * reach the API; this keeps the API protected where it is served without it.
 */
export const AuthorizationLive: Layer.Layer<Authorization, never, ApiAccess> = Layer.effect(
  Authorization,
  Effect.map(ApiAccess, (access) =>
    Authorization.of({
      bearer: access.tokenRequired
        ? () =>
            Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
              access.isAuthorized(request.headers.authorization) ? Effect.void : Effect.fail(unauthorized)
            )
        : () => Effect.void
    })
  )
)

/** The longest request URL (path and query) the server reads, in bytes: longer ones are answered 414. */
export const maxUrlLength = 8 * 1024

/** The most bytes of request line and headers Node reads (its `maxHeaderSize`): more is answered 431. */
export const maxHeaderBytes = 16 * 1024

// One file name under /assets/: no further segment, no dot segment, nothing encoded.
const publicAsset = /^\/assets\/[A-Za-z0-9_-][A-Za-z0-9._-]*$/

/**
 * Whether a path is served without a token: the health check, the API documentation, the dashboard's page and its
 * files (`/assets/<name>`, one plain file name: a path that could lead elsewhere once normalised is not public).
 */
export const isPublicPath = (path: string): boolean =>
  path === "/health" ||
  path === "/" ||
  path === "/docs" ||
  path === "/openapi.json" ||
  (publicAsset.test(path) && !path.includes(".."))

/**
 * The Content-Security-Policy of every response but `/docs`: nothing but this server's own files, no inline script
 * or style, no framing. A response that sets its own policy (the dashboard's page) keeps it.
 */
export const contentSecurityPolicy =
  "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; " +
  "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

/** The Content-Security-Policy of `/docs`, whose Swagger UI page runs an inline script and inline styles. */
export const docsContentSecurityPolicy =
  "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; " +
  "connect-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; " +
  "form-action 'self'"

const withSecurityHeaders = (
  response: HttpServerResponse.HttpServerResponse,
  path: string
): HttpServerResponse.HttpServerResponse => {
  const headers: Record<string, string> = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer"
  }
  if (response.headers["content-security-policy"] === undefined) {
    headers["content-security-policy"] = path === "/docs" ? docsContentSecurityPolicy : contentSecurityPolicy
  }
  return HttpServerResponse.setHeaders(response, headers)
}

/**
 * The server-wide security middleware. It refuses a URL longer than {@link maxUrlLength} (414), then, when a token
 * is required, any request to a path that is not public ({@link isPublicPath}) without it (401, with
 * `WWW-Authenticate: Bearer`): the API, its event streams, `/metrics` and unknown paths alike, before the body is
 * read. Every response gets `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY`, `Referrer-Policy:
 * no-referrer` and a Content-Security-Policy ({@link contentSecurityPolicy}; {@link docsContentSecurityPolicy} for
 * `/docs`).
 */
export const secured =
  (access: ApiAccessService) =>
  <E, R>(
    app: HttpApp.HttpApp<HttpServerResponse.HttpServerResponse, E, R>
  ): HttpApp.HttpApp<HttpServerResponse.HttpServerResponse, E, R> =>
    Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
      const path = pathOf(request.url)
      let refused: HttpServerResponse.HttpServerResponse | undefined
      if (request.url.length > maxUrlLength) {
        refused = errorBody(414, "UriTooLong", `The request URL is longer than ${maxUrlLength} bytes`)
      } else if (
        access.tokenRequired &&
        !isPublicPath(path) &&
        !access.isAuthorized(request.headers.authorization)
      ) {
        refused = errorBody(
          401,
          unauthorized._tag,
          unauthorized.message,
          {},
          { "www-authenticate": "Bearer" }
        )
      }
      if (refused !== undefined) return Effect.succeed(withSecurityHeaders(refused, path))
      return Effect.map(app, (response) => withSecurityHeaders(response, path))
    })

/** Whether `host` names this machine only: `localhost`, 127.0.0.0/8 or `::1` (also as an IPv4-mapped address). */
export const isLoopbackHost = (host: string): boolean => {
  const bare = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host
  if (bare.toLowerCase() === "localhost") return true
  const version = isIP(bare)
  if (version === 4) return bare.startsWith("127.")
  if (version === 6) {
    const lower = bare.toLowerCase()
    return lower === "::1" || lower === "0:0:0:0:0:0:0:1" || /^::ffff:127\./.test(lower)
  }
  return false
}

/**
 * Logs at start-up how exposed the server is: a warning when `HOST` is not a loopback address and no `APP_API_TOKEN`
 * is set (anyone who reaches the port can submit and cancel jobs), a note when it is not loopback and a token is set
 * (use TLS in front of it: the token travels in every request).
 */
export const ExposureCheckLive: Layer.Layer<never, ConfigError.ConfigError> = Layer.effectDiscard(
  Effect.gen(function* () {
    const { host, port } = yield* serverConfig
    const token = yield* apiTokenConfig
    if (isLoopbackHost(host)) return
    if (Option.isNone(token)) {
      yield* Effect.logWarning(
        `HOST=${host} exposes the API on port ${port} beyond this machine WITHOUT authentication: anyone who ` +
          "reaches it can submit, read and cancel jobs. Set APP_API_TOKEN (clients then send " +
          "Authorization: Bearer <token>), or bind HOST=127.0.0.1."
      )
    } else {
      yield* Effect.logInfo(
        `HOST=${host}: the API is reachable beyond this machine on port ${port} and requires APP_API_TOKEN; ` +
          "serve it behind TLS, since the token travels with every request."
      )
    }
  })
)

/** The defaults for {@link HttpLimitsOptions}. */
export const defaultHttpLimits: HttpLimitsOptions = { requestTimeoutMs: 30_000 }

const clientErrorResponse = (status: number, tag: string, message: string, bodiless: boolean): string => {
  const body = bodiless ? "" : JSON.stringify({ _tag: tag, message })
  return (
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? "Error"}\r\n` +
    "Content-Type: application/json\r\n" +
    `Content-Length: ${Buffer.byteLength(body)}\r\n` +
    "X-Content-Type-Options: nosniff\r\n" +
    "Connection: close\r\n\r\n" +
    body
  )
}

// Node's own answers to requests it cannot parse have no body; these are JSON like every other error. A response to
// HEAD must have no body, so a 400 or 431 gets one only when the bytes Node failed on show the request line and its
// method is not HEAD (a 408 has no such bytes: it always gets one). As Node does, nothing is written once a response
// to the request has begun, and the connection is closed.
const onClientError = (error: Error & { code?: string; rawPacket?: Buffer }, socket: Duplex): void => {
  if (error.code !== "ECONNRESET" && socket.writable) {
    const inFlight = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } | null })._httpMessage
    if (inFlight === undefined || inFlight === null || inFlight.headersSent !== true) {
      const start = error.rawPacket?.subarray(0, 16).toString("latin1") ?? ""
      const withBody = /^[A-Z]+ /.test(start) && !start.startsWith("HEAD ")
      socket.write(
        error.code === "HPE_HEADER_OVERFLOW"
          ? clientErrorResponse(
              431,
              "RequestHeaderFieldsTooLarge",
              `The request line and headers are larger than ${maxHeaderBytes} bytes`,
              !withBody
            )
          : error.code === "ERR_HTTP_REQUEST_TIMEOUT"
            ? clientErrorResponse(408, "RequestTimeout", "The request took too long to arrive", false)
            : clientErrorResponse(400, "BadRequest", "The request is not valid HTTP/1.1", !withBody)
      )
    }
  }
  socket.destroy()
}

/**
 * A Node HTTP server with the service's limits: request line and headers up to {@link maxHeaderBytes}, headers
 * within 10 s (or the request timeout, if shorter) and the whole request within `requestTimeoutMs`, checked every
 * second (408 otherwise). Node applies these to receiving the request only: a response that streams for hours (the
 * event streams) is not cut. Unparseable requests are answered with a JSON error body. Closing it (the end of the
 * server's scope, after the queue has drained) ends its connections too: see {@link closeGraceMs}.
 */
export const makeNodeServer = (limits: HttpLimitsOptions = defaultHttpLimits): Server => {
  const server = createServer({
    maxHeaderSize: maxHeaderBytes,
    requestTimeout: limits.requestTimeoutMs,
    headersTimeout: Math.min(10_000, limits.requestTimeoutMs),
    connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(limits.requestTimeoutMs / 4)))
  })
  server.on("clientError", onClientError)
  // `close` waits for every open connection, and Node stops its timeout checks once closing: a connection a client
  // opened ahead of need and never sent a request on (browsers do) would keep the process alive for as long as the
  // client likes. So idle connections close at once, and whatever is left after the grace period is cut.
  const close = server.close.bind(server)
  server.close = (callback) => {
    close(callback)
    server.closeIdleConnections()
    setTimeout(() => server.closeAllConnections(), closeGraceMs).unref()
    return server
  }
  return server
}

/** How long a closing server lets the responses in flight finish before it closes every connection (ms). */
export const closeGraceMs = 1000
