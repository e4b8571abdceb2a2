import { expect, test } from "@playwright/test";

// The interactive API reference: Swagger UI, served by the gateway itself
// (no CDN), over the generated /openapi.json.
test("the API reference renders the OpenAPI document", async ({ page }) => {
  await page.goto("/docs");
  await expect(page.getByRole("heading", { name: /llm-gateway/ })).toBeVisible();
  await expect(page.locator('[data-path="/v1/chat/completions"]').first()).toBeVisible();
  await expect(page.locator('[data-path="/v1/users/{user_id}/credits"]').first()).toBeVisible();
});
