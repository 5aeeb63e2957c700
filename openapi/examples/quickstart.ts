/**
 * Segments quickstart, written against the TypeScript client generated from
 * openapi/openapi.json by @hey-api/openapi-ts (see openapi/generate-ts-sdk.sh).
 *
 * The same steps as quickstart.py: an attribute, a few contacts, a dynamic
 * segment whose tree is typed from the spec, then the segment's count and
 * members. Exits non-zero when the server's answers are not what the calls
 * should have produced, and fails to compile when the spec stops typing the
 * tree (see the `@ts-expect-error` below).
 *
 *     SEGMENTS_URL=http://127.0.0.1:8080 SEGMENTS_API_KEY=seg_... \
 *         node target/ts-sdk/dist/quickstart.js
 */

import { randomUUID } from "node:crypto";

import { client } from "./client/client.gen";
import {
  createAttribute,
  createContact,
  createSegment,
  getSegment,
  listSegmentMembers,
} from "./client/sdk.gen";
import type { ConditionTree, Problem } from "./client/types.gen";

function fail(message: string): never {
  console.error(`quickstart.ts: ${message}`);
  process.exit(1);
}

/** The data of a 2xx answer; a problem document or nothing fails the run. */
function expect<T>(
  result: { data?: T; error?: unknown; response?: Response },
  what: string,
): T {
  if (result.data !== undefined) {
    return result.data;
  }
  const problem = result.error as Problem | undefined;
  if (problem && typeof problem === "object" && "status" in problem) {
    fail(`${what}: ${problem.status} ${problem.title}: ${problem.detail ?? ""}`);
  }
  fail(`${what}: unexpected answer ${result.response?.status} ${JSON.stringify(result.error)}`);
}

// A misspelled operator is refused by the compiler, not discovered at run
// time: if the spec stopped typing leaves, this tree would compile and the
// unused directive would fail the build. (Its twin with `has_any`, below,
// compiles.)
// @ts-expect-error `has_anny` is not an operator of `tag`
const misspelled: ConditionTree = { type: "tag", params: { op: "has_anny", tags: ["vip"] } };
void misspelled;

async function main(): Promise<void> {
  const key = process.env.SEGMENTS_API_KEY ?? fail("SEGMENTS_API_KEY is not set");
  client.setConfig({
    baseUrl: process.env.SEGMENTS_URL ?? "http://127.0.0.1:8080",
    auth: () => key,
  });
  // Names of this run's own, so the example can run against any workspace.
  const run = randomUUID().replaceAll("-", "").slice(0, 8);
  const tag = `vip-${run}`;
  const plan = `plan_${run}`;

  expect(await createAttribute({ body: { key: plan, type: "text" } }), "create attribute");

  const people: Array<[string, string[], string]> = [
    ["Ada", [tag], "gold"],
    ["Grace", [tag], "silver"],
    ["Linus", [tag], "bronze"],
    ["Alan", [], "gold"],
  ];
  const ids: Record<string, number> = {};
  for (const [name, tags, tier] of people) {
    const contact = expect(
      await createContact({
        body: {
          name,
          external_id: `${run}-${name.toLowerCase()}`,
          tags,
          attributes: { [plan]: tier },
        },
      }),
      `create ${name}`,
    );
    ids[name] = contact.id;
  }
  console.log(`created contacts ${JSON.stringify(ids)}`);

  const conditions: ConditionTree = {
    all: [
      { type: "tag", params: { op: "has_any", tags: [tag] } },
      { type: "attribute", params: { key: plan, op: "in", values: ["gold", "silver"] } },
    ],
  };
  const segment = expect(
    await createSegment({ body: { name: `VIPs ${run}`, kind: "dynamic", conditions } }),
    "create segment",
  );
  console.log(`created segment ${segment.id}`);

  // A materialized segment says it is building until its set exists.
  const deadline = Date.now() + 30_000;
  let count: number | null | undefined;
  for (;;) {
    const current = expect(await getSegment({ path: { id: segment.id } }), "get segment");
    count = current.membership.count;
    if (typeof count === "number") {
      console.log(`segment ${segment.id} has ${count} member(s), read from ${current.membership.source}`);
      break;
    }
    if (Date.now() > deadline) {
      fail("the segment never finished building");
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }

  const page = expect(
    await listSegmentMembers({ path: { id: segment.id }, query: { limit: 100 } }),
    "members",
  );
  const members = page.items.map((c) => c.id).sort((a, b) => a - b);
  const expected = [ids.Ada, ids.Grace].sort((a, b) => a - b);
  if (count !== 2 || JSON.stringify(members) !== JSON.stringify(expected)) {
    fail(`expected members ${expected}, got count ${count} and members ${members}`);
  }
  console.log(`members: ${JSON.stringify(page.items.map((c) => c.name))}`);
}

main().catch((e: unknown) => fail(String(e)));
