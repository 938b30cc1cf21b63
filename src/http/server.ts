import { createServer } from "node:http"
import { HttpApiBuilder, HttpApiSwagger, HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { serverConfig } from "../config.js"
import { DashboardLive } from "./dashboard.js"
import { jsonErrors } from "./errors.js"
import { ApiLive } from "./handlers.js"

/**
 * Every route: the API, `GET /openapi.json`, the offline Swagger UI at `GET /docs` and the web dashboard at `GET /`
 * (with its files under `GET /assets/`).
 */
export const RoutesLive = Layer.mergeAll(
  HttpApiSwagger.layer({ path: "/docs" }),
  HttpApiBuilder.middlewareOpenApi({ path: "/openapi.json" }),
  DashboardLive
).pipe(Layer.provideMerge(ApiLive))

/**
 * The HTTP app served on whatever `HttpServer` is provided (a real port, or `NodeHttpServer.layerTest`).
 * Like `HttpApiBuilder.serve`, but with {@link jsonErrors} wrapped around the app itself, so that it also sees the
 * errors the router answers on its own (an unknown route, an unreadable body).
 */
export const HttpAppLive = HttpApiBuilder.httpApp.pipe(
  Effect.map((app) => HttpServer.serve(jsonErrors(app))),
  Layer.unwrapEffect,
  Layer.provide([HttpApiBuilder.Router.Live, HttpApiBuilder.Middleware.layer]),
  Layer.provide(RoutesLive)
)

/** The Node server on `HOST:PORT` (default 127.0.0.1:8080), logging the address it listens on. */
export const NodeServerLive = HttpAppLive.pipe(
  HttpServer.withLogAddress,
  Layer.provide(NodeHttpServer.layerConfig(createServer, serverConfig))
)
