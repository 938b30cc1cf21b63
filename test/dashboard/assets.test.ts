// How the server serves the dashboard: the page and its assets with their content types and caching headers, 304s
// on a matching ETag, JSON 404s for anything else, a page with no inline script, and under 100 KB in all.
import { mkdtempSync, rmSync } from "node:fs"
import { createServer } from "node:http"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { HttpApiBuilder, HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Context, Effect, Exit, Layer, Scope } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { dashboardContentSecurityPolicy, layerDashboard } from "../../src/http/dashboard.js"
import { jsonErrors } from "../../src/http/errors.js"
import { buildDashboard, type DashboardServer, startServer } from "./support.js"

let server: DashboardServer

beforeAll(async () => {
  await buildDashboard()
  server = await startServer()
}, 60_000)

afterAll(async () => {
  await server?.close()
})

const get = (path: string, headers: Record<string, string> = {}) => fetch(`${server.url}${path}`, { headers })

const expectJsonError = async (response: Response, status: number, tag: string) => {
  expect(response.status).toBe(status)
  expect(response.headers.get("content-type")).toMatch(/^application\/json\b/)
  const body = (await response.json()) as { _tag: string; message: string }
  expect(body._tag).toBe(tag)
  expect(body.message).toBeTypeOf("string")
}

/** The local files a page loads: its scripts, styles and icons. */
const referencedAssets = (html: string) =>
  Array.from(html.matchAll(/<(?:script|link)\b[^>]*?\b(?:src|href)="([^"]+)"/g), (match) => match[1]!)

describe("GET /", () => {
  it("serves the page, revalidated by ETag, with a strict Content-Security-Policy", async () => {
    const response = await get("/")
    expect(response.status).toBe(200)
    expect(response.headers.get("content-type")).toBe("text/html; charset=utf-8")
    expect(response.headers.get("cache-control")).toBe("no-cache")
    expect(response.headers.get("x-content-type-options")).toBe("nosniff")
    expect(response.headers.get("content-security-policy")).toBe(dashboardContentSecurityPolicy)
    expect(dashboardContentSecurityPolicy).not.toContain("unsafe-inline")
    const etag = response.headers.get("etag")
    expect(etag).toMatch(/^"[\w-]+"$/)
    const html = await response.text()
    expect(html).toContain('<script type="module" src="assets/app.js"></script>')

    const again = await get("/", { "if-none-match": etag! })
    expect(again.status).toBe(304)
    expect(await again.text()).toBe("")
    expect(again.headers.get("etag")).toBe(etag)

    // Query strings (the dashboard keeps its filters there) reach the same page.
    expect((await get("/?status=running&type=transcription")).status).toBe(200)
  })

  it("has no inline script, style or event handler, and references only local files", async () => {
    const html = await (await get("/")).text()
    for (const script of html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)) {
      expect(script[1]).toMatch(/\bsrc="/)
      expect(script[2]!.trim()).toBe("")
    }
    expect(html).not.toMatch(/<style\b/)
    expect(html).not.toMatch(/\sstyle="/)
    expect(html).not.toMatch(/\son[a-z]+="/)
    const assets = referencedAssets(html)
    expect(assets.sort()).toEqual(["assets/app.js", "assets/favicon.svg", "assets/styles.css"])
    for (const asset of assets) expect(asset).not.toMatch(/^(https?:)?\/\//)
  })

  it("ships under 100 KB in all", async () => {
    const html = await (await get("/")).arrayBuffer()
    let total = html.byteLength
    for (const asset of referencedAssets(new TextDecoder().decode(html))) {
      const response = await get(`/${asset}`)
      expect(response.status, asset).toBe(200)
      total += (await response.arrayBuffer()).byteLength
    }
    expect(total).toBeLessThan(100 * 1024)
  })
})

describe("GET /assets/*", () => {
  it.each([
    ["app.js", "text/javascript; charset=utf-8"],
    ["styles.css", "text/css; charset=utf-8"],
    ["favicon.svg", "image/svg+xml"]
  ])("serves %s as %s, revalidated by ETag", async (name, contentType) => {
    const response = await get(`/assets/${name}`)
    expect(response.status).toBe(200)
    expect(response.headers.get("content-type")).toBe(contentType)
    expect(response.headers.get("cache-control")).toBe("no-cache")
    expect(response.headers.get("x-content-type-options")).toBe("nosniff")
    const etag = response.headers.get("etag")!
    expect((await response.arrayBuffer()).byteLength).toBeGreaterThan(0)
    expect((await get(`/assets/${name}`, { "if-none-match": etag })).status).toBe(304)
    expect((await get(`/assets/${name}`, { "if-none-match": `"other", W/${etag}` })).status).toBe(304)
    expect((await get(`/assets/${name}`, { "if-none-match": '"other"' })).status).toBe(200)
  })

  it.each([
    "/assets/nope.js",
    "/assets/",
    "/assets/index.html",
    "/assets/app.ts",
    "/assets/.app.js",
    "/assets/sub/app.js",
    "/assets/..%2Fpackage.json",
    "/assets/%2e%2e/package.json",
    "/assets/app.js%00.css"
  ])("answers %s with a JSON 404, like any unknown route", async (path) => {
    await expectJsonError(await get(path), 404, "RouteNotFound")
  })

  it("answers other methods on the dashboard's paths as it does unknown routes", async () => {
    const response = await fetch(`${server.url}/assets/app.js`, { method: "DELETE" })
    await expectJsonError(response, 404, "RouteNotFound")
  })
})

describe("a dashboard that is not built", () => {
  it("answers GET / with a JSON 404 that says so", async () => {
    const empty = mkdtempSync(join(tmpdir(), "dashboard-empty-"))
    const scope = Effect.runSync(Scope.make())
    try {
      const app = HttpApiBuilder.Router.router.pipe(
        Effect.map((router) => HttpServer.serve(jsonErrors(router))),
        Layer.unwrapEffect,
        Layer.provide(layerDashboard(empty)),
        Layer.provide(HttpApiBuilder.Router.Live),
        Layer.provideMerge(NodeHttpServer.layer(createServer, { port: 0, host: "127.0.0.1" }))
      )
      const context = await Effect.runPromise(Layer.buildWithScope(app, scope))
      const address = Context.get(context, HttpServer.HttpServer).address
      const url = address._tag === "TcpAddress" ? `http://127.0.0.1:${address.port}` : ""
      await expectJsonError(await fetch(`${url}/`), 404, "DashboardNotBuilt")
      await expectJsonError(await fetch(`${url}/assets/app.js`), 404, "RouteNotFound")
    } finally {
      await Effect.runPromise(Scope.close(scope, Exit.void))
      rmSync(empty, { recursive: true, force: true })
    }
  })
})
