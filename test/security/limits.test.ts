import { connect } from "node:net"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Either, Fiber, Queue } from "effect"
import { InvalidJobInput } from "../../src/domain/errors.js"
import { maxBodyBytes } from "../../src/http/errors.js"
import {
  contentSecurityPolicy,
  docsContentSecurityPolicy,
  maxHeaderBytes,
  maxUrlLength
} from "../../src/http/security.js"
import { gatedType } from "../http/support.js"
import { bearer, type RawResponse, sendEffect, startLiveServer, testToken } from "./support.js"

const json = { "content-type": "application/json" }

const errorOf = (response: RawResponse) => {
  expect(response.headers["content-type"], response.text).toMatch(/^application\/json/)
  return JSON.parse(response.text) as { _tag: string; message: string; field?: string; index?: number }
}

/** Sends raw bytes on a fresh connection and collects everything until the server closes it (or `done` holds). */
const rawExchange = (
  port: number,
  chunks: ReadonlyArray<{ readonly data: string; readonly afterMs: number }>,
  done: (text: string) => boolean = () => false
): Promise<{ readonly text: string; readonly closedAfterMs: number }> =>
  new Promise((resolve, reject) => {
    const started = Date.now()
    const socket = connect(port, "127.0.0.1")
    let text = ""
    socket.setEncoding("utf8")
    socket.on("data", (data: string) => {
      text += data
      if (done(text)) socket.destroy()
    })
    socket.on("error", () => {})
    socket.on("close", () => resolve({ text, closedAfterMs: Date.now() - started }))
    socket.on("connect", () => {
      for (const { data, afterMs } of chunks) {
        setTimeout(() => {
          if (!socket.destroyed) socket.write(data)
        }, afterMs)
      }
    })
    setTimeout(() => {
      socket.destroy()
      reject(new Error(`the server kept the connection open: ${text}`))
    }, 20_000)
  })

describe("request limits", () => {
  it.scopedLive("a URL over the limit is answered 414 JSON, one at the limit is served", () =>
    Effect.gen(function* () {
      const server = yield* startLiveServer({ token: testToken })
      const long = `/jobs?type=${"a".repeat(maxUrlLength)}`
      const refused = yield* sendEffect(server.port, {
        method: "GET",
        path: long,
        headers: bearer(testToken)
      })
      expect(refused.status).toBe(414)
      expect(errorOf(refused)._tag).toBe("UriTooLong")
      // Refused before the token is looked at: a client learns nothing more than the length rule.
      expect((yield* sendEffect(server.port, { method: "GET", path: long })).status).toBe(414)
      const fits = `/health?pad=${"a".repeat(maxUrlLength - "/health?pad=".length)}`
      const served = yield* sendEffect(server.port, { method: "GET", path: fits })
      expect(served.status).toBe(200)
    })
  )

  it.scopedLive("headers over the limit are answered 431 JSON by the server itself (no body to HEAD)", () =>
    Effect.gen(function* () {
      const server = yield* startLiveServer()
      const padding = "p".repeat(maxHeaderBytes)
      const get = yield* Effect.promise(() =>
        rawExchange(server.port, [
          { data: `GET /health HTTP/1.1\r\nHost: x\r\nX-Padding: ${padding}\r\n\r\n`, afterMs: 0 }
        ])
      )
      expect(get.text).toMatch(/^HTTP\/1\.1 431 /)
      expect(get.text).toContain("Content-Type: application/json")
      expect(get.text).toContain('"_tag":"RequestHeaderFieldsTooLarge"')
      const head = yield* Effect.promise(() =>
        rawExchange(server.port, [
          { data: `HEAD /health HTTP/1.1\r\nHost: x\r\nX-Padding: ${padding}\r\n\r\n`, afterMs: 0 }
        ])
      )
      expect(head.text).toMatch(/^HTTP\/1\.1 431 /)
      expect(head.text).toMatch(/Content-Length: 0\r\n[\s\S]*\r\n\r\n$/)
      // Node's own client reads both without a protocol error.
      const viaClient = yield* sendEffect(server.port, {
        method: "HEAD",
        path: "/health",
        headers: { "x-padding": padding }
      })
      expect(viaClient.status).toBe(431)
      expect((yield* sendEffect(server.port, { method: "GET", path: "/health" })).status).toBe(200)
    })
  )

  it.scopedLive("a request that is not HTTP is answered 400 JSON", () =>
    Effect.gen(function* () {
      const server = yield* startLiveServer()
      const { text } = yield* Effect.promise(() =>
        rawExchange(server.port, [{ data: "HELLO WORLD\r\n\r\n", afterMs: 0 }])
      )
      expect(text).toMatch(/^HTTP\/1\.1 400 /)
      expect(text).toContain('"_tag":"BadRequest"')
    })
  )

  it.scopedLive(
    "metadata over APP_JOB_MAX_METADATA_BYTES is InvalidJobInput naming metadata (HTTP and library)",
    () =>
      Effect.gen(function* () {
        const server = yield* startLiveServer({ queue: { maxMetadataBytes: 1024 } })
        // `extraction` takes optional fields and ignores the others: only the size refuses this.
        const big = { note: "x".repeat(1100) }
        const response = yield* sendEffect(server.port, {
          method: "POST",
          path: "/jobs",
          headers: json,
          body: JSON.stringify({ type: "extraction", metadata: big })
        })
        expect(response.status).toBe(400)
        const body = errorOf(response)
        expect(body).toMatchObject({ _tag: "InvalidJobInput", field: "metadata" })
        expect(body.message).toContain("1024 bytes")

        // Multi-byte characters count as bytes: 400 "é" are 802 bytes of JSON with the braces, 500 are 1002+.
        const accented = yield* Effect.either(server.queue.submit("extraction", { note: "é".repeat(520) }))
        expect(Either.isLeft(accented) && accented.left).toBeInstanceOf(InvalidJobInput)
        const fits = yield* server.queue.submit("extraction", { note: "é".repeat(400) })
        expect(fits.status).toBe("pending")

        const batch = yield* sendEffect(server.port, {
          method: "POST",
          path: "/jobs/batch",
          headers: json,
          body: JSON.stringify({ jobs: [{ type: "extraction" }, { type: "extraction", metadata: big }] })
        })
        expect(batch.status).toBe(400)
        expect(errorOf(batch)).toMatchObject({ _tag: "InvalidJobInput", field: "jobs[1].metadata", index: 1 })

        const page = yield* server.queue.list({ limit: 500 })
        expect(page.items.map((job) => job.id)).toEqual([fits.id])
      })
  )

  it.scopedLive(
    "metadata holding U+0000 (which PostgreSQL cannot store) is InvalidJobInput on every store",
    () =>
      Effect.gen(function* () {
        const server = yield* startLiveServer()
        const response = yield* sendEffect(server.port, {
          method: "POST",
          path: "/jobs",
          headers: json,
          body: '{"type":"extraction","metadata":{"note":"a\\u0000b"}}'
        })
        expect(response.status).toBe(400)
        expect(errorOf(response)).toMatchObject({ _tag: "InvalidJobInput", field: "metadata" })
        expect(errorOf(response).message).toContain("U+0000")
        // A literal backslash before "u0000" is no NUL.
        const literal = yield* server.queue.submit("extraction", { note: "a\\u0000b" })
        expect(literal.status).toBe("pending")
        expect((yield* server.queue.list({ limit: 500 })).items.map((job) => job.id)).toEqual([literal.id])
      })
  )

  it.scopedLive("the body (1 MiB) and the page size (500) keep their limits", () =>
    Effect.gen(function* () {
      const server = yield* startLiveServer()
      const large = yield* sendEffect(server.port, {
        method: "POST",
        path: "/jobs",
        headers: json,
        body: JSON.stringify({ type: "extraction", metadata: { note: "x".repeat(maxBodyBytes) } })
      })
      expect(large.status).toBe(413)
      expect(errorOf(large)._tag).toBe("PayloadTooLarge")
      const page = yield* sendEffect(server.port, { method: "GET", path: "/jobs?limit=501" })
      expect(page.status).toBe(400)
      expect((yield* sendEffect(server.port, { method: "GET", path: "/jobs?limit=500" })).status).toBe(200)
    })
  )
})

describe("request timeout", () => {
  it.scopedLive("a client that sends its request too slowly gets 408 JSON and is disconnected", () =>
    Effect.gen(function* () {
      const server = yield* startLiveServer({ limits: { requestTimeoutMs: 400 } })
      // Headers that never end: one header line every 150 ms.
      const dribble = Array.from({ length: 40 }, (_, i) => ({
        data: `x-slow-${i}: 1\r\n`,
        afterMs: 150 * (i + 1)
      }))
      const slowHeaders = yield* Effect.promise(() =>
        rawExchange(server.port, [{ data: "GET /health HTTP/1.1\r\nHost: x\r\n", afterMs: 0 }, ...dribble])
      )
      expect(slowHeaders.text).toMatch(/^HTTP\/1\.1 408 /)
      expect(slowHeaders.text).toContain('"_tag":"RequestTimeout"')
      expect(slowHeaders.closedAfterMs).toBeLessThan(3000)

      // A body that never ends.
      const slowBody = yield* Effect.promise(() =>
        rawExchange(server.port, [
          {
            data: "POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
            afterMs: 0
          },
          ...Array.from({ length: 40 }, (_, i) => ({ data: " ", afterMs: 150 * (i + 1) }))
        ])
      )
      expect(slowBody.closedAfterMs).toBeLessThan(3000)
      expect(slowBody.text).toMatch(/^HTTP\/1\.1 408 /)
      expect((yield* server.queue.list({ limit: 10 })).items).toEqual([])

      // A connection that sends nothing at all.
      const idle = yield* Effect.promise(() => rawExchange(server.port, []))
      expect(idle.text).toMatch(/^HTTP\/1\.1 408 /)
      expect(idle.closedAfterMs).toBeLessThan(3000)
    })
  )

  it.scopedLive("an event stream outlives the request timeout: it covers receiving the request only", () =>
    Effect.gen(function* () {
      const server = yield* startLiveServer({ limits: { requestTimeoutMs: 300 } })
      const job = yield* server.queue.submit(gatedType, {})
      expect(yield* Queue.take(server.gates.started)).toBe(job.id)
      const exchange = Effect.promise(() =>
        rawExchange(
          server.port,
          [{ data: `GET /jobs/${job.id}/events HTTP/1.1\r\nHost: x\r\n\r\n`, afterMs: 0 }],
          // The end of the chunked body: the stream ended (the server keeps the connection alive afterwards).
          (text) => text.endsWith("\r\n0\r\n\r\n")
        )
      )
      const fiber = yield* Effect.fork(exchange)
      // Well past the timeout (checked every 75 ms here), the job finishes: its events still reach the stream.
      yield* Effect.sleep("1500 millis")
      yield* Deferred.succeed(server.gates.release, undefined)
      const { text, closedAfterMs } = yield* Fiber.join(fiber)
      expect(text).toMatch(/^HTTP\/1\.1 200 /)
      expect(text).toContain(": connected")
      expect(text).toContain("event: completed")
      expect(text).not.toContain("RequestTimeout")
      expect(closedAfterMs).toBeGreaterThan(1400)
    })
  )
})

describe("security headers", () => {
  it.scopedLive(
    "every response says nosniff; the dashboard and assets get the strict CSP, /docs its own",
    () =>
      Effect.gen(function* () {
        const server = yield* startLiveServer({ token: testToken })
        const paths = [
          "/health",
          "/",
          "/assets/app.js",
          "/assets/missing.css",
          "/jobs",
          "/nope",
          "/openapi.json"
        ]
        for (const path of paths) {
          const response = yield* sendEffect(server.port, { method: "GET", path })
          expect(response.headers["x-content-type-options"], path).toBe("nosniff")
          const csp = String(response.headers["content-security-policy"])
          expect(csp, path).toContain("frame-ancestors 'none'")
          expect(csp, path).toContain("default-src 'self'")
          expect(csp, path).not.toContain("unsafe-inline")
          expect(csp, path).not.toContain("unsafe-eval")
        }
        const asset = yield* sendEffect(server.port, { method: "GET", path: "/assets/missing.js" })
        expect(asset.headers["content-security-policy"]).toBe(contentSecurityPolicy)
        const docs = yield* sendEffect(server.port, { method: "GET", path: "/docs" })
        expect(docs.status).toBe(200)
        expect(docs.headers["content-security-policy"]).toBe(docsContentSecurityPolicy)
        expect(docs.headers["x-content-type-options"]).toBe("nosniff")
        expect(contentSecurityPolicy).toContain("script-src 'self';")
        expect(contentSecurityPolicy).toContain("img-src 'self' data:;")
        expect(contentSecurityPolicy).toContain("base-uri 'none';")
        expect(contentSecurityPolicy).toContain("form-action 'self'")
        expect(contentSecurityPolicy).toContain("connect-src 'self';")
        expect(contentSecurityPolicy).toContain("style-src 'self';")
      })
  )
})
