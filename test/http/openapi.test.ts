import SwaggerParser from "@apidevtools/swagger-parser"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { startServer } from "./support.js"

// ---------------------------------------------------------------------------------------------------------
// The document's shape, as far as these tests read it
// ---------------------------------------------------------------------------------------------------------

interface SchemaObject {
  readonly $ref?: string
  readonly anyOf?: ReadonlyArray<SchemaObject>
  readonly oneOf?: ReadonlyArray<SchemaObject>
  readonly required?: ReadonlyArray<string>
  readonly properties?: Record<string, unknown>
}

interface Operation {
  readonly parameters?: ReadonlyArray<{
    readonly name: string
    readonly in: string
    readonly required?: boolean
  }>
  readonly requestBody?: { readonly content: Record<string, { readonly schema: SchemaObject }> }
  readonly responses: Record<
    string,
    { readonly content?: Record<string, { readonly schema: SchemaObject & { readonly type?: string } }> }
  >
}

interface Document {
  readonly openapi: string
  readonly info: { readonly title: string; readonly version: string }
  readonly paths: Record<string, Record<string, Operation>>
  readonly components: { readonly schemas: Record<string, SchemaObject> }
}

/** The component names a response's JSON schema refers to (directly, or as alternatives). */
const schemaNames = (schema: SchemaObject | undefined): Array<string> => {
  if (schema === undefined) return []
  if (schema.$ref !== undefined) return [schema.$ref.replace("#/components/schemas/", "")]
  return [...(schema.anyOf ?? []), ...(schema.oneOf ?? [])].flatMap(schemaNames)
}

const responseSchemas = (operation: Operation, status: string): Array<string> =>
  schemaNames(operation.responses[status]?.content?.["application/json"]?.schema)

/** The success body of a Server-Sent Events endpoint (a text stream, not a JSON schema). */
const eventStream = "text/event-stream"

/**
 * Every endpoint: its success statuses with their body (a JSON schema's name, or {@link eventStream}), and the
 * errors it declares beside the ones every endpoint shares.
 */
const endpoints: ReadonlyArray<{
  readonly method: string
  readonly path: string
  readonly successes: Record<string, string>
  readonly errors: Record<string, ReadonlyArray<string>>
}> = [
  {
    method: "post",
    path: "/jobs",
    successes: { "200": "Job", "201": "Job" },
    errors: { "400": ["InvalidJobInput"], "401": ["Unauthorized"], "503": ["QueueFull", "QueueShuttingDown"] }
  },
  {
    method: "post",
    path: "/jobs/batch",
    successes: { "201": "SubmittedBatch" },
    errors: { "400": ["InvalidJobInput"], "401": ["Unauthorized"], "503": ["QueueFull", "QueueShuttingDown"] }
  },
  {
    method: "get",
    path: "/jobs",
    successes: { "200": "JobPage" },
    errors: { "400": ["InvalidCursor"], "401": ["Unauthorized"] }
  },
  {
    method: "get",
    path: "/jobs/{id}",
    successes: { "200": "Job" },
    errors: { "401": ["Unauthorized"], "404": ["JobNotFound"] }
  },
  {
    method: "delete",
    path: "/jobs/{id}",
    successes: { "200": "Job" },
    errors: { "401": ["Unauthorized"], "404": ["JobNotFound"], "409": ["JobNotCancellable"] }
  },
  {
    method: "get",
    path: "/jobs/{id}/events",
    successes: { "200": eventStream },
    errors: { "401": ["Unauthorized"], "404": ["JobNotFound"] }
  },
  { method: "get", path: "/events", successes: { "200": eventStream }, errors: { "401": ["Unauthorized"] } },
  { method: "get", path: "/health", successes: { "200": "Health" }, errors: {} },
  {
    method: "get",
    path: "/config",
    successes: { "200": "ClientConfig" },
    errors: { "401": ["Unauthorized"] }
  }
]

/** The errors declared on the whole API, so on every endpoint (HttpApi adds HttpApiDecodeError itself). */
const sharedErrors: Record<string, ReadonlyArray<string>> = {
  "400": ["MalformedBody", "HttpApiDecodeError"],
  "413": ["PayloadTooLarge"],
  "415": ["UnsupportedMediaType"],
  "500": ["InternalServerError"]
}

const fetchDocument = Effect.gen(function* () {
  const { http } = yield* startServer()
  const response = yield* Effect.orDie(http.get("/openapi.json"))
  expect(response.status).toBe(200)
  expect(response.headers["content-type"]).toMatch(/^application\/json\b/)
  return (yield* Effect.orDie(response.json)) as Document
})

/** Runs the validator on a copy (it resolves references in place); fails with its message when invalid. */
const validate = (document: unknown) =>
  Effect.tryPromise({
    try: () => SwaggerParser.validate(structuredClone(document) as never),
    catch: (error) => (error instanceof Error ? error : new Error(String(error)))
  })

// ---------------------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------------------

describe("GET /openapi.json", () => {
  it.scopedLive("is a valid OpenAPI 3.1 document, as judged by swagger-parser", () =>
    Effect.gen(function* () {
      const document = yield* fetchDocument
      expect(document.openapi).toMatch(/^3\.1\.\d+$/)
      expect(document.info).toMatchObject({ title: "Job queue API", version: "0.1.0" })
      const validated = yield* validate(document)
      expect("openapi" in validated ? validated.openapi : undefined).toBe(document.openapi)

      // The validator is not a formality: it rejects a broken copy of the same document.
      const broken = structuredClone(document) as unknown as {
        paths: Record<string, Record<string, { responses: unknown }>>
      }
      broken.paths["/jobs"]!.post!.responses = "none"
      const error = yield* Effect.flip(validate(broken))
      expect(error.message).toMatch(/responses/)
      const dangling = structuredClone(document) as unknown as {
        paths: Record<string, Record<string, { responses: Record<string, unknown> }>>
      }
      dangling.paths["/health"]!.get!.responses["200"] = {
        description: "x",
        content: { "application/json": { schema: { $ref: "#/components/schemas/NoSuchSchema" } } }
      }
      yield* Effect.flip(validate(dangling))
    })
  )

  it.scopedLive("lists every endpoint, and no other, with its success and error responses", () =>
    Effect.gen(function* () {
      const document = yield* fetchDocument
      const listed = Object.entries(document.paths).flatMap(([path, operations]) =>
        Object.keys(operations).map((method) => `${method} ${path}`)
      )
      expect(listed.sort()).toEqual(endpoints.map(({ method, path }) => `${method} ${path}`).sort())

      for (const { method, path, successes, errors } of endpoints) {
        const name = `${method} ${path}`
        const operation = document.paths[path]?.[method]
        expect(operation, name).toBeDefined()
        if (operation === undefined) continue
        const declaredSuccesses = Object.keys(operation.responses).filter((status) => Number(status) < 400)
        expect(declaredSuccesses.sort(), name).toEqual(Object.keys(successes).sort())
        for (const [status, body] of Object.entries(successes)) {
          const content = operation.responses[status]?.content ?? {}
          if (body === eventStream) {
            expect(Object.keys(content), `${name} ${status}`).toEqual([eventStream])
            expect(content[eventStream]?.schema, `${name} ${status}`).toMatchObject({ type: "string" })
          } else {
            expect(Object.keys(content), `${name} ${status}`).toEqual(["application/json"])
            expect(responseSchemas(operation, status), `${name} ${status}`).toEqual([body])
          }
        }

        const expected = new Map<string, Set<string>>()
        for (const table of [sharedErrors, errors]) {
          for (const [status, tags] of Object.entries(table)) {
            expected.set(status, new Set([...(expected.get(status) ?? []), ...tags]))
          }
        }
        for (const [status, tags] of expected) {
          expect(new Set(responseSchemas(operation, status)), `${name} ${status}`).toEqual(tags)
        }
        const declared = Object.keys(operation.responses).filter((status) => Number(status) >= 400)
        expect(declared.sort(), name).toEqual([...expected.keys()].sort())
      }
    })
  )

  it.scopedLive("declares every error body with _tag and message, and the parameters of each endpoint", () =>
    Effect.gen(function* () {
      const document = yield* fetchDocument
      const errorSchemas = new Set(
        Object.values(document.paths).flatMap((operations) =>
          Object.values(operations).flatMap((operation) =>
            Object.keys(operation.responses)
              .filter((status) => Number(status) >= 400)
              .flatMap((status) => responseSchemas(operation, status))
          )
        )
      )
      expect(errorSchemas.size).toBeGreaterThanOrEqual(10)
      for (const name of errorSchemas) {
        const schema = document.components.schemas[name]
        expect(schema, name).toBeDefined()
        expect(Object.keys(schema?.properties ?? {}), name).toEqual(
          expect.arrayContaining(["_tag", "message"])
        )
        expect(schema?.required, name).toEqual(expect.arrayContaining(["_tag", "message"]))
      }

      const list = document.paths["/jobs"]?.get
      expect(list?.parameters?.map(({ name, in: where }) => `${where}:${name}`).sort()).toEqual([
        "query:cursor",
        "query:limit",
        "query:status",
        "query:type"
      ])
      for (const [path, method] of [
        ["/jobs/{id}", "get"],
        ["/jobs/{id}", "delete"],
        ["/jobs/{id}/events", "get"]
      ] as const) {
        const one = document.paths[path]?.[method]
        expect(one?.parameters, `${method} ${path}`).toEqual([
          expect.objectContaining({ name: "id", in: "path", required: true })
        ])
      }
      const events = document.paths["/events"]?.get
      expect(events?.parameters?.map(({ name, in: where }) => `${where}:${name}`).sort()).toEqual([
        "query:status",
        "query:type"
      ])
      const submit = document.paths["/jobs"]?.post
      expect(schemaNames(submit?.requestBody?.content["application/json"]?.schema)).toEqual([
        "SubmitJobPayload"
      ])
      const batch = document.paths["/jobs/batch"]?.post
      expect(schemaNames(batch?.requestBody?.content["application/json"]?.schema)).toEqual([
        "SubmitBatchPayload"
      ])
    })
  )
})

describe("GET /docs", () => {
  it.scopedLive("answers 200 HTML that loads no external script or stylesheet", () =>
    Effect.gen(function* () {
      const { http } = yield* startServer()
      const response = yield* Effect.orDie(http.get("/docs"))
      expect(response.status).toBe(200)
      expect(response.headers["content-type"]).toMatch(/^text\/html\b/)
      const html = yield* Effect.orDie(response.text)
      expect(html).toMatch(/^<!DOCTYPE html>/i)
      expect(html).toContain("SwaggerUIBundle")
      expect(html).toContain("Job queue API")

      // The page's own markup, with the bodies of its inline scripts and styles set aside (an inline script
      // cannot contain "</script>", so this is how a browser splits the page too).
      const markup = html
        .replace(/(<script\b[^>]*>)[\s\S]*?<\/script>/gi, "$1</script>")
        .replace(/(<style\b[^>]*>)[\s\S]*?<\/style>/gi, "$1</style>")
      const scripts = markup.match(/<script\b[^>]*>/gi) ?? []
      expect(scripts.length).toBeGreaterThan(0)
      for (const tag of scripts) expect(tag).not.toMatch(/\bsrc\s*=/i)
      expect(markup).not.toMatch(/<link\b[^>]*\bstylesheet\b/i)
      expect(markup).not.toMatch(/\b(src|href)\s*=\s*["']?(https?:)?\/\//i)

      const styles = [...html.matchAll(/<style\b[^>]*>([\s\S]*?)<\/style>/gi)].map((match) => match[1] ?? "")
      expect(styles.length).toBeGreaterThan(0)
      for (const css of styles) {
        expect(css).not.toMatch(/@import/i)
        expect(css).not.toMatch(/url\(\s*["']?(https?:)?\/\//i)
      }
    })
  )
})
