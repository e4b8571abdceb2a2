// The official `openai` npm package, unchanged, against llm-gateway.
import assert from "node:assert/strict";
import { test } from "node:test";
import OpenAI from "openai";

const baseURL = `${process.env.GATEWAY_URL}/v1`;
const client = new OpenAI({ baseURL, apiKey: process.env.GATEWAY_KEY, maxRetries: 0 });
const REPLY = "Hello from the llm-gateway mock provider.";
const MODELS = ["openai:gpt-4o-mini", "anthropic:claude-3-5-haiku", "gemini:gemini-2.0-flash"];
const user = (content) => [{ role: "user", content }];

for (const model of MODELS) {
  test(`chat ${model}`, async () => {
    const reply = await client.chat.completions.create({ model, messages: user("hello there") });
    assert.equal(reply.choices[0].message.content, REPLY);
    assert.equal(reply.usage.prompt_tokens, 2);
    assert.equal(reply.usage.completion_tokens, 6);
  });

  test(`chat stream ${model}`, async () => {
    const stream = await client.chat.completions.create({
      model,
      messages: user("stream please"),
      stream: true,
      stream_options: { include_usage: true },
    });
    let content = "";
    let usage = null;
    for await (const chunk of stream) {
      content += chunk.choices[0]?.delta?.content ?? "";
      if (chunk.usage) usage = chunk.usage;
    }
    assert.equal(content, REPLY);
    assert.equal(usage?.completion_tokens, 6);
  });

  test(`tool call ${model}`, async () => {
    const reply = await client.chat.completions.create({
      model,
      messages: user("use a tool"),
      tools: [{ type: "function", function: { name: "lookup", parameters: { type: "object" } } }],
    });
    const call = reply.choices[0].message.tool_calls[0];
    assert.equal(call.function.name, "lookup");
    assert.equal(call.function.arguments, '{"query":"mock"}');
  });
}

test("models list", async () => {
  const ids = [];
  for await (const model of client.models.list()) ids.push(model.id);
  assert.ok(ids.includes("openai:gpt-4o-mini"), ids.join(","));
});

test("embeddings", async () => {
  const result = await client.embeddings.create({
    model: "openai:text-embedding-3-small",
    input: ["one", "two"],
    encoding_format: "float",
  });
  assert.equal(result.data.length, 2);
  assert.equal(result.data[0].embedding.length, 8);
});

test("errors map to the SDK's classes", async () => {
  const bad = new OpenAI({ baseURL, apiKey: `llm_sk_${"0".repeat(40)}`, maxRetries: 0 });
  await assert.rejects(
    bad.chat.completions.create({ model: "openai:gpt-4o-mini", messages: user("x") }),
    OpenAI.AuthenticationError,
  );
  await assert.rejects(
    client.chat.completions.create({ model: "no-such-model", messages: user("x") }),
    OpenAI.NotFoundError,
  );
  await assert.rejects(
    client.chat.completions.create({ model: "openai:gpt-4o-mini", messages: [] }),
    OpenAI.BadRequestError,
  );
});
