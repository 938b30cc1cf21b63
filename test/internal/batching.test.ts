import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import { Context, Deferred, Effect, Exit, Fiber, Option, Runtime } from "effect"
import { batching } from "../../src/internal/batching.js"

/** A service only some callers have, to see whose context the writer runs in. */
class CallerOnly extends Context.Tag("test/CallerOnly")<CallerOnly, string>() {}

/** Starts each call in a fiber of its own, synchronously up to its first wait (so each is queued when this returns). */
const startAll = <A, E>(calls: ReadonlyArray<Effect.Effect<A, E>>) =>
  Effect.map(Effect.runtime<never>(), (runtime) =>
    calls.map((call) => Runtime.runFork(runtime)(Effect.exit(call)))
  )

/** A writer that records each batch it gets, waits for `gate` on its first batch, and refuses any batch holding "bad". */
const recorder = Effect.gen(function* () {
  const batches: Array<ReadonlyArray<string>> = []
  const contexts: Array<Option.Option<string>> = []
  const gate = yield* Deferred.make<void>()
  const started = yield* Deferred.make<void>()
  const write = (items: ReadonlyArray<string>) =>
    Effect.gen(function* () {
      batches.push(items)
      contexts.push(yield* Effect.serviceOption(CallerOnly))
      if (batches.length === 1) {
        yield* Deferred.succeed(started, undefined)
        yield* Deferred.await(gate)
      }
      if (items.includes("bad")) return yield* Effect.dieMessage("the database refused the batch")
      return items.map((item) => item.toUpperCase())
    })
  return { batches, contexts, gate, started, write }
})

describe("batching", () => {
  it.live("calls that arrive while a write is in flight are written together, as the next write", () =>
    Effect.gen(function* () {
      const { batches, gate, started, write } = yield* recorder
      const call = batching(yield* Effect.runtime<never>(), write)
      const first = yield* Effect.fork(call("a"))
      yield* Deferred.await(started)
      const others = yield* startAll([call("b"), call("c"), call("d")])
      yield* Deferred.succeed(gate, undefined)
      expect(yield* first.await).toEqual(Exit.succeed("A"))
      expect(yield* Fiber.join(Fiber.all(others))).toEqual(
        ["B", "C", "D"].map((value) => Exit.succeed(value))
      )
      expect(batches).toEqual([["a"], ["b", "c", "d"]])
    })
  )

  it.live("a batch that fails is written again one call at a time: only the refused call fails", () =>
    Effect.gen(function* () {
      const { batches, gate, started, write } = yield* recorder
      const call = batching(yield* Effect.runtime<never>(), write)
      const first = yield* Effect.fork(call("a"))
      yield* Deferred.await(started)
      const others = yield* startAll([call("b"), call("bad"), call("c")])
      yield* Deferred.succeed(gate, undefined)
      expect(yield* first.await).toEqual(Exit.succeed("A"))
      const [b, bad, c] = yield* Fiber.join(Fiber.all(others))
      expect([b, c]).toEqual([Exit.succeed("B"), Exit.succeed("C")])
      expect(Exit.isFailure(bad!)).toBe(true)
      expect(batches).toEqual([["a"], ["b", "bad", "c"], ["b"], ["bad"], ["c"]])
    })
  )

  it.live(
    "the writer runs in the store's context, and a caller inside a SQL transaction writes alone, in it",
    () =>
      Effect.gen(function* () {
        const { batches, contexts, gate, write } = yield* recorder
        yield* Deferred.succeed(gate, undefined)
        const call = batching(yield* Effect.runtime<never>(), write)
        expect(yield* call("a").pipe(Effect.provideService(CallerOnly, "caller"))).toBe("A")
        const inTransaction = call("t").pipe(
          Effect.provideService(CallerOnly, "transaction"),
          Effect.provideService(SqlClient.TransactionConnection, [
            {} as Context.Tag.Service<typeof SqlClient.TransactionConnection>[0],
            0
          ])
        )
        expect(yield* inTransaction).toBe("T")
        expect(batches).toEqual([["a"], ["t"]])
        expect(contexts).toEqual([Option.none(), Option.some("transaction")])
      })
  )
})
