"""The OpenAI Agents SDK against aither-infer (or the gateway), through both of its model
classes: the Responses API (the SDK's default) and chat completions.

    openai_agents_sdk.py BASE_URL MODEL [--api-key KEY]

For each: an agent made to call a function tool (the SDK parses the arguments into the
function's typed parameters and runs it), the same streamed, an agent with a typed output
(pydantic), and a second turn that sends the first run's items back (the function call and
its output, as the SDK writes them). The model may have random weights: the server's grammar
makes calls and typed answers valid, so every check is real. Prints one line per check;
exits non-zero on the first failure.
"""
import asyncio
import typing

import pydantic
from agents import (Agent, ModelSettings, OpenAIChatCompletionsModel, OpenAIResponsesModel, Runner,
                    function_tool, set_tracing_disabled)
from openai import AsyncOpenAI

from client_checks import arguments, check

base, model, key = arguments()
client = AsyncOpenAI(base_url=base, api_key=key, max_retries=0, timeout=300)
# Traces would be exported to OpenAI's servers.
set_tracing_disabled(True)

calls = []


# Enums, not free strings: random weights would write a free string until the budget ends.
@function_tool
def get_weather(city: typing.Literal["Oslo", "Lima", "Paris"], unit: typing.Literal["celsius", "fahrenheit"]) -> str:
    """The weather in a city."""
    calls.append((city, unit))
    return f"3 degrees {unit} in {city}"


class Trip(pydantic.BaseModel):
    city: typing.Literal["Oslo", "Lima", "Paris"]
    days: int = pydantic.Field(ge=1, le=30)


async def main():
    for label, llm in [("responses", OpenAIResponsesModel(model=model, openai_client=client)),
                       ("chat completions", OpenAIChatCompletionsModel(model=model, openai_client=client))]:
        caller = Agent(name="weather", instructions="Answer with the tools.", model=llm, tools=[get_weather],
                       model_settings=ModelSettings(tool_choice="get_weather", parallel_tool_calls=False,
                                                    max_tokens=200),
                       tool_use_behavior="stop_on_first_tool")
        calls.clear()
        run = await Runner.run(caller, "What is the weather in Oslo?", max_turns=2)
        check(f"{label}: the tool ran with typed arguments", len(calls) == 1, calls)
        city, unit = calls[0]
        check(f"{label}: the tool's answer is the final output", run.final_output == f"3 degrees {unit} in {city}",
              run.final_output)

        calls.clear()
        streamed = Runner.run_streamed(caller, "And in Lima?", max_turns=2)
        kinds = [event.type async for event in streamed.stream_events()]
        check(f"{label}: streamed, the model's events arrive and the tool runs",
              "raw_response_event" in kinds and "run_item_stream_event" in kinds and len(calls) == 1, (kinds, calls))

        planner = Agent(name="planner", instructions="Plan a trip.", model=llm, output_type=Trip,
                        model_settings=ModelSettings(max_tokens=200))
        trip = await Runner.run(planner, "A short trip, please.", max_turns=1)
        check(f"{label}: a typed output", isinstance(trip.final_output, Trip), trip.final_output)

        # The first run's items (the user's message, the call, its output) go back whole.
        history = run.to_input_list() + [{"role": "user", "content": "So where should I go?"}]
        follow = await Runner.run(planner, history, max_turns=1)
        check(f"{label}: a second turn carrying the call and its output", isinstance(follow.final_output, Trip),
              follow.final_output)
    print("all checks passed")


asyncio.run(main())
