import { type ConfigError, Effect, Layer, Logger } from "effect"
import { type LogOptions, logConfig } from "./config.js"

/**
 * The logger for the given options: `pretty` or `json` lines, from `level` up. It takes the place of Effect's default
 * logger and of the pretty one `NodeRuntime.runMain` installs, so that each line is written once.
 */
export const layerLogger = (options: LogOptions): Layer.Layer<never> =>
  Layer.mergeAll(
    Logger.replace(
      Logger.defaultLogger,
      options.format === "json" ? Logger.withConsoleLog(Logger.jsonLogger) : Logger.prettyLogger()
    ),
    Logger.remove(Logger.prettyLoggerDefault),
    Logger.minimumLogLevel(options.level)
  )

/** The logger configured by `APP_LOG_LEVEL` (default info) and `APP_LOG_FORMAT` (pretty or json, default pretty). */
export const LoggerLive: Layer.Layer<never, ConfigError.ConfigError> = Layer.unwrapEffect(
  Effect.map(logConfig, layerLogger)
)
