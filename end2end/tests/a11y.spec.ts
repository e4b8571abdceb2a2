import AxeBuilder from "@axe-core/playwright";
import { expect, test, type Browser, type BrowserContext, type Page } from "@playwright/test";
import OpenAI from "openai";
import { ADMIN_EMAIL, signUp, signUpOrIn, topUp, whenHydrated } from "./support";

// The spend chart by keyboard (Tab reaches a point and shows its tooltip),
// its patterns and legend, and its table of the same numbers. Then every
// page of the site, checked by axe-core once hydrated: no violation of
// serious or critical impact. The pages hold data where data changes their
// markup (a key, usage on two models so the chart has two series, a payment
// and its receipt, a playground reply, which comes after the chart's tests
// since it adds to the spend).

const MODELS = ["anthropic:claude-3-5-haiku-latest", "openai:gpt-4o-mini"];
/** The models as usage records them (and the chart names them), in the chart's order. */
const NAMES = MODELS.map((m) => m.slice(m.indexOf(":") + 1));

type Signed = { context: BrowserContext; page: Page };
let user: Signed;
let admin: Signed;
let receiptPath: string;
/** What each model cost today, nano-USD, as the API answered. */
const spent = new Map<string, number>();

test.beforeAll(async ({ browser }, testInfo) => {
  testInfo.setTimeout(120_000);
  user = await signedIn(browser, (page) => signUp(page, "e2e-a11y"));

  // A key, used on two models: usage rows, and two series in the chart.
  await user.page.getByRole("link", { name: "API keys" }).click();
  await user.page.getByLabel("Key name").fill("a11y");
  await user.page.getByRole("button", { name: "Create key" }).click();
  const secret = (await user.page.getByTestId("new-key-secret").textContent())!.trim();
  await topUp(user.page, "5");
  const receipt = user.page.getByTestId("payments-table").getByRole("link", { name: "Receipt" });
  receiptPath = (await receipt.getAttribute("href"))!;
  const client = new OpenAI({ apiKey: secret, baseURL: `${baseUrl(testInfo)}/v1`, maxRetries: 0 });
  for (const model of [...MODELS, MODELS[1]]) {
    const completion = await client.chat.completions.create({
      model,
      messages: [{ role: "user", content: "hello there" }],
    });
    const cost = Math.round((completion.usage as unknown as { cost: number }).cost * 1e9);
    spent.set(model, (spent.get(model) ?? 0) + cost);
  }
  // The recorder writes usage in the background: wait until all three are in.
  await expect(async () => {
    await user.page.goto("/dashboard/usage");
    const rows = user.page.getByTestId("usage-table").locator("tbody tr");
    await expect(rows).toHaveCount(3, { timeout: 1_000 });
  }).toPass();

  admin = await signedIn(browser, (page) => signUpOrIn(page, ADMIN_EMAIL));
});

test.afterAll(async () => {
  await user?.context.close();
  await admin?.context.close();
});

function baseUrl(testInfo: { project: { use: { baseURL?: string } } }): string {
  return testInfo.project.use.baseURL!;
}

async function signedIn(browser: Browser, enter: (page: Page) => Promise<unknown>): Promise<Signed> {
  const context = await browser.newContext({ baseURL: test.info().project.use.baseURL });
  const page = await context.newPage();
  await enter(page);
  return { context, page };
}

/** Runs axe on the hydrated page; fails listing every serious or critical violation. */
async function expectAccessible(page: Page): Promise<void> {
  await whenHydrated(page);
  const results = await new AxeBuilder({ page }).analyze();
  const grave = results.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  const report = grave
    .map((v) => {
      const nodes = v.nodes.map((n) => `    ${n.target.join(" ")}: ${n.failureSummary ?? ""}`);
      return `${v.id} (${v.impact}): ${v.help} <${v.helpUrl}>\n${nodes.join("\n")}`;
    })
    .join("\n");
  expect(grave, `axe on ${page.url()}:\n${report}`).toEqual([]);
}

test.describe("the spend chart", () => {
  test("Tab reaches each point, and its tooltip shows on focus as on hover", async () => {
    const page = user.page;
    await page.goto("/dashboard");
    await whenHydrated(page);
    const chart = page.getByTestId("spend-chart");
    const points = chart.locator(".point");
    await expect(points).toHaveCount(2);

    // From the heading above the chart, Tab lands on the first point.
    await page.getByRole("heading", { name: "Daily spend by model" }).click();
    await page.keyboard.press("Tab");
    const first = points.nth(0);
    await expect(first).toBeFocused();
    const today = new Date().toISOString().slice(0, 10);
    const firstLabel = `${today}, ${NAMES[0]}: ${usd(spent.get(MODELS[0])!)}`;
    await expect(first).toHaveAttribute("role", "img");
    await expect(first).toHaveAttribute("aria-label", firstLabel);
    const tooltip = page.getByRole("tooltip");
    await expect(tooltip).toHaveText(firstLabel);

    await page.keyboard.press("Tab");
    const secondLabel = `${today}, ${NAMES[1]}: ${usd(spent.get(MODELS[1])!)}`;
    await expect(points.nth(1)).toBeFocused();
    await expect(tooltip).toHaveText(secondLabel);

    // Escape hides it; hovering a point shows its tooltip too.
    await page.keyboard.press("Escape");
    await expect(tooltip).toHaveCount(0);
    await first.hover();
    await expect(tooltip).toHaveText(firstLabel);
  });

  test("the series differ by pattern, and the legend shows each one's", async () => {
    const page = user.page;
    await page.goto("/dashboard");
    const chart = page.getByTestId("spend-chart");
    const fills: string[] = [];
    for (const [series, name] of NAMES.entries()) {
      const bar = chart.locator(`.point[data-series="${series}"]`);
      const fill = (await bar.getAttribute("fill"))!;
      const swatch = chart.locator(`.legend li[data-series="${series}"]`);
      await expect(swatch).toContainText(name);
      await expect(swatch.locator("rect")).toHaveAttribute("fill", fill);
      // The fill is a pattern, defined in the chart.
      const id = fill.match(/^url\(#(.+)\)$/)![1];
      await expect(chart.locator(`pattern[id="${id}"]`)).toHaveCount(1);
      fills.push(fill);
    }
    expect(new Set(fills).size).toBe(MODELS.length);
    // The second series' pattern has marks over its colour; the first is solid.
    await expect(chart.locator(`pattern path`)).not.toHaveCount(0);
  });

  test("the table holds the chart's numbers", async () => {
    const page = user.page;
    await page.goto("/dashboard");
    await whenHydrated(page);
    const chart = page.getByTestId("spend-chart");
    await chart.getByText("Show as table").click();
    const table = chart.getByRole("table", { name: /Daily spend by model/ });
    await expect(table).toBeVisible();
    await expect(table.getByRole("columnheader")).toHaveText(["Day (UTC)", ...NAMES, "Total"]);
    const rows = table.locator("tbody tr");
    await expect(rows).toHaveCount(1);
    const today = new Date().toISOString().slice(0, 10);
    const costs = MODELS.map((m) => spent.get(m)!);
    const total = costs.reduce((a, b) => a + b, 0);
    await expect(rows.first().getByRole("rowheader")).toHaveText(today);
    await expect(rows.first().getByRole("cell")).toHaveText([...costs, total].map(usd));
  });
});

test.describe("public pages", () => {
  for (const path of [
    "/",
    "/login",
    "/signup",
    "/forgot-password",
    "/reset-password?token=not-a-token",
    "/verify-email?token=not-a-token",
    "/models",
  ]) {
    test(`${path} has no serious violations`, async ({ page }) => {
      const response = await page.goto(path);
      expect(response?.status()).toBe(200);
      await expectAccessible(page);
    });
  }

  test("the 404 page has no serious violations", async ({ page }) => {
    const response = await page.goto("/no-such-page");
    expect(response?.status()).toBe(404);
    await expect(page.getByRole("heading", { name: "Page not found" })).toBeVisible();
    await expectAccessible(page);
  });

  test("a form's error has no serious violations", async ({ page }) => {
    await page.goto("/login");
    await whenHydrated(page);
    await page.getByLabel("Email").fill("nobody@example.com");
    await page.getByLabel("Password").fill("wrong password");
    await page.getByRole("button", { name: "Sign in" }).click();
    await expect(page.getByRole("alert")).toBeVisible();
    await expectAccessible(page);
  });
});

test.describe("a user's pages", () => {
  test("/dashboard has no serious violations", async () => {
    await user.page.goto("/dashboard");
    await expect(user.page.getByTestId("spend-chart").locator(".point")).toHaveCount(2);
    await expectAccessible(user.page);
  });

  test("/dashboard/keys has no serious violations", async () => {
    await user.page.goto("/dashboard/keys");
    await expect(user.page.getByTestId("keys-table")).toContainText("a11y");
    await expectAccessible(user.page);
    // With the limits opened, and a new key's secret shown.
    await user.page.getByText("Limits (optional)").click();
    await user.page.getByLabel("Key name").fill("a11y second");
    await user.page.getByRole("button", { name: "Create key" }).click();
    await expect(user.page.getByTestId("new-key-secret")).toBeVisible();
    await expectAccessible(user.page);
  });

  test("/dashboard/usage has no serious violations", async () => {
    await user.page.goto("/dashboard/usage");
    await expect(user.page.getByTestId("usage-table").locator("tbody tr")).toHaveCount(3);
    await expectAccessible(user.page);
  });

  test("/dashboard/balance has no serious violations", async () => {
    await user.page.goto("/dashboard/balance?checkout=success");
    await expect(user.page.getByTestId("payments-table")).toContainText("Paid");
    await expect(user.page.getByTestId("ledger-table")).toContainText("Usage");
    await expectAccessible(user.page);
  });

  test("a receipt has no serious violations", async () => {
    await user.page.goto(receiptPath);
    await expect(user.page.getByTestId("receipt")).toContainText("$5.00");
    await expectAccessible(user.page);
  });

  test("/dashboard/playground has no serious violations", async () => {
    const page = user.page;
    await page.goto("/dashboard/playground");
    await expectAccessible(page);
    // With a conversation on the page.
    await page.getByLabel("Model").selectOption("openai:gpt-4o-mini");
    await page.getByLabel("Message").fill("Hello?");
    await page.getByRole("button", { name: "Send" }).click();
    await expect(page.getByTestId("reply").getByTestId("reply-cost")).toBeVisible();
    await expectAccessible(page);
  });

  test("/dashboard/account has no serious violations", async () => {
    await user.page.goto("/dashboard/account");
    await expect(user.page.getByTestId("account-email")).toBeVisible();
    await expectAccessible(user.page);
  });

  test("an admin page refused to a user has no serious violations", async () => {
    const response = await user.page.goto("/dashboard/admin");
    expect(response?.status()).toBe(403);
    await expectAccessible(user.page);
  });
});

test.describe("the admin's pages", () => {
  for (const [path, ready] of [
    ["/dashboard/admin", "spend-chart"],
    ["/dashboard/admin/users", "admin-users"],
    ["/dashboard/admin/pricing", "admin-prices"],
    ["/dashboard/admin/providers", "admin-providers"],
    ["/dashboard/admin/reconciliation", "reconciliation"],
    ["/dashboard/admin/payments", "payments-table"],
  ]) {
    test(`${path} has no serious violations`, async () => {
      const response = await admin.page.goto(path);
      expect(response?.status()).toBe(200);
      await expect(admin.page.getByTestId(ready)).toBeVisible();
      await expectAccessible(admin.page);
    });
  }
});

/** Nano-USD as the dashboard writes it: `$0.000123`, at least two decimals. */
function usd(nanos: number): string {
  const whole = Math.floor(nanos / 1e9);
  const fraction = String(nanos % 1e9).padStart(9, "0").replace(/0+$/, "");
  return `$${whole}.${fraction.length < 2 ? fraction.padEnd(2, "0") : fraction}`;
}
