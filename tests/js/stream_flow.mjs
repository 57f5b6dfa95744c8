// Streaming a run through the official JS SDK, then replaying it with joinStream.
// Usage: node stream_flow.mjs http://127.0.0.1:8123  — prints a JSON summary.
import { Client } from "@langchain/langgraph-sdk";

const client = new Client({ apiUrl: process.argv[2] });
const input = { messages: [{ role: "user", content: "What time is it?" }] };

const thread = await client.threads.create();
const streamed = [];
for await (const part of client.runs.stream(thread.thread_id, "agent", {
  input,
  streamMode: ["values", "updates"],
})) {
  streamed.push({ event: part.event, data: part.data });
}
const runId = streamed[0].data.run_id;
const replayed = [];
for await (const part of client.runs.joinStream(thread.thread_id, runId, { lastEventId: "-1" })) {
  replayed.push({ event: part.event, data: part.data });
}
const run = await client.runs.get(thread.thread_id, runId);

console.log(JSON.stringify({ thread_id: thread.thread_id, streamed, replayed, status: run.status }));
