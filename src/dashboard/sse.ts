// Server-Sent Events read with fetch and a stream reader rather than EventSource, so that requests can carry
// headers (the API token's Authorization header) and the dashboard decides itself when to reconnect.

/** One Server-Sent Events message: its `event:` (default `message`) and its `data:` lines joined by newlines. */
export interface SseMessage {
  readonly event: string
  readonly data: string
}

/**
 * An incremental parser of the `text/event-stream` format: give it the text as it arrives, in chunks cut anywhere,
 * and it returns the messages each chunk completes. Comments (`: heartbeat`) and unknown fields are skipped.
 */
export class SseParser {
  private pending = ""
  private event = ""
  private data: Array<string> = []
  private skipLineFeed = false

  /** Parses the next chunk of the stream; returns the messages it completes, in order. */
  push(chunk: string): Array<SseMessage> {
    let text = chunk
    // A CR ending the previous chunk and an LF opening this one are a single line break.
    if (this.skipLineFeed && text.startsWith("\n")) text = text.slice(1)
    this.skipLineFeed = text.endsWith("\r")
    const lines = (this.pending + text).split(/\r\n|\r|\n/)
    this.pending = lines.pop() ?? ""
    const messages: Array<SseMessage> = []
    for (const line of lines) {
      if (line === "") {
        if (this.data.length > 0)
          messages.push({ event: this.event || "message", data: this.data.join("\n") })
        this.event = ""
        this.data = []
        continue
      }
      if (line.startsWith(":")) continue
      const colon = line.indexOf(":")
      const field = colon === -1 ? line : line.slice(0, colon)
      let value = colon === -1 ? "" : line.slice(colon + 1)
      if (value.startsWith(" ")) value = value.slice(1)
      if (field === "event") this.event = value
      else if (field === "data") this.data.push(value)
    }
    return messages
  }
}

/** The server answered the event stream's request with something else than a stream (an error status…). */
export class EventStreamRefused extends Error {
  /** The answer's HTTP status. */
  readonly status: number

  constructor(status: number, contentType: string) {
    super(`The event stream answered ${status} ${contentType}`)
    this.name = "EventStreamRefused"
    this.status = status
  }
}

/** What {@link followEventStream} reports while it reads. */
export interface EventStreamHandlers {
  /** The server answered with an event stream. */
  readonly onOpen: () => void
  /** A complete message arrived. */
  readonly onMessage: (message: SseMessage) => void
  /** Any bytes arrived (a message, or a comment such as the heartbeat). */
  readonly onActivity: () => void
}

/**
 * Follows the event stream at `url` with `fetch`: resolves when the server ends the stream, rejects when it cannot
 * be opened (an error status, another content type, a network error) or breaks, or when `signal` aborts.
 */
export const followEventStream = async (
  url: string,
  init: { readonly headers: Record<string, string>; readonly signal: AbortSignal },
  handlers: EventStreamHandlers
): Promise<void> => {
  const response = await fetch(url, {
    headers: { ...init.headers, accept: "text/event-stream" },
    signal: init.signal,
    cache: "no-store"
  })
  const contentType = response.headers.get("content-type") ?? ""
  if (!response.ok || response.body === null || !contentType.startsWith("text/event-stream")) {
    await response.body?.cancel()
    throw new EventStreamRefused(response.status, contentType)
  }
  handlers.onOpen()
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader()
  const parser = new SseParser()
  try {
    for (;;) {
      const { value, done } = await reader.read()
      if (done) return
      handlers.onActivity()
      for (const message of parser.push(value)) handlers.onMessage(message)
    }
  } finally {
    reader.releaseLock()
  }
}
