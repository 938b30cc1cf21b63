// The web dashboard served at `GET /`: lists jobs (newest first, filtered, a page at a time), submits and cancels
// them, shows one in detail, and follows `GET /events` to stay live, polling `GET /jobs` every `pollIntervalMs`
// while the event stream is unavailable. It uses only the public HTTP API.
import {
  ApiError,
  apiUrl,
  type ClientConfigJson,
  cancelJob,
  getConfig,
  getJob,
  type JobEventJson,
  type JobJson,
  jobStatuses,
  listJobs,
  onUnauthorized,
  reportUnauthorized,
  requestHeaders,
  storedToken,
  storeToken,
  submitJob
} from "./api.js"
import { EventStreamRefused, followEventStream } from "./sse.js"
import {
  type CancelHandler,
  type DetailView,
  describeJob,
  h,
  isNotOlder,
  type JobRow,
  makeDetailView,
  makeJobRow
} from "./view.js"

/** The page size when the page's URL gives none (`?limit=`). */
const defaultLimit = 50
/** An event stream silent this long (it sends a heartbeat every 15 s) is taken for dead and reopened. */
const stallMs = 45_000
/** The first and the longest wait before reopening a lost event stream. */
const reconnectMs = { first: 1000, max: 10_000 } as const
/** How long live changes gather before the list is reloaded once for all of them. */
const refreshDebounceMs = 150
/** How many jobs' latest states are remembered (see `remember`). */
const rememberedJobs = 1000

const byId = <T extends HTMLElement>(id: string): T => {
  const element = document.getElementById(id)
  if (element === null) throw new Error(`The page lacks #${id}`)
  return element as T
}

const ui = {
  connection: byId<HTMLParagraphElement>("connection"),
  forgetToken: byId<HTMLButtonElement>("forget-token"),
  tokenPanel: byId<HTMLElement>("token-panel"),
  tokenForm: byId<HTMLFormElement>("token-form"),
  tokenInput: byId<HTMLInputElement>("token-input"),
  tokenError: byId<HTMLParagraphElement>("token-error"),
  submitForm: byId<HTMLFormElement>("submit-form"),
  submitType: byId<HTMLSelectElement>("submit-type"),
  submitTypeError: byId<HTMLParagraphElement>("submit-type-error"),
  metadata: byId<HTMLTextAreaElement>("submit-metadata"),
  metadataError: byId<HTMLParagraphElement>("submit-metadata-error"),
  submitButton: byId<HTMLButtonElement>("submit-button"),
  submitError: byId<HTMLParagraphElement>("submit-error"),
  filters: byId<HTMLFormElement>("filters"),
  filterStatus: byId<HTMLSelectElement>("filter-status"),
  filterType: byId<HTMLSelectElement>("filter-type"),
  notice: byId<HTMLParagraphElement>("notice"),
  listError: byId<HTMLParagraphElement>("list-error"),
  jobsHeading: byId<HTMLHeadingElement>("jobs-heading"),
  tbody: byId<HTMLTableSectionElement>("jobs-body"),
  empty: byId<HTMLParagraphElement>("empty"),
  previousPage: byId<HTMLButtonElement>("previous-page"),
  nextPage: byId<HTMLButtonElement>("next-page"),
  pageInfo: byId<HTMLSpanElement>("page-info"),
  dialog: byId<HTMLDialogElement>("detail"),
  dialogTitle: byId<HTMLHeadingElement>("detail-title"),
  dialogBody: byId<HTMLDivElement>("detail-body"),
  dialogClose: byId<HTMLButtonElement>("detail-close")
}

const state = {
  config: undefined as ClientConfigJson | undefined,
  status: "",
  type: "",
  limit: defaultLimit,
  /** The cursor each visited page started at (null for the first); the last one is the current page's. */
  cursors: [null] as Array<string | null>,
  nextCursor: null as string | null,
  rows: new Map<string, JobRow>(),
  detail: undefined as DetailView | undefined,
  polling: undefined as ReturnType<typeof setInterval> | undefined
}

const messageOf = (error: unknown): string =>
  error instanceof Error ? error.message : "Something went wrong"

const announce = (text: string) => {
  ui.notice.textContent = text
}

const showListError = (text: string | undefined) => {
  ui.listError.textContent = text ?? ""
  ui.listError.hidden = text === undefined
}

const onFirstPage = () => state.cursors.length === 1

/**
 * The newest state seen of each job lately, from events and answers alike. Events about a job that is not shown
 * yet (a new job, while the page that will show it loads) are kept here, so that the page never shows a job older
 * than an event already received: no later event would correct it.
 */
const latest = new Map<string, JobJson>()

/** Records a state of a job; returns the newest state known of it. */
const remember = (job: JobJson): JobJson => {
  const known = latest.get(job.id)
  if (known !== undefined && !isNotOlder(job, known)) return known
  latest.delete(job.id)
  latest.set(job.id, job)
  if (latest.size > rememberedJobs) {
    const oldest = latest.keys().next()
    if (oldest.done !== true) latest.delete(oldest.value)
  }
  return job
}

const matchesFilters = (job: JobJson) =>
  (state.status === "" || job.status === state.status) && (state.type === "" || job.type === state.type)

// ------------------------------------------------------------------------------------------------------------
// The list
// ------------------------------------------------------------------------------------------------------------

const queryKey = () => JSON.stringify([state.status, state.type, state.limit, state.cursors.at(-1)])

const renderPage = (jobs: ReadonlyArray<JobJson>) => {
  const shown = new Set(jobs.map((job) => job.id))
  for (const [id, row] of state.rows) {
    if (shown.has(id)) continue
    if (row.element.contains(document.activeElement)) ui.jobsHeading.focus()
    row.element.remove()
    state.rows.delete(id)
  }
  jobs.map(remember).forEach((job, index) => {
    let row = state.rows.get(job.id)
    if (row === undefined) {
      row = makeJobRow(job, cancel)
      state.rows.set(job.id, row)
    } else if (isNotOlder(job, row.job())) {
      row.update(job)
    }
    // Rows already in place are never moved: moving one would take the focus from its buttons.
    const at = ui.tbody.children[index]
    if (at !== row.element) ui.tbody.insertBefore(row.element, at ?? null)
  })
  ui.empty.hidden = jobs.length > 0
  ui.empty.textContent =
    state.status === "" && state.type === "" ? "No jobs yet." : "No jobs match these filters."
}

const renderPager = () => {
  const page = state.cursors.length
  ui.pageInfo.textContent = `Page ${page}`
  ui.previousPage.disabled = page === 1
  ui.nextPage.disabled = state.nextCursor === null
  for (const button of [ui.previousPage, ui.nextPage]) {
    if (button.disabled && document.activeElement === button) ui.jobsHeading.focus()
  }
}

const loadPage = async () => {
  for (;;) {
    const key = queryKey()
    const page = await listJobs({
      status: state.status,
      type: state.type,
      limit: state.limit,
      cursor: state.cursors.at(-1) ?? null
    })
    // The filters or the page changed while this page loaded: load the new one instead.
    if (key !== queryKey()) continue
    state.nextCursor = page.nextCursor
    renderPage(page.items)
    renderPager()
    return
  }
}

let loading: Promise<void> | undefined
let loadAgain = false

/** Reloads the current page; calls made while a load runs are served by one more load after it. */
const refresh = (): Promise<void> => {
  if (loading !== undefined) {
    loadAgain = true
    return loading
  }
  loading = (async () => {
    try {
      do {
        loadAgain = false
        await loadPage()
      } while (loadAgain)
      showListError(undefined)
    } catch (error) {
      showListError(`Cannot load the jobs: ${messageOf(error)}`)
    } finally {
      loading = undefined
    }
  })()
  return loading
}

let refreshTimer: ReturnType<typeof setTimeout> | undefined

const scheduleRefresh = () => {
  if (refreshTimer !== undefined) return
  refreshTimer = setTimeout(() => {
    refreshTimer = undefined
    void refresh()
  }, refreshDebounceMs)
}

/** Shows a newer state of a job wherever it is shown, and reloads the page when its rows may have changed. */
const applyJob = (received: JobJson, kind?: JobEventJson["kind"]) => {
  const job = remember(received)
  const row = state.rows.get(job.id)
  if (row !== undefined && isNotOlder(job, row.job())) row.update(job)
  if (state.detail?.id === job.id) state.detail.update(job)
  if (row === undefined) {
    // A new job belongs on the first page; a job that now has the filtered status may belong on this one.
    if (
      matchesFilters(job) &&
      ((kind === "submitted" && onFirstPage()) || (state.status !== "" && kind !== "progress"))
    ) {
      scheduleRefresh()
    }
  } else if (!matchesFilters(job)) {
    scheduleRefresh()
  }
}

const readUrlState = () => {
  const params = new URLSearchParams(location.search)
  state.status = params.get("status") ?? ""
  state.type = params.get("type") ?? ""
  const limit = Number(params.get("limit"))
  state.limit = Number.isInteger(limit) && limit >= 1 && limit <= 500 ? limit : defaultLimit
}

const writeUrlState = () => {
  const params = new URLSearchParams(location.search)
  for (const [name, value] of [
    ["status", state.status],
    ["type", state.type]
  ] as const) {
    if (value === "") params.delete(name)
    else params.set(name, value)
  }
  const search = params.toString()
  history.replaceState(
    history.state,
    "",
    `${location.pathname}${search === "" ? "" : `?${search}`}${location.hash}`
  )
}

const option = (value: string, text = value) => h("option", { value }, text)

const fillSelect = (select: HTMLSelectElement, values: ReadonlyArray<string>, selected: string) => {
  const first = select.options[0]
  select.replaceChildren(...(first?.value === "" ? [first] : []), ...values.map((value) => option(value)))
  // A value from the URL that is not (or no longer) offered is still shown, so the list matches the control.
  if (selected !== "" && !values.includes(selected)) select.append(option(selected))
  select.value = selected
}

ui.filters.addEventListener("submit", (event) => event.preventDefault())
ui.filters.addEventListener("change", () => {
  state.status = ui.filterStatus.value
  state.type = ui.filterType.value
  state.cursors = [null]
  writeUrlState()
  void refresh()
})

ui.nextPage.addEventListener("click", () => {
  if (state.nextCursor === null) return
  state.cursors.push(state.nextCursor)
  void refresh()
})

ui.previousPage.addEventListener("click", () => {
  if (state.cursors.length === 1) return
  state.cursors.pop()
  void refresh()
})

// ------------------------------------------------------------------------------------------------------------
// Cancelling
// ------------------------------------------------------------------------------------------------------------

const cancel: CancelHandler = async (job, button) => {
  button.disabled = true
  try {
    const cancelled = await cancelJob(job.id)
    applyJob(cancelled)
    announce(`Cancelled ${describeJob(cancelled)}.`)
  } catch (error) {
    announce(`Could not cancel ${describeJob(job)}: ${messageOf(error)}`)
    if (error instanceof ApiError && error.status === 409) {
      // It finished in the meantime: show how.
      void getJob(job.id).then(
        (current) => applyJob(current),
        () => undefined
      )
    }
  } finally {
    button.disabled = false
  }
}

// ------------------------------------------------------------------------------------------------------------
// Submitting
// ------------------------------------------------------------------------------------------------------------

type SubmitField = "type" | "metadata"

const fieldControls: Record<SubmitField, { control: HTMLElement; error: HTMLElement }> = {
  type: { control: ui.submitType, error: ui.submitTypeError },
  metadata: { control: ui.metadata, error: ui.metadataError }
}

const clearSubmitErrors = () => {
  for (const { control, error } of Object.values(fieldControls)) {
    control.removeAttribute("aria-invalid")
    error.hidden = true
    error.textContent = ""
  }
  ui.submitError.hidden = true
  ui.submitError.textContent = ""
}

/** Shows an error next to its field and moves the focus there, where a screen reader reads it with the field. */
const showFieldError = (field: SubmitField, text: string) => {
  const { control, error } = fieldControls[field]
  error.textContent = text
  error.hidden = false
  control.setAttribute("aria-invalid", "true")
  control.focus()
}

const showSubmitError = (text: string) => {
  ui.submitError.textContent = text
  ui.submitError.hidden = false
}

/** The metadata typed in the textarea: a JSON object (empty text is `{}`), or why it is not one. */
const readMetadata = (): { metadata: Record<string, unknown> } | { problem: string } => {
  const text = ui.metadata.value.trim()
  if (text === "") return { metadata: {} }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (error) {
    return { problem: `Metadata is not valid JSON: ${messageOf(error)}` }
  }
  return typeof value === "object" && value !== null && !Array.isArray(value)
    ? { metadata: value as Record<string, unknown> }
    : { problem: 'Metadata must be a JSON object, such as {"source": "talk.mp3"}' }
}

ui.submitForm.addEventListener("submit", async (event) => {
  event.preventDefault()
  clearSubmitErrors()
  const type = ui.submitType.value
  if (type === "") return showFieldError("type", "Choose a job type.")
  const read = readMetadata()
  if ("problem" in read) return showFieldError("metadata", read.problem)
  ui.submitButton.disabled = true
  try {
    const job = await submitJob(type, read.metadata)
    announce(`Submitted ${describeJob(job)}.`)
    applyJob(job, "submitted")
  } catch (error) {
    const body = error instanceof ApiError ? error.body : undefined
    if (body?._tag === "InvalidJobInput" && body.field === "type") showFieldError("type", body.message)
    else if (body?._tag === "InvalidJobInput" && body.field?.startsWith("metadata")) {
      showFieldError("metadata", body.message)
    } else showSubmitError(`Not submitted: ${messageOf(error)}`)
  } finally {
    ui.submitButton.disabled = false
  }
})

// ------------------------------------------------------------------------------------------------------------
// The detail view: `#/jobs/{id}`
// ------------------------------------------------------------------------------------------------------------

const detailIdOf = (hash: string) => /^#\/jobs\/([^/]+)$/.exec(hash)?.[1]

const loadDetail = async (view: DetailView) => {
  try {
    view.update(remember(await getJob(view.id)))
  } catch (error) {
    view.fail(
      error instanceof ApiError && error.status === 404
        ? `No job with id ${view.id}: it does not exist, or is no longer retained.`
        : `Cannot load the job: ${messageOf(error)}`
    )
  }
}

const route = () => {
  const id = detailIdOf(location.hash)
  if (id === undefined) {
    if (ui.dialog.open) ui.dialog.close()
    return
  }
  if (state.detail?.id !== id) {
    state.detail = makeDetailView(ui.dialogBody, ui.dialogTitle, decodeURIComponent(id), cancel)
    const known = latest.get(state.detail.id)
    if (known !== undefined) state.detail.update(known)
  }
  if (!ui.dialog.open) ui.dialog.showModal()
  void loadDetail(state.detail)
}

window.addEventListener("hashchange", route)
ui.dialogClose.addEventListener("click", () => ui.dialog.close())
// A click on the backdrop (outside the dialog's box) closes it too.
ui.dialog.addEventListener("click", (event) => {
  if (event.target === ui.dialog) ui.dialog.close()
})
ui.dialog.addEventListener("close", () => {
  state.detail = undefined
  if (detailIdOf(location.hash) !== undefined) {
    history.replaceState(history.state, "", `${location.pathname}${location.search}`)
  }
})

// ------------------------------------------------------------------------------------------------------------
// Live: the event stream, and polling while it is unavailable
// ------------------------------------------------------------------------------------------------------------

const setConnection = (mode: "connecting" | "live" | "polling") => {
  ui.connection.dataset.mode = mode
  const interval = state.config?.pollIntervalMs ?? 1000
  ui.connection.textContent =
    mode === "live"
      ? "Live"
      : mode === "polling"
        ? `Live updates unavailable: refreshing every ${interval >= 1000 ? `${interval / 1000} s` : `${interval} ms`}`
        : "Connecting…"
}

const poll = () => {
  if (state.config === undefined) void loadConfig()
  void refresh()
  if (state.detail !== undefined) void loadDetail(state.detail)
}

const startPolling = () => {
  setConnection("polling")
  if (state.polling !== undefined) return
  state.polling = setInterval(poll, state.config?.pollIntervalMs ?? 1000)
  poll()
}

const stopPolling = () => {
  clearInterval(state.polling)
  state.polling = undefined
}

const onEvent = (data: string) => {
  let event: JobEventJson
  try {
    event = JSON.parse(data) as JobEventJson
  } catch {
    return
  }
  if (typeof event === "object" && event !== null && typeof event.job?.id === "string") {
    applyJob(event.job, event.kind)
  }
}

let wakeEvents: (() => void) | undefined

/** Waits `ms` before the event stream is reopened, or less when {@link reconnectEvents} is called. */
const pauseEvents = (ms: number) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms)
    wakeEvents = () => {
      clearTimeout(timer)
      resolve()
    }
  })

/** Reopens a lost event stream now (with the headers of now: a token just entered). */
const reconnectEvents = () => wakeEvents?.()

/** Follows `GET /events` for as long as the page is open, reopening it when it ends, breaks or stalls. */
const followEvents = async () => {
  let wait: number = reconnectMs.first
  for (;;) {
    const controller = new AbortController()
    let watchdog: ReturnType<typeof setTimeout> | undefined
    const alive = () => {
      clearTimeout(watchdog)
      watchdog = setTimeout(() => controller.abort(), stallMs)
    }
    try {
      await followEventStream(
        apiUrl("events"),
        { headers: requestHeaders(), signal: controller.signal },
        {
          onOpen: () => {
            wait = reconnectMs.first
            alive()
            stopPolling()
            setConnection("live")
            // Catch up with whatever changed before the stream opened.
            void refresh()
            if (state.detail !== undefined) void loadDetail(state.detail)
          },
          onActivity: alive,
          onMessage: (message) => onEvent(message.data)
        }
      )
    } catch (error) {
      // Unavailable, broken or stalled: poll until it is back.
      if (error instanceof EventStreamRefused && error.status === 401) reportUnauthorized()
    } finally {
      clearTimeout(watchdog)
    }
    startPolling()
    await pauseEvents(wait)
    wait = Math.min(wait * 2, reconnectMs.max)
  }
}

// ------------------------------------------------------------------------------------------------------------
// Start
// ------------------------------------------------------------------------------------------------------------

const loadConfig = async () => {
  try {
    state.config = await getConfig()
  } catch (error) {
    showListError(`Cannot load the server's settings: ${messageOf(error)}`)
    return
  }
  const types = state.config.types
  fillSelect(ui.submitType, types, ui.submitType.value || (types[0] ?? ""))
  fillSelect(ui.filterType, types, state.type)
  ui.submitButton.disabled = types.length === 0
  if (types.length === 0) showSubmitError("No job types are registered on this server.")
}

// ------------------------------------------------------------------------------------------------------------
// The API token (a server with APP_API_TOKEN answers 401 without it)
// ------------------------------------------------------------------------------------------------------------

const showTokenForm = () => {
  const refused = storedToken() !== undefined
  ui.tokenError.textContent = refused ? "The server refused this token. Enter its API token." : ""
  ui.tokenError.hidden = !refused
  if (ui.tokenPanel.hidden) {
    ui.tokenPanel.hidden = false
    ui.tokenInput.focus()
  }
}

onUnauthorized(showTokenForm)

ui.tokenForm.addEventListener("submit", async (event) => {
  event.preventDefault()
  const token = ui.tokenInput.value.trim()
  if (token === "") {
    ui.tokenError.textContent = "Enter the API token."
    ui.tokenError.hidden = false
    ui.tokenInput.focus()
    return
  }
  storeToken(token)
  ui.tokenInput.value = ""
  ui.tokenError.hidden = true
  ui.tokenPanel.hidden = true
  ui.forgetToken.hidden = false
  await loadConfig()
  await refresh()
  reconnectEvents()
})

ui.forgetToken.addEventListener("click", () => {
  storeToken(undefined)
  location.reload()
})

const tick = () => {
  const now = Date.now()
  for (const row of state.rows.values()) row.tick(now)
  state.detail?.tick(now)
}

const start = async () => {
  ui.forgetToken.hidden = storedToken() === undefined
  readUrlState()
  fillSelect(ui.filterStatus, jobStatuses, state.status)
  ui.submitButton.disabled = true
  await loadConfig()
  await refresh()
  route()
  setInterval(tick, 1000)
  void followEvents()
}

void start()
