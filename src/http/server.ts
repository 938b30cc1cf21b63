import { HttpApiBuilder, HttpApiSwagger, HttpMiddleware, HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Effect, Layer, type Tracer } from "effect"
import { httpLimitsConfig, serverConfig } from "../config.js"
import { JobQueue } from "../JobQueue.js"
import { DashboardLive } from "./dashboard.js"
import { jsonErrors } from "./errors.js"
import { ApiLive, jobsShortcut } from "./handlers.js"
import { MetricsRouteLive, withHttpMetrics } from "./observability.js"
import { ApiAccess, AuthorizationLive, ExposureCheckLive, makeNodeServer, secured } from "./security.js"

/**
 * Every route: the API, `GET /openapi.json`, the offline Swagger UI at `GET /docs` and the web dashboard at `GET /`
 * (with its files under `GET /assets/`).
 */
export const RoutesLive = Layer.mergeAll(
  HttpApiSwagger.layer({ path: "/docs" }),
  HttpApiBuilder.middlewareOpenApi({ path: "/openapi.json" }),
  DashboardLive,
  MetricsRouteLive
).pipe(Layer.provideMerge(ApiLive))

// Effect's default tracer: it records spans in memory and exports them nowhere.
const nativeTracer: Tracer.Tracer = Effect.runSync(Effect.tracer)

/**
 * The HTTP app served on whatever `HttpServer` is provided (a real port, or `NodeHttpServer.layerTest`).
 * Like `HttpApiBuilder.serve`, but with {@link jsonErrors} wrapped around the app itself, so that it also sees the
 * errors the router answers on its own (an unknown route, an unreadable body). Around it, {@link secured} (URL
 * length, the API token of `APP_API_TOKEN`, security headers) and {@link withHttpMetrics} (`GET /metrics`).
 *
 * The platform's span per request (`http.server GET`, with every header as an attribute) is made only when a tracer
 * is provided (`Layer.setTracer`, an OpenTelemetry layer): with Effect's default one nothing would ever read it, and
 * it cost about 20 µs of a GET's ~100 µs and twice that for a POST (in-process, `HttpMiddleware.tracer`). Without a
 * tracer, {@link jobsShortcut} answers the busiest two routes before the router.
 */
export const HttpAppLive = Effect.gen(function* () {
  const app = yield* HttpApiBuilder.httpApp
  const access = yield* ApiAccess
  const queue = yield* JobQueue
  // With a tracer, every request goes through the router, which names the route in the request's span.
  const traced = (yield* Effect.tracer) !== nativeTracer
  const served = HttpServer.serve(
    withHttpMetrics(secured(access)(jsonErrors(traced ? app : jobsShortcut(queue)(app))))
  )
  return traced ? served : HttpMiddleware.withTracerDisabledWhen(served, () => true)
}).pipe(
  Layer.unwrapEffect,
  Layer.provide([HttpApiBuilder.Router.Live, HttpApiBuilder.Middleware.layer]),
  Layer.provide(RoutesLive),
  Layer.provide(AuthorizationLive),
  Layer.provide(ApiAccess.layerConfig)
)

/**
 * The Node server on `HOST:PORT` (default 127.0.0.1:8080) with the limits of {@link makeNodeServer}, logging the
 * address it listens on, after a warning when `HOST` is not loopback and no API token is set.
 */
export const NodeServerLive = HttpAppLive.pipe(
  HttpServer.withLogAddress,
  Layer.provide(
    Layer.unwrapEffect(
      Effect.map(httpLimitsConfig, (limits) =>
        NodeHttpServer.layerConfig(() => makeNodeServer(limits), serverConfig)
      )
    )
  ),
  Layer.provide(ExposureCheckLive)
)
