"""The official `anthropic` Python package, unchanged, against llm-gateway's
`/v1/messages`: every target on the mock, streamed and not, tools, errors,
token counting, and the exact cost of each call."""

import os

import anthropic
import pytest
from anthropic import Anthropic

from cost import billed_nanos, expected_nanos

KEY = os.environ["GATEWAY_KEY"]
REPLY = "Hello from the llm-gateway mock provider."
MODELS = ["anthropic:claude-3-5-haiku", "openai:gpt-4o-mini", "gemini:gemini-2.0-flash"]
TOOLS = [{"name": "lookup", "description": "Looks things up", "input_schema": {"type": "object"}}]

client = Anthropic(base_url=os.environ["GATEWAY_URL"], api_key=KEY, max_retries=0)


def user(text):
    return [{"role": "user", "content": text}]


@pytest.mark.parametrize("model", MODELS)
def test_message_and_its_exact_cost(model):
    raw = client.messages.with_raw_response.create(model=model, max_tokens=100, messages=user("hello there"))
    message = raw.parse()
    assert message.content[0].text == REPLY
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (2, 6)
    assert billed_nanos(raw.headers["x-generation-id"]) == expected_nanos(model, 2, 6)


@pytest.mark.parametrize("model", MODELS)
def test_stream_and_its_exact_cost(model):
    with client.messages.with_streaming_response.create(
        model=model, max_tokens=100, messages=user("stream please"), stream=True
    ) as raw:
        generation = raw.headers["x-generation-id"]
        events = list(raw.parse())
    kinds = [event.type for event in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop", kinds
    assert "".join(e.delta.text for e in events if e.type == "content_block_delta") == REPLY
    delta = next(e for e in events if e.type == "message_delta")
    assert delta.delta.stop_reason == "end_turn"
    assert delta.usage.output_tokens == 6
    assert billed_nanos(generation) == expected_nanos(model, 2, 6)


@pytest.mark.parametrize("model", MODELS)
def test_stream_helper_assembles_the_message(model):
    with client.messages.stream(model=model, max_tokens=100, messages=user("hello there")) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == REPLY
    assert final.content[0].text == REPLY
    assert final.usage.output_tokens == 6


@pytest.mark.parametrize("model", MODELS)
def test_tool_use_and_result(model):
    message = client.messages.create(model=model, max_tokens=100, messages=user("use a tool"), tools=TOOLS)
    assert message.stop_reason == "tool_use"
    call = next(block for block in message.content if block.type == "tool_use")
    assert call.name == "lookup" and call.input == {"query": "mock"}
    follow_up = client.messages.create(
        model=model,
        max_tokens=100,
        messages=[
            {"role": "user", "content": "use a tool"},
            {"role": "assistant", "content": [call.model_dump()]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "42"}]},
        ],
    )
    assert follow_up.content[0].text == REPLY


@pytest.mark.parametrize("model", MODELS)
def test_streamed_tool_use(model):
    with client.messages.stream(model=model, max_tokens=100, messages=user("use a tool"), tools=TOOLS) as stream:
        final = stream.get_final_message()
    call = next(block for block in final.content if block.type == "tool_use")
    assert call.input == {"query": "mock"}
    assert final.stop_reason == "tool_use"


@pytest.mark.parametrize("model", ["anthropic:claude-3-5-haiku", "openai:gpt-4o-mini"])
def test_count_tokens(model):
    counted = client.messages.count_tokens(model=model, messages=user("one two three"))
    assert counted.input_tokens >= 3


def test_errors():
    bad = Anthropic(base_url=os.environ["GATEWAY_URL"], api_key="llm_sk_" + "0" * 40, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as error:
        bad.messages.create(model=MODELS[0], max_tokens=10, messages=user("x"))
    assert error.value.body["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.NotFoundError) as error:
        client.messages.create(model="no-such-model", max_tokens=10, messages=user("x"))
    assert error.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model=MODELS[0], max_tokens=10, messages=[])
    with pytest.raises(anthropic.InternalServerError):
        client.messages.create(model=MODELS[1], max_tokens=10, messages=user("[mock status=500]"))
