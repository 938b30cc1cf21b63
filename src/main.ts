import { NodeRuntime } from "@effect/platform-node"
import { Layer } from "effect"
import { layerDemoHandlersConfig } from "./demo/handlers.js"
import { NodeServerLive } from "./http/server.js"
import { JobHandlers } from "./JobHandlers.js"
import { JobQueue } from "./JobQueue.js"
import { JobStore } from "./JobStore.js"

const QueueLive = JobQueue.layerConfig.pipe(
  Layer.provide(Layer.merge(layerDemoHandlersConfig, JobStore.layerMemory)),
  Layer.provide(JobHandlers.layer)
)

NodeRuntime.runMain(Layer.launch(NodeServerLive.pipe(Layer.provide(QueueLive))))
