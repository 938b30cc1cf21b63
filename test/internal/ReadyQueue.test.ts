import { describe, expect, it } from "@effect/vitest"
import { Effect, FastCheck as fc } from "effect"
import { type ReadyEntry, ReadyQueue } from "../../src/internal/ReadyQueue.js"

// The order the queue promises, on the entries waiting: highest priority first, then first in first out.
const best = (waiting: ReadonlyArray<{ id: string; priority: number; seq: number }>) =>
  [...waiting].sort((a, b) => b.priority - a.priority || a.seq - b.seq)[0]

describe("ReadyQueue", () => {
  it("takes by priority then in offer order, whatever the mix of offers and takes (property)", () =>
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.integer({ min: -2, max: 2 }), fc.constant("take" as const)), { maxLength: 200 }),
        (steps) => {
          const queue = new ReadyQueue()
          const waiting: Array<{ id: string; priority: number; seq: number }> = []
          let seq = 0
          for (const step of steps) {
            if (step === "take") {
              const expected = best(waiting)
              if (expected === undefined) continue
              const taken: ReadyEntry = Effect.runSync(queue.take)
              expect(taken.id).toBe(expected.id)
              waiting.splice(waiting.indexOf(expected), 1)
              queue.release(taken.type)
            } else {
              const id = `job-${seq}`
              queue.offer(id, "t", step)
              waiting.push({ id, priority: step, seq: seq++ })
            }
            expect(queue.size).toBe(waiting.length)
          }
        }
      )
    ))
})
