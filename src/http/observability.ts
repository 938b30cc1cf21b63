import {
  HttpApi,
  HttpApiBuilder,
  type HttpApp,
  HttpServerRequest,
  HttpServerResponse
} from "@effect/platform"
import { Cause, Effect, Exit, type Layer, MetricLabel } from "effect"
import { httpRequestDuration, httpRequests, prometheusContentType, prometheusText } from "../metrics.js"
import { JobsApi } from "./Api.js"

/** The path of the Prometheus endpoint. */
export const metricsPath = "/metrics"

/** `GET /metrics`: every metric of the process in the Prometheus text format (version 0.0.4). */
export const MetricsRouteLive: Layer.Layer<never> = HttpApiBuilder.Router.use((router) =>
  router.get(
    metricsPath,
    Effect.map(prometheusText, (text) =>
      HttpServerResponse.text(text, {
        contentType: prometheusContentType,
        headers: { "cache-control": "no-store" }
      })
    )
  )
)

// The routes outside the API's contract, as patterns: a `*` segment matches the rest of the path.
const extraRoutes = [metricsPath, "/openapi.json", "/docs", "/", "/assets/*"]

/** The label of a request that matches no known route. */
export const unmatchedRoute = "unmatched"

type Segments = ReadonlyArray<string>

const apiRoutes = (): Array<string> => {
  const paths: Array<string> = []
  HttpApi.reflect(JobsApi, {
    onGroup: () => {},
    onEndpoint: ({ endpoint }) => {
      paths.push(endpoint.path)
    }
  })
  return paths
}

// Patterns with fewer parameters first, so that `/jobs/batch` wins over `/jobs/:id`.
const patterns: ReadonlyArray<{ readonly route: string; readonly segments: Segments }> = Array.from(
  new Set([...apiRoutes(), ...extraRoutes])
)
  .map((route) => ({ route, segments: route.split("/").slice(1) }))
  .sort(
    (a, b) =>
      a.segments.filter((s) => s.startsWith(":") || s === "*").length -
      b.segments.filter((s) => s.startsWith(":") || s === "*").length
  )

const matches = (pattern: Segments, path: Segments): boolean => {
  for (let i = 0; i < pattern.length; i++) {
    const segment = pattern[i]!
    if (segment === "*") return i < path.length && path[i] !== ""
    if (i >= path.length) return false
    if (segment.startsWith(":") ? path[i] === "" : segment !== path[i]) return false
  }
  return pattern.length === path.length
}

/**
 * The route pattern a path belongs to, for metric labels (`/jobs/:id`, never the id itself): the API's routes, the
 * documentation, the metrics and the dashboard's, or {@link unmatchedRoute}. The set of labels is bounded.
 */
export const routeOf = (path: string): string => {
  const segments = path.split("/").slice(1)
  for (const { route, segments: pattern } of patterns) if (matches(pattern, segments)) return route
  return unmatchedRoute
}

const knownMethods: ReadonlySet<string> = new Set([
  "GET",
  "HEAD",
  "POST",
  "PUT",
  "PATCH",
  "DELETE",
  "OPTIONS"
])

const labelCache = new Map<string, ReadonlyArray<MetricLabel.MetricLabel>>()
const labelsOf = (method: string, route: string, status: number): ReadonlyArray<MetricLabel.MetricLabel> => {
  const key = `${method} ${status} ${route}`
  let labels = labelCache.get(key)
  if (labels === undefined) {
    labels = [
      MetricLabel.make("method", method),
      MetricLabel.make("route", route),
      MetricLabel.make("status", String(status))
    ]
    labelCache.set(key, labels)
  }
  return labels
}

/** The path of a request URL, without its query string. */
export const pathOf = (url: string): string => {
  const query = url.indexOf("?")
  return query === -1 ? url : url.slice(0, query)
}

/**
 * Server-wide middleware counting every answered request in `http_requests_total` and timing it in
 * `http_request_duration_seconds`, by method, route pattern and status. A request whose client went away before
 * the answer is not counted.
 */
export const withHttpMetrics = <E, R>(
  app: HttpApp.HttpApp<HttpServerResponse.HttpServerResponse, E, R>
): HttpApp.HttpApp<HttpServerResponse.HttpServerResponse, E, R> =>
  Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
    const start = performance.now()
    return Effect.onExit(app, (exit) => {
      if (Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause)) return Effect.void
      const status = Exit.isSuccess(exit) ? exit.value.status : 500
      const method = knownMethods.has(request.method) ? request.method : "OTHER"
      const labels = labelsOf(method, routeOf(pathOf(request.url)), status)
      httpRequests.unsafeUpdate(1, labels)
      httpRequestDuration.unsafeUpdate((performance.now() - start) / 1000, labels)
      return Effect.void
    })
  })
