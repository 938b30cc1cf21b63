import type { MachineInfo } from "./machine.js"
import type { Measurement, Metric, Settings } from "./plan.js"
import type { ProfileSummary } from "./profile.js"
import { median, type Summary, summarise } from "./stats.js"

/** A CPU profile taken after the rounds, and its summary. */
export interface ProfileRecord {
  readonly label: string
  readonly file: string
  /** The measured window (monotonic µs): the samples summarised. */
  readonly window?: readonly [number, number] | undefined
  readonly summary: ProfileSummary
}

/** Everything a run produced: what was measured, on what, and each round's values. */
export interface RunRecord {
  readonly mode: "full" | "quick"
  readonly settings: Settings
  readonly startedAt: string
  finishedAt: string
  readonly machine: MachineInfo
  readonly servers: { readonly postgres: string; readonly redis: string }
  /** The commit measured, and how many files of `src/` had uncommitted changes. */
  readonly source: { readonly commit: string; readonly changedFiles: number }
  readonly loadStart: readonly [number, number, number]
  loadEnd: readonly [number, number, number]
  /** The 1-minute load average when each round started. */
  readonly loadPerRound: Array<number>
  /** Measurements not taken, and why. */
  readonly skipped: Array<string>
  readonly measurements: ReadonlyArray<Measurement>
  /** Per measurement key, per round: the metrics, or null when the measurement failed. */
  readonly values: Record<string, Array<Readonly<Record<string, number>> | null>>
  readonly failures: Array<{ readonly key: string; readonly round: number; readonly error: string }>
  readonly notes: Array<string>
  profiles: Array<ProfileRecord>
}

/** One metric's values over the rounds (failed rounds left out). */
export const valuesOf = (run: RunRecord, key: string, metric: string): Array<number> =>
  (run.values[key] ?? []).flatMap((value) =>
    value === null || value[metric] === undefined ? [] : [value[metric]]
  )

/** The summary of one metric of one measurement. */
export const summaryOf = (run: RunRecord, key: string, metric: string): Summary =>
  summarise(valuesOf(run, key, metric))

/** A ratio of ours to a peer: of the medians, and the range of the per-round ratios. */
export interface Ratio {
  readonly ours: Measurement
  readonly peer: Measurement
  readonly metric: Metric
  readonly ratio: number
  readonly roundMin: number
  readonly roundMax: number
}

/** Ours ÷ peer for one metric. */
export const ratioOf = (run: RunRecord, ours: Measurement, peer: Measurement, metric: Metric): Ratio => {
  const a = run.values[ours.key] ?? []
  const b = run.values[peer.key] ?? []
  const perRound: Array<number> = []
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const x = a[i]?.[metric.key]
    const y = b[i]?.[metric.key]
    if (x !== undefined && y !== undefined && y !== 0) perRound.push(x / y)
  }
  const ratio = median(valuesOf(run, ours.key, metric.key)) / median(valuesOf(run, peer.key, metric.key))
  return {
    ours,
    peer,
    metric,
    ratio,
    roundMin: perRound.length === 0 ? Number.NaN : Math.min(...perRound),
    roundMax: perRound.length === 0 ? Number.NaN : Math.max(...perRound)
  }
}

/** Every ratio of one of ours to each peer measured in the same workload and configuration. */
export const allRatios = (run: RunRecord): Array<Ratio> => {
  const ratios: Array<Ratio> = []
  for (const ours of run.measurements.filter((m) => m.ours))
    for (const peer of run.measurements)
      if (!peer.ours && peer.workload === ours.workload && peer.config === ours.config)
        for (const metric of ours.metrics)
          if (
            valuesOf(run, ours.key, metric.key).length > 0 &&
            valuesOf(run, peer.key, metric.key).length > 0
          )
            ratios.push(ratioOf(run, ours, peer, metric))
  return ratios
}

/** One of the issue's targets, beside what was measured. */
export interface TargetRow {
  readonly target: string
  readonly measured: string
  /** Met, missed, or not measured. */
  readonly met: boolean | undefined
}

const find = (run: RunRecord, key: string) => run.measurements.find((m) => m.key === key)

/** The issue's targets, each checked against this run's medians. */
export const targets = (run: RunRecord): Array<TargetRow> => {
  const rows: Array<TargetRow> = []
  const ratioTarget = (
    label: string,
    oursKey: string,
    peerKey: string,
    metricKey: string,
    atLeast: number
  ) => {
    const ours = find(run, oursKey)
    const peer = find(run, peerKey)
    const metric = ours?.metrics.find((m) => m.key === metricKey)
    if (
      ours === undefined ||
      peer === undefined ||
      metric === undefined ||
      valuesOf(run, oursKey, metricKey).length === 0 ||
      valuesOf(run, peerKey, metricKey).length === 0
    ) {
      rows.push({ target: `${label} ≥ ${atLeast.toFixed(1)}×`, measured: "not measured", met: undefined })
      return
    }
    const r = ratioOf(run, ours, peer, metric)
    rows.push({
      target: `${label} ≥ ${atLeast.toFixed(1)}×`,
      measured: `${fmtRatio(r.ratio)} (rounds ${fmtRatio(r.roundMin)}–${fmtRatio(r.roundMax)})`,
      met: r.ratio >= atLeast
    })
  }
  const absolute = (
    label: string,
    key: string,
    metricKey: string,
    limit: number,
    unit: string,
    digits: number
  ) => {
    const values = valuesOf(run, key, metricKey)
    if (values.length === 0) {
      rows.push({ target: `${label}`, measured: "not measured", met: undefined })
      return
    }
    const s = summarise(values)
    rows.push({
      target: label,
      measured: `${fmt(s.median, digits)} ${unit} (${fmt(s.min, digits)}–${fmt(s.max, digits)})`,
      met: s.median <= limit
    })
  }
  for (const c of [2, 64])
    for (const peer of ["p-queue", "fastq"])
      ratioTarget(
        `W1 JobQueue ÷ ${peer}, C=${c}, jobs/s`,
        `w1/c${c}/jobqueue`,
        `w1/c${c}/${peer}`,
        "jobsPerSec",
        1
      )
  absolute("W2 JobQueue p99 ≤ 0.3 ms", "w2/jobqueue", "p99Ms", 0.3, "ms", 3)
  absolute("W3 JobQueue ≤ 600 B/job", "w3/jobqueue", "bytesPerJob", 600, "B", 0)
  for (const mode of ["one", "bulk"]) {
    const how = mode === "one" ? "one by one" : "bulk"
    ratioTarget(
      `W4 PostgreSQL ÷ pg-boss, C=64, ${how}`,
      `w4/c64/${mode}/jq-pg`,
      `w4/c64/${mode}/pg-boss`,
      "jobsPerSec",
      3
    )
    ratioTarget(
      `W4 SQLite ÷ BullMQ, C=64, ${how}`,
      `w4/c64/${mode}/jq-sqlite`,
      `w4/c64/${mode}/bullmq`,
      "jobsPerSec",
      1
    )
  }
  absolute("W4 PostgreSQL p99 ≤ 20 ms", "w4-latency/jq-pg", "p99Ms", 20, "ms", 2)
  for (const route of ["get", "post"])
    ratioTarget(
      `W5 ours ÷ node:http, ${route === "get" ? "GET /jobs/{id}" : "POST /jobs"}`,
      `w5/${route}/ours`,
      `w5/${route}/node:http`,
      "rps",
      0.5
    )
  absolute("Start-up < 1.5 s (node scripts/start.mjs)", "startup/node", "ms", 1500, "ms", 0)
  return rows
}

/** A number with the given decimals and thousands separators. */
export const fmt = (value: number, digits: number): string =>
  Number.isFinite(value)
    ? value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits })
    : "—"

/** A ratio, as `1.23×`. */
export const fmtRatio = (value: number): string =>
  !Number.isFinite(value) ? "—" : value >= 100 ? `${fmt(value, 0)}×` : `${value.toFixed(2)}×`

const metricName = (metric: Metric) =>
  metric.label === metric.unit ? metric.label : `${metric.label} (${metric.unit})`

const load = (l: readonly number[]) => l.map((x) => x.toFixed(2)).join(" / ")

/** The results as plain-text lines for the console. */
export const consoleReport = (run: RunRecord): string => {
  const lines: Array<string> = []
  let group = ""
  for (const m of run.measurements) {
    const header = `${m.workload}: ${m.config}`
    if (header !== group) {
      lines.push("", header)
      group = header
    }
    const parts = m.metrics.map((metric) => {
      const s = summaryOf(run, m.key, metric.key)
      if (s.n === 0) return `${metric.label} —`
      const range = s.n > 1 ? ` [${fmt(s.min, metric.digits)}–${fmt(s.max, metric.digits)}]` : ""
      return `${metric.label} ${fmt(s.median, metric.digits)} ${metric.unit}${range}`
    })
    lines.push(`  ${m.contender.padEnd(38)} ${parts.join("   ")}`)
  }
  lines.push("", "Targets (medians; informative only, nothing is asserted):")
  for (const row of targets(run))
    lines.push(
      `  ${row.met === undefined ? "n/a " : row.met ? "met " : "MISS"}  ${row.target.padEnd(52)} ${row.measured}`
    )
  return lines.join("\n")
}

// A Markdown table laid out as Biome formats one (cells padded to their column's width; right-aligned columns padded
// on the left), so that BENCHMARKS.md passes `biome check` as written.
const table = (
  head: ReadonlyArray<string>,
  rows: ReadonlyArray<ReadonlyArray<string>>,
  right: ReadonlySet<number>
) => {
  const widths = head.map((h, i) => Math.max(3, h.length, ...rows.map((row) => (row[i] ?? "").length)))
  const line = (cells: ReadonlyArray<string>) =>
    `| ${cells.map((cell, i) => (right.has(i) ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!))).join(" | ")} |`
  const rule = `| ${widths.map((w, i) => (right.has(i) ? `${"-".repeat(w - 1)}:` : "-".repeat(w))).join(" | ")} |`
  return [line(head), rule, ...rows.map((row) => line(head.map((_, i) => row[i] ?? "")))].join("\n")
}

/** The method, as the report states it. */
const method = (run: RunRecord): string => {
  const s = run.settings
  return [
    `- **Interleaved rounds.** ${s.rounds} rounds; round k runs every measurement below once (in the table's order, each`,
    "  group's contenders rotated by one place per round) before round k+1 starts, so slow phases of the shared machine",
    "  hit every contender alike. Each measurement runs in a **fresh child process** (`node --expose-gc`); the",
    "  harness's TypeScript is bundled once with esbuild so children load no TypeScript hooks. Reported: the **median**",
    "  over the rounds, with **min–max**. Ratios are ours ÷ peer of the medians, with the range of the per-round",
    "  ratios (round k of ours ÷ round k of the peer).",
    "- **Our package** is the compiled `dist/` (rebuilt when older than `src/`, untimed), copied to `bench/out/dist/`",
    "  at the start so that every round measures the same code while others edit the shared tree; it runs on the",
    "  root's `effect`, and so do the naive design and the bare floor.",
    `- **W1 throughput**: ${fmt(s.w1Jobs, 0)} no-op jobs submitted one by one in a loop, then awaited through a`,
    "  counter in the handler that resolves a latch at the last job; timed from the first submit to the latch. Before",
    `  timing, ${fmt(s.w1Warmup, 0)} jobs run through a separate instance (JIT warm-up), then \`gc()\`. JobQueue: memory`,
    "  store, `retentionMax` and `maxPending` ≥ 2× the job count (every record kept), metadata `{}` checked by",
    "  `Schema.Struct({})`, submitted by `queue.submit` in one `Effect.gen` loop. fastq: `fastq.promise(worker, C)` and",
    "  `push`. p-queue: `add` of one shared async function. Naive Effect design: an unbounded `Queue` of ids, C worker",
    "  fibers, a `Ref<HashMap>` of records with the same 20 fields as our `Job`, each read-modify-write of a record under",
    "  a `Semaphore(1)`, `Date` timestamps on each move (pending → running → completed). Bare Effect floor: an",
    "  unbounded `Queue` and C fibers taking from it, nothing else.",
    `- **W2 latency**: ${fmt(s.latencyJobs, 0)} jobs (after ${s.latencyWarmup} uncounted ones), one per ms: a 1 ms`,
    "  interval timer submits every job that is due (catching up when the timer fires late), each job carrying its",
    "  index; latency is `performance.now()` at the handler's start minus just before its submit call, C=2. Our",
    "  queue and the bare floor are submitted to from outside Effect with `runFork` (a fiber per submit), p-queue with",
    "  `add`. p50 and p99 are nearest-rank over the counted jobs of one run; the table gives their medians over the",
    "  rounds.",
    `- **W3 memory**: in a queue that is built and idle, \`gc()\` and \`heapUsed\`; then ${fmt(s.w3Jobs, 0)} jobs with`,
    "  empty metadata run to completion (and are recorded as completed), `gc()` again; heap growth ÷ jobs. A separate",
    `  instance runs ${fmt(s.w3Warmup, 0)} jobs first so that compiled code is not counted.`,
    `- **W4 durable**: ${fmt(s.w4Jobs, 0)} no-op jobs at C=${s.w4Concurrency.join(" and C=")}, added one by one`,
    `  (each add awaited: \`submit\`, \`Queue.add\`, \`send\`) or in bulk (${s.bulkChunk} per call: \`submitMany\`,`,
    "  `addBulk`, `insert`), timed from the first add to the last handler's start (counter and latch), after",
    `  ${s.w4Warmup} warm-up jobs through the same instance. Every database and queue is fresh: our PostgreSQL store`,
    "  and pg-boss each get a database dropped and re-created before each measurement (same server), BullMQ's keys are",
    "  deleted, SQLite gets a new file in a temporary folder (WAL mode, as the store sets it). Our stores run with their",
    "  defaults (`APP_JOB_STORE`-equivalent `layerSqlite` / `layerPg` from `src/SqlJobStore.ts`); BullMQ with a",
    "  `Worker` of concurrency C and default options (completed jobs kept, as ours are); pg-boss (see its note below)",
    "  fetches up to C jobs at once. W4 latency: W2's method on each durable queue.",
    `- **W5 HTTP**: autocannon, ${s.httpConnections} connections, ${s.httpSeconds} s per route after a`,
    `  ${s.httpWarmupSeconds} s warm-up, in its own child process; the server in another. GET reads one job created`,
    '  by a first POST; POST creates `{"type":"bootstrap","metadata":{}}` jobs. Ours is `main.js` of the run\'s copy of',
    "  `dist/` (the server `npm start` runs, with its defaults: memory store, the demo handlers, here with",
    "  `APP_DEMO_STEP_MS=3600000` so that the two jobs that start just sleep and the rest stay pending, and",
    "  `APP_JOB_MAX_PENDING` raised). The peers answer the same JSON job (same fields) from a `Map`, with",
    "  the body parsed and the type checked; so does bare `@effect/platform` (an `HttpRouter` on `NodeHttpServer`, no",
    "  per-request span: the ceiling of any server on the platform, ours included). Any non-2xx answer fails the",
    "  measurement.",
    "- **Start-up**: `node scripts/start.mjs` (what `npm start` runs), timed from the spawn to the first 200 from",
    "  `GET /health` (polled every 5 ms on fresh connections), memory store. Each timed start follows an untimed one,",
    "  which builds whatever `scripts/start.mjs` finds stale (others edit `src/` during the run), so the timed start",
    "  begins from a fresh build with its files in the page cache. `npm start` itself is shown beside it: it adds npm's",
    "  own start-up."
  ].join("\n")
}

/**
 * BENCHMARKS.md. `analysis`, when given (bench/ANALYSIS.md: why each missed target is missed, written by hand from
 * the profiles), is appended as it is.
 */
export const markdownReport = (run: RunRecord, analysis?: string): string => {
  const m = run.machine
  const out: Array<string> = []
  out.push("# Benchmarks", "")
  out.push(
    `Written by \`npm run bench\` (full run, ${run.settings.rounds} interleaved round${run.settings.rounds === 1 ? "" : "s"}) from ${run.startedAt} to`,
    `${run.finishedAt}. The raw values of every round are in \`bench/results/\` (not committed). Re-run with`,
    "`npm run bench`; `npm run bench -- --quick` is the small smoke run that CI does (it measures nothing worth",
    "reading).",
    ""
  )
  out.push("## Machine", "")
  out.push(
    table(
      ["", "This run"],
      [
        ["CPU", `${m.cpuModel}, ${m.cores} cores`],
        ["Memory", `${m.memoryGiB.toFixed(1)} GiB`],
        ["OS", m.os],
        ["Node", m.node],
        [
          "Code measured",
          `commit ${run.source.commit}` +
            (run.source.changedFiles > 0
              ? ` plus uncommitted changes to ${run.source.changedFiles} file(s) of src/ (the shared tree)`
              : "")
        ],
        ["PostgreSQL / Redis", `${run.servers.postgres} / ${run.servers.redis} (local, loopback)`],
        ["Load average at start (1 / 5 / 15 min)", load(run.loadStart)],
        ["Load average at end", load(run.loadEnd)],
        ["1-min load at each round's start", run.loadPerRound.map((x) => x.toFixed(2)).join(", ")]
      ],
      new Set()
    ),
    "",
    `Libraries: ${Object.entries(m.versions)
      .map(([k, v]) => `${k} ${v}`)
      .join(", ")}.`,
    ""
  )
  out.push(
    `**This machine was shared** with other engineers running test suites during the run (a load average of`,
    `${run.loadStart[0].toFixed(1)} at the start on ${m.cores} cores): absolute numbers are noisy and lower than on an idle`,
    "machine. The interleaved rounds spread that noise over every contender, so the ratios are the figures to read;",
    "the min–max columns show how much a figure moved between rounds.",
    ""
  )
  out.push("## Method", "", method(run), "")
  out.push(
    "pg-boss note: its `work()` waits out its polling interval (at least 500 ms) after every batch, which would cap it at",
    "C jobs per half second (10,000 jobs at C=2 would take over 40 minutes). So it is measured at its best: one loop",
    "fetches up to C jobs (`fetch` with `batchSize: C`), runs them at once, completes them in one `complete` call (what",
    "`work({ batchSize })` does per batch) and fetches again at once; only an empty fetch waits, 10 ms.",
    ""
  )
  if (run.skipped.length > 0) out.push("Not measured:", "", ...run.skipped.map((s) => `- ${s}`), "")
  if (run.failures.length > 0)
    out.push(
      "Failed measurements (left out of the medians):",
      "",
      ...run.failures.map((f) => `- ${f.key}, round ${f.round}: ${f.error.split("\n")[0]}`),
      ""
    )
  out.push("## Results", "")
  const rows: Array<Array<string>> = []
  for (const measurement of run.measurements)
    for (const metric of measurement.metrics) {
      const s = summaryOf(run, measurement.key, metric.key)
      rows.push([
        measurement.workload,
        measurement.config,
        measurement.ours ? `**${measurement.contender}**` : measurement.contender,
        metricName(metric),
        s.n === 0 ? "—" : `**${fmt(s.median, metric.digits)}**`,
        s.n === 0 ? "—" : `${fmt(s.min, metric.digits)}–${fmt(s.max, metric.digits)}`,
        String(s.n)
      ])
    }
  out.push(
    table(
      ["Workload", "Configuration", "Contender", "Metric", "Median", "Min–max", "Rounds"],
      rows,
      new Set([4, 5, 6])
    ),
    ""
  )
  out.push("## Ratios to each peer", "")
  out.push(
    "Ours ÷ peer, of the medians (in brackets: the lowest and highest per-round ratio). For jobs/s and req/s above 1×",
    "is better for us; for latency and bytes, below 1× is.",
    ""
  )
  out.push(
    table(
      ["Workload", "Configuration", "Ours", "Peer", "Metric", "Ours ÷ peer", "Per-round range"],
      allRatios(run).map((r) => [
        r.ours.workload,
        r.ours.config,
        r.ours.contender,
        r.peer.contender,
        `${metricName(r.metric)}, ${r.metric.better} is better`,
        `**${fmtRatio(r.ratio)}**`,
        `${fmtRatio(r.roundMin)}–${fmtRatio(r.roundMax)}`
      ]),
      new Set([5, 6])
    ),
    ""
  )
  out.push("## Targets", "")
  out.push(
    table(
      ["Target (from the issue)", "Measured (median; range)", "Met?"],
      targets(run).map((row) => [
        row.target,
        row.measured,
        row.met === undefined ? "not measured" : row.met ? "met" : "**missed**"
      ]),
      new Set()
    ),
    ""
  )
  if (run.profiles.length > 0) {
    out.push("## Where the time goes", "")
    out.push(
      "A W1 target is missed, so the W1 JobQueue run was profiled (`node --cpu-prof`, one extra run per",
      "concurrency after the rounds, same sizes). Self time of the samples taken between the first submit and the",
      "last job (module loading and the warm-up are left out).",
      ""
    )
    for (const profile of run.profiles) {
      out.push(
        `### ${profile.label}`,
        "",
        `Measured window: ${fmt(profile.summary.windowMs, 0)} ms of samples.`,
        ""
      )
      out.push(
        table(
          ["Area", "Self time (ms)", "Share"],
          profile.summary.areas.map((a) => [a.name, fmt(a.selfMs, 0), `${a.percent.toFixed(1)} %`]),
          new Set([1, 2])
        ),
        ""
      )
      out.push(
        table(
          ["Function (top self time)", "Where", "Self time (ms)", "Share"],
          profile.summary.functions.map((f) => [
            `\`${f.name}\``,
            f.where === "" ? "" : `\`${f.where}\``,
            fmt(f.selfMs, 0),
            `${f.percent.toFixed(1)} %`
          ]),
          new Set([2, 3])
        ),
        ""
      )
      if (profile.summary.modules !== undefined)
        out.push(
          table(
            ["Module (self time)", "Self time (ms)", "Share"],
            profile.summary.modules.map((m) => [
              `\`${m.name}\``,
              fmt(m.selfMs, 0),
              `${m.percent.toFixed(1)} %`
            ]),
            new Set([1, 2])
          ),
          ""
        )
      if (profile.summary.ours !== undefined)
        out.push(
          "Samples charged to the innermost function of ours on their stack (the library work it did included). Most",
          "samples have none: they run from the fiber runtime's loop, where effects built by our code execute.",
          "",
          table(
            ["Innermost function of ours", "Where", "Time (ms)", "Share"],
            profile.summary.ours.map((f) => [
              f.where === "" ? f.name : `\`${f.name}\``,
              f.where === "" ? "" : `\`${f.where}\``,
              fmt(f.selfMs, 0),
              `${f.percent.toFixed(1)} %`
            ]),
            new Set([2, 3])
          ),
          ""
        )
    }
  }
  if (run.notes.length > 0) out.push("## Notes from the run", "", ...run.notes.map((n) => `- ${n}`), "")
  if (analysis !== undefined) out.push(analysis.trimEnd(), "")
  return out.join("\n")
}
