"""The official `openai` Python package, unchanged, against llm-gateway."""

import os

import openai
import pytest
from openai import OpenAI

BASE_URL = os.environ["GATEWAY_URL"] + "/v1"
KEY = os.environ["GATEWAY_KEY"]
REPLY = "Hello from the llm-gateway mock provider."
MODELS = ["openai:gpt-4o-mini", "anthropic:claude-3-5-haiku", "gemini:gemini-2.0-flash"]
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]

client = OpenAI(base_url=BASE_URL, api_key=KEY, max_retries=0)


@pytest.mark.parametrize("model", MODELS)
def test_chat(model):
    reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hello there"}])
    assert reply.choices[0].message.content == REPLY
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.prompt_tokens == 2
    assert reply.usage.completion_tokens == 6


@pytest.mark.parametrize("model", MODELS)
def test_chat_stream(model):
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "stream please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    content, usage = "", None
    for chunk in stream:
        if chunk.choices:
            content += chunk.choices[0].delta.content or ""
        if chunk.usage:
            usage = chunk.usage
    assert content == REPLY
    assert usage is not None and usage.completion_tokens == 6


def test_stream_without_usage_request_has_no_usage():
    stream = client.chat.completions.create(
        model="openai:gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REPLY
    assert all(getattr(c, "usage", None) is None for c in chunks)


@pytest.mark.parametrize("model", MODELS)
def test_tool_call(model):
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "use a tool"}], tools=TOOLS
    )
    call = reply.choices[0].message.tool_calls[0]
    assert call.function.name == "lookup"
    assert call.function.arguments == '{"query":"mock"}'
    assert reply.choices[0].finish_reason == "tool_calls"


def test_models_list():
    ids = [model.id for model in client.models.list()]
    assert "openai:gpt-4o-mini" in ids
    assert "anthropic:claude-3-5-haiku" in ids


def test_embeddings():
    result = client.embeddings.create(model="openai:text-embedding-3-small", input=["one", "two"])
    assert len(result.data) == 2
    assert len(result.data[0].embedding) == 8


def test_authentication_error():
    bad = OpenAI(base_url=BASE_URL, api_key="llm_sk_" + "0" * 40, max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="openai:gpt-4o-mini", messages=[{"role": "user", "content": "x"}])


def test_not_found_error():
    with pytest.raises(openai.NotFoundError) as error:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    assert error.value.code == "model_not_found"


def test_bad_request_error():
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="openai:gpt-4o-mini", messages=[])


@pytest.mark.parametrize("model", MODELS)
def test_responses_and_exact_cost(model):
    from cost import billed_nanos, expected_nanos

    raw = client.responses.with_raw_response.create(model=model, input="hello there", store=False)
    response = raw.parse()
    assert response.output_text == REPLY
    assert response.status == "completed"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (2, 6)
    assert billed_nanos(raw.headers["x-generation-id"]) == expected_nanos(model, 2, 6)


@pytest.mark.parametrize("model", MODELS)
def test_responses_stream(model):
    stream = client.responses.create(model=model, input="stream please", stream=True, store=False)
    events = list(stream)
    assert events[0].type == "response.created"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == REPLY
    done = events[-1]
    assert done.type == "response.completed"
    assert done.response.usage.output_tokens == 6
    assert done.response.output_text == REPLY


@pytest.mark.parametrize("model", MODELS)
def test_responses_function_call(model):
    tools = [{"type": "function", "name": "lookup", "parameters": {"type": "object"}}]
    response = client.responses.create(model=model, input="use a tool", tools=tools, store=False)
    call = next(item for item in response.output if item.type == "function_call")
    assert call.name == "lookup" and call.arguments == '{"query":"mock"}'
    follow_up = client.responses.create(
        model=model,
        store=False,
        input=[
            {"role": "user", "content": "use a tool"},
            call.model_dump(exclude_none=True),
            {"type": "function_call_output", "call_id": call.call_id, "output": "42"},
        ],
    )
    assert follow_up.output_text == REPLY


def test_responses_are_stored_and_continued():
    first = client.responses.create(model="openai:gpt-4o-mini", input="hello there")
    assert client.responses.retrieve(first.id).output_text == REPLY
    second = client.responses.create(model="openai:gpt-4o-mini", input="again", previous_response_id=first.id)
    # The earlier turn and its answer came along: 2 + 6 + 1 words.
    assert second.usage.input_tokens == 9
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)


def test_responses_bad_request():
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="openai:gpt-4o-mini", input="x", tools=[{"type": "web_search"}])


@pytest.mark.parametrize("model", MODELS)
def test_responses_custom_tool(model):
    """A freeform tool (Codex's apply_patch is one) on every provider."""
    tools = [{"type": "custom", "name": "apply_patch", "description": "Patches files."}]
    response = client.responses.create(model=model, input="use a tool", tools=tools, store=False)
    call = response.output[0]
    assert call.type == "custom_tool_call" and call.name == "apply_patch"
    assert isinstance(call.input, str) and call.input
    streamed = client.responses.create(model=model, input="use a tool", tools=tools, store=False, stream=True)
    done = next(e for e in streamed if e.type == "response.custom_tool_call_input.done")
    assert done.input == call.input
    follow_up = client.responses.create(
        model=model,
        store=False,
        input=[
            {"role": "user", "content": "use a tool"},
            call.model_dump(exclude_none=True),
            {"type": "custom_tool_call_output", "call_id": call.call_id, "output": "applied"},
        ],
    )
    assert follow_up.output_text == REPLY
