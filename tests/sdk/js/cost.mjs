// What a call should cost, from tests/sdk/config.yml's prices and the default
// 20 % margin, and what the gateway says it cost (`/v1/generation`).

// USD per million tokens: [input, output], as in tests/sdk/config.yml.
const PRICES = {
  "openai:gpt-4o-mini": [0.15, 0.6],
  "anthropic:claude-3-5-haiku": [0.8, 4.0],
  "gemini:gemini-2.0-flash": [0.1, 0.4],
};

/** Provider cost plus 20 %, in nano-USD (1 USD per million = 1,000 nano-USD a token). */
export function expectedNanos(model, promptTokens, completionTokens) {
  const [input, output] = PRICES[model];
  const provider = Math.round(promptTokens * input * 1000) + Math.round(completionTokens * output * 1000);
  return Math.floor((provider * 6) / 5);
}

/** The cost the gateway recorded for a request, in nano-USD. */
export async function billedNanos(generationId) {
  const url = `${process.env.GATEWAY_URL}/v1/generation?id=${generationId}`;
  for (let i = 0; i < 50; i++) {
    const response = await fetch(url, { headers: { Authorization: `Bearer ${process.env.GATEWAY_KEY}` } });
    if (response.ok) return Math.round((await response.json()).data.cost * 1e9);
    if (response.status !== 404) throw new Error(`generation: ${response.status}`);
    await new Promise((resolve) => setTimeout(resolve, 50)); // the record may be on its way
  }
  throw new Error(`no usage record for ${generationId}`);
}
