import { randomUUID } from "node:crypto"
import { createServer, type ServerResponse } from "node:http"
import autocannon from "autocannon"
import express from "express"
import Fastify from "fastify"
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
const expressServer = (port: number): Promise<void> => {
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

/** The peer servers, by key. */
export const peerServers: Readonly<Record<string, (port: number) => Promise<void>>> = {
  "node:http": nodeServer,
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
