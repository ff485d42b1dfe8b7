// Billingrails' official Node SDK, pointed at a local cobro (tests/sdk.rs starts it).
// COBRO_URL: the server; COBRO_KEY: a test-mode workspace secret key.
// Exits 0 when every check holds; prints what failed otherwise.
import assert from "node:assert/strict";
import { Billingrails } from "@billingrails/node";

const base = process.env.COBRO_URL;
const key = process.env.COBRO_KEY;
assert.ok(base && key, "COBRO_URL and COBRO_KEY are required");
const client = new Billingrails({ apiKey: key, baseUrl: `${base}/v1`, maxRetries: 1 });

// The Piriod door, with the same key.
async function piriod(method, path, body) {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json();
  assert.ok(response.ok, `${method} ${path}: ${response.status} ${JSON.stringify(data)}`);
  return data;
}

// An account and two invoices, issued.
const { account } = await client.accounts.create({ name: "Acme SpA", email: "billing@acme.test", country: "CL" });
assert.equal(account.object, "account");
assert.match(account.id, /^cus_/);

async function issuedInvoice(amount) {
  const { invoice } = await client.invoices.create({
    account_id: account.id,
    currency: "USD",
    due_at: "2026-12-31T00:00:00Z",
    line_items: [{ name: "Plan", description: null, quantity: 1, unit_amount: amount }],
  });
  assert.equal(invoice.status, "draft");
  assert.equal(invoice.total_amount, amount);
  const issued = await client.invoices.issue(invoice.id, {});
  assert.equal(issued.invoice.status, "issued");
  return issued.invoice;
}
const first = await issuedInvoice(2500);
const second = await issuedInvoice(1999);

// The first: a payment already made, recorded offline.
const offline = await client.payments.create({
  mode: "offline",
  account_id: account.id,
  reference_id: "PAY-REF-001",
  invoice_id: first.id,
});
assert.equal(offline.payment.status, "succeeded");
assert.equal(offline.payment.amount, 2500);
assert.equal(offline.payment.reference_id, "PAY-REF-001");

// The second: charged online to a reusable sandbox source.
const source = await piriod("POST", "/sources/", {
  gateway: "sandbox",
  usage: "reusable",
  customer: account.id,
  gateway_data: { token: "tok_visa" },
});
const online = await client.payments.create({
  mode: "online",
  account_id: account.id,
  reference_id: "PAY-REF-002",
  invoice_id: second.id,
  payment_method_id: String(source.id),
});
assert.equal(online.payment.status, "succeeded");
assert.equal(online.payment.amount, 1999);

// Listed and retrieved.
const listed = await client.payments.list({ page: 1, per_page: 10 });
assert.equal(listed.meta.total_count, 2);
assert.deepEqual(listed.payments.map((p) => p.id).sort(), [offline.payment.id, online.payment.id].sort());
for (const made of [offline.payment, online.payment]) {
  const { payment } = await client.payments.retrieve(made.id);
  assert.equal(payment.id, made.id);
  assert.equal(payment.status, "succeeded");
}

// Both invoices paid.
for (const invoice of [first, second]) {
  const { invoice: now } = await client.invoices.retrieve(invoice.id);
  assert.equal(now.status, "paid");
  assert.equal(now.due_amount, 0);
}
const accounts = await client.accounts.list();
assert.equal(accounts.meta.total_count, 1);

// An error comes back as the SDK's typed error.
await assert.rejects(
  client.payments.create({ mode: "offline", account_id: account.id, reference_id: "X", order_id: "ord_1" }),
  (error) => error.name === "BillingrailsInvalidRequestError" && error.statusCode === 400
    && error.details.some((d) => d.field === "order_id"),
);

// The same objects through the Piriod routes.
const customer = await piriod("GET", `/customers/${account.id}/`);
assert.equal(customer.name, "Acme SpA");
for (const [invoice, payment] of [[first, offline.payment], [second, online.payment]]) {
  const seen = await piriod("GET", `/invoices/${invoice.id}/`);
  assert.equal(seen.status, "paid");
  assert.equal(seen.customer, account.id);
  const paid = await piriod("GET", `/payments/${payment.id}/`);
  assert.equal(paid.status, "succeeded");
  assert.equal(paid.invoice, invoice.id);
  assert.equal(paid.customer, account.id);
}
assert.equal(online.payment.payment_method_id, String(source.id));

console.log(`billingrails sdk: account ${account.id}, invoices ${first.id} ${second.id}, payments ${offline.payment.id} ${online.payment.id}: all checks passed`);
