import { readFileSync } from "node:fs"

interface CallFrame {
  readonly functionName: string
  readonly url: string
  readonly lineNumber: number
}

interface ProfileNode {
  readonly id: number
  readonly callFrame: CallFrame
  readonly children?: ReadonlyArray<number>
}

/** The parts of a V8 `.cpuprofile` (as `node --cpu-prof` writes it) that the summary reads. */
export interface CpuProfile {
  readonly nodes: ReadonlyArray<ProfileNode>
  readonly startTime: number
  readonly endTime: number
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
}

/** One line of a self-time summary. */
export interface SelfTimeRow {
  readonly name: string
  readonly where: string
  readonly selfMs: number
  readonly percent: number
}

/** The self time of a profile's samples in a window, by function and by area (library, Node, GC…). */
export interface ProfileSummary {
  readonly windowMs: number
  /** Self time by function, the largest first. */
  readonly functions: ReadonlyArray<SelfTimeRow>
  /** Self time by area (a library, our package, Node, the GC…). */
  readonly areas: ReadonlyArray<SelfTimeRow>
  /** Self time by source file (module), the largest first. */
  readonly modules?: ReadonlyArray<SelfTimeRow>
  /**
   * Every sample charged to the innermost function of our package on its stack (the library work that function
   * caused included): which of our functions the time is spent under.
   */
  readonly ours?: ReadonlyArray<SelfTimeRow>
}

// A frame's file, shortly: `effect/internal/fiberRuntime.js` for a package, `dist/internal/engine.js` for ours (the
// run's copy of dist/ lives under bench/out/dist/), `bench/…` for the harness.
const shorten = (url: string): string => {
  const path = url.replace(/^file:\/\//, "")
  const inPackage = /\/node_modules\/(.*)$/.exec(path)
  if (inPackage !== null) return inPackage[1]!.replace(/\/dist\/(esm|cjs)\//, "/")
  const ours = /\/bench\/out\/(dist\/.*)$/.exec(path) ?? /\/main\/(dist\/.*)$/.exec(path)
  if (ours !== null) return ours[1]!
  return path.replace(/^.*\/bench\//, "bench/")
}

/** Which part of the stack a frame belongs to. */
export const areaOf = (frame: CallFrame): string => {
  if (frame.functionName.startsWith("(") && frame.url === "") return frame.functionName
  const url = frame.url
  if (url === "") return "V8 builtins and native code"
  if (url.startsWith("node:")) return "Node.js internals"
  const pkg = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url)
  if (pkg !== null) return `${pkg[1]} (library)`
  if (url.includes("/bench/out/dist/") || !url.includes("/bench/")) return "effect-job-queue (dist/)"
  if (url.includes("/bench/")) return "the benchmark harness"
  return url
}

/**
 * Sums each sample's duration (until the next sample) onto its leaf frame, keeping samples inside `window`
 * (monotonic microseconds; the whole profile when absent).
 */
export const summariseProfile = (
  profile: CpuProfile,
  window?: readonly [number, number],
  top = 15
): ProfileSummary => {
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]))
  const parents = new Map<number, number>()
  for (const node of profile.nodes) for (const child of node.children ?? []) parents.set(child, node.id)
  const isOurs = (frame: CallFrame) => areaOf(frame) === "effect-job-queue (dist/)"
  const innermostOurs = new Map<number, CallFrame | null>()
  const oursOf = (id: number): CallFrame | null => {
    const known = innermostOurs.get(id)
    if (known !== undefined) return known
    const node = nodes.get(id)
    const parent = parents.get(id)
    const found =
      node === undefined
        ? null
        : isOurs(node.callFrame)
          ? node.callFrame
          : parent === undefined
            ? null
            : oursOf(parent)
    innermostOurs.set(id, found)
    return found
  }
  const byFunction = new Map<string, { frame: CallFrame; micros: number }>()
  const byOurs = new Map<string, { frame: CallFrame | null; micros: number }>()
  const byModule = new Map<string, number>()
  const byArea = new Map<string, number>()
  let total = 0
  let at = profile.startTime
  for (let i = 0; i < profile.samples.length; i++) {
    at += profile.timeDeltas[i] ?? 0
    const duration = profile.timeDeltas[i + 1] ?? 0
    if (window !== undefined && (at < window[0] || at > window[1])) continue
    const node = nodes.get(profile.samples[i]!)
    if (node === undefined) continue
    const frame = node.callFrame
    const key = `${frame.functionName}|${frame.url}|${frame.lineNumber}`
    const entry = byFunction.get(key) ?? { frame, micros: 0 }
    entry.micros += duration
    byFunction.set(key, entry)
    const area = areaOf(frame)
    byArea.set(area, (byArea.get(area) ?? 0) + duration)
    const module = frame.url === "" ? frame.functionName : shorten(frame.url)
    byModule.set(module, (byModule.get(module) ?? 0) + duration)
    const ours = oursOf(node.id)
    const oursKey = ours === null ? "" : `${ours.functionName}|${ours.url}|${ours.lineNumber}`
    const oursEntry = byOurs.get(oursKey) ?? { frame: ours, micros: 0 }
    oursEntry.micros += duration
    byOurs.set(oursKey, oursEntry)
    total += duration
  }
  const percent = (micros: number) => (total === 0 ? 0 : (100 * micros) / total)
  const functions = [...byFunction.values()]
    .sort((a, b) => b.micros - a.micros)
    .slice(0, top)
    .map(({ frame, micros }) => ({
      name: frame.functionName === "" ? "(anonymous)" : frame.functionName,
      where: frame.url === "" ? "" : `${shorten(frame.url)}:${frame.lineNumber + 1}`,
      selfMs: micros / 1000,
      percent: percent(micros)
    }))
  const areas = [...byArea.entries()]
    .sort((a, b) => b[1] - a[1])
    .map(([name, micros]) => ({ name, where: "", selfMs: micros / 1000, percent: percent(micros) }))
  const modules = [...byModule.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([name, micros]) => ({ name, where: "", selfMs: micros / 1000, percent: percent(micros) }))
  const ours = [...byOurs.values()]
    .sort((a, b) => b.micros - a.micros)
    .slice(0, top)
    .map(({ frame, micros }) => ({
      name:
        frame === null
          ? "(no function of ours on the stack)"
          : frame.functionName === ""
            ? "(anonymous)"
            : frame.functionName,
      where: frame === null ? "" : `${shorten(frame.url)}:${frame.lineNumber + 1}`,
      selfMs: micros / 1000,
      percent: percent(micros)
    }))
  return { windowMs: total / 1000, functions, areas, modules, ours }
}

/** Reads a `.cpuprofile` file and summarises it. */
export const summariseProfileFile = (
  path: string,
  window?: readonly [number, number],
  top = 15
): ProfileSummary => summariseProfile(JSON.parse(readFileSync(path, "utf8")) as CpuProfile, window, top)
