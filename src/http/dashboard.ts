import { createHash } from "node:crypto"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import {
  FileSystem,
  HttpApiBuilder,
  HttpRouter,
  HttpServerError,
  HttpServerRequest,
  HttpServerResponse
} from "@effect/platform"
import { Effect, type Layer, Option } from "effect"
import { errorBody } from "./errors.js"

/**
 * Where `npm run build` puts the web dashboard (`scripts/build-dashboard.mjs`): `dist/dashboard/` at the package's
 * root, found from this module whether it runs compiled (`dist/http/`) or from source (`src/http/`, in tests).
 */
export const dashboardDirectory: string = fileURLToPath(new URL("../../dist/dashboard/", import.meta.url))

/**
 * The Content-Security-Policy of the dashboard's page: everything from this server, no inline script or style, no
 * plugins, no framing.
 */
export const dashboardContentSecurityPolicy =
  "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; " +
  "form-action 'self'"

const contentTypes: Readonly<Record<string, string>> = {
  html: "text/html; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  css: "text/css; charset=utf-8",
  svg: "image/svg+xml"
}

// A file name in the asset directory, with an extension served as an asset: no path separators, no dot files.
const assetName = /^[A-Za-z0-9][A-Za-z0-9_-]*\.(js|css|svg)$/

const etagOf = (body: Uint8Array) => `"${createHash("sha256").update(body).digest("base64url").slice(0, 32)}"`

const matchesEtag = (header: string | undefined, etag: string) =>
  (header ?? "").split(",").some((candidate) => {
    const tag = candidate.trim()
    return tag === "*" || tag === etag || tag === `W/${etag}`
  })

const routeNotFound = Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
  Effect.fail(new HttpServerError.RouteNotFound({ request }))
)

const notBuilt = Effect.as(
  Effect.logWarning("GET /: the dashboard is not built (npm run build builds it)"),
  errorBody(404, "DashboardNotBuilt", "The dashboard is not built: run npm run build")
)

/**
 * Answers with a file of the asset directory, or with `missing` when it does not exist. Files are revalidated on
 * every use (`no-cache`, their names carry no hash) and answered 304 when the client's ETag matches.
 */
const serveFile = <E, R>(
  path: string,
  extension: string,
  missing: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>,
  extraHeaders: Readonly<Record<string, string>> = {}
) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const request = yield* HttpServerRequest.HttpServerRequest
    const body = yield* fs.readFile(path).pipe(
      Effect.map(Option.some),
      Effect.catchIf(
        (error) => error._tag === "SystemError" && error.reason === "NotFound",
        () => Effect.succeedNone
      ),
      Effect.orDie
    )
    if (Option.isNone(body)) return yield* missing
    const etag = etagOf(body.value)
    const headers = {
      etag,
      "cache-control": "no-cache",
      "x-content-type-options": "nosniff",
      ...extraHeaders
    }
    if (matchesEtag(request.headers["if-none-match"], etag)) {
      return HttpServerResponse.empty({ status: 304, headers })
    }
    return HttpServerResponse.uint8Array(body.value, { contentType: contentTypes[extension], headers })
  })

/**
 * The web dashboard's routes, serving the built files of `directory`: `GET /` is the page (`index.html`),
 * `GET /assets/{name}` its script, styles and icon. An unknown asset is a `RouteNotFound` like any unknown route.
 */
export const layerDashboard = (directory: string = dashboardDirectory): Layer.Layer<never> =>
  HttpApiBuilder.Router.use((router) =>
    Effect.zipRight(
      router.get(
        "/",
        serveFile(join(directory, "index.html"), "html", notBuilt, {
          "content-security-policy": dashboardContentSecurityPolicy,
          "referrer-policy": "no-referrer"
        })
      ),
      router.get(
        "/assets/*",
        Effect.flatMap(HttpRouter.params, (params) => {
          const name = params["*"] ?? ""
          const match = assetName.exec(name)
          return match === null ? routeNotFound : serveFile(join(directory, name), match[1]!, routeNotFound)
        })
      )
    )
  )

/** The web dashboard at `GET /`, served from {@link dashboardDirectory}. */
export const DashboardLive: Layer.Layer<never> = layerDashboard()
