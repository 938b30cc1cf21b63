// The dashboard's DOM: a row of the jobs table and the detail view of one job. Each is built once and then updated
// in place, so that a live update never takes the keyboard focus away from a control.
import { isCancellable, type JobJson } from "./api.js"
import {
  formatAge,
  formatDuration,
  formatPercent,
  formatStage,
  formatTimestamp,
  runTime,
  shortId
} from "./format.js"

/** Creates an element with attributes and children (strings become text, never HTML). */
export const h = <K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Readonly<Record<string, string>> = {},
  ...children: ReadonlyArray<Node | string>
): HTMLElementTagNameMap[K] => {
  const element = document.createElement(tag)
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value)
  element.append(...children)
  return element
}

/** Whether `candidate` is at least as recent as `current` (by `updatedAt`): live updates never go back in time. */
export const isNotOlder = (candidate: JobJson, current: JobJson): boolean =>
  Date.parse(candidate.updatedAt) >= Date.parse(current.updatedAt)

/** A short description of a job for labels and announcements: "transcription job 4952c3f6". */
export const describeJob = (job: JobJson): string => `${job.type} job ${shortId(job.id)}`

/** The link that opens a job's detail view. */
export const detailHref = (id: string): string => `#/jobs/${id}`

/** A status badge: the status in words, coloured by status (the colour is never the only cue). */
const badge = (): HTMLSpanElement => h("span", { class: "badge" })

const setBadge = (element: HTMLElement, status: string) => {
  element.textContent = status
  element.dataset.status = status
}

/** A progress bar with its percentage beside it. */
const progressBar = () => {
  const bar = h("progress", { max: "100", value: "0" })
  const percent = h("span", { class: "percent" })
  return { element: h("div", { class: "progress" }, bar, percent), bar, percent }
}

const setProgress = (
  parts: ReturnType<typeof progressBar>,
  job: Pick<JobJson, "progress" | "status">,
  label: string
) => {
  parts.bar.value = job.progress
  parts.bar.dataset.status = job.status
  parts.bar.setAttribute("aria-label", label)
  parts.percent.textContent = formatPercent(job.progress)
}

const time = (iso: string, text: string) => h("time", { datetime: iso, title: formatTimestamp(iso) }, text)

/** What a row or the detail view does when its Cancel button is pressed. */
export type CancelHandler = (job: JobJson, button: HTMLButtonElement) => void

/** One row of the jobs table. */
export interface JobRow {
  /** The `<tr>`, marked with `data-job-id`. */
  readonly element: HTMLTableRowElement
  /** The job it shows now. */
  readonly job: () => JobJson
  /** Shows a newer state of the job. */
  readonly update: (job: JobJson) => void
  /** Refreshes the age and duration. */
  readonly tick: (now: number) => void
}

/** Builds the row of a job; `onCancel` is called by its Cancel button (shown while the job is cancellable). */
export const makeJobRow = (initial: JobJson, onCancel: CancelHandler): JobRow => {
  let job = initial
  const type = h("span", { class: "type" })
  const id = h("span", { class: "job-id" }, shortId(job.id))
  const status = badge()
  const stage = h("td", { "data-label": "Stage" })
  const progress = progressBar()
  const message = h("td", { "data-label": "Message", class: "message" })
  const age = h("td", { "data-label": "Age" })
  const duration = h("td", { "data-label": "Duration" })
  const details = h("a", { href: detailHref(job.id), class: "button" }, "Details")
  const cancel = h("button", { type: "button", class: "danger" }, "Cancel")
  cancel.addEventListener("click", () => onCancel(job, cancel))
  const element = h(
    "tr",
    { "data-job-id": job.id },
    h("th", { scope: "row", "data-label": "Type" }, h("span", {}, type, " ", id)),
    h("td", { "data-label": "Status" }, status),
    stage,
    h("td", { "data-label": "Progress" }, progress.element),
    message,
    age,
    duration,
    h("td", { class: "row-actions" }, details, cancel)
  )

  const tick = (now: number) => {
    const created = job.createdAt
    age.replaceChildren(time(created, formatAge(now - Date.parse(created))))
    const ran = runTime(job, now)
    duration.textContent = ran === undefined ? "—" : formatDuration(ran)
  }

  const update = (next: JobJson) => {
    job = next
    element.dataset.status = job.status
    type.textContent = job.type
    setBadge(status, job.status)
    stage.textContent = formatStage(job.stage)
    setProgress(progress, job, `Progress of ${describeJob(job)}`)
    message.textContent = job.error ?? job.message ?? ""
    details.setAttribute("aria-label", `Details of ${describeJob(job)}`)
    cancel.setAttribute("aria-label", `Cancel ${describeJob(job)}`)
    const cancellable = isCancellable(job.status)
    if (!cancellable && document.activeElement === cancel) details.focus()
    cancel.hidden = !cancellable
    tick(Date.now())
  }

  update(job)
  return { element, job: () => job, update, tick }
}

const json = (value: unknown) => h("pre", { class: "json" }, JSON.stringify(value, null, 2))

const orDash = (value: string | number | null) => (value === null ? "—" : String(value))

const when = (iso: string | null) => (iso === null ? "—" : time(iso, formatTimestamp(iso)))

/** The detail view of one job, inside the detail dialog. */
export interface DetailView {
  /** The job's id. */
  readonly id: string
  /** The job it shows now, once loaded. */
  readonly job: () => JobJson | undefined
  /** Shows a (newer) state of the job. */
  readonly update: (job: JobJson) => void
  /** Shows that the job could not be loaded. */
  readonly fail: (message: string) => void
  /** Refreshes the running duration. */
  readonly tick: (now: number) => void
}

/** Fills `container` with the detail view of the job `id`, empty until {@link DetailView.update}. */
export const makeDetailView = (
  container: HTMLElement,
  title: HTMLElement,
  id: string,
  onCancel: CancelHandler
): DetailView => {
  let job: JobJson | undefined
  const list = h("dl", { class: "fields" })
  const status = h("p", { class: "detail-status" })
  const progress = progressBar()
  const cancel = h("button", { type: "button", class: "danger" }, "Cancel")
  cancel.addEventListener("click", () => job !== undefined && onCancel(job, cancel))
  const problem = h("p", { class: "form-error", role: "alert", hidden: "" })
  const sections = h("div", { class: "detail-sections" })
  title.textContent = `Job ${shortId(id)}`
  container.replaceChildren(
    problem,
    h("div", { class: "detail-summary" }, status, progress.element, cancel),
    list,
    sections
  )
  status.textContent = "Loading…"
  cancel.hidden = true

  const field = (label: string, value: Node | string) => [h("dt", {}, label), h("dd", {}, value)] as const
  const duration = h("dd")

  const tick = (now: number) => {
    if (job === undefined) return
    const ran = runTime(job, now)
    duration.textContent = ran === undefined ? "—" : formatDuration(ran)
  }

  const render = (current: JobJson) => {
    list.replaceChildren(
      ...field("ID", h("code", {}, current.id)),
      ...field("Type", current.type),
      ...field("Stage", formatStage(current.stage)),
      ...field("Message", orDash(current.message)),
      ...field("Attempts", `${current.attempts} of ${current.maxAttempts}`),
      ...field("Priority", String(current.priority)),
      ...field("Timeout", current.timeoutMs === null ? "—" : formatDuration(current.timeoutMs)),
      ...field("Idempotency key", orDash(current.idempotencyKey)),
      h("dt", {}, "Duration"),
      duration,
      ...field("Created", when(current.createdAt)),
      ...field("Run at", when(current.runAt)),
      ...field("Started", when(current.startedAt)),
      ...field("Finished", when(current.finishedAt)),
      ...field("Updated", when(current.updatedAt))
    )
    tick(Date.now())
  }

  const section = (heading: string, content: Node) =>
    h("section", { class: "detail-section" }, h("h3", {}, heading), content)

  const update = (next: JobJson) => {
    if (job !== undefined && !isNotOlder(next, job)) return
    job = next
    problem.hidden = true
    title.textContent = `${job.type} job ${shortId(job.id)}`
    const badgeElement = badge()
    setBadge(badgeElement, job.status)
    status.replaceChildren("Status ", badgeElement)
    setProgress(progress, job, "Progress")
    const cancellable = isCancellable(job.status)
    if (!cancellable && document.activeElement === cancel) container.closest("dialog")?.focus()
    cancel.hidden = !cancellable
    cancel.setAttribute("aria-label", `Cancel ${describeJob(job)}`)
    render(job)
    sections.replaceChildren(
      ...(job.error === null ? [] : [section("Error", h("pre", { class: "error-text" }, job.error))]),
      ...(job.lastError === null || job.lastError === job.error
        ? []
        : [section("Last failed attempt", h("pre", { class: "error-text" }, job.lastError))]),
      section("Metadata", json(job.metadata)),
      section("Result", job.result === null ? h("p", { class: "muted" }, "None yet.") : json(job.result))
    )
  }

  const fail = (message: string) => {
    problem.textContent = message
    problem.hidden = false
    if (job === undefined) status.textContent = ""
  }

  return { id, job: () => job, update, fail, tick }
}
