import { expect, test, type Page } from "@playwright/test";
import { signUp, whenHydrated } from "./support";

// The pages behind `lazy_page!` (src/app/mod.rs) are chunks of their own,
// cut out of the WASM client by `site-tool split` in scripts/build.sh.

const MAIN_MODULE = /^\/pkg\/[0-9a-f]{16}\/llm-gateway_bg\.wasm$/;

/** The paths of the WASM files the page asks for, as it asks. */
function wasmRequests(page: Page): string[] {
  const paths: string[] = [];
  page.on("request", (request) => {
    const path = new URL(request.url()).pathname;
    if (path.endsWith(".wasm")) paths.push(path);
  });
  return paths;
}

test("the overview loads the main module only, and a page's chunks come when it is first shown", async ({
  page,
}) => {
  const wasm = wasmRequests(page);
  await signUp(page, "lazy");
  await whenHydrated(page);
  expect(wasm.length).toBeGreaterThan(0);
  expect(wasm.filter((path) => !MAIN_MODULE.test(path))).toEqual([]);

  await page.getByRole("link", { name: "API keys" }).first().click();
  await expect(page.getByRole("heading", { name: "API keys" })).toBeVisible();
  const keysChunk = wasm.find((path) => /\/split___keys_route_view_\d+\.wasm$/.test(path));
  expect(keysChunk, wasm.join("\n")).toBeTruthy();
  // All from the folder the main module came from.
  const folder = wasm[0].slice(0, wasm[0].lastIndexOf("/") + 1);
  expect(wasm.every((path) => path.startsWith(folder))).toBe(true);

  // The page the chunk brought works: a key is created and shown once.
  await page.getByLabel("Key name").fill("lazy key");
  await page.getByRole("button", { name: "Create key" }).click();
  await expect(page.getByTestId("new-key-secret")).toHaveText(/llm_sk_[0-9A-Za-z]{32,}/);

  // Back and forth: the chunk is not asked for twice.
  await page.getByRole("link", { name: "Overview" }).click();
  await expect(page.getByRole("heading", { name: "Overview" })).toBeVisible();
  await page.getByRole("link", { name: "API keys" }).first().click();
  await expect(page.getByRole("heading", { name: "API keys" })).toBeVisible();
  expect(wasm.filter((path) => path === keysChunk)).toHaveLength(1);
});

test("a lazily loaded page rendered by the server preloads its chunks and hydrates", async ({ page }) => {
  await signUp(page, "lazy-ssr");
  const wasm = wasmRequests(page);
  const response = await page.goto("/dashboard/usage");
  const html = await response!.text();
  const head = html.slice(0, html.indexOf("</head>"));
  const preloads = [...head.matchAll(/<link [^>]*>/g)]
    .map(([tag]) => tag)
    .filter((tag) => tag.includes('rel="preload"') && tag.includes('as="fetch"'))
    .map((tag) => tag.match(/href="([^"]+)"/)![1]);
  expect(preloads.some((href) => /\/split___usage_route_view_\d+\.wasm$/.test(href)), preloads.join("\n")).toBe(true);
  expect(head).toMatch(/<link [^>]*href="\/pkg\/[0-9a-f]{16}\/__wasm_split\._+\.js"[^>]*rel="modulepreload"/);

  await whenHydrated(page);
  await expect(page.getByRole("heading", { name: "Usage" })).toBeVisible();
  // Every preloaded chunk was used, and none was fetched twice.
  for (const href of preloads) expect(wasm).toContain(href);
  expect(new Set(wasm).size).toBe(wasm.length);

  // Hydrated, so client-side navigation works from here.
  await page.getByRole("link", { name: "Balance" }).click();
  await expect(page).toHaveURL(/\/dashboard\/balance$/);
  await expect(page.getByRole("heading", { name: "Balance", exact: true })).toBeVisible();
});
