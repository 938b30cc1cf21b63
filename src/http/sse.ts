import { HttpServerResponse } from "@effect/platform"
import { Duration, Effect, Schedule, Schema, type Scope, Stream } from "effect"
import { JobEvent } from "../domain/JobEvent.js"

/** How often an idle event stream sends a comment, so that proxies keep it open. */
export const heartbeatInterval = Duration.seconds(15)

const encodeEvent = Schema.encodeSync(JobEvent)
const encoder = new TextEncoder()
const heartbeat = encoder.encode(": heartbeat\n\n")
// Node sends a response's headers with its first chunk of body: without one at once, a client would not even see
// the 200 (nor an EventSource open) until the first event or heartbeat, up to 15 s later.
const opening = encoder.encode(": connected\n\n")

/** One Server-Sent Events message: `event:` is the event's kind, `data:` the event as JSON. */
export const formatEvent = (event: JobEvent): string =>
  `event: ${event.kind}\ndata: ${JSON.stringify(encodeEvent(event))}\n\n`

/**
 * A `text/event-stream` response from a stream of job events: a `: connected` comment at once, then the events,
 * with a heartbeat comment every {@link heartbeatInterval} while the events last. It ends when the event stream
 * ends; a client that disconnects interrupts the stream, which frees its subscription.
 */
export const eventStreamResponse = <E>(
  events: Stream.Stream<JobEvent, E> | Effect.Effect<Stream.Stream<JobEvent, E>, never, Scope.Scope>
): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.stream(
    // Given the subscription as an effect, the `: connected` comment goes out only once it is subscribed: a client
    // that acts on it (submits a job, say) sees that job's events.
    Stream.unwrapScoped(
      Effect.map(Effect.isEffect(events) ? events : Effect.succeed(events), (subscribed) =>
        Stream.concat(
          Stream.succeed(opening),
          Stream.merge(
            Stream.map(subscribed, (event) => encoder.encode(formatEvent(event))),
            Stream.as(Stream.fromSchedule(Schedule.spaced(heartbeatInterval)), heartbeat),
            { haltStrategy: "left" }
          )
        )
      )
    ),
    {
      contentType: "text/event-stream",
      headers: { "cache-control": "no-cache", "x-accel-buffering": "no", connection: "keep-alive" }
    }
  )
