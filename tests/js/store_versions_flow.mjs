// The store and assistant versions through the official JS SDK.
// Usage: node store_versions_flow.mjs http://127.0.0.1:8123 <tag>  — prints a JSON summary.
import { Client } from "@langchain/langgraph-sdk";

const client = new Client({ apiUrl: process.argv[2] });
const tag = process.argv[3];
const ns = ["js", tag];

// Store: put, get, search, list namespaces, delete.
await client.store.putItem(ns, "k1", { topic: "cats", n: 1 });
await client.store.putItem([...ns, "deeper"], "k2", { topic: "dogs", n: 2 });
await client.store.putItem(ns, "k1", { topic: "cats", n: 3 }); // an update
const got = await client.store.getItem(ns, "k1");
const searched = await client.store.searchItems(ns);
const dogs = await client.store.searchItems(ns, { filter: { topic: "dogs" } });
const spaces = await client.store.listNamespaces({ prefix: ns });
const shallow = await client.store.listNamespaces({ prefix: ns, maxDepth: 2 });
await client.store.deleteItem(ns, "k1");
const afterDelete = await client.store.getItem(ns, "k1");

// Assistant versions: create (1), update (2), list them, make 1 the latest again.
const assistant = await client.assistants.create({
  graphId: "agent",
  name: `v1-${tag}`,
  metadata: { tag },
  config: { configurable: { answer: 1 } },
});
const updated = await client.assistants.update(assistant.assistant_id, {
  name: `v2-${tag}`,
  metadata: { tag, v: 2 },
  config: { configurable: { answer: 2 } },
});
const versions = await client.assistants.getVersions(assistant.assistant_id);
const onlyFirst = await client.assistants.getVersions(assistant.assistant_id, { limit: 1 });
const latest = await client.assistants.setLatest(assistant.assistant_id, 1);
const fetched = await client.assistants.get(assistant.assistant_id);
await client.assistants.delete(assistant.assistant_id);

console.log(
  JSON.stringify({
    got,
    searched: searched.items,
    dogs: dogs.items.map((i) => i.key),
    spaces: spaces.namespaces,
    shallow: shallow.namespaces,
    after_delete: afterDelete,
    assistant,
    updated,
    versions,
    only_first: onlyFirst,
    latest,
    fetched,
  }),
);
