// Shared set-up for the dashboard tests: the dashboard's assets built, the real HTTP app on a real port (so that a
// real browser can load it), a queue with the demo handlers and a deterministic "gated" handler, and Debian's
// Chromium driven by playwright-core with a fresh profile.
import { execFile } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { createServer } from "node:http"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { ConfigProvider, Context, Deferred, Effect, Exit, Layer, Schema, Scope } from "effect"
import { type BrowserContext, chromium, type Page } from "playwright-core"
import type { JobQueueOptions } from "../../src/config.js"
import { layerDemoHandlers } from "../../src/demo/handlers.js"
import { HttpAppLive } from "../../src/http/server.js"
import { JobHandlers } from "../../src/JobHandlers.js"
import { JobQueue, type JobQueueService } from "../../src/JobQueue.js"
import { JobStore } from "../../src/JobStore.js"

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..")

/** Where the tests save screenshots (gitignored). */
export const artifactsDir = join(root, "artifacts")

/** Builds the dashboard's assets into dist/dashboard/ when they are missing or stale (as `npm start` does). */
export const buildDashboard = (): Promise<void> =>
  new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [join(root, "scripts", "build-dashboard.mjs"), "--if-stale"],
      { cwd: root },
      (error, stdout, stderr) =>
        error === null
          ? resolve()
          : reject(new Error(`The dashboard build failed:\n${stdout}${stderr}`, { cause: error }))
    )
  })

/** The job type of the gated handler. */
export const gatedType = "gated"

/** Gates by label: a gated job reports 50 % and waits until the test opens the gate of its label. */
export class Gates {
  private readonly gates = new Map<string, Deferred.Deferred<void>>()

  /** The gate of a label, made on first use. */
  get(label: string): Deferred.Deferred<void> {
    let gate = this.gates.get(label)
    if (gate === undefined) {
      gate = Effect.runSync(Deferred.make<void>())
      this.gates.set(label, gate)
    }
    return gate
  }

  /** Lets the gated jobs of `label` finish. */
  open(label: string): Promise<boolean> {
    return Effect.runPromise(Deferred.succeed(this.get(label), undefined))
  }
}

/** The failure of a gated job whose metadata says `fail: true`. */
class GateFailure extends Schema.TaggedError<GateFailure>()("GateFailure", { message: Schema.String }) {}

const gatedHandler = (gates: Gates) =>
  JobHandlers.register({
    type: gatedType,
    payload: Schema.Struct({ label: Schema.String, fail: Schema.optional(Schema.Boolean) }),
    handler: ({ label, fail }, { progress }) =>
      Effect.gen(function* () {
        yield* Effect.orDie(
          progress({ stage: "processing", progress: 50, message: `Waiting for gate ${label}` })
        )
        yield* Deferred.await(gates.get(label))
        if (fail === true) return yield* new GateFailure({ message: `Gate ${label} failed the job` })
        yield* Effect.orDie(
          progress({ stage: "finalizing", progress: 100, message: `Through gate ${label}` })
        )
        return { label }
      })
  })

/** What a test gets from {@link startServer}. */
export interface DashboardServer {
  /** The server's base URL, `http://127.0.0.1:{port}`. */
  readonly url: string
  /** The queue behind the server, for set-up and for checking what the page did. */
  readonly queue: JobQueueService
  /** The gates of the gated handler. */
  readonly gates: Gates
  /** Stops the server and the queue. */
  readonly close: () => Promise<void>
}

/**
 * Starts the service's HTTP app (`HttpAppLive`: the API and the dashboard) on a free port of 127.0.0.1, over a
 * fresh in-memory queue with the demo handlers (steps of `demoStepMs`) and the gated handler; with `token`, the
 * server requires it (as with `APP_API_TOKEN`).
 */
export const startServer = async (
  options: Partial<JobQueueOptions> = {},
  demoStepMs = 10,
  token?: string
): Promise<DashboardServer> => {
  const gates = new Gates()
  const queue = JobQueue.layer({ shutdownGraceMs: 0, ...options }).pipe(
    Layer.provide(Layer.mergeAll(JobStore.layerMemory, layerDemoHandlers(demoStepMs), gatedHandler(gates))),
    Layer.provide(JobHandlers.layer)
  )
  const nodeServer = createServer()
  const config = ConfigProvider.fromMap(new Map(token === undefined ? [] : [["APP_API_TOKEN", token]]))
  const layer = HttpAppLive.pipe(
    Layer.provideMerge(queue),
    Layer.provideMerge(NodeHttpServer.layer(() => nodeServer, { port: 0, host: "127.0.0.1" })),
    Layer.provide(Layer.setConfigProvider(config))
  )
  const scope = Effect.runSync(Scope.make())
  const context = await Effect.runPromise(Layer.buildWithScope(layer, scope))
  const address = Context.get(context, HttpServer.HttpServer).address
  if (address._tag !== "TcpAddress") throw new Error("The server should listen on TCP")
  return {
    url: `http://127.0.0.1:${address.port}`,
    queue: Context.get(context, JobQueue),
    gates,
    close: () => {
      // The browser outlives the server and keeps connections to it, among them sockets it opened ahead of need
      // and never sent a request on: `server.close()` would wait for those until the client drops them.
      nodeServer.closeAllConnections()
      return Effect.runPromise(Scope.close(scope, Exit.void))
    }
  }
}

/** Submits a job through the HTTP API, as another client would; returns the job as JSON. */
export const submit = async (
  server: DashboardServer,
  body: { type: string; metadata?: Record<string, unknown>; delayMs?: number }
): Promise<{ id: string; status: string }> => {
  const response = await fetch(`${server.url}/jobs`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body)
  })
  if (response.status !== 201)
    throw new Error(`POST /jobs answered ${response.status}: ${await response.text()}`)
  return (await response.json()) as { id: string; status: string }
}

/** Reads a job through the HTTP API. */
export const getJob = async (server: DashboardServer, id: string): Promise<{ status: string }> =>
  (await (await fetch(`${server.url}/jobs/${id}`)).json()) as { status: string }

/** The Chromium flags of every test browser (Debian's Chromium, nothing downloaded, nothing phoning home). */
export const chromiumArgs = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-quic"
]

/** A browser with a fresh profile in a temporary directory, removed by `close`. */
export interface TestBrowser {
  readonly context: BrowserContext
  readonly close: () => Promise<void>
}

/** Launches Debian's Chromium (`/usr/bin/chromium`) headless, with a fresh `--user-data-dir`. */
export const launchBrowser = async (): Promise<TestBrowser> => {
  const userDataDir = mkdtempSync(join(tmpdir(), "dashboard-chromium-"))
  // playwright-core passes the directory to Chromium as --user-data-dir (it refuses the flag in `args`).
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: chromiumArgs,
    viewport: { width: 1280, height: 900 },
    timeout: 20_000
  })
  // Every action and wait fails with Playwright's own account of what it waited for, within vitest's timeout.
  context.setDefaultTimeout(waitMs)
  return {
    context,
    close: async () => {
      await context.close()
      rmSync(userDataDir, { recursive: true, force: true })
    }
  }
}

/** What went wrong in a page: uncaught exceptions and Content-Security-Policy violations. */
export const watchProblems = (page: Page): Array<string> => {
  const problems: Array<string> = []
  page.on("pageerror", (error) => problems.push(`uncaught: ${error.message}`))
  page.on("console", (message) => {
    if (/Content[- ]Security[- ]Policy/i.test(message.text())) problems.push(`CSP: ${message.text()}`)
  })
  return problems
}

/** How long a test waits for a page condition before failing (well within vitest's 30 s). */
export const waitMs = 10_000

/** The expected state of a job's row; unset parts are not checked. */
export interface RowState {
  readonly status?: string
  readonly progress?: number
  readonly cancellable?: boolean
}

/**
 * Waits until the row of job `id` shows `expected`: its status badge, its progress bar's value and the
 * percentage beside it, and whether its Cancel button shows.
 */
export const waitForRow = async (page: Page, id: string, expected: RowState): Promise<void> => {
  await page.waitForFunction(
    ({ id, status, progress, cancellable }) => {
      const row = document.querySelector(`tr[data-job-id="${id}"]`)
      if (row === null) return false
      const badge = row.querySelector(".badge")?.textContent
      const bar = row.querySelector("progress")
      const percent = row.querySelector(".percent")?.textContent
      const cancel = Array.from(row.querySelectorAll("button")).find(
        (button) => button.textContent === "Cancel"
      )
      return (
        (status === undefined || badge === status) &&
        (progress === undefined || (bar?.value === progress && percent === `${progress}%`)) &&
        (cancellable === undefined || (cancel !== undefined && !cancel.hidden) === cancellable)
      )
    },
    { id, ...expected },
    { timeout: waitMs }
  )
}

/** The job ids of the table's rows, top to bottom. */
export const rowIds = (page: Page): Promise<Array<string>> =>
  page.$$eval("#jobs-body tr", (rows) => rows.map((row) => row.getAttribute("data-job-id") ?? ""))

/** Waits until the table shows exactly the jobs `ids`, in this order. */
export const waitForRows = async (page: Page, ids: ReadonlyArray<string>): Promise<void> => {
  await page.waitForFunction(
    (ids) => {
      const shown = Array.from(document.querySelectorAll("#jobs-body tr"), (row) =>
        row.getAttribute("data-job-id")
      )
      return shown.length === ids.length && shown.every((id, i) => id === ids[i])
    },
    ids,
    { timeout: waitMs }
  )
}
