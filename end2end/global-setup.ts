import { ChildProcess, spawn } from "node:child_process";
import { mkdirSync, openSync } from "node:fs";
import path from "node:path";

// scripts/e2e.sh builds the gateway and sets GATEWAY_* for it. Start it on
// end2end/config.yml, wait until it answers its readiness check, then start
// the mock provider (and mock Stripe and SMTP sink) that the config points
// every provider, payments and mail at. The returned function stops both
// when the run ends; the gateway's log is in target/e2e/gateway.log.
export default async function globalSetup(): Promise<() => Promise<void>> {
  const port = process.env.E2E_PORT ?? "3107";
  const root = path.resolve(__dirname, "..");
  const binary = path.join(root, "target", "debug", "llm-gateway");
  mkdirSync(path.join(root, "target", "e2e"), { recursive: true });
  const log = openSync(path.join(root, "target", "e2e", "gateway.log"), "a");
  const gateway = spawn(binary, ["serve", "--config", path.join(root, "end2end", "config.yml")], {
    cwd: root,
    stdio: ["ignore", log, log],
  });
  gateway.on("error", (error) => console.error(`the gateway failed to start: ${error}`));
  await waitFor(`http://127.0.0.1:${port}/health/ready`, gateway);

  // A second gateway on config.example.yml as it ships (the demo provider,
  // sign-up credit, the first account as admin): first-run.spec.ts.
  const examplePort = process.env.E2E_EXAMPLE_PORT ?? "3110";
  const exampleEnv: NodeJS.ProcessEnv = {
    ...process.env,
    GATEWAY_PORT: examplePort,
    GATEWAY_DATABASE_URL: "sqlite://target/e2e/example.db",
  };
  delete exampleEnv.GATEWAY_CONFIG;
  for (const key of ["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"]) delete exampleEnv[key];
  const exampleLog = openSync(path.join(root, "target", "e2e", "example.log"), "a");
  const example = spawn(binary, ["serve", "--config", path.join(root, "config.example.yml")], {
    cwd: root,
    env: exampleEnv,
    stdio: ["ignore", exampleLog, exampleLog],
  });
  await waitFor(`http://127.0.0.1:${examplePort}/health/ready`, example);

  const mockPort = process.env.E2E_MOCK_PORT ?? "3108";
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
    await Promise.all([stop(gateway), stop(example)]);
  };
}

/** Stops the gateway with SIGTERM and waits for it to finish its writes. */
async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  await exited;
}

async function waitFor(url: string, child?: ChildProcess): Promise<void> {
  const deadline = Date.now() + 120_000;
  let lastError: unknown;
  while (Date.now() < deadline) {
    if (child && child.exitCode !== null) {
      throw new Error(`a gateway exited (${child.exitCode}); see target/e2e/*.log`);
    }
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
