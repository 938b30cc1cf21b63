// Each server and the load generator import their own library when used: a child loads only what it runs (with
// all three at the top, each W5 child spent about a second loading the other two on a loaded machine).
import { randomUUID } from "node:crypto"
import { createServer, type ServerResponse } from "node:http"
import type { ChildResult } from "../lib/protocol.js"

/** A job as the peer servers store and answer it: the same fields as ours, dates as ISO strings. */
export type PeerJob = Readonly<Record<string, unknown>>

const jobTypes = new Set(["transcription", "bootstrap", "extraction"])

/** Checks a `POST /jobs` body and builds the pending job it asks for; undefined when the body is not acceptable. */
export const newPeerJob = (body: unknown): PeerJob | undefined => {
  if (typeof body !== "object" || body === null || Array.isArray(body)) return undefined
  const { type, metadata } = body as { type?: unknown; metadata?: unknown }
  if (typeof type !== "string" || !jobTypes.has(type)) return undefined
  if (
    metadata !== undefined &&
    (typeof metadata !== "object" || metadata === null || Array.isArray(metadata))
  )
    return undefined
  const now = new Date().toISOString()
  return {
    id: randomUUID(),
    type,
    status: "pending",
    stage: "queued",
    progress: 0,
    message: null,
    metadata: metadata ?? {},
    result: null,
    error: null,
    lastError: null,
    priority: 0,
    attempts: 0,
    maxAttempts: 1,
    timeoutMs: null,
    idempotencyKey: null,
    runAt: now,
    createdAt: now,
    startedAt: null,
    finishedAt: null,
    updatedAt: now
  }
}

const notFound = { _tag: "JobNotFound", message: "Job not found" }
const invalid = { _tag: "InvalidJobInput", message: "Invalid job" }

const sendJson = (res: ServerResponse, status: number, value: unknown) => {
  const body = JSON.stringify(value)
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) })
  res.end(body)
}

/** The floor: `GET /jobs/{id}` and `POST /jobs` on bare `node:http`, jobs in a `Map`. */
const nodeServer = (port: number): Promise<void> => {
  const jobs = new Map<string, PeerJob>()
  const server = createServer((req, res) => {
    const url = req.url ?? "/"
    if (req.method === "GET" && url.startsWith("/jobs/")) {
      const job = jobs.get(url.slice("/jobs/".length))
      sendJson(res, job === undefined ? 404 : 200, job ?? notFound)
      return
    }
    if (req.method === "POST" && url === "/jobs") {
      let text = ""
      req.setEncoding("utf8")
      req.on("data", (chunk: string) => {
        text += chunk
      })
      req.on("end", () => {
        let job: PeerJob | undefined
        try {
          job = newPeerJob(JSON.parse(text))
        } catch {
          job = undefined
        }
        if (job === undefined) return sendJson(res, 400, invalid)
        jobs.set(job.id as string, job)
        sendJson(res, 201, job)
      })
      return
    }
    sendJson(res, 404, { _tag: "RouteNotFound", message: "Not found" })
  })
  return new Promise((resolve) => server.listen(port, "127.0.0.1", resolve))
}

/** The same routes in Express 5. */
const expressServer = async (port: number): Promise<void> => {
  const { default: express } = await import("express")
  const jobs = new Map<string, PeerJob>()
  const app = express()
  app.use(express.json({ limit: "1mb" }))
  app.get("/jobs/:id", (req, res) => {
    const job = jobs.get(req.params.id)
    res.status(job === undefined ? 404 : 200).json(job ?? notFound)
  })
  app.post("/jobs", (req, res) => {
    const job = newPeerJob(req.body)
    if (job === undefined) {
      res.status(400).json(invalid)
      return
    }
    jobs.set(job.id as string, job)
    res.status(201).json(job)
  })
  return new Promise((resolve) => {
    app.listen(port, "127.0.0.1", () => resolve())
  })
}

/** The same routes in Fastify 5. */
const fastifyServer = async (port: number): Promise<void> => {
  const { default: Fastify } = await import("fastify")
  const jobs = new Map<string, PeerJob>()
  const app = Fastify({ logger: false })
  app.get<{ Params: { id: string } }>("/jobs/:id", async (req, reply) => {
    const job = jobs.get(req.params.id)
    return job === undefined ? reply.code(404).send(notFound) : job
  })
  app.post("/jobs", async (req, reply) => {
    const job = newPeerJob(req.body)
    if (job === undefined) return reply.code(400).send(invalid)
    jobs.set(job.id as string, job)
    return reply.code(201).send(job)
  })
  await app.listen({ port, host: "127.0.0.1" })
}

/**
 * The same routes on bare `@effect/platform` (the root's): an `HttpRouter` served by `NodeHttpServer`, without the
 * per-request span (as our server runs without a tracer). Every request runs in a fiber as ours do, so this is the
 * ceiling of any server built on the platform: the floor under ours, as bare Effect is under our queue in W1.
 */
const effectServer = async (port: number): Promise<void> => {
  const { HttpMiddleware, HttpRouter, HttpServer, HttpServerRequest, HttpServerResponse } = await import(
    "@effect/platform"
  )
  const { NodeHttpServer } = await import("@effect/platform-node")
  const { Effect, Layer, Scope } = await import("effect")
  const jobs = new Map<string, PeerJob>()
  const router = HttpRouter.empty.pipe(
    HttpRouter.get(
      "/jobs/:id",
      Effect.map(HttpRouter.params, (params) => {
        const job = jobs.get(params.id ?? "")
        return HttpServerResponse.unsafeJson(job ?? notFound, { status: job === undefined ? 404 : 200 })
      })
    ),
    HttpRouter.post(
      "/jobs",
      Effect.map(
        Effect.orElseSucceed(
          Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => request.json),
          () => undefined
        ),
        (body) => {
          const job = newPeerJob(body)
          if (job === undefined) return HttpServerResponse.unsafeJson(invalid, { status: 400 })
          jobs.set(job.id as string, job)
          return HttpServerResponse.unsafeJson(job, { status: 201 })
        }
      )
    )
  )
  const layer = HttpServer.serve(router).pipe(
    HttpMiddleware.withTracerDisabledWhen(() => true),
    Layer.provide(NodeHttpServer.layer(createServer, { port, host: "127.0.0.1" }))
  )
  // Built in a scope that is never closed: the server listens until the process is signalled.
  await Effect.runPromise(Effect.flatMap(Scope.make(), (scope) => Layer.buildWithScope(layer, scope)))
}

/** The peer servers, by key. */
export const peerServers: Readonly<Record<string, (port: number) => Promise<void>>> = {
  "node:http": nodeServer,
  effect: effectServer,
  express: expressServer,
  fastify: fastifyServer
}

/** Parameters of a load run. */
export interface LoadParams {
  readonly url: string
  readonly method: "GET" | "POST"
  /** The JSON body of each request, for POST. */
  readonly body?: string | undefined
  readonly connections: number
  /** How long to measure, in seconds. */
  readonly seconds: number
  /** How long to load the server first without measuring, in seconds. */
  readonly warmupSeconds: number
}

/** Loads one route with autocannon: requests per second (the mean of autocannon's per-second counts). */
export const runLoad = async (params: LoadParams): Promise<ChildResult> => {
  const { default: autocannon } = await import("autocannon")
  const options = {
    url: params.url,
    method: params.method,
    connections: params.connections,
    headers: { "content-type": "application/json" },
    ...(params.body === undefined ? {} : { body: params.body })
  }
  if (params.warmupSeconds > 0) await autocannon({ ...options, duration: params.warmupSeconds })
  const result = await autocannon({ ...options, duration: params.seconds })
  return {
    metrics: {
      // autocannon averages its once-a-second counts: a run shorter than a second (--quick) has only a partial one.
      rps: params.seconds < 1 ? result.requests.total / params.seconds : result.requests.average,
      total: result.requests.total,
      non2xx: result.non2xx,
      errors: result.errors,
      timeouts: result.timeouts,
      latencyP99Ms: result.latency.p99
    }
  }
}
