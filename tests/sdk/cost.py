"""What a call should cost, from tests/sdk/config.yml's prices and the
default 20 % margin, and what the gateway says it cost (`/v1/generation`)."""

import json
import os
import urllib.request

# USD per million tokens: (input, output), as in tests/sdk/config.yml.
PRICES = {
    "openai:gpt-4o-mini": (0.15, 0.60),
    "anthropic:claude-3-5-haiku": (0.80, 4.00),
    "gemini:gemini-2.0-flash": (0.10, 0.40),
}


def expected_nanos(model, prompt_tokens, completion_tokens):
    """Provider cost plus 20 %, in nano-USD (1 USD per million = 1,000 nano-USD a token)."""
    price_in, price_out = PRICES[model]
    provider = round(prompt_tokens * price_in * 1000) + round(completion_tokens * price_out * 1000)
    return provider * 6 // 5


def billed_nanos(generation_id):
    """The cost the gateway recorded for a request, in nano-USD."""
    request = urllib.request.Request(
        f"{os.environ['GATEWAY_URL']}/v1/generation?id={generation_id}",
        headers={"Authorization": f"Bearer {os.environ['GATEWAY_KEY']}"},
    )
    for _ in range(50):
        try:
            with urllib.request.urlopen(request) as response:
                return round(json.load(response)["data"]["cost"] * 1e9)
        except urllib.error.HTTPError as error:
            if error.code != 404:  # the record may still be on its way
                raise
        import time

        time.sleep(0.05)
    raise AssertionError(f"no usage record for {generation_id}")
