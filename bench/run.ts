// The benchmark runner: `npm run bench` (full run, writes BENCHMARKS.md) or `npm run bench -- --quick` (CI's smoke
// run). Options: --quick; --rounds N; --only KEY-PREFIX[,…] (e.g. w1,w5/get; no BENCHMARKS.md then); --profile
// (profile W1 JobQueue even when its targets are met); --report FILE (write BENCHMARKS.md again from a saved full run,
// measuring nothing). Nothing is asserted about speed: the exit code is non-zero only when a measurement failed.
import { type ChildProcess, spawn } from "node:child_process"
import { mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { benchDir, buildChild, rootDir, snapshotDir, snapshotDist, sourceState } from "./lib/build.js"
import { loadAverage, machineInfo } from "./lib/machine.js"
import {
  fullSettings,
  laneOf,
  type Measurement,
  makePlan,
  quickSettings,
  type Runner,
  type Settings
} from "./lib/plan.js"
import { freePort, httpRequest, runChild, startReadyChild, stop, waitHealthy } from "./lib/proc.js"
import { summariseProfileFile } from "./lib/profile.js"
import type { Spec } from "./lib/protocol.js"
import { consoleReport, fmt, markdownReport, type RunRecord, targets } from "./lib/report.js"
import {
  dropPostgres,
  reachable,
  resetPostgres,
  resetRedis,
  serverVersions,
  services
} from "./lib/services.js"

/** bench/ANALYSIS.md (why the missed targets are missed), appended to BENCHMARKS.md when it exists. */
const readAnalysis = (): string | undefined => {
  try {
    return readFileSync(join(benchDir, "ANALYSIS.md"), "utf8")
  } catch {
    return undefined
  }
}

const args = process.argv.slice(2)
const option = (name: string): string | undefined => {
  const at = args.indexOf(name)
  return at >= 0 ? args[at + 1] : undefined
}
const quick = args.includes("--quick")
const only = option("--only")?.split(",")
const roundsOption = option("--rounds")
const settings: Settings = {
  ...(quick ? quickSettings : fullSettings),
  ...(roundsOption === undefined ? {} : { rounds: Math.max(1, Number(roundsOption)) })
}
const nodeFlags = ["--expose-gc", "--max-old-space-size=4096"]
const postBody = JSON.stringify({ type: "bootstrap", metadata: {} })

const log = (line: string) => console.log(line)

const runSpec = (childJs: string, spec: Spec, extraFlags: ReadonlyArray<string> = []) =>
  runChild([...nodeFlags, ...extraFlags, childJs, JSON.stringify(spec)], {
    cwd: benchDir,
    timeoutMs: settings.childTimeoutMs
  })

const startupEnv = (port: number): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PORT: String(port),
    HOST: "127.0.0.1",
    APP_JOB_SHUTDOWN_GRACE_MS: "0"
  }
  delete env.APP_JOB_STORE
  delete env.APP_API_TOKEN
  return env
}

const startOurServer = async (port: number): Promise<ChildProcess> => {
  const child = spawn(process.execPath, [join(snapshotDir, "main.js")], {
    cwd: rootDir,
    env: {
      ...startupEnv(port),
      APP_JOB_STORE: "memory",
      APP_DEMO_STEP_MS: "3600000",
      APP_JOB_MAX_PENDING: "10000000"
    },
    stdio: ["ignore", "ignore", "pipe"]
  })
  let stderr = ""
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-3000)
  })
  try {
    await waitHealthy(`http://127.0.0.1:${port}/health`, child, { everyMs: 20, timeoutMs: 60_000 })
  } catch (error) {
    await stop(child)
    throw new Error(`our server did not start: ${String(error)}\n${stderr}`)
  }
  return child
}

const runHttp = async (childJs: string, runner: Extract<Runner, { kind: "http" }>) => {
  const port = await freePort()
  const base = `http://127.0.0.1:${port}`
  const server =
    runner.server === "ours"
      ? await startOurServer(port)
      : (
          await startReadyChild(
            process.execPath,
            [childJs, JSON.stringify({ workload: "w5-server", contender: runner.server, params: { port } })],
            { cwd: benchDir, timeoutMs: 60_000 }
          )
        ).child
  try {
    const created = await httpRequest(`${base}/jobs`, "POST", postBody)
    if (created?.status !== 201) throw new Error(`POST /jobs answered ${created?.status ?? "nothing"}`)
    const id = (JSON.parse(created.body) as { id: string }).id
    const result = await runSpec(childJs, {
      workload: "w5-load",
      contender: runner.server,
      params: {
        url: runner.route === "get" ? `${base}/jobs/${id}` : `${base}/jobs`,
        method: runner.route === "get" ? "GET" : "POST",
        ...(runner.route === "post" ? { body: postBody } : {}),
        connections: settings.httpConnections,
        seconds: settings.httpSeconds,
        warmupSeconds: settings.httpWarmupSeconds
      }
    })
    const { non2xx = 0, errors = 0, timeouts = 0 } = result.metrics
    if (non2xx + errors + timeouts > 0)
      throw new Error(`${non2xx} non-2xx answers, ${errors} errors, ${timeouts} timeouts`)
    return result.metrics
  } finally {
    await stop(server, 5000)
  }
}

// Starts `npm start` (or what it runs) and times it to a healthy /health. An untimed start comes first: it builds
// whatever `scripts/start.mjs` finds stale (others edit the tree meanwhile), so that the timed one starts from a fresh
// build, with the files in the page cache as they are for any restart.
const runStartup = async (via: "node" | "npm") => {
  const start = async (timed: boolean) => {
    const port = await freePort()
    const env = startupEnv(port)
    const started = performance.now()
    const child =
      via === "node"
        ? spawn(process.execPath, ["scripts/start.mjs"], { cwd: rootDir, env, stdio: "ignore" })
        : spawn("npm", ["start", "--silent"], { cwd: rootDir, env, stdio: "ignore", detached: true })
    try {
      const healthy = await waitHealthy(`http://127.0.0.1:${port}/health`, child, {
        everyMs: timed ? 5 : 50,
        timeoutMs: timed ? 60_000 : 300_000
      })
      return healthy - started
    } finally {
      await stop(child, 5000, via === "npm")
    }
  }
  await start(false)
  return { ms: await start(true) }
}

const take = async (childJs: string, measurement: Measurement): Promise<Readonly<Record<string, number>>> => {
  const runner = measurement.runner
  switch (runner.kind) {
    case "child": {
      if (runner.reset === "postgres") await resetPostgres([services.pgDatabase])
      if (runner.reset === "pg-boss") await resetPostgres([services.pgBossDatabase])
      if (runner.reset === "redis") await resetRedis()
      return (await runSpec(childJs, runner.spec)).metrics
    }
    case "http":
      return runHttp(childJs, runner)
    case "startup":
      return runStartup(runner.via)
  }
}

// Each group (one workload and configuration) keeps its place in the round; its contenders rotate by one per round.
const roundOrder = (plan: ReadonlyArray<Measurement>, round: number): Array<Measurement> => {
  const groups: Array<Array<Measurement>> = []
  for (const m of plan) {
    const last = groups[groups.length - 1]
    if (last !== undefined && last[0]!.workload === m.workload && last[0]!.config === m.config) last.push(m)
    else groups.push([m])
  }
  return groups.flatMap((group) => {
    const shift = round % group.length
    return [...group.slice(shift), ...group.slice(0, shift)]
  })
}

const profileW1 = async (childJs: string, run: RunRecord, sizes: Settings = settings) => {
  run.profiles = []
  const dir = join(benchDir, "results", "profiles")
  mkdirSync(dir, { recursive: true })
  for (const c of [2, 64]) {
    const name = `w1-jobqueue-c${c}.cpuprofile`
    log(`Profiling W1 JobQueue at C=${c}…`)
    const result = await runSpec(
      childJs,
      { workload: "w1", contender: "jobqueue", params: { n: sizes.w1Jobs, c, warmup: sizes.w1Warmup } },
      ["--cpu-prof", "--cpu-prof-dir", dir, "--cpu-prof-name", name]
    )
    const summary = summariseProfileFile(join(dir, name), result.window)
    run.profiles.push({
      label: `W1 JobQueue (memory), C=${c}: ${fmt(result.metrics.jobsPerSec ?? Number.NaN, 0)} jobs/s in the profiled run`,
      file: join("bench", "results", "profiles", name),
      window: result.window,
      summary
    })
  }
}

// `--report FILE`: writes BENCHMARKS.md again from a full run's saved results, measuring nothing; with --profile,
// profiles W1 again first (with the run's bundle and its copy of dist/, still in out/) and saves the profiles into FILE.
const rewriteReport = async (file: string): Promise<number> => {
  const run = JSON.parse(readFileSync(file, "utf8")) as RunRecord
  if (args.includes("--profile")) {
    await profileW1(join(benchDir, "out", "child.js"), run, run.settings)
    writeFileSync(file, JSON.stringify(run, null, 2))
  }
  writeFileSync(join(rootDir, "BENCHMARKS.md"), markdownReport(run, readAnalysis()))
  log(consoleReport(run))
  log(`Wrote BENCHMARKS.md from ${file}`)
  return 0
}

const main = async (): Promise<number> => {
  const reportFrom = option("--report")
  if (reportFrom !== undefined) return rewriteReport(reportFrom)
  const loadStart = loadAverage()
  const notes: Array<string> = []
  log(
    `Benchmarks (${quick ? "quick" : "full"} run, ${settings.rounds} round(s)); load average ${loadStart.join(" ")}`
  )
  log("Compiling src/ to dist/ when stale, and copying it to bench/out/dist/ for this run (untimed)…")
  snapshotDist()
  const source = sourceState()
  const childJs = await buildChild({ bundleEffect: quick })

  let pgUp = await reachable(services.pgServer, 5432)
  const redisUp = await reachable(services.redisUrl, 6379)
  const skipped: Array<string> = []
  if (pgUp) {
    try {
      await resetPostgres([services.pgDatabase, services.pgBossDatabase])
    } catch (error) {
      pgUp = false
      skipped.push(
        `PostgreSQL at ${services.pgServer} refused to create the benchmark databases: ${String(error)}`
      )
    }
  }
  const plan = makePlan(settings).filter((m) => {
    if (only !== undefined && !only.some((prefix) => m.key.startsWith(prefix))) return false
    if ((m.needs === "postgres" && !pgUp) || (m.needs === "redis" && !redisUp)) {
      const server =
        m.needs === "postgres" ? `PostgreSQL (${services.pgServer})` : `Redis (${services.redisUrl})`
      skipped.push(`${m.workload}, ${m.config}: ${m.contender} skipped, ${server} is not reachable`)
      return false
    }
    return true
  })
  for (const line of skipped) log(`SKIPPED: ${line}`)

  const run: RunRecord = {
    mode: quick ? "quick" : "full",
    settings,
    startedAt: new Date().toISOString(),
    finishedAt: "",
    machine: machineInfo(),
    servers: await serverVersions(pgUp, redisUp),
    source,
    loadStart,
    loadEnd: loadStart,
    loadPerRound: [],
    skipped,
    measurements: plan,
    values: Object.fromEntries(plan.map((m) => [m.key, []])),
    failures: [],
    notes,
    profiles: []
  }

  // The results so far, saved after every measurement: a run stopped part-way still leaves what it measured.
  const resultsDir = join(benchDir, "results")
  mkdirSync(resultsDir, { recursive: true })
  const resultsFile = join(resultsDir, `${run.mode}-${run.startedAt.replace(/[:.]/g, "-")}.json`)
  const save = () => writeFileSync(resultsFile, JSON.stringify(run, null, 2))

  const began = performance.now()
  for (let round = 0; round < settings.rounds; round++) {
    run.loadPerRound.push(loadAverage()[0])
    const order = roundOrder(plan, round)
    const lanes = settings.lanes ?? 1
    const runLane = async (lane: number) => {
      for (const [i, m] of order.entries()) {
        if (lanes > 1 && laneOf(m) % lanes !== lane) continue
        const prefix = `[round ${round + 1}/${settings.rounds}, ${i + 1}/${order.length}] ${m.workload} · ${m.config} · ${m.contender}`
        const t0 = performance.now()
        try {
          const metrics = await take(childJs, m)
          run.values[m.key]![round] = metrics
          const shown = m.metrics.map(
            (metric) => `${metric.label} ${fmt(metrics[metric.key] ?? Number.NaN, metric.digits)}`
          )
          log(`${prefix}: ${shown.join(", ")} (${((performance.now() - t0) / 1000).toFixed(1)} s)`)
        } catch (error) {
          run.values[m.key]![round] = null
          const message = error instanceof Error ? error.message : String(error)
          run.failures.push({ key: m.key, round: round + 1, error: message })
          log(`${prefix}: FAILED\n${message}`)
        }
        save()
      }
    }
    await Promise.all(Array.from({ length: lanes }, (_, lane) => runLane(lane)))
  }
  run.finishedAt = new Date().toISOString()
  run.loadEnd = loadAverage()

  if (pgUp) await dropPostgres([services.pgDatabase, services.pgBossDatabase]).catch(() => {})
  if (redisUp) await resetRedis().catch(() => {})

  log(consoleReport(run))
  log(
    `\n${plan.length} measurements × ${settings.rounds} round(s) in ${((performance.now() - began) / 1000).toFixed(0)} s`
  )
  for (const line of skipped) log(`SKIPPED: ${line}`)

  const w1Missed = targets(run).some((row) => row.target.startsWith("W1") && row.met === false)
  if (args.includes("--profile") || (!quick && only === undefined && w1Missed)) await profileW1(childJs, run)

  save()
  if (!quick && only === undefined) {
    writeFileSync(join(rootDir, "BENCHMARKS.md"), markdownReport(run, readAnalysis()))
    log("Wrote BENCHMARKS.md")
  }
  if (run.failures.length > 0) log(`${run.failures.length} measurement(s) failed`)
  log(
    `${quick ? "Quick run" : "Run"} done in ${(performance.now() / 1000).toFixed(1)} s (wall time of the runner)`
  )
  return run.failures.length > 0 ? 1 : 0
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error)
    process.exit(1)
  }
)
