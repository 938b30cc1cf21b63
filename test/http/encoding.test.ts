import { describe, expect, it } from "@effect/vitest"
import { Arbitrary, Schema } from "effect"
import { Job } from "../../src/domain/Job.js"
import { jobToJson } from "../../src/http/handlers.js"

const encodeJob = Schema.encodeSync(Job)

describe("jobToJson", () => {
  it.prop(
    "writes exactly what the Job schema encodes, field order included",
    [Arbitrary.make(Job)],
    ([job]) => {
      expect(JSON.stringify(jobToJson(job))).toBe(JSON.stringify(encodeJob(job)))
    }
  )
})
