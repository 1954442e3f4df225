#!/usr/bin/env python3
"""Regenerate tests/golden/harmony/gpt_oss_template.json, the oracle for crates/harmony/tests/golden.rs.

The oracle is the chat template shipped with the gpt-oss weights, as vendored in llama.cpp
(models/templates/openai-gpt-oss-120b.jinja), rendered by Python jinja2 through Hugging Face
transformers' `render_jinja_template` (the function `apply_chat_template` calls, so the jinja2
environment -- trim_blocks, lstrip_blocks, its `tojson`, `raise_exception`, `strftime_now` -- is
transformers' own).

Inputs are OpenAI chat-completions conversations. Before rendering they get the normalisation
llama.cpp / transformers clients apply for this template (and which hearth-harmony does
itself):
  * message keys whose value is None are dropped (apply_chat_template does this);
  * `reasoning_content` / `reasoning` becomes the template's `thinking` field;
  * tool-call `arguments` strings are parsed into JSON objects (the template prints them
    with `|tojson`; llama.cpp parses them before applying templates);
  * content given as a list of text parts is joined into one string.

`strftime_now` is pinned to 2025-03-14 so the `Current date:` line is stable; the Rust test
renders with `CurrentDate::Fixed("2025-03-14")`.

The template is never copied into the repo: the golden records its path and sha256.

Usage:  pip install transformers jinja2 && python3 crates/harmony/tests/gen_golden.py
"""

import copy
import datetime
import hashlib
import json
import os

import jinja2
import transformers
from transformers.utils import chat_template_utils as ctu

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "..", "tests", "golden", "harmony", "gpt_oss_template.json")
TEMPLATE_REL = "models/templates/openai-gpt-oss-120b.jinja"

FIXED_NOW = datetime.datetime(2025, 3, 14, 15, 9, 26)


class _FixedDatetime(datetime.datetime):
    @classmethod
    def now(cls, tz=None):
        return FIXED_NOW


ctu.datetime = _FixedDatetime

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "City and country, e.g. Paris, France"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"},
            },
            "required": ["location"],
        },
    },
}

NO_PARAMS = {
    "type": "function",
    "function": {"name": "get_time", "description": "Current UTC time."},
}

EMPTY_PARAMS = {
    "type": "function",
    "function": {
        "name": "list_files",
        "description": "List the files in the workspace.",
        "parameters": {"type": "object", "properties": {}},
    },
}

KITCHEN = {
    "type": "function",
    "function": {
        "name": "search_flights",
        "description": "Search flights between two airports.",
        "parameters": {
            "type": "object",
            "properties": {
                "origin": {"type": "string", "description": "IATA code of the departure airport"},
                "destination": {"type": "string"},
                "max_stops": {"type": "integer", "description": "Maximum number of stops", "default": 1},
                "cabin": {"type": "string", "enum": ["economy", "business", "first"]},
                "flexible": {"type": "boolean", "default": False},
                "price_cap": {"type": "number", "nullable": True},
                "airlines": {"type": "array", "items": {"type": "string"}, "description": "Preferred airlines"},
                "dates": {
                    "type": "object",
                    "description": "Travel window",
                    "properties": {
                        "depart": {"type": "string"},
                        "return": {"type": "string"},
                    },
                    "required": ["depart"],
                },
                "passengers": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"age": {"type": "integer"}, "name": {"type": "string"}},
                        "required": ["age"],
                    },
                },
                "note": {"type": ["string", "null"]},
                "seat": {"oneOf": [{"type": "string", "description": "seat label"}, {"type": "integer"}]},
                "tags": {"type": "array"},
                "meta": {"type": "object"},
            },
            "required": ["origin", "destination"],
        },
    },
}


def call(id_, name, args):
    return {"id": id_, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}


CASES = [
    {"name": "user_only_medium", "messages": [{"role": "user", "content": "What is 2 + 2?"}]},
    {
        "name": "effort_low_system",
        "reasoning_effort": "low",
        "messages": [
            {"role": "system", "content": "Answer like a pirate."},
            {"role": "user", "content": "Hello!"},
        ],
    },
    {
        "name": "effort_high_developer",
        "reasoning_effort": "high",
        "messages": [
            {"role": "developer", "content": "Always respond in riddles."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
    },
    {
        "name": "content_parts",
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
            {"role": "user", "content": [{"type": "text", "text": "Name a "}, {"type": "text", "text": "colour."}]},
        ],
    },
    {
        "name": "multi_turn_drops_reasoning",
        "messages": [
            {"role": "user", "content": "What is 2 + 2?"},
            {"role": "assistant", "reasoning_content": "Simple arithmetic.", "content": "2 + 2 = 4."},
            {"role": "user", "content": "And 3 + 3?"},
            {"role": "assistant", "reasoning": "Also simple.", "content": "6."},
            {"role": "user", "content": "Thanks!"},
        ],
    },
    {
        "name": "tools_flat",
        "tools": [WEATHER, NO_PARAMS],
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
    },
    {
        "name": "tools_nested_with_instructions",
        "reasoning_effort": "high",
        "tools": [KITCHEN, EMPTY_PARAMS],
        "messages": [
            {"role": "system", "content": "You are a travel agent."},
            {"role": "user", "content": "Find me a flight from SFO to JFK."},
        ],
    },
    {
        "name": "tool_call_in_progress",
        "tools": [WEATHER],
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "reasoning_content": "Need to call get_weather.",
                "tool_calls": [call("call_1", "get_weather", {"location": "Paris, France"})],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature": 21, "sky": "sunny"}'},
        ],
    },
    {
        "name": "tool_call_then_final_then_new_question",
        "tools": [WEATHER],
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "reasoning_content": "Need to call get_weather.",
                "tool_calls": [call("call_1", "get_weather", {"location": "Paris, France", "unit": "celsius"})],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "21 degrees, sunny"},
            {"role": "assistant", "reasoning_content": "Report it.", "content": "It is 21 °C and sunny in Paris."},
            {"role": "user", "content": "And in Tokyo?"},
        ],
    },
    {
        "name": "two_tool_rounds",
        "tools": [WEATHER, NO_PARAMS],
        "messages": [
            {"role": "user", "content": "What time is it, and the weather in Oslo?"},
            {
                "role": "assistant",
                "reasoning_content": "First the time.",
                "tool_calls": [call("c1", "get_time", {})],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "12:00"},
            {
                "role": "assistant",
                "reasoning_content": "Now the weather.",
                "tool_calls": [call("c2", "get_weather", {"location": "Oslo"})],
            },
            {"role": "tool", "tool_call_id": "c2", "content": "snow"},
        ],
    },
    {
        "name": "training_form_final",
        "add_generation_prompt": False,
        "messages": [
            {"role": "user", "content": "Say hi."},
            {"role": "assistant", "reasoning_content": "Greet.", "content": "Hi!"},
        ],
    },
    {
        "name": "unicode_and_quotes",
        "messages": [
            {"role": "developer", "content": "Réponds en français « toujours »."},
            {"role": "user", "content": 'Il a dit "bonjour" \\o/ — 你好'},
        ],
    },
]


def normalise(messages):
    out = []
    for m in messages:
        m = {k: v for k, v in copy.deepcopy(m).items() if v is not None}
        for key in ("reasoning_content", "reasoning"):
            if key in m:
                m["thinking"] = m.pop(key)
        if isinstance(m.get("content"), list):
            m["content"] = "".join(p["text"] for p in m["content"])
        for tc in m.get("tool_calls", []):
            args = tc["function"].get("arguments")
            if isinstance(args, str):
                tc["function"]["arguments"] = json.loads(args)
        out.append(m)
    return out


def main():
    llama_src = os.environ.get(
        "HEARTH_LLAMA_CPP_SRC",
        os.path.expanduser("~/.cache/hearth/oracle/llama-cpp-python-0.3.36/vendor/llama.cpp"),
    )
    path = os.path.join(llama_src, TEMPLATE_REL)
    source = open(path, encoding="utf-8").read()
    cases = []
    for case in CASES:
        add_gen = case.get("add_generation_prompt", True)
        kwargs = {}
        if "reasoning_effort" in case:
            kwargs["reasoning_effort"] = case["reasoning_effort"]
        rendered, _ = ctu.render_jinja_template(
            conversations=[normalise(case["messages"])],
            tools=case.get("tools"),
            chat_template=source,
            add_generation_prompt=add_gen,
            **kwargs,
        )
        cases.append(
            {
                "name": case["name"],
                "messages": case["messages"],
                "tools": case.get("tools", []),
                "reasoning_effort": case.get("reasoning_effort", "medium"),
                "add_generation_prompt": add_gen,
                "expected": rendered[0],
            }
        )
    golden = {
        "generator": "crates/harmony/tests/gen_golden.py",
        "oracle": f"transformers {transformers.__version__} render_jinja_template, jinja2 {jinja2.__version__}",
        "template": {
            "path": TEMPLATE_REL,
            "source": "llama-cpp-python 0.3.36 sdist, vendor/llama.cpp",
            "sha256": hashlib.sha256(source.encode("utf-8")).hexdigest(),
        },
        "current_date": FIXED_NOW.strftime("%Y-%m-%d"),
        "cases": cases,
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(golden, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
