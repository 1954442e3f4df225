"""The official `openai` SDK against a harmony (gpt-oss) model, served by the fake backend
with `--harmony`: the fake replays harmony-formatted output, the server must turn it into
`reasoning_content` / `content` / `tool_calls` the SDK parses.

`reasoning_content` is not in the SDK's schema: pydantic keeps unknown fields in
`model_extra`.
"""

import json
import subprocess
import sys

import openai
import pytest

# Same fake server binary, model name and tool definition as the plain-format SDK tests.
from test_openai_sdk import MODEL, TOOLS, _binary

ANSWER = (
    "<|channel|>analysis<|message|>User says hi. Respond.<|end|>"
    "<|start|>assistant<|channel|>final<|message|>Hello there!<|return|>"
)
CALL = (
    "<|channel|>analysis<|message|>Need the weather.<|end|>"
    "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json"
    '<|message|>{"city":"Paris"}<|call|>'
)


def _start(script):
    proc = subprocess.Popen(
        [str(_binary()), "--port", "0", "--context", "8192", "--harmony", "--script", script],
        stdout=subprocess.PIPE,
        stderr=sys.stderr,
        text=True,
    )
    line = proc.stdout.readline().strip()
    if not line.startswith("listening on http://"):
        proc.kill()
        raise AssertionError(f"unexpected first line: {line!r}")
    return proc, openai.OpenAI(
        base_url=f"{line.removeprefix('listening on ')}/v1", api_key="unused", max_retries=0
    )


@pytest.fixture(scope="module")
def answer_client():
    proc, client = _start(ANSWER)
    try:
        yield client
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def call_client():
    proc, client = _start(CALL)
    try:
        yield client
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_reasoning_is_separate_from_content(answer_client):
    r = answer_client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], reasoning_effort="high"
    )
    msg = r.choices[0].message
    assert msg.content == "Hello there!"
    assert msg.model_extra["reasoning_content"] == "User says hi. Respond."
    assert r.choices[0].finish_reason == "stop"
    assert msg.tool_calls is None


def test_streamed_reasoning_and_content(answer_client):
    reasoning, content, finish = "", "", None
    for chunk in answer_client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
    ):
        d = chunk.choices[0].delta
        content += d.content or ""
        reasoning += (d.model_extra or {}).get("reasoning_content") or ""
        finish = chunk.choices[0].finish_reason or finish
    assert reasoning == "User says hi. Respond."
    assert content == "Hello there!"
    assert finish == "stop"


def test_bad_reasoning_effort_is_400_naming_the_field(answer_client):
    with pytest.raises(openai.BadRequestError) as e:
        answer_client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "hi"}],
            reasoning_effort="extreme",
        )
    assert e.value.body["param"] == "reasoning_effort"


def test_tool_call_and_round_trip(call_client):
    msgs = [{"role": "user", "content": "Weather in Paris?"}]
    r = call_client.chat.completions.create(model=MODEL, messages=msgs, tools=TOOLS)
    c = r.choices[0]
    assert c.finish_reason == "tool_calls"
    (call,) = c.message.tool_calls
    assert call.type == "function"
    assert call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert c.message.model_extra["reasoning_content"] == "Need the weather."

    # Send the call back with its result, as an agent loop does: the server must render it.
    msgs.append(c.message.model_dump(exclude_none=True))
    msgs.append({"role": "tool", "tool_call_id": call.id, "content": '{"temp": 20}'})
    r2 = call_client.chat.completions.create(model=MODEL, messages=msgs, tools=TOOLS)
    assert r2.choices[0].finish_reason == "tool_calls"


def test_streamed_tool_call(call_client):
    calls = {}
    finish = None
    for chunk in call_client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Weather?"}],
        tools=TOOLS,
        stream=True,
    ):
        ch = chunk.choices[0]
        assert not ch.delta.content
        for tc in ch.delta.tool_calls or []:
            entry = calls.setdefault(tc.index, {"id": None, "name": "", "args": ""})
            if tc.id:
                entry["id"] = tc.id
            if tc.function and tc.function.name:
                entry["name"] += tc.function.name
            if tc.function and tc.function.arguments:
                entry["args"] += tc.function.arguments
        finish = ch.finish_reason or finish
    assert list(calls) == [0]
    assert calls[0]["name"] == "get_weather"
    assert calls[0]["id"].startswith("call_")
    assert json.loads(calls[0]["args"]) == {"city": "Paris"}
    assert finish == "tool_calls"


# ---- Responses API (`client.responses.create`) ----

RESP_TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]


def test_responses_text_and_reasoning(answer_client):
    r = answer_client.responses.create(
        model=MODEL, input="hi", instructions="Be brief.", reasoning={"effort": "low"}
    )
    assert r.object == "response"
    assert r.status == "completed"
    assert r.output_text == "Hello there!"
    kinds = [item.type for item in r.output]
    assert kinds == ["reasoning", "message"]
    assert r.output[0].content[0].text == "User says hi. Respond."
    assert r.usage.output_tokens == len(ANSWER)  # one byte per token in the fake
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens


def test_responses_previous_response_id(answer_client):
    first = answer_client.responses.create(model=MODEL, input="hi")
    second = answer_client.responses.create(
        model=MODEL, input="and again?", previous_response_id=first.id
    )
    assert second.previous_response_id == first.id
    assert second.output_text == "Hello there!"
    # The first turn's messages reached the prompt: it is longer than a fresh one.
    fresh = answer_client.responses.create(model=MODEL, input="and again?")
    assert second.usage.input_tokens > fresh.usage.input_tokens
    with pytest.raises(openai.BadRequestError) as e:
        answer_client.responses.create(model=MODEL, input="x", previous_response_id="resp_nope")
    assert e.value.body["param"] == "previous_response_id"
    with pytest.raises(openai.BadRequestError) as e:
        answer_client.responses.create(model=MODEL, input="x", reasoning={"effort": "max"})
    assert e.value.body["param"] == "reasoning.effort"


def test_responses_stream(answer_client):
    types, reasoning, text = [], "", ""
    with answer_client.responses.stream(model=MODEL, input="hi") as stream:
        for ev in stream:
            types.append(ev.type)
            if ev.type == "response.reasoning_text.delta":
                reasoning += ev.delta
            elif ev.type == "response.output_text.delta":
                text += ev.delta
        final = stream.get_final_response()
    assert types[0] == "response.created"
    assert types[-1] == "response.completed"
    assert reasoning == "User says hi. Respond."
    assert text == "Hello there!"
    assert final.output_text == "Hello there!"
    # Also the raw iterator of `create(stream=True)`, sequence numbers in order.
    seqs = [ev.sequence_number for ev in answer_client.responses.create(model=MODEL, input="hi", stream=True)]
    assert seqs == list(range(len(seqs)))


def test_responses_function_call_round_trip(call_client):
    r = call_client.responses.create(model=MODEL, input="Weather in Paris?", tools=RESP_TOOLS)
    calls = [item for item in r.output if item.type == "function_call"]
    assert len(calls) == 1
    assert calls[0].name == "get_weather"
    assert json.loads(calls[0].arguments) == {"city": "Paris"}
    assert calls[0].call_id.startswith("call_")
    # Agent loop: send the output back with the result, as items.
    follow = call_client.responses.create(
        model=MODEL,
        previous_response_id=r.id,
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": '{"t": 20}'}],
        tools=RESP_TOOLS,
    )
    assert follow.status == "completed"
    # Streamed arguments.
    args = ""
    with call_client.responses.stream(model=MODEL, input="Weather?", tools=RESP_TOOLS) as stream:
        for ev in stream:
            if ev.type == "response.function_call_arguments.delta":
                args += ev.delta
        final = stream.get_final_response()
    assert json.loads(args) == {"city": "Paris"}
    assert [i.type for i in final.output] == ["reasoning", "function_call"]
