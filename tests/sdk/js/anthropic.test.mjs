// The official `@anthropic-ai/sdk` npm package, unchanged, against
// llm-gateway's `/v1/messages`, with the exact cost of each call.
import assert from "node:assert/strict";
import { test } from "node:test";
import Anthropic from "@anthropic-ai/sdk";
import { billedNanos, expectedNanos } from "./cost.mjs";

const client = new Anthropic({ baseURL: process.env.GATEWAY_URL, apiKey: process.env.GATEWAY_KEY, maxRetries: 0 });
const REPLY = "Hello from the llm-gateway mock provider.";
const MODELS = ["anthropic:claude-3-5-haiku", "openai:gpt-4o-mini", "gemini:gemini-2.0-flash"];
const TOOLS = [{ name: "lookup", description: "Looks things up", input_schema: { type: "object" } }];
const user = (content) => [{ role: "user", content }];

for (const model of MODELS) {
  test(`message ${model} and its exact cost`, async () => {
    const { data, response } = await client.messages
      .create({ model, max_tokens: 100, messages: user("hello there") })
      .withResponse();
    assert.equal(data.content[0].text, REPLY);
    assert.equal(data.stop_reason, "end_turn");
    assert.deepEqual([data.usage.input_tokens, data.usage.output_tokens], [2, 6]);
    const id = response.headers.get("x-generation-id");
    assert.equal(await billedNanos(id), expectedNanos(model, 2, 6));
  });

  test(`stream ${model} and its exact cost`, async () => {
    const { data: stream, response } = await client.messages
      .create({ model, max_tokens: 100, messages: user("stream please"), stream: true })
      .withResponse();
    const kinds = [];
    let text = "";
    let outputTokens = null;
    for await (const event of stream) {
      kinds.push(event.type);
      if (event.type === "content_block_delta" && event.delta.type === "text_delta") text += event.delta.text;
      if (event.type === "message_delta") outputTokens = event.usage.output_tokens;
    }
    assert.equal(kinds[0], "message_start");
    assert.equal(kinds.at(-1), "message_stop");
    assert.equal(text, REPLY);
    assert.equal(outputTokens, 6);
    assert.equal(await billedNanos(response.headers.get("x-generation-id")), expectedNanos(model, 2, 6));
  });

  test(`tools ${model}`, async () => {
    const message = await client.messages.create({ model, max_tokens: 100, messages: user("use a tool"), tools: TOOLS });
    const call = message.content.find((block) => block.type === "tool_use");
    assert.equal(call.name, "lookup");
    assert.deepEqual(call.input, { query: "mock" });
    assert.equal(message.stop_reason, "tool_use");
    const streamed = await client.messages
      .stream({ model, max_tokens: 100, messages: user("use a tool"), tools: TOOLS })
      .finalMessage();
    assert.deepEqual(streamed.content.find((block) => block.type === "tool_use").input, { query: "mock" });
  });
}

test("count tokens", async () => {
  const counted = await client.messages.countTokens({ model: MODELS[0], messages: user("one two three") });
  assert.equal(counted.input_tokens, 3);
});

test("errors map to the SDK's classes", async () => {
  const bad = new Anthropic({ baseURL: process.env.GATEWAY_URL, apiKey: `llm_sk_${"0".repeat(40)}`, maxRetries: 0 });
  await assert.rejects(bad.messages.create({ model: MODELS[0], max_tokens: 5, messages: user("x") }), Anthropic.AuthenticationError);
  await assert.rejects(
    client.messages.create({ model: "no-such-model", max_tokens: 5, messages: user("x") }),
    Anthropic.NotFoundError,
  );
  await assert.rejects(client.messages.create({ model: MODELS[0], max_tokens: 5, messages: [] }), Anthropic.BadRequestError);
});
