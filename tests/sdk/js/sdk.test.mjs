// The official `openai` npm package, unchanged, against llm-gateway: chat,
// embeddings and the Responses API.
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

for (const model of MODELS) {
  test(`responses ${model} and its exact cost`, async () => {
    const { billedNanos, expectedNanos } = await import("./cost.mjs");
    const { data, response } = await client.responses
      .create({ model, input: "hello there", store: false })
      .withResponse();
    assert.equal(data.output_text, REPLY);
    assert.deepEqual([data.usage.input_tokens, data.usage.output_tokens], [2, 6]);
    assert.equal(await billedNanos(response.headers.get("x-generation-id")), expectedNanos(model, 2, 6));
  });

  test(`responses stream ${model}`, async () => {
    const stream = await client.responses.create({ model, input: "stream please", stream: true, store: false });
    let text = "";
    let last = null;
    for await (const event of stream) {
      if (event.type === "response.output_text.delta") text += event.delta;
      last = event;
    }
    assert.equal(text, REPLY);
    assert.equal(last.type, "response.completed");
    assert.equal(last.response.usage.output_tokens, 6);
  });

  test(`responses function call ${model}`, async () => {
    const tools = [{ type: "function", name: "lookup", parameters: { type: "object" }, strict: false }];
    const response = await client.responses.create({ model, input: "use a tool", tools, store: false });
    const call = response.output.find((item) => item.type === "function_call");
    assert.equal(call.name, "lookup");
    assert.equal(call.arguments, '{"query":"mock"}');
  });
}

test("responses are stored and continued", async () => {
  const first = await client.responses.create({ model: "openai:gpt-4o-mini", input: "hello there" });
  assert.equal((await client.responses.retrieve(first.id)).output_text, REPLY);
  const second = await client.responses.create({ model: "openai:gpt-4o-mini", input: "again", previous_response_id: first.id });
  assert.equal(second.usage.input_tokens, 9);
  await client.responses.delete(first.id);
  await assert.rejects(client.responses.retrieve(first.id), OpenAI.NotFoundError);
});
