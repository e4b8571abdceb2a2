// cargo-leptos starts the server and runs Playwright at once; wait until the
// gateway answers its health check before any test runs.
export default async function globalSetup(): Promise<void> {
  const port = process.env.E2E_PORT ?? "3107";
  const url = `http://127.0.0.1:${port}/health`;
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
  throw new Error(`the gateway did not become healthy at ${url}: ${lastError}`);
}
