import { expect, type Page } from "@playwright/test";

/** Signs up a new account with a unique address; returns the address. */
export async function signUp(page: Page, prefix: string): Promise<string> {
  const email = `${prefix}-${Date.now()}@example.com`;
  await page.goto("/signup");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill("correct horse battery");
  await page.getByRole("button", { name: "Sign up" }).click();
  await expect(page).toHaveURL(/\/dashboard$/);
  return email;
}

/**
 * Adds `amount` USD of credit the way a user does: the balance page opens
 * the (mock) Stripe Checkout page, "Pay" completes it, Stripe's signed
 * webhook credits the account, and the browser comes back to the balance
 * page. Leaves the page there.
 */
export async function topUp(page: Page, amount: string): Promise<void> {
  await page.getByRole("link", { name: "Balance" }).click();
  await page.getByLabel("Amount (USD)").fill(amount);
  await page.getByRole("button", { name: "Pay with Stripe" }).click();
  await expect(page.getByRole("heading", { name: "Mock Stripe checkout" })).toBeVisible();
  await page.getByRole("button", { name: "Pay" }).click();
  await expect(page).toHaveURL(/\/dashboard\/balance\?checkout=success$/);
}

/** The admin named in end2end/config.yml's `admin_emails`. */
export const ADMIN_EMAIL = "e2e-admin@example.com";

/**
 * Signs up as `email`, or signs in when a spec before this one already
 * made the account (the admin's is shared). Leaves the page on /dashboard.
 */
export async function signUpOrIn(page: Page, email: string): Promise<void> {
  await page.goto("/signup");
  await whenHydrated(page);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill("correct horse battery");
  await page.getByRole("button", { name: "Sign up" }).click();
  const taken = page.getByRole("alert").filter({ hasText: "already exists" });
  await expect(page.getByTestId("user-email").or(taken)).toBeVisible();
  if (await taken.isVisible()) {
    await page.goto("/login");
    await page.getByLabel("Email").fill(email);
    await page.getByLabel("Password").fill("correct horse battery");
    await page.getByRole("button", { name: "Sign in" }).click();
  }
  await expect(page).toHaveURL(/\/dashboard$/);
}

/**
 * Waits until the WASM client has hydrated the page (it marks
 * `body[data-hydrated]`) and the page's requests have settled.
 */
export async function whenHydrated(page: Page): Promise<void> {
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
  await page.waitForLoadState("networkidle");
}
