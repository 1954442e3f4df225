"""The official openai SDK against a live `hearth serve` running a tiny random gpt-oss model
(the MXFP4 GGUF of scripts/oracle/gen_tiny_gpt_oss.py, in $HEARTH_CACHE/tiny; scripts/test.sh
writes it), so the harmony path runs through the real engine and scheduler, not a script:
rendering with reasoning effort and tools, the streaming harmony parser on real (random)
output, tool calls forced by a grammar in harmony's own form, JSON output as a harmony final
message, and the Responses API.

Random weights say nothing useful, so the checks are on structure: what the grammar forces
must come back parsed (tool_calls with schema-valid arguments, JSON content), and free text
must come back as a well-formed response whatever the model wrote.
"""

import json
import os
from pathlib import Path

import jsonschema
import openai
import pytest

from conftest import LiveServer

TINY = Path(os.environ.get("HEARTH_CACHE", Path.home() / ".cache/hearth")) / "tiny"
MODEL_FILE = TINY / "tiny-gpt-oss-mxfp4.gguf"
MODEL = "tiny-gpt-oss"

WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 12},
        "unit": {"enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city.",
                                      "parameters": WEATHER}},
    {"type": "function", "function": {"name": "get_time", "parameters": {
        "type": "object", "properties": {"tz": {"enum": ["UTC", "CET"]}}, "required": ["tz"],
        "additionalProperties": False}}},
]


@pytest.fixture(scope="module")
def client():
    assert MODEL_FILE.exists(), f"{MODEL_FILE} is missing: scripts/test.sh writes it"
    srv = LiveServer(model_file=MODEL_FILE, alias=MODEL)
    yield openai.OpenAI(base_url=srv.base + "/v1", api_key="unused", max_retries=0)
    assert srv.stop() == 0


def ask(c, **kw):
    return c.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        temperature=0, **kw)


def test_reasoning_effort_is_accepted_and_checked(client):
    # The rendering of each effort is checked byte for byte against openai-harmony's vectors
    # (crates/harmony); here: the live path takes every effort, and refuses a bad one by name.
    for e in ("low", "medium", "high"):
        assert ask(client, max_tokens=1, reasoning_effort=e).usage.prompt_tokens > 0
    with pytest.raises(openai.BadRequestError) as e:
        ask(client, max_tokens=1, reasoning_effort="extreme")
    assert "reasoning_effort" in str(e.value)


def test_free_output_is_a_well_formed_answer(client):
    r = ask(client, max_tokens=24)
    ch = r.choices[0]
    assert ch.finish_reason in ("stop", "length", "tool_calls")
    assert r.usage.completion_tokens <= 24
    chunks = list(client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        temperature=0, max_tokens=24, stream=True))
    assert chunks[-1].choices[0].finish_reason == ch.finish_reason


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_time"}}])
def test_forced_tool_call_in_harmony_form(client, choice):
    r = ask(client, max_tokens=80, tools=TOOLS, tool_choice=choice)
    ch = r.choices[0]
    assert ch.finish_reason == "tool_calls", ch
    (call,) = ch.message.tool_calls
    schema = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
    if isinstance(choice, dict):
        assert call.function.name == "get_time"
    jsonschema.validate(json.loads(call.function.arguments), schema[call.function.name])
    # The same call streamed: deltas assemble to a call that validates too.
    name, args = None, ""
    for chunk in client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "What is the weather in Paris?"}],
            temperature=0, max_tokens=80, tools=TOOLS, tool_choice=choice, stream=True):
        for tc in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            name = tc.function.name or name
            args += tc.function.arguments or ""
    assert (name, json.loads(args)) == (call.function.name, json.loads(call.function.arguments))


def test_json_schema_as_a_harmony_final_message(client):
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"},
                                               "n": {"enum": [1, 2, 3]}},
              "required": ["ok", "n"], "additionalProperties": False}
    r = ask(client, max_tokens=40,
            response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": schema}})
    jsonschema.validate(json.loads(r.choices[0].message.content), schema)
    assert r.choices[0].finish_reason == "stop"


def test_responses_api_on_the_live_model(client):
    r = client.responses.create(model=MODEL, input="Hi", max_output_tokens=16,
                                reasoning={"effort": "low"})
    assert r.status in ("completed", "incomplete")
    assert r.usage.output_tokens <= 16
    events = [e.type for e in client.responses.create(model=MODEL, input="Hi",
                                                      max_output_tokens=16, stream=True)]
    assert events[0] == "response.created"
    assert events[-1] in ("response.completed", "response.incomplete")
