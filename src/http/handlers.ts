import { HttpApiBuilder } from "@effect/platform"
import { Effect, Layer } from "effect"
import { JobQueue } from "../JobQueue.js"
import { ClientConfig, Health, JobsApi } from "./Api.js"

/** The `jobs` group: each endpoint delegates to {@link JobQueue}. */
export const JobsGroupLive = HttpApiBuilder.group(JobsApi, "jobs", (handlers) =>
  Effect.map(JobQueue, (queue) =>
    handlers
      .handle("submit", ({ payload }) => queue.submit(payload.type, payload.metadata))
      .handle("list", ({ urlParams }) => queue.list(urlParams))
      .handle("get", ({ path }) => queue.get(path.id))
      .handle("cancel", ({ path }) => queue.cancel(path.id))
  )
)

const healthy = new Health({ status: "ok" })

/** The `system` group: health and the settings polling clients need. */
export const SystemGroupLive = HttpApiBuilder.group(JobsApi, "system", (handlers) =>
  Effect.map(JobQueue, (queue) => {
    const config = new ClientConfig({
      pollIntervalMs: queue.options.pollIntervalMs,
      maxConcurrent: queue.options.maxConcurrent
    })
    return handlers
      .handle("health", () => Effect.succeed(healthy))
      .handle("config", () => Effect.succeed(config))
  })
)

/** The API with every group implemented; requires the {@link JobQueue}. */
export const ApiLive = HttpApiBuilder.api(JobsApi).pipe(Layer.provide([JobsGroupLive, SystemGroupLive]))
