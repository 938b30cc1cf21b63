// The dashboard's browser-side modules that need no page: the Server-Sent Events parser and reader (here against
// the real server, with Node's fetch) and the formatting of times and percentages.
import { FastCheck as fc } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  formatAge,
  formatDuration,
  formatPercent,
  formatStage,
  runTime,
  shortId
} from "../../src/dashboard/format.js"
import { followEventStream, type SseMessage, SseParser } from "../../src/dashboard/sse.js"
import { Job } from "../../src/domain/Job.js"
import { JobEvent } from "../../src/domain/JobEvent.js"
import { formatEvent } from "../../src/http/sse.js"
import { type DashboardServer, startServer, submit } from "./support.js"

const parseAll = (chunks: ReadonlyArray<string>): Array<SseMessage> => {
  const parser = new SseParser()
  return chunks.flatMap((chunk) => parser.push(chunk))
}

/** Cuts `text` at the given positions. */
const cut = (text: string, positions: ReadonlyArray<number>) => {
  const sorted = [...new Set(positions)].sort((a, b) => a - b)
  return [...sorted, text.length].map((end, i) => text.slice(i === 0 ? 0 : sorted[i - 1], end))
}

const job = new Job({
  id: "4952c3f6-7fc4-4af1-982e-5333b6b3b37d" as Job["id"],
  type: "transcription",
  status: "running",
  stage: "transcribing",
  progress: 50,
  message: "line one\nline two",
  metadata: { source: "talk.mp3" },
  result: null,
  error: null,
  lastError: null,
  priority: 0,
  attempts: 1,
  maxAttempts: 1,
  timeoutMs: null,
  idempotencyKey: null,
  runAt: new Date("2026-11-28T10:01:59.752Z"),
  createdAt: new Date("2026-11-28T10:01:59.752Z"),
  startedAt: new Date("2026-11-28T10:01:59.753Z"),
  finishedAt: null,
  updatedAt: new Date("2026-11-28T10:02:00.754Z")
})

describe("SseParser", () => {
  it("reads the server's own format, cut anywhere, with its comments skipped", () => {
    const stream = `: connected\n\n${formatEvent(new JobEvent({ kind: "progress", job }))}: heartbeat\n\n${formatEvent(new JobEvent({ kind: "completed", job }))}`
    fc.assert(
      fc.property(fc.array(fc.nat({ max: stream.length }), { maxLength: 12 }), (positions) => {
        const messages = parseAll(cut(stream, positions))
        expect(messages.map((message) => message.event)).toEqual(["progress", "completed"])
        expect(JSON.parse(messages[0]!.data)).toEqual(
          JSON.parse(formatEvent(new JobEvent({ kind: "progress", job })).split("data: ")[1]!)
        )
      })
    )
  })

  it("accepts CRLF and CR line ends, even split between chunks", () => {
    expect(parseAll(["event: a\r", "\ndata: 1\r\n\r", "\n"])).toEqual([{ event: "a", data: "1" }])
    expect(parseAll(["event: b\rdata: 2\r\r"])).toEqual([{ event: "b", data: "2" }])
  })

  it("joins data lines, defaults the event to message, and ignores unknown fields and data-less blocks", () => {
    expect(parseAll(["data: one\ndata:two\nid: 7\nretry: 5\n\n", "event: lonely\n\n", "data\n\n"])).toEqual([
      { event: "message", data: "one\ntwo" },
      { event: "message", data: "" }
    ])
  })

  it("keeps an unfinished message until its blank line comes", () => {
    const parser = new SseParser()
    expect(parser.push("event: x\ndata: 1")).toEqual([])
    expect(parser.push("\n")).toEqual([])
    expect(parser.push("\n")).toEqual([{ event: "x", data: "1" }])
  })
})

describe("followEventStream", () => {
  let server: DashboardServer

  beforeAll(async () => {
    server = await startServer()
  })

  afterAll(async () => {
    await server?.close()
  })

  it("reads GET /events with fetch and a stream reader, and stops when aborted", async () => {
    const controller = new AbortController()
    const received: Array<SseMessage> = []
    let opened = false
    let submitted: Promise<{ id: string }> | undefined
    const done = followEventStream(
      `${server.url}/events`,
      { headers: { "x-test": "1" }, signal: controller.signal },
      {
        onOpen: () => {
          opened = true
          submitted = submit(server, { type: "bootstrap" })
        },
        onActivity: () => undefined,
        onMessage: (message) => {
          received.push(message)
          if (message.event === "completed") controller.abort()
        }
      }
    )
    await expect(done).rejects.toThrow(/abort/i)
    expect(opened).toBe(true)
    const { id } = await submitted!
    expect(received.map((message) => message.event)).toEqual([
      "submitted",
      "started",
      "progress",
      "progress",
      "completed"
    ])
    const last = JSON.parse(received.at(-1)!.data) as { kind: string; job: { id: string; progress: number } }
    expect(last).toMatchObject({ kind: "completed", job: { id, progress: 100 } })
  })

  it("rejects an answer that is not an event stream", async () => {
    const signal = new AbortController().signal
    const handlers = { onOpen: () => undefined, onActivity: () => undefined, onMessage: () => undefined }
    await expect(
      followEventStream(`${server.url}/jobs/${crypto.randomUUID()}/events`, { headers: {}, signal }, handlers)
    ).rejects.toThrow(/404/)
    await expect(
      followEventStream(`${server.url}/health`, { headers: {}, signal }, handlers)
    ).rejects.toThrow(/200 application\/json/)
  })
})

describe("formatting", () => {
  it("writes ages coarsely and durations precisely", () => {
    expect([0, 999, 59_999, 60_000, 3_599_999, 3_600_000, 86_400_000 * 3].map(formatAge)).toEqual([
      "0 s",
      "0 s",
      "59 s",
      "1 min",
      "59 min",
      "1 h",
      "3 d"
    ])
    expect(formatAge(-5)).toBe("0 s")
    expect([340, 2_450, 185_000, 7_800_000, 97_200_000].map(formatDuration)).toEqual([
      "340 ms",
      "2.4 s",
      "3 min 5 s",
      "2 h 10 min",
      "1 d 3 h"
    ])
  })

  it("writes percentages whole and within 0–100, stages in words, ids short", () => {
    expect([0, 49.6, 100, 120, -3].map(formatPercent)).toEqual(["0%", "50%", "100%", "100%", "0%"])
    expect(formatStage("extracting_audio")).toBe("extracting audio")
    expect(shortId(job.id)).toBe("4952c3f6")
  })

  it("measures a job's run time from its start to its end, or to now", () => {
    const started = "2026-11-28T10:00:00.000Z"
    expect(runTime({ startedAt: null, finishedAt: null }, 0)).toBeUndefined()
    expect(runTime({ startedAt: started, finishedAt: "2026-11-28T10:00:02.500Z" }, 0)).toBe(2500)
    expect(runTime({ startedAt: started, finishedAt: null }, Date.parse(started) + 700)).toBe(700)
  })
})
