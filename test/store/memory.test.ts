import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { JobStore } from "../../src/JobStore.js"
import { suite } from "./suite.js"

suite("JobStore contract: in-memory adapter", JobStore.layerMemory)

describe("in-memory adapter", () => {
  it.effect("is not durable", () =>
    Effect.map(JobStore, (store) => expect(store.durable).toBe(false)).pipe(
      Effect.provide(JobStore.layerMemory)
    )
  )
})
