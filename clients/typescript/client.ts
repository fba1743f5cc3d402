/**
 * A minimal typed client for llmflow's REST API, for Next.js (server components, route
 * handlers, server actions) and anything else with `fetch` and Web Crypto (Node 18+, Deno,
 * Bun, edge runtimes, browsers). The types come from `schema.d.ts`, which is generated from
 * llmflow's committed OpenAPI document (`clients/openapi.json`) by openapi-typescript.
 *
 *   const config = { baseUrl: process.env.LLMFLOW_URL!, apiKey: process.env.LLMFLOW_API_KEY };
 *   const { job_id } = await submitJob(config, { workflow_name: "quickstart", input_data: { topic: "sagas" } });
 *   const job = await waitForJob(config, job_id);   // JobView, once completed/failed/cancelled/timed_out
 *
 * Keep the API key on the server: never ship it to the browser.
 */
import type { components } from "./schema";

export type JobCreate = components["schemas"]["JobCreate"];
export type JobAccepted = components["schemas"]["JobAccepted"];
export type JobView = components["schemas"]["JobView"];
export type JobStatus = JobView["status"];

/** The body of `POST /api/v1/jobs`: fields with a server-side default may be left out. */
export type SubmitJobBody = Omit<JobCreate, "debug_mode"> & Partial<Pick<JobCreate, "debug_mode">>;

export const TERMINAL_STATUSES: readonly JobStatus[] = [
  "completed",
  "failed",
  "cancelled",
  "timed_out",
];

export interface ClientConfig {
  /** The gateway's address, e.g. `http://localhost:8000` (without `/api/v1`). */
  baseUrl: string;
  /** A key from the gateway's API_KEYS, sent as `Authorization: Bearer <key>`. */
  apiKey?: string;
  /** Your own fetch (defaults to the global one), e.g. to add Next.js caching options. */
  fetch?: typeof fetch;
  headers?: Record<string, string>;
}

export interface RequestOptions {
  signal?: AbortSignal;
}

/** One validation problem of a 422: `loc` names the field, e.g. ["body", "input_data", "topic"]. */
export interface FieldProblem {
  loc: (string | number)[];
  msg: string;
  type: string;
}

/** Every 4xx/5xx: the API's `{error, message, detail}` plus the HTTP status. */
export class LlmflowError extends Error {
  readonly status: number;
  /** A short code: WorkflowNotFound, JobNotFound, ValidationError, InvalidAPISecret, Conflict, … */
  readonly error: string;
  /** A string, or for a 422 the list of problems. */
  readonly detail: unknown;

  constructor(status: number, error: string, message: string, detail: unknown) {
    super(`HTTP ${status} ${error}: ${message}`);
    this.name = "LlmflowError";
    this.status = status;
    this.error = error;
    this.detail = detail;
  }

  /** The `loc` of each field a 422 names. */
  get fields(): FieldProblem["loc"][] {
    if (!Array.isArray(this.detail)) return [];
    return (this.detail as FieldProblem[]).filter((p) => p && Array.isArray(p.loc)).map((p) => p.loc);
  }
}

async function request<T>(
  config: ClientConfig,
  method: "GET" | "POST",
  path: string,
  body?: unknown,
  extraHeaders: Record<string, string> = {},
  signal?: AbortSignal,
): Promise<T> {
  const headers: Record<string, string> = {
    Accept: "application/json",
    ...config.headers,
    ...extraHeaders,
  };
  if (config.apiKey) headers.Authorization = `Bearer ${config.apiKey}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const doFetch = config.fetch ?? fetch;
  const response = await doFetch(`${config.baseUrl.replace(/\/+$/, "")}/api/v1${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
    cache: "no-store",
  });
  const text = await response.text();
  let parsed: unknown = undefined;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    parsed = text;
  }
  if (!response.ok) {
    const err = (parsed ?? {}) as { error?: string; message?: string; detail?: unknown };
    if (typeof parsed === "object" && parsed !== null && typeof err.error === "string") {
      throw new LlmflowError(response.status, err.error, err.message ?? "", err.detail);
    }
    throw new LlmflowError(response.status, `HTTP${response.status}`, text.slice(0, 500), parsed);
  }
  return parsed as T;
}

/** `POST /api/v1/jobs` → 202 `{job_id, status: "queued", …}`. Pass `idempotencyKey` to make a
 * retried submit return the same job instead of starting another. */
export function submitJob(
  config: ClientConfig,
  body: SubmitJobBody,
  options: RequestOptions & { idempotencyKey?: string } = {},
): Promise<JobAccepted> {
  const headers: Record<string, string> = options.idempotencyKey
    ? { "Idempotency-Key": options.idempotencyKey }
    : {};
  return request<JobAccepted>(config, "POST", "/jobs", body, headers, options.signal);
}

/** `GET /api/v1/jobs/{job_id}`: status, output or error, per-step records, progress. */
export function getJob(config: ClientConfig, jobId: string, options: RequestOptions = {}): Promise<JobView> {
  return request<JobView>(config, "GET", `/jobs/${encodeURIComponent(jobId)}`, undefined, {}, options.signal);
}

export interface WaitOptions extends RequestOptions {
  /** Give up after this long (default 5 minutes); rejects with a TimeoutError. */
  timeoutMs?: number;
  /** First poll interval (default 250 ms), multiplied by `backoff` (1.5) up to `maxIntervalMs` (5 s). */
  intervalMs?: number;
  maxIntervalMs?: number;
  backoff?: number;
}

const TRANSIENT = new Set([502, 503, 504]);

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        reject(signal.reason);
      },
      { once: true },
    );
  });

/** Poll `GET /jobs/{job_id}` with backoff until the job ends. A failed job resolves (look at
 * `status` and `error`); 502/503/504 and network errors are retried until the timeout. */
export async function waitForJob(config: ClientConfig, jobId: string, options: WaitOptions = {}): Promise<JobView> {
  const { timeoutMs = 300_000, maxIntervalMs = 5_000, backoff = 1.5, signal } = options;
  const deadline = Date.now() + timeoutMs;
  let interval = options.intervalMs ?? 250;
  let last: JobView | undefined;
  for (;;) {
    try {
      last = await getJob(config, jobId, { signal });
      if (TERMINAL_STATUSES.includes(last.status)) return last;
    } catch (err) {
      if (signal?.aborted) throw err;
      if (err instanceof LlmflowError && !TRANSIENT.has(err.status)) throw err;
      // A transient answer or a network error: poll again.
    }
    const left = deadline - Date.now();
    if (left <= 0) {
      const error = new Error(`job ${jobId} still ${last?.status ?? "unknown"} after ${timeoutMs} ms`);
      error.name = "TimeoutError";
      throw error;
    }
    await sleep(Math.min(interval * (0.9 + Math.random() * 0.2), left), signal);
    interval = Math.min(interval * backoff, maxIntervalMs);
  }
}

/** What a completion webhook POSTs (`workflow.completed` / `workflow.failed`; `llm.step.completed`
 * with debug_mode). Not part of the OpenAPI document: the gateway calls you. */
export interface WebhookEvent {
  event: string;
  job_id: string;
  status?: JobStatus;
  workflow_name?: string;
  workflow_version?: string;
  user_id?: string | null;
  output?: unknown;
  error?: { type: string; message: string; step_id?: string | null; [key: string]: unknown } | null;
  error_message?: string;
  metadata?: Record<string, unknown>;
  duration_ms?: number;
  timestamp?: string;
  [key: string]: unknown;
}

type HeaderSource = Headers | Record<string, string | string[] | undefined | null>;

function header(headers: HeaderSource, name: string): string | undefined {
  if (typeof (headers as Headers).get === "function") {
    return (headers as Headers).get(name) ?? undefined;
  }
  const wanted = name.toLowerCase();
  for (const [key, value] of Object.entries(headers as Record<string, unknown>)) {
    if (key.toLowerCase() === wanted && value != null) {
      return Array.isArray(value) ? String(value[0]) : String(value);
    }
  }
  return undefined;
}

const encoder = new TextEncoder();

function base64ToBytes(text: string): Uint8Array | undefined {
  try {
    const binary = atob(text);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  } catch {
    return undefined;
  }
}

function hexToBytes(text: string): Uint8Array | undefined {
  if (!/^(?:[0-9a-fA-F]{2})+$/.test(text)) return undefined;
  const bytes = new Uint8Array(text.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return bytes;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** HMAC-SHA256 check in constant time (Web Crypto's verify compares the MACs itself). */
async function hmacMatches(key: Uint8Array, data: Uint8Array, mac: Uint8Array): Promise<boolean> {
  // The casts: newer TypeScript libs want ArrayBuffer-backed views; these all are.
  const cryptoKey = await crypto.subtle.importKey(
    "raw",
    key as BufferSource,
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["verify"],
  );
  return crypto.subtle.verify("HMAC", cryptoKey, mac as BufferSource, data as BufferSource);
}

export interface VerifyOptions {
  /** Reject a Standard Webhooks timestamp further than this from now (default 300 s). */
  toleranceSeconds?: number;
  /** Now, in seconds since the epoch (tests). */
  now?: number;
}

/**
 * True when a webhook from llmflow is authentic. Pass the secret (the job's `webhook_secret`, or
 * the worker's LLM_WEBHOOK_SECRET), the raw body exactly as received (read it with
 * `await request.text()` before parsing: re-serialised JSON does not verify), and the headers.
 *
 * The Standard Webhooks signature is checked when present (`webhook-signature: v1,<base64>` over
 * `{webhook-id}.{webhook-timestamp}.{body}`; a `whsec_` secret is base64 of the key, anything
 * else is used as UTF-8), including its timestamp, which defeats replays. Otherwise the
 * `X-Webhook-Signature: sha256=<hex>` HMAC over the raw body is checked.
 */
export async function verifyWebhookSignature(
  secret: string,
  rawBody: string | Uint8Array,
  headers: HeaderSource,
  options: VerifyOptions = {},
): Promise<boolean> {
  if (!secret) return false;
  const body = typeof rawBody === "string" ? encoder.encode(rawBody) : rawBody;
  const standard = header(headers, "webhook-signature");
  if (standard) {
    const id = header(headers, "webhook-id");
    const timestamp = header(headers, "webhook-timestamp");
    if (!id || !timestamp || !/^\d+$/.test(timestamp)) return false;
    const now = options.now ?? Math.floor(Date.now() / 1000);
    if (Math.abs(now - Number(timestamp)) > (options.toleranceSeconds ?? 300)) return false;
    const key = secret.startsWith("whsec_") ? base64ToBytes(secret.slice("whsec_".length)) : encoder.encode(secret);
    if (!key) return false;
    const signed = concat(encoder.encode(`${id}.${timestamp}.`), body);
    for (const entry of standard.split(" ")) {
      if (!entry.startsWith("v1,")) continue;
      const mac = base64ToBytes(entry.slice(3));
      if (mac && (await hmacMatches(key, signed, mac))) return true;
    }
    return false;
  }
  const hex = header(headers, "x-webhook-signature");
  if (!hex) return false;
  const mac = hexToBytes(hex.trim().replace(/^sha256=/i, ""));
  return mac ? hmacMatches(encoder.encode(secret), body, mac) : false;
}
