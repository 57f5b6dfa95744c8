// The cron flow of the LangSmith docs through the official JS SDK.
// Usage: node cron_flow.mjs http://127.0.0.1:8123  — prints a JSON summary.
import { Client } from "@langchain/langgraph-sdk";

const client = new Client({ apiUrl: process.argv[2] });
const input = { messages: [{ role: "user", content: "What time is it?" }] };

const thread = await client.threads.create();
const onThread = await client.crons.createForThread(thread.thread_id, "agent", {
  schedule: "27 15 * * *",
  input,
  timezone: "Europe/Paris",
});
const stateless = await client.crons.create("agent", { schedule: "27 15 * * *", input });
const updated = await client.crons.update(onThread.cron_id, { schedule: "0 8 * * 1-5" });
const found = await client.crons.search({ threadId: thread.thread_id });
const count = await client.crons.count({ assistantId: "agent" });
let error = null;
try {
  await client.crons.create("agent", { schedule: "not a cron" });
} catch (e) {
  error = String(e.message ?? e);
}
await client.crons.delete(onThread.cron_id);
await client.crons.delete(stateless.cron_id);
const after = await client.crons.count({});

console.log(
  JSON.stringify({
    thread_id: thread.thread_id,
    on_thread: onThread,
    stateless,
    updated_schedule: updated.schedule,
    found: found.map((c) => c.cron_id),
    count,
    error,
    after,
  }),
);
