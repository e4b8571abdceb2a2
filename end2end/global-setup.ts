import { spawn } from "node:child_process";
import path from "node:path";

// cargo-leptos builds and starts the gateway, then runs Playwright at once.
// Wait until the gateway answers its health check, then start the mock
// provider (and mock Stripe) that end2end/config.yml points every provider
// and payments at. The returned
// function stops the mock when the run ends.
export default async function globalSetup(): Promise<() => Promise<void>> {
  const port = process.env.E2E_PORT ?? "3107";
  await waitFor(`http://127.0.0.1:${port}/health`);

  const mockPort = process.env.E2E_MOCK_PORT ?? "3108";
  const binary = path.resolve(__dirname, "..", "target", "debug", "llm-gateway");
  const args = ["mock-provider", "--port", mockPort, "--chunk-delay-ms", "40"];
  // The mock Stripe posts its signed events to the gateway's webhook.
  args.push("--stripe-webhook-url", `http://127.0.0.1:${port}/webhooks/stripe`);
  args.push("--stripe-webhook-secret", "whsec_e2e_0123456789");
  // The gateway's mail goes to the mock's SMTP sink (email.smtp_url).
  args.push("--smtp-port", process.env.E2E_SMTP_PORT ?? "3109");
  const mock = spawn(binary, args, {
    stdio: ["ignore", "ignore", "inherit"],
  });
  mock.on("error", (error) => console.error(`the mock provider failed to start: ${error}`));
  await waitFor(`http://127.0.0.1:${mockPort}/v1/models`);
  return async () => {
    mock.kill();
  };
}

async function waitFor(url: string): Promise<void> {
  const deadline = Date.now() + 120_000;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const response = await fetch(url);
      if (response.ok) return;
      lastError = new Error(`status ${response.status}`);
    } catch (error) {
      lastError = error;
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`${url} did not answer: ${lastError}`);
}
