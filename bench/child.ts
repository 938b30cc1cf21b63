// One measurement, in a fresh process: `node --expose-gc --import tsx child.ts '<Spec as JSON>'`. Prints its result
// on a line starting with `@@RESULT `; a server (`w5-server`) prints `@@READY` and runs until it is signalled.
import { durableContenders, type Factory, memoryContenders } from "./contenders/index.js"
import { type ChildResult, readyLine, resultPrefix, type Spec } from "./lib/protocol.js"
import type { LoadParams } from "./workloads/http.js"

// The workloads are loaded on demand: a child loads only the libraries its measurement needs.
const queues = () => import("./workloads/queues.js")
const http = () => import("./workloads/http.js")

const spec = JSON.parse(process.argv[2] ?? "{}") as Spec
const p = spec.params
const num = (key: string): number => {
  const value = p[key]
  if (typeof value !== "number") throw new Error(`${spec.workload}: parameter ${key} is missing`)
  return value
}

const factoryOf = (table: Readonly<Record<string, Factory>>): Factory => {
  const factory = table[spec.contender]
  if (factory === undefined) throw new Error(`${spec.workload}: unknown contender ${spec.contender}`)
  return factory
}

const run = async (): Promise<ChildResult | undefined> => {
  switch (spec.workload) {
    case "w1":
    case "w4":
      return (await queues()).runThroughput(
        factoryOf(spec.workload === "w1" ? memoryContenders : durableContenders),
        {
          n: num("n"),
          c: num("c"),
          warmup: num("warmup"),
          mode: p.mode === "bulk" ? "bulk" : "one",
          chunk: typeof p.chunk === "number" ? p.chunk : 1000,
          separateWarmup: spec.workload === "w1"
        }
      )
    case "w2":
    case "w4-latency":
      return (await queues()).runLatency(
        factoryOf(spec.workload === "w2" ? memoryContenders : durableContenders),
        {
          count: num("count"),
          warmup: num("warmup"),
          c: num("c"),
          intervalMs: num("intervalMs"),
          timeoutMs: num("timeoutMs")
        }
      )
    case "w3":
      return (await queues()).runMemory(factoryOf(memoryContenders), { n: num("n"), warmup: num("warmup") })
    case "w5-server": {
      const serve = (await http()).peerServers[spec.contender]
      if (serve === undefined) throw new Error(`unknown server ${spec.contender}`)
      await serve(num("port"))
      console.log(readyLine)
      return undefined
    }
    case "w5-load":
      return (await http()).runLoad(p as unknown as LoadParams)
    default:
      throw new Error(`unknown workload ${spec.workload}`)
  }
}

run().then(
  (result) => {
    if (result === undefined) return
    console.log(resultPrefix + JSON.stringify(result))
    process.exit(0)
  },
  (error: unknown) => {
    console.error(error)
    process.exit(1)
  }
)
