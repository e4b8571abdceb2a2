import { expect, test } from "@playwright/test";

// The first complete user journey: sign up, create a key, see it once, find
// it by prefix, reload, revoke it, sign out, and be sent back to sign in.
test("sign up, manage an API key, sign out", async ({ page }) => {
  const email = `e2e-${Date.now()}@example.com`;

  await page.goto("/");
  await page.getByRole("link", { name: "Sign up" }).first().click();
  await expect(page).toHaveURL(/\/signup$/);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill("correct horse battery");
  await page.getByRole("button", { name: "Sign up" }).click();

  await expect(page).toHaveURL(/\/dashboard$/);
  await expect(page.getByRole("heading", { name: "Overview" })).toBeVisible();
  await expect(page.getByTestId("user-email")).toHaveText(email);

  await page.getByRole("link", { name: "API keys" }).first().click();
  await expect(page).toHaveURL(/\/dashboard\/keys$/);
  await page.getByLabel("Key name").fill("e2e key");
  await page.getByRole("button", { name: "Create key" }).click();

  const secretCell = page.getByTestId("new-key-secret");
  await expect(secretCell).toBeVisible();
  const secret = (await secretCell.textContent())!.trim();
  expect(secret).toMatch(/^llm_sk_[0-9A-Za-z]{32,}$/);

  // Listed by its prefix, never in full.
  const prefix = secret.slice(0, 13);
  const row = page.locator(`tr[data-key-prefix="${prefix}"]`);
  await expect(row).toBeVisible();
  await expect(row).toContainText("e2e key");
  await expect(row).toContainText("active");
  await expect(page.getByTestId("keys-table")).not.toContainText(secret);

  // A reload shows the key in the list, but its secret never again.
  await page.reload();
  await expect(row).toBeVisible();
  await expect(page.getByTestId("new-key-secret")).toHaveCount(0);
  expect(await page.content()).not.toContain(secret);

  await row.getByRole("button", { name: "Revoke e2e key" }).click();
  await expect(row).toContainText("revoked");
  await expect(row.getByRole("button")).toHaveCount(0);

  await page.getByRole("button", { name: "Sign out" }).click();
  await expect(page).toHaveURL(/\/login/);

  await page.goto("/dashboard");
  await expect(page).toHaveURL(/\/login\?next=\/dashboard$/);
  await expect(page.getByRole("heading", { name: "Sign in" })).toBeVisible();
});

test("protected pages come back after sign-in", async ({ page, context }) => {
  const email = `e2e-next-${Date.now()}@example.com`;
  await page.goto("/signup");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill("correct horse battery");
  await page.getByRole("button", { name: "Sign up" }).click();
  await expect(page).toHaveURL(/\/dashboard$/);
  await context.clearCookies();

  await page.goto("/dashboard/keys");
  await expect(page).toHaveURL(/\/login\?next=\/dashboard\/keys$/);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill("wrong password");
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByRole("alert")).toHaveText("Invalid email or password.");

  await page.getByLabel("Password").fill("correct horse battery");
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page).toHaveURL(/\/dashboard\/keys$/);
  await expect(page.getByRole("heading", { name: "API keys" })).toBeVisible();
});

test("sign-in works before the WASM loads", async ({ browser }) => {
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  const email = `e2e-nojs-${Date.now()}@example.com`;
  await page.goto("/signup");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill("correct horse battery");
  await page.getByRole("button", { name: "Sign up" }).click();
  await expect(page).toHaveURL(/\/dashboard$/);
  await expect(page.getByTestId("user-email")).toHaveText(email);
  await context.close();
});
