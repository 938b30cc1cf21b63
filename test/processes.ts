// Child processes for the process, crash and multi-process tests: the compiled server or the test fixture, started on a free
// port, followed through their output, and killed by the test (SIGKILL) or by `stopAll` when a test ends.
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { rmSync } from "node:fs"
import { createServer } from "node:net"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

export const root = join(dirname(fileURLToPath(import.meta.url)), "..")

/** Where this test process builds the service: a directory of its own, so it never races another build of dist/. */
export const buildDir = join(root, ".tmp", `test-dist-${process.pid}`)

/** Compiles src/ into {@link buildDir} (as `npm run build` compiles it into dist/). */
export const build = (): Promise<void> =>
  new Promise<void>((resolve, reject) => {
    execFile(
      process.execPath,
      [
        join(root, "node_modules", "typescript", "bin", "tsc"),
        "-p",
        "tsconfig.build.json",
        "--outDir",
        buildDir
      ],
      { cwd: root, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) =>
        error === null
          ? resolve()
          : reject(new Error(`The build failed:\n${stdout}${stderr}`, { cause: error }))
    )
  })

/** Deletes {@link buildDir}, whatever the build left there. */
export const removeBuild = (): void => rmSync(buildDir, { recursive: true, force: true })

/** A port that is free now (PORT=0 is refused by the service's config). */
export const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => (port > 0 ? resolve(port) : reject(new Error("no port"))))
    })
  })

export interface Exit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

export interface Node {
  readonly child: ChildProcess
  readonly pid: number
  /** The base URL it serves, once it printed its "Listening on" line. */
  readonly url: string
  /** Everything it wrote to stdout and stderr so far. */
  readonly output: () => string
  /** Resolves when it exits; rejects (and kills it) if it has not exited within `timeoutMs`. */
  readonly exited: (timeoutMs: number) => Promise<Exit>
  /** SIGKILL, then waits for the exit. */
  readonly kill: () => Promise<Exit>
}

const children = new Set<ChildProcess>()

/** Kills (SIGKILL) every process a test started and did not stop, and waits for them to exit. */
export const stopAll = async (): Promise<void> => {
  const alive = Array.from(children)
  children.clear()
  await Promise.all(
    alive.map((child) =>
      child.exitCode !== null || child.signalCode !== null
        ? Promise.resolve()
        : new Promise<void>((resolve) => {
            child.once("exit", () => resolve())
            child.kill("SIGKILL")
          })
    )
  )
}

/**
 * Starts `node <args>` with the environment given (on a free port) and waits for its "Listening on" line: the
 * process is ready to serve, its store open.
 */
export const startNode = async (
  args: ReadonlyArray<string>,
  env: Record<string, string>,
  startTimeoutMs = 60_000
): Promise<Node> => {
  const port = await freePort()
  const child = spawn(process.execPath, args, {
    cwd: root,
    env: { ...process.env, HOST: "127.0.0.1", PORT: String(port), ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  children.add(child)
  let output = ""
  const listeners = new Set<() => void>()
  const onData = (chunk: Buffer) => {
    output += chunk.toString("utf8")
    for (const listener of listeners) listener()
  }
  child.stdout?.on("data", onData)
  child.stderr?.on("data", onData)
  const exit = new Promise<Exit>((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })))

  const listening = await new Promise<string>((resolve, reject) => {
    const done = () => {
      clearTimeout(timer)
      listeners.delete(check)
    }
    const check = () => {
      const match = output.match(/Listening on (http:\/\/\S+)/)
      if (match !== null) {
        done()
        resolve(match[1]!)
      }
    }
    const timer = setTimeout(() => {
      done()
      reject(new Error(`No "Listening on" line within ${startTimeoutMs} ms:\n${output}`))
    }, startTimeoutMs)
    listeners.add(check)
    void exit.then(({ code, signal }) => {
      if (!listeners.has(check)) return
      done()
      reject(new Error(`The process exited (${code ?? signal}) before listening:\n${output}`))
    })
    check()
  })
  if (listening !== `http://127.0.0.1:${port}`) throw new Error(`Listening on ${listening}, not port ${port}`)

  const exited = (timeoutMs: number) =>
    new Promise<Exit>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill("SIGKILL")
        reject(new Error(`The process did not exit within ${timeoutMs} ms:\n${output}`))
      }, timeoutMs)
      void exit.then((result) => {
        clearTimeout(timer)
        resolve(result)
      })
    })

  return {
    child,
    pid: child.pid!,
    url: listening,
    output: () => output,
    exited,
    kill: () => {
      child.kill("SIGKILL")
      return exited(10_000)
    }
  }
}

/** Asks `check` until it answers something other than `undefined`; fails after `timeoutMs` saying what it waited for. */
export const poll = async <A>(
  what: string,
  check: () => Promise<A | undefined>,
  { timeoutMs, intervalMs = 25 }: { readonly timeoutMs: number; readonly intervalMs?: number }
): Promise<A> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await check()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
}

/** A job as the HTTP API returns it (the fields these tests read). */
export interface JobBody {
  readonly id: string
  readonly type: string
  readonly status: string
  readonly attempts: number
  readonly lastError: string | null
  readonly error: string | null
  readonly finishedAt: string | null
}

const request = async <A>(url: string, init: RequestInit, expected: ReadonlyArray<number>): Promise<A> => {
  const response = await fetch(url, init)
  const text = await response.text()
  if (!expected.includes(response.status))
    throw new Error(`${init.method ?? "GET"} ${url}: ${response.status} ${text}`)
  return JSON.parse(text) as A
}

export const http = {
  submit: (base: string, body: unknown) =>
    request<JobBody>(
      `${base}/jobs`,
      { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) },
      [201]
    ),
  submitBatch: (base: string, jobs: ReadonlyArray<unknown>) =>
    request<{ readonly jobs: ReadonlyArray<JobBody> }>(
      `${base}/jobs/batch`,
      { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ jobs }) },
      [201]
    ).then((body) => body.jobs),
  get: (base: string, id: string) => request<JobBody>(`${base}/jobs/${id}`, {}, [200]),
  cancel: (base: string, id: string) => request<JobBody>(`${base}/jobs/${id}`, { method: "DELETE" }, [200]),
  /** Every job, walking the pages of GET /jobs. */
  list: async (base: string): Promise<Array<JobBody>> => {
    const jobs: Array<JobBody> = []
    let cursor: string | null = null
    do {
      const query: string = cursor === null ? "limit=100" : `limit=100&cursor=${encodeURIComponent(cursor)}`
      const page: { items: Array<JobBody>; nextCursor: string | null } = await request(
        `${base}/jobs?${query}`,
        {},
        [200]
      )
      jobs.push(...page.items)
      cursor = page.nextCursor
    } while (cursor !== null)
    return jobs
  }
}
