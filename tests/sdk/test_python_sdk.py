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
