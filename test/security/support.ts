// A live server for the security and observability tests: the real HTTP app on a real Node server (the service's
// `makeNodeServer`, bound to 127.0.0.1 on a free port), an API token chosen by the test (through a ConfigProvider,
// as `APP_API_TOKEN` would set it), and a raw HTTP client that sends whatever a test asks for.
import { Agent, request as httpRequest } from "node:http"
import { HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { ConfigProvider, Context, Effect, Layer, Logger, type Scope } from "effect"
import type { HttpLimitsOptions, JobQueueOptions } from "../../src/config.js"
import { makeNodeServer } from "../../src/http/security.js"
import { HttpAppLive } from "../../src/http/server.js"
import { JobQueue, type JobQueueService } from "../../src/JobQueue.js"
import { JobStore, type JobStoreService, makeMemory } from "../../src/JobStore.js"
import { type Gates, makeGates, queueLayer } from "../http/support.js"

/** A token of the accepted shape. */
export const testToken = "s3cret-token-0123456789abcdef"

/** What a test gets from {@link startLiveServer}. */
export interface LiveServer {
  readonly port: number
  readonly queue: JobQueueService
  readonly store: JobStoreService
  readonly gates: Gates
  /** Every log line the server and the queue wrote, with its level and annotations. */
  readonly logs: Array<{ readonly level: string; readonly message: string; readonly annotations: object }>
}

/** Options of {@link startLiveServer}. */
export interface LiveServerOptions {
  /** The server's API token (`APP_API_TOKEN`); none by default. */
  readonly token?: string | undefined
  readonly limits?: HttpLimitsOptions | undefined
  readonly queue?: Partial<JobQueueOptions> | undefined
}

/** Starts the HTTP app with a queue over a fresh in-memory store in the current scope. */
export const startLiveServer = (
  options: LiveServerOptions = {}
): Effect.Effect<LiveServer, never, Scope.Scope> =>
  Effect.gen(function* () {
    const gates = yield* makeGates
    const store = makeMemory()
    const logs: Array<{ level: string; message: string; annotations: object }> = []
    const capture = Logger.make(({ logLevel, message, annotations }) => {
      const text = Array.isArray(message) ? message.map(String).join(" ") : String(message)
      logs.push({ level: logLevel.label, message: text, annotations: Object.fromEntries(annotations) })
    })
    const config = ConfigProvider.fromMap(
      new Map(options.token === undefined ? [] : [["APP_API_TOKEN", options.token]])
    )
    const context = yield* Layer.build(
      HttpAppLive.pipe(
        Layer.provide(Layer.setConfigProvider(config)),
        Layer.provideMerge(queueLayer(gates, options.queue ?? {}, Layer.succeed(JobStore, store))),
        Layer.provideMerge(
          NodeHttpServer.layer(() => makeNodeServer(options.limits), { port: 0, host: "127.0.0.1" })
        ),
        Layer.provide(Logger.replace(Logger.defaultLogger, capture))
      )
    ).pipe(Effect.orDie)
    const address = Context.get(context, HttpServer.HttpServer).address
    if (address._tag !== "TcpAddress") return yield* Effect.die("expected a TCP address")
    return { port: address.port, queue: Context.get(context, JobQueue), store, gates, logs }
  })

/** A request as the raw client sends it. */
export interface RawRequest {
  readonly method: string
  readonly path: string
  readonly headers?: Readonly<Record<string, string>> | undefined
  readonly body?: string | Uint8Array | undefined
}

/** A response as the raw client reads it: an event stream is closed once its headers arrive. */
export interface RawResponse {
  readonly status: number
  readonly headers: Readonly<Record<string, string | Array<string> | undefined>>
  readonly text: string
}

// One connection at a time, kept alive between requests while the server keeps it.
const agent = new Agent({ keepAlive: true, maxSockets: 1 })

/**
 * Sends one request with Node's own client (one kept-alive connection) and reads the whole answer (at most 4 MiB). A body gets a
 * `Content-Length` unless the request is chunked: Node's client would send the body of a GET unframed otherwise.
 */
export const send = (port: number, request: RawRequest): Promise<RawResponse> =>
  new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...request.headers }
    const chunked = Object.keys(headers).some((name) => name.toLowerCase() === "transfer-encoding")
    if (request.body !== undefined && !chunked)
      headers["content-length"] = String(Buffer.byteLength(request.body))
    const req = httpRequest(
      {
        host: "127.0.0.1",
        port,
        method: request.method,
        path: request.path,
        headers,
        agent
      },
      (res) => {
        const status = res.statusCode ?? 0
        if (String(res.headers["content-type"] ?? "").startsWith("text/event-stream")) {
          res.destroy()
          resolve({ status, headers: res.headers, text: "" })
          return
        }
        const chunks: Array<Buffer> = []
        let size = 0
        res.on("data", (chunk: Buffer) => {
          size += chunk.length
          if (size <= 4 * 1024 * 1024) chunks.push(chunk)
        })
        res.on("end", () =>
          resolve({ status, headers: res.headers, text: Buffer.concat(chunks).toString("utf8") })
        )
        res.on("error", reject)
      }
    )
    req.on("error", reject)
    req.end(request.body)
  })

/** {@link send} as an Effect that dies on a transport error. */
export const sendEffect = (port: number, request: RawRequest): Effect.Effect<RawResponse> =>
  Effect.promise(() => send(port, request))

/** The `Authorization` header carrying a token. */
export const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` })
