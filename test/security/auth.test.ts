import { FetchHttpClient, HttpApiBuilder, HttpClient, HttpClientRequest } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Either, Layer, Option, Queue, Redacted } from "effect"
import { SubmitJobPayload } from "../../src/http/Api.js"
import { makeJobsClient } from "../../src/http/client.js"
import { ApiLive } from "../../src/http/handlers.js"
import { ApiAccess, AuthorizationLive, isPublicPath, makeApiAccess } from "../../src/http/security.js"
import { gatedType, makeGates, queueLayer } from "../http/support.js"
import { bearer, type RawResponse, sendEffect, startLiveServer, testToken } from "./support.js"

const expectUnauthorized = (response: RawResponse) => {
  expect(response.status, response.text).toBe(401)
  expect(response.headers["content-type"]).toMatch(/^application\/json/)
  expect(response.headers["www-authenticate"]).toBe("Bearer")
  const body = JSON.parse(response.text) as { _tag: string; message: string }
  expect(body._tag).toBe("Unauthorized")
  expect(body.message).toContain("Authorization: Bearer")
  expect(response.text).not.toContain(testToken)
}

const unknownId = "00000000-0000-4000-8000-000000000000"

// Every protected route, with a request that would succeed (or fail for a reason other than the token).
const protectedRequests = (jobId: string) =>
  [
    { method: "GET", path: "/jobs" },
    { method: "GET", path: "/jobs?status=running&limit=5" },
    { method: "GET", path: `/jobs/${jobId}` },
    { method: "GET", path: `/jobs/${unknownId}` },
    { method: "DELETE", path: `/jobs/${unknownId}` },
    { method: "GET", path: `/jobs/${jobId}/events` },
    { method: "GET", path: "/events" },
    { method: "GET", path: "/config" },
    { method: "GET", path: "/metrics" },
    { method: "GET", path: "/no-such-route" },
    {
      method: "POST",
      path: "/jobs",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ type: "bootstrap" })
    },
    {
      method: "POST",
      path: "/jobs/batch",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ jobs: [{ type: "bootstrap" }] })
    }
  ] as const

describe("the API token", () => {
  it("matches only `Bearer <token>`, the scheme in any case, compared whole", () => {
    const access = makeApiAccess(Option.some(Redacted.make(testToken)))
    expect(access.tokenRequired).toBe(true)
    expect(access.isAuthorized(`Bearer ${testToken}`)).toBe(true)
    expect(access.isAuthorized(`bearer ${testToken}`)).toBe(true)
    expect(access.isAuthorized(`BEARER   ${testToken}  `)).toBe(true)
    for (const header of [
      undefined,
      "",
      "Bearer",
      "Bearer ",
      testToken,
      `Basic ${testToken}`,
      `Bearer ${testToken}x`,
      `Bearer ${testToken.slice(0, -1)}`,
      `Bearer ${testToken.slice(0, -1)}X`,
      `Bearer x${testToken}`,
      `Bearer ${testToken} ${testToken}`,
      `Bearer ${testToken.toUpperCase()}`
    ]) {
      expect(access.isAuthorized(header), String(header)).toBe(false)
    }
    const open = makeApiAccess(Option.none())
    expect(open.tokenRequired).toBe(false)
    expect(open.isAuthorized(undefined)).toBe(true)
  })

  it("leaves public only the health check, the documentation and the dashboard's files", () => {
    for (const path of ["/health", "/", "/docs", "/openapi.json", "/assets/app.js"]) {
      expect(isPublicPath(path), path).toBe(true)
    }
    for (const path of [
      "/jobs",
      "/events",
      "/config",
      "/metrics",
      "/healthz",
      "/docs/x",
      "/assets",
      "/assets/",
      "//health",
      "/assets/../metrics",
      "/assets/..",
      "/assets/%2e%2e",
      "/assets/a/b.js",
      "/assets/.env"
    ]) {
      expect(isPublicPath(path), path).toBe(false)
    }
  })

  it.scopedLive("with a token, every API route answers 401 JSON without it and serves with it", () =>
    Effect.gen(function* () {
      const server = yield* startLiveServer({ token: testToken })
      const job = yield* server.queue.submit("bootstrap")
      const wrongTokens = [
        {},
        { authorization: "" },
        { authorization: "Bearer" },
        { authorization: `Basic ${Buffer.from(`user:${testToken}`).toString("base64")}` },
        bearer("x".repeat(testToken.length)),
        bearer(`${testToken}0`),
        bearer(testToken.slice(1))
      ]
      for (const request of protectedRequests(job.id)) {
        for (const headers of wrongTokens) {
          const response = yield* sendEffect(server.port, {
            ...request,
            headers: { ...("headers" in request ? request.headers : {}), ...headers }
          })
          expectUnauthorized(response)
        }
        const allowed = yield* sendEffect(server.port, {
          ...request,
          headers: { ...("headers" in request ? request.headers : {}), ...bearer(testToken) }
        })
        expect(allowed.status, `${request.method} ${request.path}: ${allowed.text}`).not.toBe(401)
        expect(allowed.status).toBeLessThan(500)
      }
      // Nothing was submitted or cancelled by the refused requests: only the job above and the two accepted posts.
      const page = yield* server.queue.list({ limit: 500 })
      expect(page.items.length).toBe(3)
    })
  )

  it.scopedLive("with a token, the health check, the documentation and the dashboard stay public", () =>
    Effect.gen(function* () {
      const server = yield* startLiveServer({ token: testToken })
      for (const path of ["/health", "/openapi.json", "/docs", "/", "/assets/missing.js"]) {
        const response = yield* sendEffect(server.port, { method: "GET", path })
        expect(response.status, `${path}: ${response.text}`).not.toBe(401)
        expect(response.status).toBeLessThan(500)
      }
      expect((yield* sendEffect(server.port, { method: "GET", path: "/health" })).status).toBe(200)
      expect((yield* sendEffect(server.port, { method: "GET", path: "/openapi.json" })).status).toBe(200)
      expect((yield* sendEffect(server.port, { method: "GET", path: "/docs" })).status).toBe(200)
    })
  )

  it.scopedLive("a path that looks public but leads elsewhere is not served without the token", () =>
    Effect.gen(function* () {
      const server = yield* startLiveServer({ token: testToken })
      for (const path of [
        "/assets/../metrics",
        "/assets/../jobs",
        "/assets/%2e%2e/metrics",
        "/assets/..%2fmetrics",
        "/health/../metrics",
        "/docs/../config",
        "/./metrics",
        "//metrics",
        "//jobs",
        "/%2e%2e/metrics",
        "/health#/../metrics",
        "/health;/../jobs"
      ]) {
        const response = yield* sendEffect(server.port, { method: "GET", path })
        expect(response.status, `${path}: ${response.text}`).toBe(401)
      }
    })
  )

  it.scopedLive("an event stream is refused before it opens, and follows its job with the token", () =>
    Effect.gen(function* () {
      const server = yield* startLiveServer({ token: testToken })
      const job = yield* server.queue.submit(gatedType, {})
      expect(yield* Queue.take(server.gates.started)).toBe(job.id)
      expectUnauthorized(yield* sendEffect(server.port, { method: "GET", path: `/jobs/${job.id}/events` }))
      expectUnauthorized(yield* sendEffect(server.port, { method: "GET", path: "/events" }))
      const open = yield* sendEffect(server.port, {
        method: "GET",
        path: `/jobs/${job.id}/events`,
        headers: bearer(testToken)
      })
      expect(open.status).toBe(200)
      expect(open.headers["content-type"]).toMatch(/^text\/event-stream/)
    })
  )

  it.scopedLive("without a token every route is open", () =>
    Effect.gen(function* () {
      const server = yield* startLiveServer()
      const job = yield* server.queue.submit("bootstrap")
      for (const request of protectedRequests(job.id)) {
        const response = yield* sendEffect(server.port, request)
        expect(response.status, `${request.method} ${request.path}`).not.toBe(401)
        expect(response.status).toBeLessThan(500)
      }
    })
  )

  it.scopedLive("the typed client sends its token option and sees Unauthorized without it", () =>
    Effect.gen(function* () {
      const server = yield* startLiveServer({ token: testToken })
      const baseUrl = `http://127.0.0.1:${server.port}`
      const withToken = yield* makeJobsClient(baseUrl, { token: testToken })
      const job = yield* withToken.jobs.submit({ payload: new SubmitJobPayload({ type: "bootstrap" }) })
      expect(job.type).toBe("bootstrap")
      expect((yield* withToken.system.config()).maxConcurrent).toBeGreaterThan(0)

      const withoutToken = yield* makeJobsClient(baseUrl).pipe(Effect.provide(FetchHttpClient.layer))
      const refused = yield* Effect.either(withoutToken.jobs.get({ path: { id: job.id } }))
      expect(Either.isLeft(refused) && refused.left._tag).toBe("Unauthorized")
      expect((yield* withoutToken.system.health()).status).toBe("ok")
    }).pipe(Effect.provide(FetchHttpClient.layer))
  )

  it.scopedLive(
    "the API's own Authorization middleware refuses too where the app is served without `secured`",
    () =>
      Effect.gen(function* () {
        const gates = yield* makeGates
        const context = yield* Layer.build(
          HttpApiBuilder.serve().pipe(
            Layer.provide(ApiLive),
            Layer.provide(AuthorizationLive),
            Layer.provide(ApiAccess.layer(Option.some(Redacted.make(testToken)))),
            Layer.provide(queueLayer(gates)),
            Layer.provideMerge(NodeHttpServer.layerTest)
          )
        ).pipe(Effect.orDie)
        const http = Context.get(context, HttpClient.HttpClient)
        const refused = yield* Effect.orDie(http.execute(HttpClientRequest.get("/jobs")))
        expect(refused.status).toBe(401)
        expect(yield* Effect.orDie(refused.json)).toMatchObject({ _tag: "Unauthorized" })
        const served = yield* Effect.orDie(
          http.execute(HttpClientRequest.get("/jobs").pipe(HttpClientRequest.bearerToken(testToken)))
        )
        expect(served.status).toBe(200)
        expect((yield* Effect.orDie(http.execute(HttpClientRequest.get("/health")))).status).toBe(200)
      })
  )

  it.scopedLive("OpenAPI documents the bearer scheme on every protected operation, not on /health", () =>
    Effect.gen(function* () {
      const server = yield* startLiveServer({ token: testToken })
      const response = yield* sendEffect(server.port, { method: "GET", path: "/openapi.json" })
      const spec = JSON.parse(response.text) as {
        components: { securitySchemes: Record<string, { type: string; scheme: string }> }
        paths: Record<
          string,
          Record<string, { security: Array<Record<string, unknown>>; responses: Record<string, unknown> }>
        >
      }
      expect(spec.components.securitySchemes.bearer).toMatchObject({ type: "http", scheme: "bearer" })
      for (const [path, operations] of Object.entries(spec.paths)) {
        for (const [method, operation] of Object.entries(operations)) {
          if (path === "/health") {
            expect(operation.security, `${method} ${path}`).toEqual([])
          } else {
            expect(operation.security, `${method} ${path}`).toEqual([{ bearer: [] }])
            expect(operation.responses["401"], `${method} ${path}`).toBeDefined()
          }
        }
      }
    })
  )
})
