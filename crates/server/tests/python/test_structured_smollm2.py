"""Structured output and forced tool calls, with the official openai SDK against a live
`hearth serve` running SmolLM2-135M-Instruct. The checks are independent of Hearth's code:
`json.loads` and the `jsonschema` package decide whether the output is valid.

Builds the debug `hearth` binary (optimized; see [profile.dev]) and needs the model from
scripts/fetch-models.sh ($HEARTH_MODELS, default ~/.cache/hearth/models).
"""

import json

import jsonschema
import openai
import pytest

from conftest import MODEL, LiveServer

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "age": {"type": "integer", "minimum": 0, "maximum": 130},
        "city": {"enum": ["Paris", "London", "Tokyo", "other"]},
        "hobbies": {"type": "array", "items": {"type": "string", "maxLength": 30}, "maxItems": 3},
        "address": {
            "type": "object",
            "properties": {"street": {"type": "string", "maxLength": 40}, "zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
            "required": ["street", "zip"],
            "additionalProperties": False,
        },
    },
    "required": ["name", "age", "city", "hobbies", "address"],
    "additionalProperties": False,
}
PERSON_FORMAT = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
PROMPT = "Invent a person who lives in Paris and describe them as JSON."

WEATHER_PARAMS = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 40},
        "unit": {"enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Get the current weather in a city.", "parameters": WEATHER_PARAMS}},
    {"type": "function", "function": {
        "name": "get_time", "description": "Get the local time in a time zone.",
        "parameters": {"type": "object", "properties": {"tz": {"type": "string", "maxLength": 40}},
                       "required": ["tz"], "additionalProperties": False}}},
]



@pytest.fixture(scope="module")
def client():
    srv = LiveServer()
    yield openai.OpenAI(base_url=srv.base + "/v1", api_key="unused")
    assert srv.stop() == 0, "graceful shutdown should exit 0"


def chat(c, content, **kw):
    return c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": content}], **kw)


def test_json_schema_greedy_and_sampled(client):
    outputs = []
    for kw in [dict(temperature=0), dict(temperature=1.0, seed=1), dict(temperature=1.0, seed=2),
               dict(temperature=1.2, top_p=0.95, seed=3)]:
        r = chat(client, PROMPT, max_tokens=300, response_format=PERSON_FORMAT, **kw)
        choice = r.choices[0]
        assert choice.finish_reason == "stop", (kw, choice.message.content)
        value = json.loads(choice.message.content)
        jsonschema.validate(value, PERSON)
        outputs.append(value)
    # Greedy on a question about Paris: the model's own choice, within the enum.
    assert outputs[0]["city"] in PERSON["properties"]["city"]["enum"]


def test_json_schema_streaming_equals_non_streaming(client):
    chunks = list(chat(client, PROMPT, max_tokens=300, temperature=0, response_format=PERSON_FORMAT, stream=True))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    jsonschema.validate(json.loads(text), PERSON)
    assert chunks[-1].choices[0].finish_reason == "stop"
    full = chat(client, PROMPT, max_tokens=300, temperature=0, response_format=PERSON_FORMAT)
    assert text == full.choices[0].message.content


def test_json_object(client):
    # Greedy, one prompt: free-form JSON from a 135M model can fall into a repetition loop
    # inside a string ("Black, Black, ...") until max_tokens; the prefix is valid JSON but not
    # complete. Schemas with maxLength/maxItems (above) bound that.
    for prompt in ["List three colors as a JSON object."]:
        r = chat(client, prompt, max_tokens=200, temperature=0, response_format={"type": "json_object"})
        assert r.choices[0].finish_reason == "stop", r.choices[0].message.content
        assert isinstance(json.loads(r.choices[0].message.content), dict)


def test_unconstrained_text_is_unchanged_by_text_format(client):
    a = chat(client, "Say hello.", max_tokens=12, temperature=0).choices[0].message.content
    b = chat(client, "Say hello.", max_tokens=12, temperature=0, response_format={"type": "text"}).choices[0].message.content
    assert a == b


def test_invalid_schema_is_400(client):
    for schema in [{"type": "foo"}, {"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}},
                   {"type": "integer", "minimum": 5, "maximum": 1}]:
        with pytest.raises(openai.BadRequestError) as e:
            chat(client, "x", max_tokens=8,
                 response_format={"type": "json_schema", "json_schema": {"name": "bad", "schema": schema}})
        assert "response_format.json_schema" in str(e.value)


def test_named_tool_choice_unknown_function_is_400(client):
    with pytest.raises(openai.BadRequestError) as e:
        chat(client, "x", max_tokens=8, tools=TOOLS,
             tool_choice={"type": "function", "function": {"name": "nope"}})
    assert "tool_choice" in str(e.value)


def test_tool_call_round_trip(client):
    messages = [{"role": "user", "content": "What is the weather in Paris right now?"}]
    r = client.chat.completions.create(
        model=MODEL, messages=messages, tools=TOOLS, max_tokens=120, temperature=0,
        tool_choice={"type": "function", "function": {"name": "get_weather"}})
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls", choice.message
    assert choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather" and call.id
    args = json.loads(call.function.arguments)
    jsonschema.validate(args, WEATHER_PARAMS)

    # The client runs the tool and sends the result back, the way the SDK docs do it.
    messages.append(choice.message)
    messages.append({"role": "tool", "tool_call_id": call.id,
                     "content": json.dumps({"city": args["city"], "temperature": 18, "unit": args["unit"],
                                            "condition": "sunny"})})
    final = client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS, max_tokens=60,
                                           temperature=0)
    answer = final.choices[0]
    assert answer.finish_reason in ("stop", "length")
    assert not answer.message.tool_calls
    assert answer.message.content and answer.message.content.strip()


def test_required_tool_choice_streaming(client):
    chunks = list(client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "What time is it in Tokyo?"}], tools=TOOLS,
        tool_choice="required", max_tokens=120, temperature=0, stream=True))
    calls = [tc for ch in chunks if ch.choices for tc in (ch.choices[0].delta.tool_calls or [])]
    assert calls, "a required tool choice produces a tool call"
    name = calls[0].function.name
    assert name in ("get_weather", "get_time")
    params = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}[name]
    jsonschema.validate(json.loads(calls[0].function.arguments), params)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
