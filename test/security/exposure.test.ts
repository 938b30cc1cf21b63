import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, FiberRef, HashSet, Layer, Logger } from "effect"
import { serverConfig } from "../../src/config.js"
import { ExposureCheckLive, isLoopbackHost } from "../../src/http/security.js"
import { testToken } from "./support.js"

/** Runs the start-up check with these variables and returns what it logged. */
const logsWith = (env: Record<string, string>) =>
  Effect.gen(function* () {
    const logs: Array<{ level: string; message: string }> = []
    const capture = Logger.make(({ logLevel, message }) => {
      logs.push({
        level: logLevel.label,
        message: Array.isArray(message) ? message.join(" ") : String(message)
      })
    })
    yield* Layer.build(ExposureCheckLive).pipe(
      Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env)))),
      Effect.locally(FiberRef.currentLoggers, HashSet.make(capture)),
      Effect.scoped
    )
    return logs
  })

describe("exposure at start-up", () => {
  it("tells loopback addresses from the others", () => {
    for (const host of [
      "127.0.0.1",
      "127.1.2.3",
      "localhost",
      "LOCALHOST",
      "::1",
      "[::1]",
      "::ffff:127.0.0.1"
    ]) {
      expect(isLoopbackHost(host), host).toBe(true)
    }
    for (const host of ["0.0.0.0", "::", "192.168.1.10", "10.0.0.1", "example.com", "128.0.0.1", "::2", ""]) {
      expect(isLoopbackHost(host), host).toBe(false)
    }
  })

  it.effect("binds 127.0.0.1 by default", () =>
    Effect.gen(function* () {
      const { host } = yield* serverConfig.pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map())))
      expect(host).toBe("127.0.0.1")
    })
  )

  it.effect("warns when HOST is not loopback and no token is set", () =>
    Effect.gen(function* () {
      const logs = yield* logsWith({ HOST: "0.0.0.0", PORT: "9000" })
      expect(logs).toHaveLength(1)
      expect(logs[0]!.level).toBe("WARN")
      expect(logs[0]!.message).toContain("HOST=0.0.0.0")
      expect(logs[0]!.message).toContain("WITHOUT authentication")
      expect(logs[0]!.message).toContain("APP_API_TOKEN")
    })
  )

  it.effect("only notes the exposure when a token is set, and never shows the token", () =>
    Effect.gen(function* () {
      const logs = yield* logsWith({ HOST: "0.0.0.0", APP_API_TOKEN: testToken })
      expect(logs).toHaveLength(1)
      expect(logs[0]!.level).toBe("INFO")
      expect(logs[0]!.message).toContain("requires APP_API_TOKEN")
      expect(logs[0]!.message).not.toContain(testToken)
    })
  )

  it.effect("says nothing on a loopback address", () =>
    Effect.gen(function* () {
      expect(yield* logsWith({})).toEqual([])
      expect(yield* logsWith({ HOST: "::1" })).toEqual([])
      expect(yield* logsWith({ HOST: "127.0.0.1", APP_API_TOKEN: testToken })).toEqual([])
    })
  )

  it.effect("refuses a token that is too short or has spaces", () =>
    Effect.gen(function* () {
      for (const token of ["", "short", "has spaces in the middle of it"]) {
        const error = yield* Effect.flip(logsWith({ APP_API_TOKEN: token }))
        expect(String(error), token).toContain("APP_API_TOKEN must be at least 16")
      }
    })
  )
})
