import { Config } from "effect"

/** How a `JobQueue` runs: its limits and timings. */
export interface JobQueueOptions {
  /** At most this many jobs run at once (≥ 1). */
  readonly maxConcurrent: number
  /** How often clients are advised to poll for progress, in milliseconds. */
  readonly pollIntervalMs: number
  /** How long running jobs get to finish when the queue shuts down, in milliseconds. */
  readonly shutdownGraceMs: number
}

/** The defaults for {@link JobQueueOptions}. */
export const defaultJobQueueOptions: JobQueueOptions = {
  maxConcurrent: 2,
  pollIntervalMs: 1000,
  shutdownGraceMs: 10_000
}

const integer = (name: string, description: string, fallback: number, min: number) =>
  Config.integer(name).pipe(
    Config.validate({ message: `${name} must be an integer ≥ ${min}`, validation: (n) => n >= min }),
    Config.withDefault(fallback),
    Config.withDescription(description)
  )

/** {@link JobQueueOptions} from the environment (`APP_JOB_*`), each with its default. */
export const jobQueueConfig: Config.Config<JobQueueOptions> = Config.all({
  maxConcurrent: integer(
    "APP_JOB_MAX_CONCURRENT",
    "At most this many jobs run at once.",
    defaultJobQueueOptions.maxConcurrent,
    1
  ),
  pollIntervalMs: integer(
    "APP_JOB_POLL_INTERVAL_MS",
    "How often clients are advised to poll for progress (ms).",
    defaultJobQueueOptions.pollIntervalMs,
    1
  ),
  shutdownGraceMs: integer(
    "APP_JOB_SHUTDOWN_GRACE_MS",
    "How long running jobs get to finish at shutdown before they are interrupted (ms).",
    defaultJobQueueOptions.shutdownGraceMs,
    0
  )
})

/** Where the HTTP server listens. */
export interface ServerOptions {
  /** TCP port (`PORT`, default 8080). */
  readonly port: number
  /** Interface to bind (`HOST`, default 127.0.0.1: loopback only). */
  readonly host: string
}

/** {@link ServerOptions} from the environment. */
export const serverConfig: Config.Config<ServerOptions> = Config.all({
  port: Config.port("PORT").pipe(Config.withDefault(8080), Config.withDescription("TCP port to listen on.")),
  host: Config.string("HOST").pipe(
    Config.withDefault("127.0.0.1"),
    Config.withDescription("Interface to bind; the default serves this machine only.")
  )
})

/** How long each step of a simulated demo job lasts (`APP_DEMO_STEP_MS`, default 500). */
export const demoStepConfig: Config.Config<number> = integer(
  "APP_DEMO_STEP_MS",
  "How long each step of a simulated demo job lasts (ms).",
  500,
  0
)
