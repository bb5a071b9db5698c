"""Drive a Tollgate gateway with the official OpenAI Python client.

Usage: python3 openai_client.py BASE_URL API_KEY MODEL
Prints one JSON line with what it observed; the Rust test asserts on it.
"""
import json
import sys

from openai import OpenAI

base_url, api_key, model = sys.argv[1:4]
client = OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=20)

chat = client.chat.completions.create(
    model=model, messages=[{"role": "user", "content": "Say hello."}]
)

pieces = []
finish = None
usage_events = 0
for chunk in client.chat.completions.create(
    model=model, messages=[{"role": "user", "content": "Stream please."}], stream=True
):
    if chunk.usage is not None:
        usage_events += 1
    for choice in chunk.choices:
        if choice.delta.content:
            pieces.append(choice.delta.content)
        if choice.finish_reason:
            finish = choice.finish_reason

streamed_usage = None
for chunk in client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "Stream with usage."}],
    stream=True,
    stream_options={"include_usage": True},
):
    if chunk.usage is not None:
        streamed_usage = chunk.usage.completion_tokens

error_status = None
try:
    client.chat.completions.create(
        model="no-such-model", messages=[{"role": "user", "content": "x"}]
    )
except Exception as e:  # openai.NotFoundError
    error_status = getattr(e, "status_code", None)

models = [m.id for m in client.models.list()]

print(json.dumps({
    "chat_content": chat.choices[0].message.content,
    "chat_completion_tokens": chat.usage.completion_tokens,
    "stream_text": "".join(pieces),
    "stream_pieces": len(pieces),
    "stream_finish": finish,
    "stream_usage_events": usage_events,
    "streamed_usage": streamed_usage,
    "error_status": error_status,
    "models": models,
}))
