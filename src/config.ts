import { Config, LogLevel, Option, Redacted } from "effect"

/** How a `JobQueue` runs: its limits and timings. */
export interface JobQueueOptions {
  /** At most this many jobs run at once (≥ 1). */
  readonly maxConcurrent: number
  /** Optional limits per job type, on top of `maxConcurrent`: a type at its limit never holds up the others. */
  readonly concurrencyByType: Readonly<Record<string, number>>
  /** How often clients are advised to poll for progress, in milliseconds. */
  readonly pollIntervalMs: number
  /** How long running jobs get to finish when the queue shuts down, in milliseconds. */
  readonly shutdownGraceMs: number
  /** The first retry's delay; each further retry doubles it (with jitter), in milliseconds. */
  readonly retryBaseMs: number
  /** The longest delay between two attempts, in milliseconds. */
  readonly retryMaxMs: number
  /** How long finished jobs are kept, in milliseconds. */
  readonly retentionMs: number
  /** At most this many finished jobs are kept; the earliest finished go first. */
  readonly retentionMax: number
  /** At most this many pending jobs (delayed and awaiting-retry ones included); beyond it, submit fails. */
  readonly maxPending: number
  /**
   * Durable stores: how long a claimed job's lease lasts without a heartbeat, in milliseconds. A job whose process
   * died is taken back (and retried) when its lease ends.
   */
  readonly leaseMs: number
  /** The largest metadata a job may carry, in bytes of JSON as submitted; a larger one fails with `InvalidJobInput`. */
  readonly maxMetadataBytes: number
}

/** The defaults for {@link JobQueueOptions}. */
export const defaultJobQueueOptions: JobQueueOptions = {
  maxConcurrent: 2,
  concurrencyByType: {},
  pollIntervalMs: 1000,
  shutdownGraceMs: 10_000,
  retryBaseMs: 1000,
  retryMaxMs: 60_000,
  retentionMs: 24 * 60 * 60 * 1000,
  retentionMax: 10_000,
  maxPending: 100_000,
  leaseMs: 30_000,
  maxMetadataBytes: 64 * 1024
}

const integer = (name: string, description: string, fallback: number, min: number) =>
  Config.integer(name).pipe(
    Config.validate({ message: `${name} must be an integer ≥ ${min}`, validation: (n) => n >= min }),
    Config.withDefault(fallback),
    Config.withDescription(description)
  )

/** The environment form of a job type's name, as in `APP_JOB_CONCURRENCY_<TYPE>`: upper case, `_` for the rest. */
export const typeEnvName = (type: string): string => type.toUpperCase().replace(/[^A-Z0-9]/g, "_")

/** The per-type limits `APP_JOB_CONCURRENCY_<TYPE>` set in the environment for the given job types. */
export const concurrencyByTypeConfig = (
  types: ReadonlyArray<string>
): Config.Config<Record<string, number>> =>
  Config.map(
    Config.all(
      types.map((type) =>
        Config.option(
          Config.integer(`APP_JOB_CONCURRENCY_${typeEnvName(type)}`).pipe(
            Config.validate({
              message: `APP_JOB_CONCURRENCY_${typeEnvName(type)} must be an integer ≥ 1`,
              validation: (n) => n >= 1
            }),
            Config.withDescription(`At most this many ${type} jobs run at once.`)
          )
        )
      )
    ),
    (limits) => {
      const out: Record<string, number> = {}
      limits.forEach((limit, i) => {
        if (Option.isSome(limit)) out[types[i]!] = limit.value
      })
      return out
    }
  )

/** {@link JobQueueOptions} from the environment (`APP_JOB_*`), each with its default. */
export const jobQueueConfig: Config.Config<Omit<JobQueueOptions, "concurrencyByType">> = Config.all({
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
  ),
  retryBaseMs: integer(
    "APP_JOB_RETRY_BASE_MS",
    "The first retry's delay; each further retry doubles it, with jitter (ms).",
    defaultJobQueueOptions.retryBaseMs,
    0
  ),
  retryMaxMs: integer(
    "APP_JOB_RETRY_MAX_MS",
    "The longest delay between two attempts (ms).",
    defaultJobQueueOptions.retryMaxMs,
    0
  ),
  retentionMs: integer(
    "APP_JOB_RETENTION_MS",
    "How long finished jobs are kept (ms).",
    defaultJobQueueOptions.retentionMs,
    0
  ),
  retentionMax: integer(
    "APP_JOB_RETENTION_MAX",
    "At most this many finished jobs are kept, the earliest finished evicted first.",
    defaultJobQueueOptions.retentionMax,
    0
  ),
  leaseMs: integer(
    "APP_JOB_LEASE_MS",
    "Durable stores: how long a running job's lease lasts without a heartbeat; a job whose process died is retried after it (ms).",
    defaultJobQueueOptions.leaseMs,
    100
  ),
  maxPending: integer(
    "APP_JOB_MAX_PENDING",
    "At most this many pending jobs; beyond it, submit fails with QueueFull (HTTP 503).",
    defaultJobQueueOptions.maxPending,
    1
  ),
  maxMetadataBytes: integer(
    "APP_JOB_MAX_METADATA_BYTES",
    "The largest metadata a job may carry, in bytes of JSON; larger submissions fail with InvalidJobInput (HTTP 400).",
    defaultJobQueueOptions.maxMetadataBytes,
    2
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

/**
 * The API token (`APP_API_TOKEN`), when set: every route but the public ones then requires
 * `Authorization: Bearer <token>`. At least 16 visible ASCII characters, no spaces (`openssl rand -hex 32` makes one).
 */
export const apiTokenConfig: Config.Config<Option.Option<Redacted.Redacted<string>>> = Config.option(
  Config.redacted("APP_API_TOKEN").pipe(
    Config.validate({
      message: "APP_API_TOKEN must be at least 16 visible ASCII characters, without spaces",
      validation: (token) => /^[\x21-\x7e]{16,}$/.test(Redacted.value(token))
    }),
    Config.withDescription("The bearer token every protected route requires; unset, the API is open.")
  )
)

/** How the service logs. */
export interface LogOptions {
  /** The least severe level logged (`APP_LOG_LEVEL`: trace, debug, info, warn, error, fatal, all or off; default info). */
  readonly level: LogLevel.LogLevel
  /** `pretty` (`APP_LOG_FORMAT` default: human-readable lines) or `json` (one JSON object per line). */
  readonly format: "pretty" | "json"
}

/** {@link LogOptions} from the environment. */
export const logConfig: Config.Config<LogOptions> = Config.all({
  level: Config.logLevel("APP_LOG_LEVEL").pipe(
    Config.withDefault(LogLevel.Info),
    Config.withDescription(
      "The least severe level logged: trace, debug, info, warn, error, fatal, all or off."
    )
  ),
  format: Config.string("APP_LOG_FORMAT").pipe(
    Config.map((format) => format.trim().toLowerCase()),
    Config.validate({
      message: "APP_LOG_FORMAT must be pretty or json",
      validation: (format): format is "pretty" | "json" => format === "pretty" || format === "json"
    }),
    Config.withDefault("pretty" as const),
    Config.withDescription("pretty (human-readable lines) or json (one JSON object per line).")
  )
})

/** Limits of the HTTP server beyond those the API checks itself. */
export interface HttpLimitsOptions {
  /** How long a client has to send its whole request (headers and body), in milliseconds; then 408. */
  readonly requestTimeoutMs: number
}

/** {@link HttpLimitsOptions} from the environment (`APP_HTTP_REQUEST_TIMEOUT_MS`, default 30000). */
export const httpLimitsConfig: Config.Config<HttpLimitsOptions> = Config.all({
  requestTimeoutMs: integer(
    "APP_HTTP_REQUEST_TIMEOUT_MS",
    "How long a client has to send its whole request, headers and body (ms); then 408. Responses, event streams included, are not limited.",
    30_000,
    100
  )
})
