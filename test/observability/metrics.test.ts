import { Readable } from "node:stream"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Metric, MetricBoundaries, Queue } from "effect"
import {
  getMetricsFromStream,
  type PromData,
  type PromHistogramData,
  type PromMetrics
} from "prom2javascript"
import type { JobId } from "../../src/domain/Job.js"
import { routeOf, unmatchedRoute } from "../../src/http/observability.js"
import { prometheusContentType, prometheusText, renderPrometheus } from "../../src/metrics.js"
import { gatedType } from "../http/support.js"
import { sendEffect, startLiveServer } from "../security/support.js"

/** Parses Prometheus text with a real parser (prom2javascript), which throws on malformed lines and histograms. */
const parse = (text: string): Effect.Effect<PromMetrics> =>
  Effect.promise(() => getMetricsFromStream(Readable.from([text])))

const sameLabels = (a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>) =>
  Object.keys(a).length === Object.keys(b).length &&
  Object.entries(b).every(([key, value]) => a[key] === value)

/** A counter's or gauge's value for exactly these labels (0 when the series does not exist yet). */
const seriesValue = (metrics: PromMetrics, name: string, labels: Record<string, string> = {}): number => {
  const metric = metrics[name]
  if (metric === undefined) return 0
  const series = (metric.data as Array<PromData>).find((data) => sameLabels(data.labels, labels))
  return series?.value ?? 0
}

/** A histogram's series for exactly these labels. */
const histogramOf = (
  metrics: PromMetrics,
  name: string,
  labels: Record<string, string>
): PromHistogramData | undefined =>
  (metrics[name]?.data as Array<PromHistogramData> | undefined)?.find((data) =>
    sameLabels(data.labels, labels)
  )

const countOf = (metrics: PromMetrics, name: string, labels: Record<string, string>) =>
  histogramOf(metrics, name, labels)?.count ?? 0

const scrape = (port: number) =>
  Effect.gen(function* () {
    const response = yield* sendEffect(port, { method: "GET", path: "/metrics" })
    expect(response.status).toBe(200)
    expect(response.headers["content-type"]).toBe(prometheusContentType)
    return yield* parse(response.text)
  })

const json = { "content-type": "application/json" }

describe("GET /metrics", () => {
  it.scopedLive("reports job counters, durations and gauges, and HTTP requests, after running jobs", () =>
    Effect.gen(function* () {
      const server = yield* startLiveServer({ queue: { maxConcurrent: 1, retryBaseMs: 1, retryMaxMs: 5 } })
      const before = yield* scrape(server.port)

      // Three jobs that complete, one that fails, one that fails its first attempt, is retried, then fails.
      const submit = (body: object) =>
        Effect.map(
          sendEffect(server.port, {
            method: "POST",
            path: "/jobs",
            headers: json,
            body: JSON.stringify(body)
          }),
          (response) => {
            expect(response.status, response.text).toBe(201)
            return (JSON.parse(response.text) as { id: string }).id
          }
        )
      const ids = [
        yield* submit({ type: "bootstrap" }),
        yield* submit({ type: "bootstrap" }),
        yield* submit({ type: "extraction" }),
        yield* submit({ type: "bootstrap", metadata: { simulateFailure: true } }),
        yield* submit({ type: "bootstrap", metadata: { simulateFailure: true }, maxAttempts: 2 })
      ]
      for (const id of ids) yield* server.queue.await(id as JobId)

      // Two gated jobs with one worker: one runs, one waits.
      const running = yield* server.queue.submit(gatedType, {})
      expect(yield* Queue.take(server.gates.started)).toBe(running.id)
      const waiting = yield* server.queue.submit(gatedType, {})
      const during = yield* scrape(server.port)
      expect(seriesValue(during, "job_queue_jobs_running")).toBe(
        seriesValue(before, "job_queue_jobs_running") + 1
      )
      expect(seriesValue(during, "job_queue_jobs_pending")).toBe(
        seriesValue(before, "job_queue_jobs_pending") + 1
      )
      expect(during.job_queue_jobs_running!.type).toBe("gauge")

      // Cancelled over HTTP: the waiting one, then the running one.
      for (const id of [waiting.id, running.id]) {
        const response = yield* sendEffect(server.port, { method: "DELETE", path: `/jobs/${id}` })
        expect(response.status).toBe(200)
      }
      yield* Deferred.succeed(server.gates.release, undefined)
      expect((yield* sendEffect(server.port, { method: "GET", path: `/jobs/${ids[0]}` })).status).toBe(200)
      const missing = "00000000-0000-4000-8000-000000000000"
      expect((yield* sendEffect(server.port, { method: "GET", path: `/jobs/${missing}` })).status).toBe(404)
      expect((yield* sendEffect(server.port, { method: "GET", path: "/no/such/route" })).status).toBe(404)

      const after = yield* scrape(server.port)
      const delta = (name: string, labels: Record<string, string> = {}) =>
        seriesValue(after, name, labels) - seriesValue(before, name, labels)
      const countDelta = (name: string, labels: Record<string, string>) =>
        countOf(after, name, labels) - countOf(before, name, labels)

      expect(delta("job_queue_jobs_submitted_total", { type: "bootstrap" })).toBe(4)
      expect(delta("job_queue_jobs_submitted_total", { type: "extraction" })).toBe(1)
      expect(delta("job_queue_jobs_submitted_total", { type: gatedType })).toBe(2)
      expect(delta("job_queue_jobs_completed_total", { type: "bootstrap" })).toBe(2)
      expect(delta("job_queue_jobs_completed_total", { type: "extraction" })).toBe(1)
      expect(delta("job_queue_jobs_failed_total", { type: "bootstrap" })).toBe(2)
      expect(delta("job_queue_jobs_retried_total", { type: "bootstrap" })).toBe(1)
      expect(delta("job_queue_jobs_cancelled_total", { type: gatedType })).toBe(2)
      expect(delta("job_queue_jobs_pending")).toBe(0)
      expect(delta("job_queue_jobs_running")).toBe(0)
      for (const name of [
        "job_queue_jobs_submitted_total",
        "job_queue_jobs_completed_total",
        "job_queue_jobs_failed_total",
        "job_queue_jobs_retried_total",
        "job_queue_jobs_cancelled_total",
        "http_requests_total"
      ]) {
        expect(after[name]!.type, name).toBe("counter")
        expect(after[name]!.help, name).not.toBe("")
      }

      // Durations: one per finished job that had started (the waiting gated job never ran).
      const duration = "job_queue_job_duration_seconds"
      expect(after[duration]!.type).toBe("histogram")
      expect(countDelta(duration, { type: "bootstrap", status: "completed" })).toBe(2)
      expect(countDelta(duration, { type: "bootstrap", status: "failed" })).toBe(2)
      expect(countDelta(duration, { type: gatedType, status: "cancelled" })).toBe(1)
      const completed = histogramOf(after, duration, { type: "bootstrap", status: "completed" })!
      // Cumulative buckets: counts never decrease with the bound, and +Inf holds them all.
      const bound = (le: string) => (le === "+Inf" ? Number.POSITIVE_INFINITY : Number(le))
      const buckets = Object.entries(completed.buckets).sort(([a], [b]) => bound(a) - bound(b))
      expect(buckets[buckets.length - 1]).toEqual(["+Inf", completed.count])
      const counts = buckets.map(([, count]) => count)
      expect(counts).toEqual([...counts].sort((a, b) => a - b))

      // HTTP: by method, route pattern (never a raw id) and status, each timed.
      const http = "http_requests_total"
      expect(delta(http, { method: "POST", route: "/jobs", status: "201" })).toBe(5)
      expect(delta(http, { method: "DELETE", route: "/jobs/:id", status: "200" })).toBe(2)
      expect(delta(http, { method: "GET", route: "/jobs/:id", status: "200" })).toBe(1)
      expect(delta(http, { method: "GET", route: "/jobs/:id", status: "404" })).toBe(1)
      expect(delta(http, { method: "GET", route: unmatchedRoute, status: "404" })).toBe(1)
      expect(delta(http, { method: "GET", route: "/metrics", status: "200" })).toBe(2)
      const routes = (after[http]!.data as Array<PromData>).map((data) => data.labels.route!)
      expect(routes.every((route) => !/[0-9a-f]{8}-/.test(route))).toBe(true)
      const timing = "http_request_duration_seconds"
      expect(after[timing]!.type).toBe("histogram")
      for (const series of after[http]!.data as Array<PromData>) {
        expect(countOf(after, timing, series.labels), JSON.stringify(series.labels)).toBe(series.value)
      }
    })
  )
})

describe("the Prometheus rendering", () => {
  it.effect("escapes label values and help text, and sorts series so a parser reads them back", () =>
    Effect.gen(function* () {
      const counter = Metric.counter("test_render_total", {
        description: 'Help with a \\ backslash and\na newline "quoted"',
        incremental: true
      })
      const tricky = 'a "quoted" \\ value\nwith a newline'
      yield* Metric.increment(Metric.tagged(counter, "label", tricky))
      yield* Metric.incrementBy(Metric.tagged(counter, "label", "plain"), 2)
      const histogram = Metric.histogram("test_render_seconds", MetricBoundaries.fromIterable([0.1, 1]))
      yield* Metric.update(Metric.tagged(histogram, "kind", "x"), 0.5)
      yield* Metric.update(Metric.tagged(histogram, "kind", "x"), 5)
      const upDown = Metric.counter("test_render_up_down")
      yield* Metric.incrementBy(upDown, 3)
      yield* Metric.incrementBy(upDown, -1)

      const text = yield* prometheusText
      expect(text.endsWith("\n")).toBe(true)
      const metrics = yield* parse(text)
      expect(metrics.test_render_total!.type).toBe("counter")
      expect(seriesValue(metrics, "test_render_total", { label: tricky })).toBe(1)
      expect(seriesValue(metrics, "test_render_total", { label: "plain" })).toBe(2)
      expect(text).toContain("# HELP test_render_total Help with a \\\\ backslash and\\na newline")
      const series = histogramOf(metrics, "test_render_seconds", { kind: "x" })!
      expect(series).toMatchObject({ buckets: { "0.1": 0, "1": 1, "+Inf": 2 }, count: 2, sum: 5.5 })
      // A counter that can go down is exposed as a gauge.
      expect(metrics.test_render_up_down!.type).toBe("gauge")
      expect(seriesValue(metrics, "test_render_up_down")).toBe(2)
      expect(renderPrometheus([])).toBe("")
    })
  )

  it("labels requests by route pattern, with one label for everything unknown", () => {
    expect(routeOf("/jobs")).toBe("/jobs")
    expect(routeOf("/jobs/batch")).toBe("/jobs/batch")
    expect(routeOf("/jobs/4952c3f6-7fc4-4af1-982e-5333b6b3b37d")).toBe("/jobs/:id")
    expect(routeOf("/jobs/anything/events")).toBe("/jobs/:id/events")
    expect(routeOf("/events")).toBe("/events")
    expect(routeOf("/health")).toBe("/health")
    expect(routeOf("/config")).toBe("/config")
    expect(routeOf("/metrics")).toBe("/metrics")
    expect(routeOf("/")).toBe("/")
    expect(routeOf("/assets/app.js")).toBe("/assets/*")
    for (const path of ["/jobs/", "/jobs/a/b", "/nope", "//jobs", "/assets/", "/docs/x", ""]) {
      expect(routeOf(path), path).toBe(unmatchedRoute)
    }
  })
})
