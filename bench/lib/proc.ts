import { type ChildProcess, spawn } from "node:child_process"
import { request } from "node:http"
import { createServer } from "node:net"
import { type ChildResult, readyLine, resultPrefix } from "./protocol.js"
import { sleep } from "./stats.js"

/** A child process's output, kept to explain a failure. */
export interface Output {
  text: string
}

const capture = (child: ChildProcess, output: Output) => {
  const keep = (chunk: Buffer) => {
    output.text = (output.text + chunk.toString()).slice(-20_000)
  }
  child.stdout?.on("data", keep)
  child.stderr?.on("data", keep)
}

/** Waits for a child to exit; returns its exit code (or the signal's name). */
export const exited = (child: ChildProcess): Promise<number | string> =>
  child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve(child.exitCode ?? child.signalCode ?? "?")
    : new Promise((resolve) => child.once("exit", (code, signal) => resolve(code ?? signal ?? "?")))

/** Runs a node child to completion and reads its `@@RESULT` line; kills it after `timeoutMs`. */
export const runChild = async (
  args: ReadonlyArray<string>,
  options: { readonly cwd: string; readonly timeoutMs: number; readonly env?: NodeJS.ProcessEnv }
): Promise<ChildResult> => {
  const child = spawn(process.execPath, args, {
    cwd: options.cwd,
    env: options.env ?? process.env,
    stdio: ["ignore", "pipe", "pipe"]
  })
  const output: Output = { text: "" }
  capture(child, output)
  const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs)
  const code = await exited(child)
  clearTimeout(timer)
  const line = output.text
    .split("\n")
    .reverse()
    .find((l) => l.startsWith(resultPrefix))
  if (code !== 0 || line === undefined)
    throw new Error(
      `child exited with ${code}${code === "SIGKILL" ? ` (killed after ${options.timeoutMs} ms)` : ""}:\n` +
        output.text.slice(-3000)
    )
  return JSON.parse(line.slice(resultPrefix.length)) as ChildResult
}

/** A server started in a child process. */
export interface Server {
  readonly child: ChildProcess
  readonly output: Output
}

/** Starts a long-running child and waits until it prints `@@READY`. */
export const startReadyChild = async (
  command: string,
  args: ReadonlyArray<string>,
  options: { readonly cwd: string; readonly timeoutMs: number; readonly env?: NodeJS.ProcessEnv }
): Promise<Server> => {
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: options.env ?? process.env,
    stdio: ["ignore", "pipe", "pipe"]
  })
  const output: Output = { text: "" }
  capture(child, output)
  const ready = new Promise<void>((resolve) => {
    const onData = (chunk: Buffer) => {
      if (chunk.toString().includes(readyLine)) {
        child.stdout?.off("data", onData)
        resolve()
      }
    }
    child.stdout?.on("data", onData)
  })
  const outcome = await Promise.race([
    ready.then(() => "ready" as const),
    exited(child).then(() => "exited" as const),
    sleep(options.timeoutMs).then(() => "timeout" as const)
  ])
  if (outcome !== "ready") {
    child.kill("SIGKILL")
    throw new Error(`server did not start (${outcome}):\n${output.text.slice(-3000)}`)
  }
  return { child, output }
}

/** Stops a child: SIGTERM (to its process group when it leads one), then SIGKILL after `graceMs`. */
export const stop = async (child: ChildProcess, graceMs = 5000, group = false): Promise<void> => {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return
  const signal = (name: NodeJS.Signals) => {
    try {
      if (group && child.pid !== undefined) process.kill(-child.pid, name)
      else child.kill(name)
    } catch {
      // already gone
    }
  }
  signal("SIGTERM")
  const timer = setTimeout(() => signal("SIGKILL"), graceMs)
  await exited(child)
  clearTimeout(timer)
}

/** A free TCP port on 127.0.0.1. */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })

/** One HTTP request on a fresh connection: the status and body, or undefined when the connection fails. */
export const httpRequest = (
  url: string,
  method = "GET",
  body?: string,
  timeoutMs = 2000
): Promise<{ status: number; body: string } | undefined> =>
  new Promise((resolve) => {
    const req = request(
      url,
      {
        method,
        agent: false,
        timeout: timeoutMs,
        headers: body === undefined ? {} : { "content-type": "application/json" }
      },
      (res) => {
        let text = ""
        res.setEncoding("utf8")
        res.on("data", (chunk: string) => {
          text += chunk
        })
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }))
        res.on("error", () => resolve(undefined))
      }
    )
    req.on("error", () => resolve(undefined))
    req.on("timeout", () => {
      req.destroy()
      resolve(undefined)
    })
    req.end(body)
  })

/**
 * Polls `GET url` every `everyMs` until it answers 200; resolves with the time it did (performance.now()), or
 * rejects after `timeoutMs` or when `child` exits first.
 */
export const waitHealthy = async (
  url: string,
  child: ChildProcess,
  options: { readonly everyMs: number; readonly timeoutMs: number }
): Promise<number> => {
  const deadline = performance.now() + options.timeoutMs
  while (performance.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error("the server exited")
    const res = await httpRequest(url, "GET", undefined, 1000)
    if (res?.status === 200) return performance.now()
    await sleep(options.everyMs)
  }
  throw new Error(`${url} not healthy within ${options.timeoutMs} ms`)
}
