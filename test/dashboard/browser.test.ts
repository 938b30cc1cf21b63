// The dashboard in a real browser (Debian's Chromium through playwright-core) against the real server on a real
// port. Every wait is on a condition of the page or of the queue, never a fixed sleep: gated jobs stay at 50 %
// until the test opens their gate.
import { mkdirSync } from "node:fs"
import { join } from "node:path"
import { Effect } from "effect"
import type { Page } from "playwright-core"
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import type { JobId } from "../../src/domain/Job.js"
import {
  artifactsDir,
  buildDashboard,
  type DashboardServer,
  gatedType,
  getJob,
  launchBrowser,
  rowIds,
  startServer,
  submit,
  type TestBrowser,
  waitForRow,
  waitForRows,
  waitMs,
  watchProblems
} from "./support.js"

let browser: TestBrowser
let server: DashboardServer | undefined
const pages: Array<Page> = []
/** The problems seen by each page of the current test (see `watchProblems`). */
const problems: Array<Array<string>> = []

beforeAll(async () => {
  await buildDashboard()
  browser = await launchBrowser()
}, 60_000)

afterAll(async () => {
  await browser?.close()
})

afterEach(async () => {
  for (const page of pages.splice(0)) await page.close()
  await server?.close()
  server = undefined
  // No uncaught exception and no Content-Security-Policy violation in any page of the test.
  expect(problems.splice(0).flat()).toEqual([])
})

const start = async (...args: Parameters<typeof startServer>) => {
  server = await startServer(...args)
  return server
}

/** A new page, watched for problems, with its viewport set; not yet at any address. */
const newPage = async (viewport = { width: 1280, height: 900 }) => {
  const page = await browser.context.newPage()
  pages.push(page)
  problems.push(watchProblems(page))
  await page.setViewportSize(viewport)
  return page
}

/** Opens the dashboard at `path` and waits until it has loaded and follows the event stream. */
const open = async (target: DashboardServer, path = "/", page?: Page) => {
  const tab = page ?? (await newPage())
  await tab.goto(`${target.url}${path}`)
  await waitForMode(tab, "live")
  return tab
}

const waitForMode = (page: Page, mode: "live" | "polling", timeout = waitMs) =>
  page.locator(`#connection[data-mode="${mode}"]`).waitFor({ timeout })

const row = (page: Page, id: string) => page.locator(`tr[data-job-id="${id}"]`)

const awaitJob = (target: DashboardServer, id: string) => Effect.runPromise(target.queue.await(id as JobId))

const listIds = async (target: DashboardServer, query = ""): Promise<Array<string>> => {
  const page = (await (await fetch(`${target.url}/jobs${query}`)).json()) as { items: Array<{ id: string }> }
  return page.items.map((job) => job.id)
}

/** Clicks Submit and returns the job the server created (from the POST's answer). */
const submitForm = async (page: Page) => {
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith("/jobs") && r.request().method() === "POST"),
    page.getByRole("button", { name: "Submit" }).click()
  ])
  return { status: response.status(), body: (await response.json()) as { id: string; message?: string } }
}

describe("submitting from the form", () => {
  it("shows the job's progress bar reach 100% and its badge turn completed", async () => {
    const target = await start()
    const page = await open(target)
    await page.getByLabel("Job type").selectOption(gatedType)
    await page.getByLabel("Metadata (JSON)").fill('{ "label": "form" }')
    const { status, body } = await submitForm(page)
    expect(status).toBe(201)
    await waitForRow(page, body.id, { status: "running", progress: 50, cancellable: true })
    await expect(row(page, body.id).locator(".message").textContent()).resolves.toBe("Waiting for gate form")
    await target.gates.open("form")
    await waitForRow(page, body.id, { status: "completed", progress: 100, cancellable: false })
    await expect(page.locator("#notice").textContent()).resolves.toBe(
      `Submitted gated job ${body.id.slice(0, 8)}.`
    )
  })

  it("runs a demo transcription to completion", async () => {
    const target = await start({}, 20)
    const page = await open(target)
    await page.getByLabel("Job type").selectOption("transcription")
    await page.getByLabel("Metadata (JSON)").fill('{"source": "talk.mp3", "language": "en"}')
    const { status, body } = await submitForm(page)
    expect(status).toBe(201)
    await waitForRow(page, body.id, { status: "completed", progress: 100, cancellable: false })
    await expect(row(page, body.id).locator("td[data-label=Stage]").textContent()).resolves.toBe("finalizing")
  })

  it("shows the server's validation error next to the metadata field", async () => {
    const target = await start()
    const page = await open(target)
    const metadata = page.getByLabel("Metadata (JSON)")
    const error = page.locator("#submit-metadata-error")
    await page.getByLabel("Job type").selectOption("transcription")
    await metadata.fill("{}")
    const { status, body } = await submitForm(page)
    expect(status).toBe(400)
    await error.waitFor({ state: "visible", timeout: waitMs })
    await expect(error.textContent()).resolves.toBe(body.message)
    expect(body.message).toContain("metadata.source")
    await expect(metadata.getAttribute("aria-invalid")).resolves.toBe("true")
    await expect(metadata.getAttribute("aria-describedby")).resolves.toContain("submit-metadata-error")
    await expect(metadata.evaluate((element) => element === document.activeElement)).resolves.toBe(true)
    expect(await listIds(target)).toEqual([])

    // Fixed: the error goes away and the job is created.
    await metadata.fill('{"source": "talk.mp3"}')
    const fixed = await submitForm(page)
    expect(fixed.status).toBe(201)
    await error.waitFor({ state: "hidden", timeout: waitMs })
    await expect(metadata.getAttribute("aria-invalid")).resolves.toBeNull()
    await waitForRow(page, fixed.body.id, { status: "completed" })
  })

  it("refuses metadata that is not a JSON object without sending it", async () => {
    const target = await start()
    const page = await open(target)
    let posts = 0
    page.on("request", (request) => {
      if (request.method() === "POST") posts++
    })
    const metadata = page.getByLabel("Metadata (JSON)")
    const error = page.locator("#submit-metadata-error")
    const submitButton = page.getByRole("button", { name: "Submit" })
    await page.getByLabel("Job type").selectOption("transcription")

    await metadata.fill('{"source": ')
    await submitButton.click()
    await error.waitFor({ state: "visible", timeout: waitMs })
    await expect(error.textContent()).resolves.toMatch(/^Metadata is not valid JSON: /)
    await expect(metadata.getAttribute("aria-invalid")).resolves.toBe("true")

    await metadata.fill('["talk.mp3"]')
    await submitButton.click()
    await page.waitForFunction(
      () => document.querySelector("#submit-metadata-error")?.textContent?.startsWith("Metadata must be"),
      undefined,
      { timeout: waitMs }
    )
    expect(posts).toBe(0)
    expect(await listIds(target)).toEqual([])
  })
})

describe("cancelling", () => {
  it("cancels a running job and a pending job from their Cancel buttons", async () => {
    const target = await start()
    const running = await submit(target, { type: gatedType, metadata: { label: "cancel" } })
    const pending = await submit(target, { type: "bootstrap", delayMs: 600_000 })
    const page = await open(target)
    await waitForRow(page, running.id, { status: "running", progress: 50, cancellable: true })
    await waitForRow(page, pending.id, { status: "pending", progress: 0, cancellable: true })

    await row(page, running.id).getByRole("button", { name: "Cancel" }).click()
    await waitForRow(page, running.id, { status: "cancelled", cancellable: false })
    await expect(getJob(target, running.id)).resolves.toMatchObject({ status: "cancelled" })

    await row(page, pending.id).getByRole("button", { name: "Cancel" }).click()
    await waitForRow(page, pending.id, { status: "cancelled", cancellable: false })
    await expect(getJob(target, pending.id)).resolves.toMatchObject({ status: "cancelled" })
    await expect(page.locator("#notice").textContent()).resolves.toBe(
      `Cancelled bootstrap job ${pending.id.slice(0, 8)}.`
    )
  })
})

describe("the list", () => {
  it("filters by status and by type, keeps the filters in the address, and follows jobs leaving a filter", async () => {
    const target = await start()
    const running = await submit(target, { type: gatedType, metadata: { label: "filter" } })
    const completed = await submit(target, { type: "bootstrap" })
    await awaitJob(target, completed.id)
    const failed = await submit(target, { type: "extraction", metadata: { simulateFailure: true } })
    await awaitJob(target, failed.id)
    const pending = await submit(target, { type: "bootstrap", delayMs: 600_000 })
    const page = await open(target)
    await waitForRows(page, await listIds(target))
    expect(await rowIds(page)).toHaveLength(4)

    const status = page.getByLabel("Status")
    const type = page.getByLabel("Type", { exact: true })
    await status.selectOption("completed")
    await waitForRows(page, [completed.id])
    expect(new URL(page.url()).searchParams.getAll("status")).toEqual(["completed"])

    await status.selectOption("")
    await type.selectOption("bootstrap")
    await waitForRows(page, await listIds(target, "?type=bootstrap"))
    expect(await rowIds(page)).toEqual(expect.arrayContaining([pending.id, completed.id]))

    await status.selectOption("pending")
    await waitForRows(page, [pending.id])

    // Opened from the address, the filters are set and applied.
    await page.goto(`${target.url}/?status=failed`)
    await waitForMode(page, "live")
    await waitForRows(page, [failed.id])
    await expect(status.inputValue()).resolves.toBe("failed")

    // Live: a running job that completes leaves the "running" list.
    await status.selectOption("running")
    await waitForRows(page, [running.id])
    await target.gates.open("filter")
    await waitForRows(page, [])
    await page.locator("#empty").waitFor({ state: "visible", timeout: waitMs })
  })

  it("pages through the list with Next page and Previous page", async () => {
    const target = await start()
    for (let i = 0; i < 5; i++) await submit(target, { type: "bootstrap", delayMs: 600_000 })
    const all = await listIds(target)
    const page = await open(target, "/?limit=2")
    const next = page.getByRole("button", { name: "Next page" })
    const previous = page.getByRole("button", { name: "Previous page" })
    await waitForRows(page, all.slice(0, 2))
    await expect(previous.isDisabled()).resolves.toBe(true)
    await next.click()
    await waitForRows(page, all.slice(2, 4))
    await expect(page.locator("#page-info").textContent()).resolves.toBe("Page 2")
    await next.click()
    await waitForRows(page, all.slice(4))
    await expect(next.isDisabled()).resolves.toBe(true)
    await previous.click()
    await waitForRows(page, all.slice(2, 4))
    await previous.click()
    await waitForRows(page, all.slice(0, 2))
  })

  it("shows jobs that other clients submit, live from the event stream", async () => {
    // Polling so slow that only the event stream can explain an update.
    const target = await start({ pollIntervalMs: 600_000 })
    const page = await open(target)
    const job = await submit(target, { type: gatedType, metadata: { label: "live" } })
    await waitForRow(page, job.id, { status: "running", progress: 50 })
    await target.gates.open("live")
    await waitForRow(page, job.id, { status: "completed", progress: 100 })
    await expect(page.locator("#connection").textContent()).resolves.toBe("Live")
  })

  it("falls back to polling every pollIntervalMs while the event stream is unavailable", async () => {
    const target = await start({ pollIntervalMs: 200 })
    const page = await newPage()
    await page.route("**/events*", (route) =>
      route.fulfill({
        status: 503,
        contentType: "application/json",
        body: JSON.stringify({ _tag: "Unavailable", message: "no events here" })
      })
    )
    await page.goto(target.url)
    await waitForMode(page, "polling")
    await expect(page.locator("#connection").textContent()).resolves.toBe(
      "Live updates unavailable: refreshing every 200 ms"
    )
    const job = await submit(target, { type: gatedType, metadata: { label: "poll" } })
    await waitForRow(page, job.id, { status: "running", progress: 50 })
    await target.gates.open("poll")
    await waitForRow(page, job.id, { status: "completed", progress: 100 })

    // The stream comes back: the page follows it again (it retries at most 10 s apart).
    await page.unroute("**/events*")
    await waitForMode(page, "live", 15_000)
  })
})

describe("a server with an API token", () => {
  const token = "dashboard-test-token-0123456789"

  it("asks for the token, keeps it for the tab's session only, and sends it with every request and the stream", async () => {
    const target = await start({}, 10, token)
    const page = await newPage()
    await page.goto(target.url)
    // Without a token the API answers 401: the page asks for one, and does not take a wrong one.
    await page.getByLabel("API token", { exact: true }).waitFor()
    await page.getByLabel("API token", { exact: true }).fill("not-the-token-0123456789")
    await page.getByRole("button", { name: "Use token" }).click()
    await page
      .locator("#token-error", { hasText: "The server refused this token. Enter its API token." })
      .waitFor()
    await page.getByLabel("API token", { exact: true }).fill(token)
    await page.getByRole("button", { name: "Use token" }).click()
    await waitForMode(page, "live")
    await expect(page.locator("#token-panel").isHidden()).resolves.toBe(true)
    expect(await page.evaluate(() => Object.keys(sessionStorage))).toHaveLength(1)
    expect(await page.evaluate(() => Object.keys(localStorage))).toEqual([])

    // A job submitted by another client shows up live: the event stream carries the token too.
    const job = await Effect.runPromise(target.queue.submit(gatedType, { label: "token" }))
    await waitForRow(page, job.id, { status: "running", progress: 50, cancellable: true })
    await page.getByLabel("Job type").selectOption("bootstrap")
    const { status, body } = await submitForm(page)
    expect(status).toBe(201)
    await waitForRow(page, body.id, { status: "completed" })

    // A reload keeps the token (same tab); "Forget the API token" drops it and the page asks again.
    await page.reload()
    await waitForMode(page, "live")
    await page.getByRole("button", { name: "Forget the API token" }).click()
    await page.getByLabel("API token", { exact: true }).waitFor()
    expect(await page.evaluate(() => Object.keys(sessionStorage))).toEqual([])
    await target.gates.open("token")
  })
})

describe("the detail view", () => {
  it("shows a job's metadata, result, error, attempts and every timestamp", async () => {
    const target = await start()
    const failed = await submit(target, {
      type: "extraction",
      metadata: { notes: "detail view", simulateFailure: true }
    })
    await awaitJob(target, failed.id)
    const completed = await submit(target, { type: "transcription", metadata: { source: "talk.mp3" } })
    await awaitJob(target, completed.id)
    const page = await open(target)
    const dialog = page.getByRole("dialog")

    await row(page, failed.id).getByRole("link", { name: "Details" }).click()
    await dialog.waitFor({ state: "visible", timeout: waitMs })
    expect(new URL(page.url()).hash).toBe(`#/jobs/${failed.id}`)
    const job = (await (await fetch(`${target.url}/jobs/${failed.id}`)).json()) as Record<string, string>
    await page.waitForFunction(
      (job) => {
        const body = document.querySelector("#detail-body")
        const text = body?.textContent ?? ""
        const times = Array.from(body?.querySelectorAll("time") ?? [], (time) =>
          time.getAttribute("datetime")
        )
        return (
          document.querySelector("#detail-title")?.textContent === `extraction job ${job.id?.slice(0, 8)}` &&
          body?.querySelector(".badge")?.textContent === "failed" &&
          text.includes('"notes": "detail view"') &&
          text.includes(job.error ?? "?") &&
          text.includes("Attempts1 of 1") &&
          ["Created", "Run at", "Started", "Finished", "Updated"].every((label) => text.includes(label)) &&
          [job.createdAt, job.runAt, job.startedAt, job.finishedAt, job.updatedAt].every((at) =>
            times.includes(at ?? "?")
          )
        )
      },
      job,
      { timeout: waitMs }
    )
    await page.keyboard.press("Escape")
    await dialog.waitFor({ state: "hidden", timeout: waitMs })
    await page.waitForFunction(() => location.hash === "", undefined, { timeout: waitMs })

    await row(page, completed.id).getByRole("link", { name: "Details" }).click()
    await dialog.waitFor({ state: "visible", timeout: waitMs })
    await page.waitForFunction(
      () => document.querySelector("#detail-body")?.textContent?.includes('"source": "talk.mp3"'),
      undefined,
      { timeout: waitMs }
    )
    const result = await dialog.locator("section", { hasText: "Result" }).locator("pre").textContent()
    expect(JSON.parse(result ?? "")).toMatchObject({
      simulated: true,
      kind: "transcription",
      source: "talk.mp3"
    })
    await dialog.getByRole("button", { name: "Close" }).click()
    await dialog.waitFor({ state: "hidden", timeout: waitMs })
  })

  it("opens from its address, follows the job live and cancels it", async () => {
    const target = await start()
    const job = await submit(target, { type: gatedType, metadata: { label: "detail" } })
    const page = await open(target, `/#/jobs/${job.id}`)
    const dialog = page.getByRole("dialog")
    await dialog.waitFor({ state: "visible", timeout: waitMs })
    await page.waitForFunction(
      () => document.querySelector("#detail-body .badge")?.textContent === "running",
      undefined,
      { timeout: waitMs }
    )
    await dialog.getByRole("button", { name: "Cancel" }).click()
    await page.waitForFunction(
      () => document.querySelector("#detail-body .badge")?.textContent === "cancelled",
      undefined,
      { timeout: waitMs }
    )
    await expect(dialog.getByRole("button", { name: "Cancel" }).isHidden()).resolves.toBe(true)
    await expect(getJob(target, job.id)).resolves.toMatchObject({ status: "cancelled" })
  })

  it("says so when the job does not exist", async () => {
    const target = await start()
    const id = crypto.randomUUID()
    const page = await open(target, `/#/jobs/${id}`)
    await page
      .getByRole("dialog")
      .getByText(`No job with id ${id}`)
      .waitFor({ state: "visible", timeout: waitMs })
  })
})

describe("accessibility", () => {
  it("labels every control, names every button, and works from the keyboard", async () => {
    const target = await start()
    await submit(target, { type: "bootstrap", delayMs: 600_000 })
    const page = await open(target)
    await page.locator("#jobs-body tr").first().waitFor({ timeout: waitMs })

    const unlabelled = await page.$$eval("select, textarea, input", (controls) =>
      controls
        .filter((control) => {
          const labels = (control as HTMLSelectElement).labels
          return (labels === null || labels.length === 0) && !control.hasAttribute("aria-label")
        })
        .map((control) => control.outerHTML)
    )
    expect(unlabelled).toEqual([])
    const unnamed = await page.$$eval("button, a[href], progress", (elements) =>
      elements
        .filter((element) => (element.getAttribute("aria-label") ?? element.textContent ?? "").trim() === "")
        .map((element) => element.outerHTML)
    )
    expect(unnamed).toEqual([])

    // Keyboard only: type the metadata, Tab to Submit, press Enter.
    await page.getByLabel("Job type").selectOption("bootstrap")
    await page.getByLabel("Metadata (JSON)").focus()
    await page.keyboard.press("ControlOrMeta+A")
    await page.keyboard.insertText('{"notes": "from the keyboard"}')
    await page.keyboard.press("Tab")
    await expect(page.evaluate(() => document.activeElement?.id)).resolves.toBe("submit-button")
    const [response] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith("/jobs") && r.request().method() === "POST"),
      page.keyboard.press("Enter")
    ])
    const job = (await response.json()) as { id: string }
    await waitForRow(page, job.id, { status: "completed" })

    // Enter on Details opens the detail view; Escape closes it and gives the focus back.
    const details = row(page, job.id).getByRole("link", { name: "Details" })
    await details.focus()
    await page.keyboard.press("Enter")
    await page.getByRole("dialog").waitFor({ state: "visible", timeout: waitMs })
    await page.keyboard.press("Escape")
    await page.getByRole("dialog").waitFor({ state: "hidden", timeout: waitMs })
    await expect(details.evaluate((element) => element === document.activeElement)).resolves.toBe(true)
  })
})

describe("screenshots", () => {
  /** Jobs in every state: completed, failed, running (50 %), pending and cancelled. */
  const seed = async (target: DashboardServer) => {
    const completed = await submit(target, { type: "transcription", metadata: { source: "keynote.mp4" } })
    await awaitJob(target, completed.id)
    const failed = await submit(target, {
      type: "extraction",
      metadata: { source: "report.pdf", simulateFailure: true }
    })
    await awaitJob(target, failed.id)
    const cancelled = await submit(target, { type: gatedType, metadata: { label: "cancelled" } })
    const cancel = await fetch(`${target.url}/jobs/${cancelled.id}`, { method: "DELETE" })
    expect(cancel.status).toBe(200)
    const running = await submit(target, { type: gatedType, metadata: { label: "running" } })
    const pending = await submit(target, {
      type: "bootstrap",
      metadata: { notes: "nightly" },
      delayMs: 600_000
    })
    return { completed, failed, cancelled, running, pending }
  }

  it("saves the dashboard with jobs in several states to artifacts/dashboard.png", async () => {
    const target = await start()
    const jobs = await seed(target)
    const page = await open(target)
    await waitForRow(page, jobs.running.id, { status: "running", progress: 50 })
    await waitForRow(page, jobs.pending.id, { status: "pending", progress: 0 })
    await waitForRow(page, jobs.completed.id, { status: "completed", progress: 100 })
    await waitForRow(page, jobs.failed.id, { status: "failed" })
    await waitForRow(page, jobs.cancelled.id, { status: "cancelled" })
    mkdirSync(artifactsDir, { recursive: true })
    await page.screenshot({ path: join(artifactsDir, "dashboard.png"), fullPage: true })

    await row(page, jobs.failed.id).getByRole("link", { name: "Details" }).click()
    await page.waitForFunction(
      () => document.querySelector("#detail-body .badge")?.textContent === "failed",
      undefined,
      { timeout: waitMs }
    )
    await page.screenshot({ path: join(artifactsDir, "dashboard-detail.png") })
  })

  it("fits a phone's width without scrolling sideways (artifacts/dashboard-phone.png)", async () => {
    const target = await start()
    const jobs = await seed(target)
    const page = await open(target, "/", await newPage({ width: 375, height: 740 }))
    await waitForRow(page, jobs.running.id, { status: "running", progress: 50, cancellable: true })
    const overflow = await page.evaluate(
      () => document.documentElement.scrollWidth - document.documentElement.clientWidth
    )
    expect(overflow).toBe(0)
    await expect(
      row(page, jobs.running.id).getByRole("button", { name: "Cancel" }).isVisible()
    ).resolves.toBe(true)
    mkdirSync(artifactsDir, { recursive: true })
    await page.screenshot({ path: join(artifactsDir, "dashboard-phone.png"), fullPage: true })
  })
})
