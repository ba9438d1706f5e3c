// Scripted calls through the TypeScript types that openapi-typescript generates from the API's
// OpenAPI document, with openapi-fetch: consume, a replay of it, balance, and a 402. Compiled
// with tsc (strict) and run by tests/e2e/test_api_clients.py, which reads the one JSON
// object this prints. BILLABLE_URL and BILLABLE_KEY name the server and a tenant key.
import createClient from "openapi-fetch";
import type { components, paths } from "./generated/schema.js";

type QuotaProblem = components["schemas"]["QuotaProblem"];

// Every error is a problem document; a 402's carries the units left.
function isQuotaProblem(problem: unknown): problem is QuotaProblem {
  return typeof (problem as QuotaProblem | undefined)?.remaining === "number";
}

const baseUrl = process.env.BILLABLE_URL ?? "";
const key = process.env.BILLABLE_KEY ?? "";
const client = createClient<paths>({ baseUrl, headers: { Authorization: `Bearer ${key}` } });

// The simplest consume: who and what; every defaulted field (amount 1, ...) left out.
const body = { provider: "telegram", external_id: 1001, feature: "report_generation" };
const idempotency = { header: { "Idempotency-Key": "client-ts-consume-1" } };

const first = await client.POST("/api/v1/billing/quota/consume", { body, params: idempotency });
const replay = await client.POST("/api/v1/billing/quota/consume", { body, params: idempotency });
const balance = await client.GET("/api/v1/billing/balance", {
  params: { query: { provider: "telegram", external_id: "1001", feature: "report_generation" } },
});
const short = await client.POST("/api/v1/billing/quota/consume", {
  body: { ...body, amount: 1000, action_id: "client-ts-too-many" },
});

const shortProblem = isQuotaProblem(short.error) ? short.error : undefined;
const balanceData = balance.data !== undefined && "can_use" in balance.data ? balance.data : null;

console.log(
  JSON.stringify({
    consume: {
      status: first.response.status,
      usage_id: first.data?.usage_id,
      remaining: first.data?.remaining,
    },
    replay: {
      status: replay.response.status,
      replayed: replay.response.headers.get("Idempotent-Replayed"),
      usage_id: replay.data?.usage_id,
    },
    balance: {
      status: balance.response.status,
      can_use: balanceData?.can_use,
      remaining: balanceData?.remaining,
    },
    short: {
      status: short.response.status,
      code: shortProblem?.code,
      remaining: shortProblem?.remaining,
    },
  }),
);
