// Random requests against a live server with an API token: methods, paths, query strings, headers and bodies,
// with and without the token. Whatever arrives, the server answers (never 5xx), refuses without the token, leaves
// the store untouched when it refuses, and keeps answering afterwards.
import { describe, expect, it } from "@effect/vitest"
import { Effect, FastCheck as fc, Queue } from "effect"
import type { Job } from "../../src/domain/Job.js"
import { maxBodyBytes } from "../../src/http/errors.js"
import { isPublicPath } from "../../src/http/security.js"
import type { JobStoreService } from "../../src/JobStore.js"
import { gatedType } from "../http/support.js"
import { bearer, type RawRequest, send, startLiveServer, testToken } from "./support.js"

/** How many random requests one run sends (`FUZZ_RUNS` overrides it). */
const runs = Number(process.env.FUZZ_RUNS ?? 5000)

/** Every job in the store, newest first: the same objects as long as nothing changed (records are immutable). */
const snapshot = (store: JobStoreService): Effect.Effect<ReadonlyArray<Job>> =>
  Effect.gen(function* () {
    const all: Array<Job> = []
    let cursor: string | undefined
    do {
      const page = yield* Effect.orDie(store.list({ limit: 500, cursor }))
      all.push(...page.items)
      cursor = page.nextCursor ?? undefined
    } while (cursor !== undefined)
    return all
  })

const unchanged = (before: ReadonlyArray<Job>, after: ReadonlyArray<Job>): boolean =>
  before.length === after.length && before.every((job, i) => job === after[i])

// ---------------------------------------------------------------------------------------------------------------
// What a request is made of. Ids are indices into a pool of known job ids, resolved when the request is sent.
// ---------------------------------------------------------------------------------------------------------------

type Id =
  | { readonly _tag: "known"; readonly index: number }
  | { readonly _tag: "literal"; readonly value: string }

const printable = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)) })

const idArb: fc.Arbitrary<Id> = fc.oneof(
  { weight: 4, arbitrary: fc.nat().map((index): Id => ({ _tag: "known", index })) },
  { weight: 2, arbitrary: fc.uuid().map((value): Id => ({ _tag: "literal", value })) },
  { weight: 1, arbitrary: fc.webSegment().map((value): Id => ({ _tag: "literal", value })) },
  {
    weight: 1,
    arbitrary: fc
      .string({ maxLength: 12 })
      .map((value): Id => ({ _tag: "literal", value: encodeURIComponent(value) }))
  }
)

type PathPart = string | Id

const pathArb: fc.Arbitrary<ReadonlyArray<PathPart>> = fc.oneof(
  { weight: 3, arbitrary: fc.constant(["/jobs"]) },
  { weight: 1, arbitrary: fc.constant(["/jobs/batch"]) },
  { weight: 3, arbitrary: idArb.map((id) => ["/jobs/", id]) },
  { weight: 1, arbitrary: idArb.map((id) => ["/jobs/", id, "/events"]) },
  {
    weight: 2,
    arbitrary: fc
      .constantFrom(
        "/events",
        "/health",
        "/config",
        "/metrics",
        "/openapi.json",
        "/docs",
        "/",
        "/assets/app.js",
        "/assets/../config",
        "/jobs/",
        "//jobs",
        "/JOBS",
        "/health/",
        "/docs/../jobs"
      )
      .map((path) => [path])
  },
  { weight: 1, arbitrary: fc.webPath().map((path) => [path.startsWith("/") ? path : `/${path}`]) },
  { weight: 1, arbitrary: fc.webSegment().map((segment) => [`/assets/${segment}`]) },
  { weight: 1, arbitrary: fc.integer({ min: 8000, max: 9000 }).map((n) => [`/jobs/${"a".repeat(n)}`]) }
)

const queryArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.constant("") },
  { weight: 2, arbitrary: fc.webQueryParameters().map((query) => (query === "" ? "" : `?${query}`)) },
  {
    weight: 3,
    arbitrary: fc
      .array(
        fc.tuple(
          fc.constantFrom("status", "type", "limit", "cursor", "x"),
          fc.oneof(
            fc.constantFrom(
              "pending",
              "running",
              "completed",
              "bootstrap",
              "gated",
              "0",
              "1",
              "500",
              "501",
              "-1"
            ),
            fc.string({ maxLength: 20 })
          )
        ),
        { maxLength: 4 }
      )
      .map((pairs) =>
        pairs.length === 0
          ? ""
          : `?${pairs.map(([key, value]) => `${key}=${encodeURIComponent(value)}`).join("&")}`
      )
  }
)

type Auth = "none" | "valid" | "valid-lowercase" | "wrong-same-length" | "wrong" | "basic" | "prefix"

const authHeaders = (auth: Auth, wrong: string): Record<string, string> => {
  switch (auth) {
    case "none":
      return {}
    case "valid":
      return bearer(testToken)
    case "valid-lowercase":
      return { authorization: `bearer ${testToken}` }
    case "wrong-same-length":
      return bearer(`${testToken.slice(0, -1)}${testToken.endsWith("x") ? "y" : "x"}`)
    case "wrong":
      return bearer(wrong)
    case "basic":
      return { authorization: `Basic ${Buffer.from(`admin:${testToken}`).toString("base64")}` }
    case "prefix":
      return bearer(`${testToken}0`)
  }
}

const submitArb = fc.record(
  {
    type: fc.oneof(
      fc.constantFrom("bootstrap", "extraction", "transcription", gatedType, "nope", ""),
      fc.string({ maxLength: 120 })
    ),
    metadata: fc.oneof(
      fc.constant({}),
      fc.record({ source: fc.string({ maxLength: 20 }) }),
      fc.record({ notes: fc.constant("n".repeat(3000)) }),
      fc.jsonValue({ maxDepth: 3 })
    ),
    priority: fc.oneof(fc.integer(), fc.double(), fc.string({ maxLength: 5 })),
    delayMs: fc.oneof(fc.nat({ max: 10_000_000 }), fc.integer({ min: -5, max: 5 })),
    maxAttempts: fc.integer({ min: -1, max: 200 }),
    timeoutMs: fc.integer({ min: -1, max: 100_000 }),
    idempotencyKey: fc.constantFrom("k1", "k2", "", "k".repeat(300)),
    runAt: fc.oneof(fc.constant("2020-01-01T00:00:00Z"), fc.string({ maxLength: 25 }))
  },
  { requiredKeys: ["type"] }
)

// Weights out of 161: the body over 1 MiB is rare (it is the slowest to send).
const bodyArb: fc.Arbitrary<string | undefined> = fc.oneof(
  { weight: 40, arbitrary: fc.constant(undefined) },
  { weight: 50, arbitrary: submitArb.map((body) => JSON.stringify(body)) },
  {
    weight: 20,
    arbitrary: fc.array(submitArb, { minLength: 0, maxLength: 4 }).map((jobs) => JSON.stringify({ jobs }))
  },
  { weight: 20, arbitrary: fc.json({ maxDepth: 4 }) },
  { weight: 15, arbitrary: fc.string({ maxLength: 200 }) },
  {
    weight: 15,
    arbitrary: fc.integer({ min: 60, max: 200 }).map((depth) => "[".repeat(depth) + "]".repeat(depth))
  },
  {
    weight: 1,
    arbitrary: fc.constant("<over 1 MiB>")
  }
)

const contentTypeArb = fc.oneof(
  { weight: 2, arbitrary: fc.constant(undefined) },
  { weight: 6, arbitrary: fc.constant("application/json") },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      "application/json; charset=utf-8",
      "text/plain",
      "application/x-www-form-urlencoded",
      "multipart/form-data; boundary=xyz",
      "application/problem+json"
    )
  },
  { weight: 1, arbitrary: printable.filter((value) => value.trim() === value && value.length < 60) }
)

const extraHeadersArb = fc.oneof(
  { weight: 6, arbitrary: fc.constant<Array<[string, string]>>([]) },
  {
    weight: 3,
    arbitrary: fc.array(
      fc.tuple(
        fc.stringMatching(/^x-[a-z0-9-]{1,16}$/),
        printable.filter((value) => value.trim() === value && value.length < 200)
      ),
      { maxLength: 4 }
    )
  },
  // Expanded to 20 kB when sent (a value that size would flood a failure report).
  { weight: 1, arbitrary: fc.constant<Array<[string, string]>>([["x-huge", "<20 kB>"]]) },
  { weight: 1, arbitrary: fc.constant<Array<[string, string]>>([["transfer-encoding", "chunked"]]) }
)

const methodArb = fc.oneof(
  { weight: 12, arbitrary: fc.constantFrom("GET", "POST", "DELETE") },
  { weight: 3, arbitrary: fc.constantFrom("PUT", "PATCH", "HEAD", "OPTIONS") },
  { weight: 1, arbitrary: fc.constantFrom("PROPFIND", "BREW", "TRACE") }
)

const randomPlanArb = fc.record({
  method: methodArb,
  path: pathArb,
  query: queryArb,
  auth: fc.constantFrom<Auth>(
    "valid",
    "valid",
    "valid",
    "valid-lowercase",
    "none",
    "none",
    "wrong-same-length",
    "wrong",
    "basic",
    "prefix"
  ),
  wrongToken: printable.filter((value) => value.trim() === value && value.length > 0 && value.length < 80),
  contentType: contentTypeArb,
  headers: extraHeadersArb,
  body: bodyArb
})

// Requests a client that knows the API would send, so that a fair share of the run is accepted (and changes the
// store), between the random ones.
const wellFormedArb: fc.Arbitrary<typeof randomPlanArb extends fc.Arbitrary<infer A> ? A : never> = fc
  .tuple(
    fc.constantFrom<Auth>("valid", "valid-lowercase"),
    fc.oneof(
      fc.constant({ method: "GET", path: ["/jobs"] as ReadonlyArray<PathPart>, body: undefined }),
      fc.constant({ method: "GET", path: ["/config"] as ReadonlyArray<PathPart>, body: undefined }),
      fc.constant({ method: "GET", path: ["/metrics"] as ReadonlyArray<PathPart>, body: undefined }),
      fc.constant({ method: "GET", path: ["/events"] as ReadonlyArray<PathPart>, body: undefined }),
      fc.nat().map((index) => ({
        method: "GET",
        path: ["/jobs/", { _tag: "known", index }] as ReadonlyArray<PathPart>,
        body: undefined
      })),
      fc.nat().map((index) => ({
        method: "DELETE",
        path: ["/jobs/", { _tag: "known", index }] as ReadonlyArray<PathPart>,
        body: undefined
      })),
      fc
        .record({
          type: fc.constantFrom("bootstrap", "extraction"),
          metadata: fc.record({ source: fc.string({ maxLength: 30 }) }),
          priority: fc.integer({ min: -10, max: 10 })
        })
        .map((body) => ({
          method: "POST",
          path: ["/jobs"] as ReadonlyArray<PathPart>,
          body: JSON.stringify(body)
        })),
      fc
        .array(fc.record({ type: fc.constantFrom("bootstrap", "extraction") }), {
          minLength: 1,
          maxLength: 3
        })
        .map((jobs) => ({
          method: "POST",
          path: ["/jobs/batch"] as ReadonlyArray<PathPart>,
          body: JSON.stringify({ jobs })
        }))
    ),
    queryArb
  )
  .map(([auth, request, query]) => ({
    ...request,
    query: request.method === "GET" && request.path[0] === "/jobs" && request.path.length === 1 ? query : "",
    auth,
    wrongToken: "x",
    contentType: request.body === undefined ? undefined : "application/json",
    headers: []
  }))

const planArb = fc.oneof({ weight: 7, arbitrary: randomPlanArb }, { weight: 3, arbitrary: wellFormedArb })

type Plan = typeof planArb extends fc.Arbitrary<infer A> ? A : never

const validAuth = (auth: Auth) => auth === "valid" || auth === "valid-lowercase"

const toRequest = (plan: Plan, pool: ReadonlyArray<string>): RawRequest => {
  const path = plan.path
    .map((part) =>
      typeof part === "string" ? part : part._tag === "literal" ? part.value : pool[part.index % pool.length]!
    )
    .join("")
  const headers: Record<string, string> = { ...authHeaders(plan.auth, plan.wrongToken) }
  if (plan.contentType !== undefined) headers["content-type"] = plan.contentType
  for (const [name, value] of plan.headers) headers[name] = value === "<20 kB>" ? "h".repeat(20_000) : value
  const body =
    plan.body === "<over 1 MiB>"
      ? JSON.stringify({ type: "extraction", metadata: { notes: "x".repeat(1_100_000) } })
      : plan.body
  return { method: plan.method, path: `${path}${plan.query}`, headers, body }
}

describe("fuzzing the live server", () => {
  it.scopedLive(
    `${runs} random requests: no 5xx, 401 without the token, refused ones change nothing, the server answers on`,
    () =>
      Effect.gen(function* () {
        const server = yield* startLiveServer({
          token: testToken,
          limits: { requestTimeoutMs: 2000 },
          queue: { maxConcurrent: 1, maxMetadataBytes: 2048 }
        })
        // One worker, held by a gated job for the whole run: every other job stays pending, so the store changes
        // only when a request changes it. The held job's id is kept out of the pool: cancelling it would free it.
        const held = yield* server.queue.submit(gatedType, {})
        expect(yield* Queue.take(server.gates.started)).toBe(held.id)
        const pool: Array<string> = []
        for (let i = 0; i < 3; i++) pool.push((yield* server.queue.submit("bootstrap")).id)

        const stats = {
          requests: 0,
          refused: 0,
          accepted: 0,
          byStatus: new Map<number, number>(),
          sendMs: 0,
          snapshotMs: 0
        }
        const property = fc.asyncProperty(planArb, async (plan) => {
          const request = toRequest(plan, pool)
          const t0 = performance.now()
          const before = await Effect.runPromise(snapshot(server.store))
          const t1 = performance.now()
          const chunkedTooLarge =
            plan.headers.some(([name]) => name === "transfer-encoding") &&
            Buffer.byteLength(request.body ?? "") > maxBodyBytes
          const response = await send(server.port, request).catch((error: unknown) => {
            // A chunked body is read until it passes the limit; then the server stops reading and drops the
            // connection, which a client still sending sees as a reset. Anything else must get an answer.
            if (!chunkedTooLarge) throw error
            return undefined
          })
          const t2 = performance.now()
          const after = await Effect.runPromise(snapshot(server.store))
          stats.snapshotMs += t1 - t0 + (performance.now() - t2)
          stats.sendMs += t2 - t1
          stats.requests++
          if (response === undefined) {
            stats.refused++
            expect(unchanged(before, after), `the store changed: ${request.method} ${request.path}`).toBe(
              true
            )
            return
          }
          stats.byStatus.set(response.status, (stats.byStatus.get(response.status) ?? 0) + 1)
          const where = `${request.method} ${request.path.slice(0, 200)} -> ${response.status} ${response.text.slice(0, 300)}`

          expect(response.status, where).toBeGreaterThanOrEqual(200)
          expect(response.status, where).toBeLessThan(500)
          expect(response.headers["x-content-type-options"], where).toBe("nosniff")
          if (response.status >= 400) {
            stats.refused++
            expect(unchanged(before, after), `the store changed: ${where}`).toBe(true)
            // Node's parser-level refusals (400, 431) carry the JSON body only when the bytes it failed on show the
            // request line; split across reads, they may not.
            const bodiless =
              request.method === "HEAD" ||
              ((response.status === 400 || response.status === 431) &&
                response.headers["content-length"] === "0")
            if (!bodiless) {
              expect(response.headers["content-type"], where).toMatch(/^application\/json/)
              const body = JSON.parse(response.text) as { _tag?: unknown; message?: unknown }
              expect(typeof body._tag, where).toBe("string")
              expect(typeof body.message, where).toBe("string")
              expect(response.text, where).not.toContain(testToken)
            }
          } else {
            stats.accepted++
          }
          const path = request.path.split("?")[0]!
          if (!validAuth(plan.auth) && !isPublicPath(path)) {
            // Refused for the token, or before it is looked at: an unparseable request (400), a URL (414) or
            // headers (431) over the limit.
            expect([400, 401, 414, 431], where).toContain(response.status)
            if (response.status === 400)
              expect(["PROPFIND", "BREW", "TRACE"], where).toContain(request.method)
          }
          if (response.status === 201 && request.path.startsWith("/jobs") && response.text.startsWith("{")) {
            const created = JSON.parse(response.text) as { id?: string; jobs?: Array<{ id: string }> }
            if (created.id !== undefined) pool.push(created.id)
            for (const job of created.jobs ?? []) pool.push(job.id)
          }
        })
        const started = Date.now()
        yield* Effect.promise(() =>
          fc.assert(property, {
            numRuns: runs,
            ...(process.env.FUZZ_SEED === undefined ? {} : { seed: Number(process.env.FUZZ_SEED) })
          })
        )
        const seconds = (Date.now() - started) / 1000

        // The server still answers, the held job still runs, and nothing was logged as an error.
        const health = yield* Effect.promise(() => send(server.port, { method: "GET", path: "/health" }))
        expect(health.status).toBe(200)
        const list = yield* Effect.promise(() =>
          send(server.port, { method: "GET", path: "/jobs?limit=5", headers: bearer(testToken) })
        )
        expect(list.status).toBe(200)
        expect((yield* server.queue.get(held.id)).status).toBe("running")
        expect(server.logs.filter((line) => line.level === "ERROR" || line.level === "FATAL")).toEqual([])
        expect(stats.requests).toBeGreaterThanOrEqual(runs)
        expect(stats.accepted).toBeGreaterThan(runs / 10)
        expect(stats.refused).toBeGreaterThan(runs / 10)
        console.log(
          `fuzz: ${stats.requests} requests in ${seconds.toFixed(1)} s (sending ${(stats.sendMs / 1000).toFixed(1)} s, ` +
            `snapshots ${(stats.snapshotMs / 1000).toFixed(1)} s), ${stats.accepted} accepted, ` +
            `${stats.refused} refused; by status ${JSON.stringify(Object.fromEntries([...stats.byStatus].sort()))}`
        )
      }),
    { timeout: 120_000 }
  )
})
