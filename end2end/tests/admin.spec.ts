import { expect, test, type Page } from "@playwright/test";
import OpenAI from "openai";
import { ADMIN_EMAIL, signUpOrIn, topUp } from "./support";

// The operator's pages: credit a user, change a price, block a user, and
// see each take effect for that user's API key at once.

async function signUp(page: Page, email: string) {
  await page.goto("/signup");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill("correct horse battery");
  await page.getByRole("button", { name: "Sign up" }).click();
  await expect(page).toHaveURL(/\/dashboard$/);
}

test("an admin credits a user, sets a price and blocks the user", async ({ browser, baseURL }) => {
  // A member with an API key and no credit.
  const memberContext = await browser.newContext({ baseURL });
  const member = await memberContext.newPage();
  const email = `e2e-member-${Date.now()}@example.com`;
  await signUp(member, email);
  await expect(member.getByRole("link", { name: "Admin" })).toHaveCount(0);
  await member.getByRole("link", { name: "API keys" }).click();
  await member.getByLabel("Key name").fill("member");
  await member.getByRole("button", { name: "Create key" }).click();
  const secret = (await member.getByTestId("new-key-secret").textContent())!.trim();
  const client = new OpenAI({ apiKey: secret, baseURL: `${baseURL}/v1`, maxRetries: 0 });

  // The member cannot open the admin pages.
  const denied = await member.goto("/dashboard/admin/users");
  expect(denied?.status()).toBe(403);
  await expect(member.getByRole("heading", { name: "Admins only" })).toBeVisible();

  // The admin (named in admin_emails) finds the member and credits them.
  const adminContext = await browser.newContext({ baseURL });
  const admin = await adminContext.newPage();
  // Signed up here, or by a spec that ran before this one.
  await signUpOrIn(admin, ADMIN_EMAIL);
  await admin.getByRole("link", { name: "Admin" }).click();
  await expect(admin.getByRole("heading", { name: "Gateway" })).toBeVisible();
  await admin.getByRole("link", { name: "Users" }).click();
  await admin.getByLabel("Search").fill(email);
  await admin.getByRole("button", { name: "Search" }).click();
  const row = admin.locator(`tr[data-user="${email}"]`);
  await expect(row).toBeVisible();
  await expect(row.getByTestId("user-balance")).toHaveText("$0.00");
  await row.getByLabel(`Amount for ${email}`).fill("7.50");
  await row.getByLabel(`Note for ${email}`).fill("e2e goodwill");
  await row.getByRole("button", { name: "Credit" }).click();
  await expect(row.getByTestId("user-balance")).toHaveText("$7.50");

  // The member sees the credit, with its note, in their ledger.
  await member.goto("/dashboard/balance");
  await expect(member.getByTestId("balance")).toHaveText("$7.50");
  await expect(member.getByTestId("ledger-table")).toContainText("e2e goodwill");

  // A new price, with its own margin, is callable at once.
  await admin.getByRole("link", { name: "Pricing" }).click();
  await admin.getByLabel("Model").fill("openai:gpt-e2e-priced");
  await admin.getByLabel("Input").fill("1");
  await admin.getByLabel("Output").fill("2");
  await admin.getByLabel("Margin %").fill("50");
  await admin.getByRole("button", { name: "Save price" }).click();
  const price = admin.locator('tr[data-model="openai:gpt-e2e-priced"]');
  await expect(price.getByTestId("user-input-price")).toHaveText("$1.50");
  await expect(price.getByTestId("user-output-price")).toHaveText("$3.00");
  const completion = await client.chat.completions.create({
    model: "openai:gpt-e2e-priced",
    messages: [{ role: "user", content: "one two three" }],
  });
  // 3 prompt tokens at $1.50 and 6 completion tokens at $3.00 per million.
  const cost = (completion.usage as unknown as { cost: number }).cost;
  expect(Math.round(cost * 1e9)).toBe(3 * 1500 + 6 * 3000);

  // Blocked: the member's key is refused with 403; unblocked: it works again.
  await admin.getByRole("link", { name: "Users" }).click();
  await admin.getByLabel("Search").fill(email);
  await admin.getByRole("button", { name: "Search" }).click();
  await row.getByRole("button", { name: "Block" }).click();
  await expect(row).toContainText("blocked");
  const refused = await client.chat.completions
    .create({ model: "openai:gpt-e2e-priced", messages: [{ role: "user", content: "hi" }] })
    .catch((err) => err);
  expect(refused).toBeInstanceOf(OpenAI.PermissionDeniedError);
  expect(refused.code).toBe("user_blocked");
  await row.getByRole("button", { name: "Unblock" }).click();
  await expect(row).toContainText("active");
  await client.chat.completions.create({
    model: "openai:gpt-e2e-priced",
    messages: [{ role: "user", content: "hi again" }],
  });

  // The providers page names the mock's base URL.
  await admin.getByRole("link", { name: "Providers" }).click();
  await expect(admin.locator('tr[data-provider="openai"]')).toContainText("/v1");

  // The member pays through (mock) Stripe; the admin sees the payment and
  // the webhook event that credited it.
  await topUp(member, "3");
  await expect(member.getByTestId("balance")).toHaveText(/^\$10\.\d+$/);
  await admin.getByRole("link", { name: "Payments" }).click();
  const payment = admin.getByTestId("payments-table").locator("tr", { hasText: email });
  await expect(payment).toContainText("Paid");
  await expect(payment).toContainText("3.09 USD");
  const events = admin.getByTestId("stripe-events");
  await expect(events).toContainText("checkout.session.completed");
  await expect(events).toContainText("credited");

  await memberContext.close();
  await adminContext.close();
});
