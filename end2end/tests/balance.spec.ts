import { expect, test } from "@playwright/test";

// Test-mode top-up from the balance page: the balance and the ledger agree.
test("add credits and see them in the ledger and on the overview", async ({ page }) => {
  await page.goto("/signup");
  await page.getByLabel("Email").fill(`e2e-balance-${Date.now()}@example.com`);
  await page.getByLabel("Password").fill("correct horse battery");
  await page.getByRole("button", { name: "Sign up" }).click();
  await expect(page).toHaveURL(/\/dashboard$/);
  await expect(page.getByTestId("balance")).toHaveText("$0.00");

  await page.getByRole("link", { name: "Balance" }).click();
  await page.getByLabel("Amount (USD)").fill("0");
  await page.getByRole("button", { name: "Add credits" }).click();
  await expect(page.getByRole("alert")).toContainText("Enter an amount from 0.01");

  await page.getByLabel("Amount (USD)").fill("12.50");
  await page.getByRole("button", { name: "Add credits" }).click();
  await expect(page.getByTestId("balance")).toHaveText("$12.50");
  const ledger = page.getByTestId("ledger-table");
  await expect(ledger).toContainText("Top-up");
  await expect(ledger).toContainText("+$12.50");

  await page.getByRole("link", { name: "Overview" }).click();
  await expect(page.getByTestId("balance")).toHaveText("$12.50");
  await expect(page.getByRole("img", { name: /Daily spend by model/ })).toBeVisible();
});
