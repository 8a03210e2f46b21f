"""The official openai client against an aither-infer (or the gateway) at BASE_URL.

    openai_client.py BASE_URL MODEL [--api-key KEY]

Prints one line per check and exits non-zero on the first failure.
"""
import openai

from client_checks import arguments, check

base, model, key = arguments()
client = openai.OpenAI(base_url=base, api_key=key, max_retries=0, timeout=120)


models = client.models.list()
check("models.list names the model", any(m.id == model for m in models.data), [m.id for m in models.data])

r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=6, temperature=0)
check("chat completion object", r.object == "chat.completion" and r.choices[0].message.role == "assistant", r)
check("usage adds up", r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens, r.usage)
check("finish reason", r.choices[0].finish_reason in ("stop", "length"), r.choices[0].finish_reason)

stream = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=6,
                                        temperature=0, stream=True, stream_options={"include_usage": True})
parts, finish, usage = [], None, None
for chunk in stream:
    if chunk.usage:
        usage = chunk.usage
    for c in chunk.choices:
        if c.delta.content:
            parts.append(c.delta.content)
        if c.finish_reason:
            finish = c.finish_reason
check("streamed text equals the whole answer", "".join(parts) == (r.choices[0].message.content or ""), (parts, r))
check("stream ends with the finish reason", finish == r.choices[0].finish_reason, finish)
check("stream usage", usage is not None and usage.completion_tokens == r.usage.completion_tokens, usage)

t = client.completions.create(model=model, prompt="abc", max_tokens=4, temperature=0)
check("text completion", t.object == "text_completion" and isinstance(t.choices[0].text, str), t)

try:
    client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}], temperature=7)
    check("out-of-range temperature refused", False)
except openai.BadRequestError as e:
    check("out-of-range temperature refused with the field", e.body and e.body.get("param") == "temperature", e.body)
print("all checks passed")
