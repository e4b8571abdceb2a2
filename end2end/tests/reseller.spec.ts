import { expect, test, type Page } from "@playwright/test";
import OpenAI from "openai";
import { topUp } from "./support";

// The reseller loop, end to end: top up, create a key, call the gateway with
// the official OpenAI SDK, see the request on the usage page, and find the
// balance lower by exactly its cost. Then the playground streams a reply
// from the mock provider and bills it the same way.

const NANOS_PER_USD = 1_000_000_000n;

/** "$12.345" → nano-USD, exactly (no floats). */
function nanos(text: string): bigint {
  const match = text.trim().match(/^(-?)\$(\d+)\.(\d{1,9})$/);
  if (!match) throw new Error(`not a USD amount: ${text}`);
  const value = BigInt(match[2]) * NANOS_PER_USD + BigInt(match[3].padEnd(9, "0"));
  return match[1] ? -value : value;
}

async function balance(page: Page): Promise<bigint> {
  const figure = page.getByTestId("balance");
  await expect(figure).toHaveText(/^\$\d/);
  return nanos((await figure.textContent())!);
}

test("top up, call with the OpenAI SDK, and be billed exactly", async ({ page, baseURL }) => {
  await page.goto("/signup");
  await page.getByLabel("Email").fill(`e2e-reseller-${Date.now()}@example.com`);
  await page.getByLabel("Password").fill("correct horse battery");
  await page.getByRole("button", { name: "Sign up" }).click();
  await expect(page).toHaveURL(/\/dashboard$/);

  await topUp(page, "5");
  await expect(page.getByTestId("balance")).toHaveText("$5.00");

  await page.getByRole("link", { name: "API keys" }).click();
  await page.getByLabel("Key name").fill("sdk");
  await page.getByRole("button", { name: "Create key" }).click();
  const secret = (await page.getByTestId("new-key-secret").textContent())!.trim();

  // The official SDK, unchanged, with base_url pointed at the gateway.
  const client = new OpenAI({ apiKey: secret, baseURL: `${baseURL}/v1` });
  const { data: completion, response } = await client.chat.completions
    .create({
      model: "openai:gpt-4o-mini",
      messages: [{ role: "user", content: "Say hello to the reseller loop" }],
      max_tokens: 64,
    })
    .withResponse();
  expect(completion.choices[0].message.content).toContain("Hello from the llm-gateway mock provider.");
  const requestId = response.headers.get("x-request-id")!;
  expect(requestId).toMatch(/^req_/);
  const reportedCost = (completion.usage as unknown as { cost: number }).cost;
  expect(reportedCost).toBeGreaterThan(0);

  // The usage page lists the request with the cost the SDK was told.
  await page.getByRole("link", { name: "Usage" }).click();
  const row = page.locator(`tr[data-request-id="${requestId}"]`);
  // The recorder writes usage in the background: reload until the row is in.
  await expect(async () => {
    try {
      await expect(row).toBeVisible({ timeout: 1_000 });
    } catch (missing) {
      await page.reload();
      throw missing;
    }
  }).toPass();
  await expect(row).toContainText("gpt-4o-mini");
  await expect(row).toContainText(secret.slice(0, 13));
  await expect(row).toContainText(
    `${completion.usage!.prompt_tokens} / ${completion.usage!.completion_tokens}`,
  );
  const cost = nanos((await row.getByTestId("cost").textContent())!);
  expect(cost).toBe(BigInt(Math.round(reportedCost * 1e9)));

  // The balance dropped by exactly that cost, and the ledger says so.
  await page.getByRole("link", { name: "Balance" }).click();
  expect(await balance(page)).toBe(5n * NANOS_PER_USD - cost);
  await expect(page.getByTestId("ledger-table")).toContainText(requestId);
});

test("the playground streams a reply and bills it", async ({ page }) => {
  await page.goto("/signup");
  await page.getByLabel("Email").fill(`e2e-playground-${Date.now()}@example.com`);
  await page.getByLabel("Password").fill("correct horse battery");
  await page.getByRole("button", { name: "Sign up" }).click();
  await expect(page).toHaveURL(/\/dashboard$/);

  // With no credit, the gateway refuses before calling the provider.
  await page.getByRole("link", { name: "Playground" }).click();
  await expect(page.getByRole("heading", { name: "Playground" })).toBeVisible();
  await page.getByLabel("Model").selectOption("openai:gpt-4o-mini");
  await page.getByLabel("Message").fill("Hello?");
  await page.getByRole("button", { name: "Send" }).click();
  await expect(page.getByRole("alert")).toContainText("Insufficient credits");

  await topUp(page, "1");
  await expect(page.getByTestId("balance")).toHaveText("$1.00");

  await page.getByRole("link", { name: "Playground" }).click();
  expect(await balance(page)).toBe(NANOS_PER_USD);
  await page.getByLabel("Model").selectOption("openai:gpt-4o-mini");
  // Twelve chunks, 150 ms apart: slow enough to watch the reply grow.
  await page.getByLabel("Message").fill("Stream to me [mock chunks=12 delay_ms=150]");
  await page.getByRole("button", { name: "Send" }).click();

  const reply = page.getByTestId("reply");
  const full = "Hello from the llm-gateway mock provider.";
  // Part of the reply is on screen before the rest has arrived.
  await page.waitForFunction(
    (full) => {
      const text = document.querySelector('[data-testid="reply"] .turn-text')?.textContent ?? "";
      return text.length > 0 && text.length < full.length;
    },
    full,
  );
  await expect(reply.locator(".turn-text")).toHaveText(full);
  const costLine = reply.getByTestId("reply-cost");
  await expect(costLine).toBeVisible();
  const cost = nanos((await costLine.textContent())!.split(" · ").pop()!);
  expect(cost).toBeGreaterThan(0n);
  await expect(page.getByTestId("balance")).not.toHaveText("$1.00");
  expect(await balance(page)).toBe(NANOS_PER_USD - cost);

  // It is on the usage page, from the playground.
  await page.getByRole("link", { name: "Usage" }).click();
  const row = page.getByTestId("usage-table").locator("tbody tr").first();
  await expect(row).toContainText("playground");
  expect(nanos((await row.getByTestId("cost").textContent())!)).toBe(cost);
});

test("the public models page lists user prices", async ({ page }) => {
  await page.goto("/models");
  await expect(page.getByRole("heading", { name: "Models and prices" })).toBeVisible();
  // gpt-4o-mini costs $0.15 / $0.60 per 1M; with the 20% margin users pay $0.18 / $0.72.
  const row = page.locator('tr[data-model="openai:gpt-4o-mini"]');
  await expect(row).toContainText("$0.18");
  await expect(row).toContainText("$0.72");
});
