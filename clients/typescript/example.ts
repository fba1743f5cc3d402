/**
 * How a Next.js app uses llmflow (App Router). Type-checked in CI with client.ts; copy the parts
 * you need. Read the gateway's address and key from the server's environment, e.g.
 * `{ baseUrl: process.env.LLMFLOW_URL!, apiKey: process.env.LLMFLOW_API_KEY }`.
 */
import {
  LlmflowError,
  submitJob,
  verifyWebhookSignature,
  waitForJob,
  type ClientConfig,
  type JobView,
  type WebhookEvent,
} from "./client";

const config: ClientConfig = { baseUrl: "http://localhost:8000", apiKey: "k1" };

/** The shape the `quickstart` workflow's output has (the API types it as `unknown`). */
interface QuickstartOutput {
  title: string;
  points: string[];
  summary: string;
}

// app/actions.ts ("use server"): submit, then poll until the job ends.
export async function explain(topic: string): Promise<QuickstartOutput> {
  try {
    const accepted = await submitJob(
      config,
      { workflow_name: "quickstart", input_data: { topic } },
      // A retried submit with the same key returns the same job instead of starting another.
      { idempotencyKey: `explain:${topic}` },
    );
    const job: JobView = await waitForJob(config, accepted.job_id, { timeoutMs: 60_000 });
    if (job.status !== "completed") {
      throw new Error(`job ${job.job_id} ${job.status}: ${job.error_message ?? "no message"}`);
    }
    return job.output as QuickstartOutput;
  } catch (err) {
    if (err instanceof LlmflowError && err.status === 422) {
      // e.g. [["body", "input_data", "topic"]]: point the user at the field.
      throw new Error(`invalid ${err.fields.map((loc) => loc.slice(1).join(".")).join(", ")}`);
    }
    throw err;
  }
}

// Or don't wait: let llmflow call you back when the job ends.
export async function explainLater(topic: string, userId: string): Promise<string> {
  const accepted = await submitJob(config, {
    workflow_name: "quickstart",
    input_data: { topic },
    user_id: userId,
    webhook_url: "https://app.example.com/api/llmflow-webhook",
    webhook_secret: WEBHOOK_SECRET,
  });
  return accepted.job_id;
}

const WEBHOOK_SECRET = "whsec_c2VjcmV0LWtleS1vZi10aGlzLWFwcA==";
const seen = new Set<string>(); // use your database: deliveries are retried with the same id

// app/api/llmflow-webhook/route.ts: the completion webhook.
export async function POST(request: Request): Promise<Response> {
  const raw = await request.text(); // the exact bytes: re-serialised JSON would not verify
  if (!(await verifyWebhookSignature(WEBHOOK_SECRET, raw, request.headers))) {
    return new Response("invalid signature", { status: 401 });
  }
  const deliveryId = request.headers.get("webhook-id") ?? "";
  if (seen.has(deliveryId)) return new Response(null, { status: 204 });
  seen.add(deliveryId);
  const event = JSON.parse(raw) as WebhookEvent;
  if (event.event === "workflow.completed") {
    const output = event.output as QuickstartOutput;
    console.log(`job ${event.job_id} for ${event.user_id}: ${output.summary}`);
  } else if (event.event === "workflow.failed") {
    console.warn(`job ${event.job_id} ${event.status}: ${event.error_message}`);
  }
  return new Response(null, { status: 204 });
}
