import { expect, test } from "@playwright/test";
import { whenHydrated } from "./support";

// The first five minutes, on a gateway that runs config.example.yml as it
// ships (global-setup.ts starts it on an empty database): the first account
// is told it becomes the admin and does; with the sign-up credit and the
// built-in demo provider, it creates a key, streams a reply in the
// playground, and sees the cost on the overview.
test.use({ baseURL: `http://127.0.0.1:${process.env.E2E_EXAMPLE_PORT ?? "3110"}` });

test("config.example.yml: sign up as the admin, stream a demo reply, see its cost", async ({ page }) => {
  await page.goto("/signup");
  await whenHydrated(page);
  await expect(page.getByTestId("first-account")).toContainText("becomes the gateway's administrator");
  await expect(page.getByTestId("signup-credit")).toContainText("$5.00");
  await page.getByLabel("Email").fill("owner@example.com");
  await page.getByLabel("Password").fill("correct horse battery");
  await page.getByRole("button", { name: "Sign up" }).click();
  await expect(page).toHaveURL(/\/dashboard$/);
  await expect(page.getByRole("link", { name: "Admin" })).toBeVisible();
  await expect(page.getByTestId("balance")).toHaveText("$5.00");
  await expect(page.getByTestId("spend-today")).toHaveText("$0.00");

  await page.getByRole("link", { name: "API keys" }).first().click();
  await page.getByLabel("Key name").fill("first key");
  await page.getByRole("button", { name: "Create key" }).click();
  await expect(page.getByTestId("new-key-secret")).toContainText("llm_sk_");

  await page.getByRole("link", { name: "Playground" }).click();
  await expect(page.getByRole("heading", { name: "Playground" })).toBeVisible();
  await page.getByLabel("Model").selectOption("demo:demo-fast");
  await page.getByLabel("Message").fill("Hello, demo");
  await page.getByRole("button", { name: "Send" }).click();
  const reply = page.getByTestId("reply");
  // The demo streams its words a few at a time: part of the reply shows first.
  await page.waitForFunction(() => {
    const text = document.querySelector('[data-testid="reply"] .turn-text')?.textContent ?? "";
    return text.length > 0 && !text.endsWith("provider.");
  });
  await expect(reply.locator(".turn-text")).toHaveText(/provider\.$/);
  await expect(reply.getByTestId("reply-cost")).toBeVisible();
  // The playground's balance moves once the call is settled.
  await expect(page.getByTestId("balance")).not.toHaveText("$5.00");

  // A second account is not the admin, and is not told it would be.
  const other = await page.context().browser()!.newPage();
  await other.goto(page.url().replace(/\/dashboard.*$/, "/signup"));
  await expect(other.getByRole("heading", { name: "Create your account" })).toBeVisible();
  await expect(other.getByTestId("first-account")).toHaveCount(0);
  await other.close();

  await page.getByRole("link", { name: "Overview" }).click();
  await expect(page.getByTestId("spend-today")).not.toHaveText("$0.00");
  await expect(page.getByTestId("balance")).not.toHaveText("$5.00");
});
