import { NodeRuntime } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { layerDemoHandlersConfig } from "./demo/handlers.js"
import { NodeServerLive } from "./http/server.js"
import { JobHandlers } from "./JobHandlers.js"
import { JobQueue } from "./JobQueue.js"
import { LoggerLive } from "./logging.js"
import { layerStoreConfig } from "./stores.js"

const QueueLive = JobQueue.layerConfig.pipe(
  Layer.provide(Layer.merge(layerDemoHandlersConfig, layerStoreConfig)),
  Layer.provide(JobHandlers.layer)
)

// Released before the server: the queue drains (answering 503 to new jobs) while the API still serves reads.
const DrainBeforeClosing = Layer.scopedDiscard(
  Effect.flatMap(JobQueue, (queue) => Effect.addFinalizer(() => queue.shutdown))
)

NodeRuntime.runMain(
  Layer.launch(
    DrainBeforeClosing.pipe(
      Layer.provideMerge(NodeServerLive),
      Layer.provideMerge(QueueLive),
      Layer.provide(LoggerLive)
    )
  )
)
