import { expect, test, type Page } from "@playwright/test";
import { signUp, topUp } from "./support";

// Mail, caught by the SMTP sink the mock provider runs beside itself
// (global-setup.ts starts it with --smtp-port; the gateway's email.smtp_url
// points at it) and read back from the mock's GET /mock/mail.

const mockPort = process.env.E2E_MOCK_PORT ?? "3108";

interface CaughtMail {
  to: string[];
  subject: string;
  text: string;
}

/** Waits for a mail to `to` whose subject contains `subject`; returns it. */
async function mailTo(to: string, subject: string): Promise<CaughtMail> {
  let found: CaughtMail | undefined;
  await expect
    .poll(
      async () => {
        const response = await fetch(
          `http://127.0.0.1:${mockPort}/mock/mail?to=${encodeURIComponent(to)}`,
        );
        const mails = (await response.json()) as CaughtMail[];
        found = mails.find((mail) => mail.subject.includes(subject));
        return found !== undefined;
      },
      { timeout: 30_000, message: `a mail to ${to} about "${subject}"` },
    )
    .toBe(true);
  return found!;
}

/** The path and query of the first link in a mail. */
function linkIn(mail: CaughtMail): string {
  const url = mail.text.match(/https?:\/\/\S+/)?.[0];
  if (!url) throw new Error(`no link in: ${mail.text}`);
  const parsed = new URL(url);
  return `${parsed.pathname}${parsed.search}`;
}

async function signIn(page: Page, email: string, password: string): Promise<void> {
  await page.goto("/login");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
}

test("reset a forgotten password from the mailed link", async ({ page }) => {
  const email = await signUp(page, "e2e-reset");
  await page.getByRole("button", { name: "Sign out" }).click();
  await expect(page).toHaveURL(/\/login/);

  await page.getByRole("link", { name: "Forgot your password?" }).click();
  await expect(page).toHaveURL(/\/forgot-password$/);
  await page.getByLabel("Email").fill(email);
  await page.getByRole("button", { name: "Send me a link" }).click();
  await expect(page.getByTestId("reset-requested")).toContainText(
    "If an account uses this address",
  );

  const mail = await mailTo(email, "Reset your password");
  const link = linkIn(mail);
  expect(link).toMatch(/^\/reset-password\?token=[0-9a-f]{64}$/);
  await page.goto(link);
  await page.getByLabel("New password").fill("a brand new secret");
  await page.getByRole("button", { name: "Set password" }).click();
  await expect(page.getByTestId("password-reset")).toContainText("Your password is set");

  // The link works once.
  await page.goto(link);
  await page.getByLabel("New password").fill("yet another secret");
  await page.getByRole("button", { name: "Set password" }).click();
  await expect(page.getByRole("alert")).toContainText("invalid, used or expired");

  await signIn(page, email, "correct horse battery");
  await expect(page.getByRole("alert")).toContainText("Invalid email or password");
  await signIn(page, email, "a brand new secret");
  await expect(page).toHaveURL(/\/dashboard$/);
});

test("a low-balance mail arrives after spending", async ({ page, baseURL }) => {
  const email = await signUp(page, "e2e-low-balance");
  await topUp(page, "1");
  await expect(page.getByTestId("balance")).toHaveText("$1.00");

  await page.getByLabel("Alert below (USD)").fill("0.75");
  await page.getByRole("button", { name: "Save" }).click();
  await expect(page.getByTestId("low-balance-status")).toHaveText(
    "We mail you when your balance falls below $0.75.",
  );

  await page.getByRole("link", { name: "API keys" }).click();
  await page.getByLabel("Key name").fill("spender");
  await page.getByRole("button", { name: "Create key" }).click();
  const secret = (await page.getByTestId("new-key-secret").textContent())!.trim();

  // The mock reports 3 million prompt tokens: $0.54 at gpt-4o-mini's price
  // with the 20% margin, which takes the balance to $0.46.
  const response = await fetch(`${baseURL}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
    body: JSON.stringify({
      model: "openai:gpt-4o-mini",
      max_tokens: 5,
      messages: [{ role: "user", content: "[mock prompt_tokens=3000000 completion_tokens=0]" }],
    }),
  });
  expect(response.status).toBe(200);

  const mail = await mailTo(email, "Your balance is low");
  expect(mail.text).toContain("$0.46");
  expect(mail.text).toContain("$0.75");
  expect(linkIn(mail)).toBe("/dashboard/balance");
});
