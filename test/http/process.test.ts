// The compiled service as a real process: it starts, serves HTTP on a real port, and on SIGTERM or SIGINT
// lets its queue shut down within the grace period, then exits with code 0.
import { connect, type Socket } from "node:net"
import { join } from "node:path"
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import { build, buildDir, removeBuild, startNode, stopAll } from "../processes.js"

afterEach(stopAll)
afterAll(removeBuild)

interface JobBody {
  readonly id: string
  readonly status: string
}

const submit = async (baseUrl: string, body: unknown): Promise<JobBody> => {
  const response = await fetch(`${baseUrl}/jobs`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body)
  })
  expect(response.status).toBe(201)
  return (await response.json()) as JobBody
}

/** Asks for the job until its handler has started (each answer is the event that moves this on; no sleep). */
const untilRunning = async (baseUrl: string, id: string, timeoutMs: number): Promise<void> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const response = await fetch(`${baseUrl}/jobs/${id}`)
    expect(response.status).toBe(200)
    const job = (await response.json()) as JobBody
    if (job.status === "running") return
    expect(job.status).toBe("pending")
    if (Date.now() > deadline) throw new Error(`Job ${id} did not start within ${timeoutMs} ms`)
  }
}

/** Starts the compiled service on a free port (once it says "Listening on"); checks its health. */
const startListening = async (env: Record<string, string>) => {
  const service = await startNode([join(buildDir, "main.js")], env)
  const health = await fetch(`${service.url}/health`)
  expect(health.status).toBe(200)
  expect(await health.json()).toEqual({ status: "ok" })
  return { service, url: service.url }
}

describe("the service process", () => {
  beforeAll(build, 180_000)

  it("SIGTERM: running jobs finish within the grace period, pending ones are cancelled, exit code 0", async () => {
    const graceMs = 10_000
    const { service, url } = await startListening({
      APP_DEMO_STEP_MS: "100",
      APP_JOB_MAX_CONCURRENT: "1",
      APP_JOB_SHUTDOWN_GRACE_MS: String(graceMs)
    })
    const first = await submit(url, { type: "transcription", metadata: { source: "talk.mp3" } })
    const second = await submit(url, { type: "bootstrap" })
    expect(second.status).toBe("pending")
    await untilRunning(url, first.id, 30_000)

    const signalledAt = Date.now()
    expect(service.child.kill("SIGTERM")).toBe(true)
    const exit = await service.exited(graceMs + 10_000)
    expect(exit).toEqual({ code: 0, signal: null })
    // The running job needs 4 steps of 100 ms: well within the grace period.
    expect(Date.now() - signalledAt).toBeLessThan(graceMs)
    expect(service.output()).toContain(
      `JobQueue shutting down: waiting up to ${graceMs} ms for 1 running job(s)`
    )
    expect(service.output()).toContain(
      "JobQueue shut down: 1 of 1 running job(s) finished in the grace period, 0 interrupted and cancelled, " +
        "1 pending job(s) cancelled"
    )
    expect(service.output()).not.toMatch(/\bERROR\b|level=ERROR/)
  })

  it("SIGTERM with idle client connections open (one never used, one kept alive): the process still exits 0", async () => {
    const { service, url } = await startListening({})
    const { port } = new URL(url)
    const sockets: Array<Socket> = []
    const closed: Array<Promise<void>> = []
    const open = () =>
      new Promise<Socket>((resolve, reject) => {
        const socket = connect(Number(port), "127.0.0.1", () => resolve(socket))
        socket.once("error", reject)
        sockets.push(socket)
        closed.push(new Promise((done) => socket.once("close", () => done())))
      })
    try {
      // A browser's speculative connection: open, no request.
      await open()
      // A keep-alive connection after one answered request.
      const keptAlive = await open()
      const answered = new Promise<string>((resolve) =>
        keptAlive.once("data", (chunk) => resolve(String(chunk)))
      )
      keptAlive.write("GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n")
      expect(await answered).toMatch(/^HTTP\/1\.1 200/)

      expect(service.child.kill("SIGTERM")).toBe(true)
      expect(await service.exited(20_000)).toEqual({ code: 0, signal: null })
      // The server closed both connections itself.
      await Promise.all(closed)
    } finally {
      for (const socket of sockets) socket.destroy()
    }
  })

  it("SIGINT: a job that outlasts the grace period is interrupted, and the process exits 0", async () => {
    const graceMs = 300
    const { service, url } = await startListening({
      // One step lasts a minute: only the end of the grace period stops it.
      APP_DEMO_STEP_MS: "60000",
      APP_JOB_SHUTDOWN_GRACE_MS: String(graceMs)
    })
    const job = await submit(url, { type: "extraction" })
    await untilRunning(url, job.id, 30_000)

    const signalledAt = Date.now()
    expect(service.child.kill("SIGINT")).toBe(true)
    const exit = await service.exited(15_000)
    expect(exit).toEqual({ code: 0, signal: null })
    const elapsed = Date.now() - signalledAt
    expect(elapsed).toBeGreaterThanOrEqual(graceMs - 50)
    expect(elapsed).toBeLessThan(15_000)
    expect(service.output()).toContain(
      "JobQueue shut down: 0 of 1 running job(s) finished in the grace period, 1 interrupted and cancelled, " +
        "0 pending job(s) cancelled"
    )
    expect(service.output()).not.toMatch(/\bERROR\b|level=ERROR/)
  })
})
