"""The official openai client doing what agents do, against aither-infer (or the gateway).

    openai_agents.py BASE_URL MODEL [--api-key KEY]

Tools (streaming and not, several tools, parallel calls, a named tool_choice), structured
output (json_schema, and the client's parse() with a pydantic model), logprobs, n = 2,
cached tokens, and the Responses API (text, tools and their outputs, text.format, streamed
events). The model may have random weights: the server's grammar makes the output valid,
so every check of its shape is real. Prints one line per check; exits non-zero on the
first failure.
"""
import json
import typing

import jsonschema
import openai
import pydantic

from client_checks import arguments, check

base, model, key = arguments()
client = openai.OpenAI(base_url=base, api_key=key, max_retries=0, timeout=300)


ADD = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
       "required": ["a", "b"], "additionalProperties": False}
# Strings are enums: a model with random weights would write a free string until its token
# budget ran out (and may pick stray bytes that are not UTF-8).
WEATHER = {"type": "object", "properties": {"city": {"enum": ["Oslo", "Lima", "Paris"]},
                                            "unit": {"enum": ["celsius", "fahrenheit"]}},
           "required": ["city", "unit"], "additionalProperties": False}
SCHEMAS = {"add": ADD, "get_weather": WEATHER}
TOOLS = [{"type": "function", "function": {"name": "add", "description": "add two integers", "parameters": ADD}},
         {"type": "function", "function": {"name": "get_weather", "description": "the weather in a city",
                                           "parameters": WEATHER}}]
ASK = [{"role": "user", "content": "What is 2 + 3, and the weather in Oslo?"}]


def valid_call(name, arguments):
    if name not in SCHEMAS:
        return False
    try:
        jsonschema.validate(json.loads(arguments), SCHEMAS[name])
        return True
    except (ValueError, jsonschema.ValidationError):
        return False


# Tools, not streamed: parallel calls allowed; some seed gives more than one call.
most = 0
for seed in range(6):
    r = client.chat.completions.create(model=model, messages=ASK, tools=TOOLS, tool_choice="required", seed=seed,
                                       max_tokens=400)
    c = r.choices[0]
    # Parallel calls may go on until the budget ends them: the complete ones still count.
    check(f"tool calls (seed {seed}) finish with tool_calls (or the budget)", c.finish_reason in ("tool_calls", "length"),
          c)
    calls = c.message.tool_calls or []
    check(f"tool calls (seed {seed}) parse and match their schemas",
          calls and all(valid_call(t.function.name, t.function.arguments) for t in calls), calls)
    check("call ids are distinct", len({t.id for t in calls}) == len(calls), calls)
    most = max(most, len(calls))
check("parallel calls: several calls in one answer", most >= 2, most)

r = client.chat.completions.create(model=model, messages=ASK, tools=TOOLS, seed=1, max_tokens=400,
                                   tool_choice={"type": "function", "function": {"name": "get_weather"}},
                                   parallel_tool_calls=False)
calls = r.choices[0].message.tool_calls or []
check("a named tool_choice calls that function once", len(calls) == 1 and calls[0].function.name == "get_weather"
      and valid_call("get_weather", calls[0].function.arguments), calls)

# The calls and their results go back; the model answers (tool_choice none: no calls).
history = ASK + [r.choices[0].message.model_dump(exclude_none=True)] + [
    {"role": "tool", "tool_call_id": t.id, "content": json.dumps({"temperature": 3})} for t in calls]
r2 = client.chat.completions.create(model=model, messages=history, tools=TOOLS, tool_choice="none", max_tokens=8)
check("the history with tool results is taken", r2.choices[0].message.tool_calls is None, r2)

# Tools, streamed: deltas in OpenAI's shape, accumulated by index.
stream = client.chat.completions.create(model=model, messages=ASK, tools=TOOLS, tool_choice="required", seed=2,
                                        max_tokens=400, stream=True, parallel_tool_calls=False)
acc, finish = {}, None
for chunk in stream:
    for ch in chunk.choices:
        for d in ch.delta.tool_calls or []:
            slot = acc.setdefault(d.index, {"id": None, "name": "", "arguments": ""})
            slot["id"] = d.id or slot["id"]
            slot["name"] += d.function.name or ""
            slot["arguments"] += d.function.arguments or ""
        finish = ch.finish_reason or finish
check("streamed calls parse and match their schemas",
      acc and all(valid_call(v["name"], v["arguments"]) and v["id"] for v in acc.values()), acc)
check("a streamed answer with calls finishes with tool_calls", finish == "tool_calls", finish)

# Structured output.
TRIP = {"type": "object", "properties": {"city": {"enum": ["Oslo", "Lima", "Paris"]},
                                         "days": {"type": "integer", "minimum": 1, "maximum": 30}},
        "required": ["city", "days"], "additionalProperties": False}
r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "plan a trip"}], max_tokens=300,
                                   response_format={"type": "json_schema",
                                                    "json_schema": {"name": "trip", "schema": TRIP, "strict": True}})
try:
    jsonschema.validate(json.loads(r.choices[0].message.content), TRIP)
    ok = True
except (ValueError, jsonschema.ValidationError) as e:
    ok = e
check("response_format json_schema: the answer matches the schema", ok is True, (ok, r.choices[0].message.content))


class Trip(pydantic.BaseModel):
    city: typing.Literal["Oslo", "Lima", "Paris"]
    days: int


p = client.chat.completions.parse(model=model, messages=[{"role": "user", "content": "plan a trip"}],
                                  response_format=Trip, max_tokens=400, seed=5)
check("the client's parse() gets a pydantic object", isinstance(p.choices[0].message.parsed, Trip), p)

# Log-probabilities and several choices.
r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=5, n=2,
                                   logprobs=True, top_logprobs=2, seed=4)
check("n = 2 gives two choices", [c.index for c in r.choices] == [0, 1], r.choices)
lp = r.choices[0].logprobs.content
check("logprobs for each token, with the top alternatives",
      lp and all(t.logprob <= 0 and len(t.top_logprobs) == 2 for t in lp), lp)
again = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=5, n=2,
                                       logprobs=True, top_logprobs=2, seed=4)
check("cached tokens are reported", again.usage.prompt_tokens_details.cached_tokens > 0, again.usage)

# The Responses API.
resp = client.responses.create(model=model, instructions="Answer briefly.", input="Say hello.", max_output_tokens=6)
check("responses.create answers with a message", resp.object == "response" and resp.output[0].type == "message"
      and isinstance(resp.output_text, str), resp)
check("responses usage", resp.usage.output_tokens >= 1 and resp.usage.input_tokens >= 1, resp.usage)
check("a response's id starts with resp_ as OpenAI's do", resp.id.startswith("resp_") and len(resp.id) > 10, resp.id)

RTOOLS = [{"type": "function", "name": "add", "description": "add two integers", "parameters": ADD, "strict": True}]
# One call per answer: parallel calls could go on until the token budget ends the response
# as incomplete.
resp = client.responses.create(model=model, input="What is 2 + 3?", tools=RTOOLS, tool_choice="required",
                               parallel_tool_calls=False, max_output_tokens=300)
fc = [o for o in resp.output if o.type == "function_call"]
check("responses: a function call item", fc and valid_call(fc[0].name, fc[0].arguments), resp.output)
follow = client.responses.create(
    model=model, tools=RTOOLS, max_output_tokens=6, tool_choice="none",
    input=[{"role": "user", "content": "What is 2 + 3?"},
           {"type": "function_call", "call_id": fc[0].call_id, "name": fc[0].name, "arguments": fc[0].arguments},
           {"type": "function_call_output", "call_id": fc[0].call_id, "output": "5"}])
check("responses: a tool's output is taken back", follow.status in ("completed", "incomplete"), follow)

resp = client.responses.create(model=model, input="plan a trip", max_output_tokens=300,
                               text={"format": {"type": "json_schema", "name": "trip", "schema": TRIP, "strict": True}})
try:
    jsonschema.validate(json.loads(resp.output_text), TRIP)
    ok = True
except (ValueError, jsonschema.ValidationError) as e:
    ok = e
check("responses: text.format json_schema", ok is True, (ok, resp.output_text))

kinds, final = [], None
with client.responses.stream(model=model, input="What is 2 + 3?", tools=RTOOLS, tool_choice="required",
                             parallel_tool_calls=False, max_output_tokens=300) as s:
    for ev in s:
        kinds.append(ev.type)
    final = s.get_final_response()
check("responses: streamed events in order", kinds[0] == "response.created" and kinds[-1] == "response.completed"
      and "response.function_call_arguments.done" in kinds, kinds)
fc = [o for o in final.output if o.type == "function_call"]
check("responses: the streamed call is valid", fc and valid_call(fc[0].name, fc[0].arguments), final.output)

try:
    client.responses.create(model=model, input="x", previous_response_id="resp_1")
    check("previous_response_id refused", False)
except openai.BadRequestError as e:
    check("previous_response_id refused, naming it", e.body and e.body.get("param") == "previous_response_id", e.body)
print("all checks passed")
