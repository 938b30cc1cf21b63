import { Schema } from "effect"
import { Job } from "./Job.js"

/** Every kind of job event, in the order a job may emit them. */
export const JobEventKinds = [
  "submitted",
  "started",
  "progress",
  "retrying",
  "completed",
  "failed",
  "cancelled"
] as const

/** What happened to a job. */
export const JobEventKind = Schema.Literal(...JobEventKinds).annotations({
  identifier: "JobEventKind",
  description:
    "submitted, started, progress, retrying (a failed attempt with attempts left), completed, failed, cancelled."
})

/** The type of a {@link JobEventKind}. */
export type JobEventKind = typeof JobEventKind.Type

/** Something happened to a job: what, and the job as it is right after. */
export class JobEvent extends Schema.Class<JobEvent>("JobEvent")({
  kind: JobEventKind,
  job: Job
}) {}

/** Whether an event is a job's last: it completed, failed or was cancelled. */
export const isFinalEvent = (event: JobEvent): boolean =>
  event.kind === "completed" || event.kind === "failed" || event.kind === "cancelled"
