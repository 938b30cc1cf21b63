// The shortcut through `GET /jobs/{id}` and `POST /jobs` (`jobsShortcut`, taken when no tracer is set) answers
// exactly as the API's router does (taken when a tracer is set): the same requests to both servers get the same
// status, content type and body, ids and times aside.
import { HttpClient, HttpClientRequest } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Layer, Tracer } from "effect"
import { HttpAppLive } from "../../src/http/server.js"
import { makeGates, queueLayer } from "./support.js"

interface Answer {
  readonly status: number
  readonly contentType: string | undefined
  readonly retryAfter: string | undefined
  readonly body: string
}

const uuid = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi
const isoTime = /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/g

// Starts the HTTP app on a test server, with `tracer` set when given; answers the server's HTTP client and the names
// of the spans the tracer saw.
const startServer = (tracer: boolean) =>
  Effect.gen(function* () {
    const spans: Array<string> = []
    const native = yield* Effect.tracer
    const recording = Tracer.make({
      span: (name, parent, context, links, startTime, kind, options) => {
        spans.push(name)
        return native.span(name, parent, context, links, startTime, kind, options)
      },
      context: native.context
    })
    const gates = yield* makeGates
    const layer = HttpAppLive.pipe(
      Layer.provideMerge(queueLayer(gates, { maxPending: 5 })),
      Layer.provideMerge(NodeHttpServer.layerTest)
    )
    const context = yield* Layer.build(
      tracer ? Layer.provide(layer, Layer.setTracer(recording)) : layer
    ).pipe(Effect.orDie)
    return { http: Context.get(context, HttpClient.HttpClient), spans }
  })

// The same conversation with a server: each step's request may use the ids the server answered before.
const converse = (http: HttpClient.HttpClient) =>
  Effect.gen(function* () {
    const answers: Array<Answer> = []
    const send = (request: HttpClientRequest.HttpClientRequest) =>
      Effect.gen(function* () {
        const response = yield* Effect.orDie(http.execute(request))
        const text = yield* Effect.orDie(response.text)
        answers.push({
          status: response.status,
          contentType: response.headers["content-type"],
          retryAfter: response.headers["retry-after"],
          body: text.replace(uuid, "<uuid>").replace(isoTime, "<time>")
        })
        return text
      })
    const post = (body: string) =>
      send(HttpClientRequest.post("/jobs").pipe(HttpClientRequest.bodyText(body, "application/json")))
    // Every job is delayed for an hour, so that none starts: the number pending, hence the 503s, is the same for both.
    const later = 3_600_000
    const created = yield* post(JSON.stringify({ type: "bootstrap", metadata: {}, delayMs: later }))
    const id = (JSON.parse(created) as { id: string }).id
    yield* send(HttpClientRequest.get(`/jobs/${id}`))
    yield* send(HttpClientRequest.get(`/jobs/${id}?unused=1`))
    yield* send(HttpClientRequest.get(`/jobs/${id.toUpperCase()}`))
    yield* send(HttpClientRequest.get("/jobs/00000000-0000-4000-8000-000000000000"))
    yield* send(HttpClientRequest.get("/jobs/not-a-uuid"))
    yield* send(HttpClientRequest.get(`/jobs/${id}/`))
    yield* post(JSON.stringify({ type: "no-such-type", metadata: {} }))
    yield* post(JSON.stringify({ type: "bootstrap", metadata: 1 }))
    yield* post(JSON.stringify({ type: "bootstrap", priority: "high" }))
    yield* post(JSON.stringify([1, 2]))
    yield* post("null")
    yield* post('{"type": "bootstrap"')
    yield* post("")
    yield* post(JSON.stringify({ type: "bootstrap", idempotencyKey: "once", delayMs: later }))
    yield* post(JSON.stringify({ type: "bootstrap", idempotencyKey: "once", delayMs: later }))
    yield* post(JSON.stringify({ type: "bootstrap", metadata: { n: 1 }, priority: 5, delayMs: later }))
    // Three jobs are pending; the queue holds at most 5: two more are accepted, the third is refused (503).
    for (let i = 0; i < 3; i++) yield* post(JSON.stringify({ type: "bootstrap", delayMs: later }))
    return answers
  })

describe("the shortcut through GET /jobs/{id} and POST /jobs", () => {
  it.scoped("answers as the router does", () =>
    Effect.gen(function* () {
      const plain = yield* startServer(false)
      const traced = yield* startServer(true)
      const viaShortcut = yield* converse(plain.http)
      const viaRouter = yield* converse(traced.http)
      // The traced server did go through the router: the platform made a span per request.
      expect(traced.spans.filter((name) => name.startsWith("http.server")).length).toBe(viaRouter.length)
      expect(viaShortcut).toEqual(viaRouter)
      expect(viaShortcut.map((answer) => answer.status).slice(-6)).toEqual([201, 200, 201, 201, 201, 503])
    })
  )
})
