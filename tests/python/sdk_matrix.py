"""Drive a Tollgate gateway with an official SDK: chat, streaming and a tool-call round trip.

Usage: python3 sdk_matrix.py openai|anthropic BASE_URL API_KEY MODEL [MODEL ...]
Prints one JSON object per model on its own line; the Rust test asserts on them.
"""
import json
import sys

kind, base_url, api_key, *models = sys.argv[1:]
WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def openai_run(model):
    from openai import OpenAI

    client = OpenAI(base_url=base_url + "/v1", api_key=api_key, max_retries=0, timeout=20)
    chat = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Say hello."}]
    )
    pieces = []
    for chunk in client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Stream."}], stream=True
    ):
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
    tools = [{"type": "function", "function": WEATHER}]
    ask = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.chat.completions.create(model=model, messages=ask, tools=tools)
    call = first.choices[0].message.tool_calls[0]
    followup = client.chat.completions.create(
        model=model,
        tools=tools,
        messages=ask
        + [
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
        ],
    )
    return {
        "chat": chat.choices[0].message.content,
        "stream": "".join(pieces),
        "tool_name": call.function.name,
        "tool_args": json.loads(call.function.arguments),
        "after_tool": followup.choices[0].message.content,
    }


def anthropic_run(model):
    import anthropic

    client = anthropic.Anthropic(base_url=base_url, api_key=api_key, max_retries=0, timeout=20)
    chat = client.messages.create(
        model=model, max_tokens=256, messages=[{"role": "user", "content": "Say hello."}]
    )
    pieces = []
    with client.messages.stream(
        model=model, max_tokens=256, messages=[{"role": "user", "content": "Stream."}]
    ) as stream:
        for text in stream.text_stream:
            pieces.append(text)
    tools = [
        {
            "name": WEATHER["name"],
            "description": WEATHER["description"],
            "input_schema": WEATHER["parameters"],
        }
    ]
    ask = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.messages.create(model=model, max_tokens=256, messages=ask, tools=tools)
    use = next(b for b in first.content if b.type == "tool_use")
    followup = client.messages.create(
        model=model,
        max_tokens=256,
        tools=tools,
        messages=ask
        + [
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}],
            },
        ],
    )
    return {
        "chat": "".join(b.text for b in chat.content if b.type == "text"),
        "stream": "".join(pieces),
        "tool_name": use.name,
        "tool_args": use.input,
        "after_tool": "".join(b.text for b in followup.content if b.type == "text"),
    }


run = openai_run if kind == "openai" else anthropic_run
for model in models:
    try:
        result = run(model)
        result["model"] = model
    except Exception as e:  # reported, asserted on by the Rust test
        result = {"model": model, "error": f"{type(e).__name__}: {e}"}
    print(json.dumps(result), flush=True)
