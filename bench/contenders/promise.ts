import fastq from "fastq"
import PQueue from "p-queue"
import type { Contender, ContenderOptions } from "./types.js"

/** fastq through its promise API: `push` per job, `concurrency` workers. */
export const makeFastq = async (options: ContenderOptions): Promise<Contender> => {
  const { onRun } = options
  const queue = fastq.promise(async (i: number) => {
    onRun(i)
  }, options.concurrency)
  const index = (i: number) => (options.indexed ? i : -1)
  return {
    submitAll: async (count, from = 0) => {
      for (let i = from; i < from + count; i++) void queue.push(index(i))
    },
    submitOne: (i) => {
      void queue.push(i)
    },
    close: async () => {
      queue.kill()
    }
  }
}

/** p-queue: `add` per job at the given concurrency. */
export const makePQueue = async (options: ContenderOptions): Promise<Contender> => {
  const { onRun } = options
  const queue = new PQueue({ concurrency: options.concurrency })
  const noop = async () => {
    onRun(-1)
  }
  return {
    submitAll: async (count, from = 0) => {
      if (options.indexed)
        for (let i = from; i < from + count; i++)
          void queue.add(async () => {
            onRun(i)
          })
      else for (let i = from; i < from + count; i++) void queue.add(noop)
    },
    submitOne: (i) => {
      void queue.add(async () => {
        onRun(i)
      })
    },
    close: async () => {
      queue.clear()
    }
  }
}
