import { expect, test } from "@playwright/test";
import { signUp } from "./support";

// Paying through (mock) Stripe Checkout from the balance page: the fee is
// shown before paying, the signed webhook credits the amount before the
// fee, the payment and its receipt are listed, and the ledger agrees.
test("top up through Stripe Checkout and find the credit, the payment and its receipt", async ({
  page,
}) => {
  await signUp(page, "e2e-balance");
  await expect(page.getByTestId("balance")).toHaveText("$0.00");

  await page.getByRole("link", { name: "Balance" }).click();
  await page.getByLabel("Amount (USD)").fill("0");
  await page.getByRole("button", { name: "Pay with Stripe" }).click();
  await expect(page.getByRole("alert")).toContainText("Enter an amount from 1.00");

  await page.getByLabel("Amount (USD)").fill("12.50");
  await expect(page.getByTestId("top-up-total")).toHaveText(
    "You pay 12.88 USD: 12.50 of credit plus a 3% processing fee of 0.38.",
  );
  await page.getByRole("button", { name: "Pay with Stripe" }).click();

  // Stripe's page (the mock's) charges the credit plus the fee.
  await expect(page.getByRole("heading", { name: "Mock Stripe checkout" })).toBeVisible();
  await expect(page.locator("#total")).toHaveText("12.88 USD");
  await page.getByRole("button", { name: "Pay" }).click();

  await expect(page).toHaveURL(/\/dashboard\/balance\?checkout=success$/);
  await expect(page.getByTestId("checkout-notice")).toContainText("Thank you");
  await expect(page.getByTestId("balance")).toHaveText("$12.50");
  const payments = page.getByTestId("payments-table");
  await expect(payments).toContainText("Paid");
  await expect(payments).toContainText("12.88 USD");
  const ledger = page.getByTestId("ledger-table");
  await expect(ledger).toContainText("Top-up");
  await expect(ledger).toContainText("+$12.50");

  await payments.getByRole("link", { name: "Receipt" }).click();
  const receipt = page.getByTestId("receipt");
  await expect(receipt).toContainText("$12.50");
  await expect(receipt).toContainText("$0.38");
  await expect(receipt).toContainText("12.88 USD");

  await page.getByRole("link", { name: "Overview" }).click();
  await expect(page.getByTestId("balance")).toHaveText("$12.50");
  await expect(page.getByRole("group", { name: /Daily spend by model/ })).toBeVisible();
});

test("a cancelled checkout charges nothing", async ({ page }) => {
  await signUp(page, "e2e-cancel");
  await page.getByRole("link", { name: "Balance" }).click();
  await page.getByLabel("Amount (USD)").fill("5");
  await page.getByRole("button", { name: "Pay with Stripe" }).click();
  await page.getByRole("link", { name: "Cancel and go back" }).click();
  await expect(page).toHaveURL(/checkout=cancelled$/);
  await expect(page.getByTestId("checkout-notice")).toContainText("nothing was charged");
  await expect(page.getByTestId("balance")).toHaveText("$0.00");
  await expect(page.getByTestId("payments-table")).toContainText("Awaiting payment");
});
