"""The official `openai` Python client against a running `dsi serve`.

Run by crates/dsi-cli/tests/serve_openai.rs as
    python openai_client.py BASE_URL API_KEY
with the server started with that key. Exits non-zero on the first failed
check, naming it. Covers what users send: completions, chat, streaming with
usage, log probabilities, penalties and logit_bias (DSI = non-SI), seeds,
token-id prompts, API keys, /tokenize and /detokenize, and every refused
field.
"""

import json
import sys
import urllib.error
import urllib.request

import openai

BASE, KEY = sys.argv[1], sys.argv[2]
MODEL = "pystd"
client = openai.OpenAI(base_url=f"{BASE}/v1", api_key=KEY, max_retries=0, timeout=300)
checks = 0


def check(condition, what):
    global checks
    checks += 1
    if not condition:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


def usage(response):
    return response.model_dump()["usage"]


def post(path, body, key=KEY):
    request = urllib.request.Request(
        f"{BASE}{path}",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", "authorization": f"Bearer {key}"},
    )
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def completion(mode="dsi", **kwargs):
    kwargs.setdefault("prompt", "def fibonacci(n):")
    kwargs.setdefault("max_tokens", 24)
    extra = kwargs.pop("extra_body", {})
    return client.completions.create(
        model=MODEL, extra_body={"mode": mode, **extra}, **kwargs
    )


# --- API keys ------------------------------------------------------------------
wrong = openai.OpenAI(base_url=f"{BASE}/v1", api_key="sk-wrong", max_retries=0)
try:
    wrong.completions.create(model=MODEL, prompt="x", max_tokens=2)
    check(False, "a wrong key is refused")
except openai.AuthenticationError as error:
    check(error.status_code == 401, "401 without a valid key")
    check("API key" in str(error), f"the 401 says what is missing: {error}")
status, _ = post("/tokenize", {"prompt": "x"}, key="sk-wrong")
check(status == 401, "/tokenize needs the key too")
with urllib.request.urlopen(f"{BASE}/metrics") as response:
    check(response.status == 200, "/metrics stays open without --protect-metrics")

# --- completions, chat and streaming --------------------------------------------
greedy = completion(temperature=0)
text = greedy.choices[0].text
check(greedy.object == "text_completion" and text, "a greedy completion")
check(usage(greedy)["mode"] == "dsi", "dsi's usage extension")
for mode in ["nonsi", "si", "auto"]:
    check(completion(mode, temperature=0).choices[0].text == text, f"{mode} = dsi (greedy)")

chat = client.chat.completions.create(
    model=MODEL,
    messages=[{"role": "user", "content": "Write a function that adds two numbers."}],
    max_tokens=16,
    temperature=0,
)
check(chat.choices[0].message.role == "assistant", "chat answers as the assistant")
check(chat.usage.completion_tokens >= 1, "chat usage")

chunks = list(
    client.completions.create(
        model=MODEL,
        prompt="def fibonacci(n):",
        max_tokens=24,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
)
streamed = "".join(c.choices[0].text for c in chunks if c.choices)
check(streamed == text, "streamed text = whole text")
check(chunks[-1].usage is not None and not chunks[-1].choices, "the last chunk has usage only")
check(chunks[-1].usage.completion_tokens == greedy.usage.completion_tokens, "same token count")

# --- log probabilities ----------------------------------------------------------
with_lp = {}
for mode in ["nonsi", "dsi"]:
    response = completion(mode, temperature=0, logprobs=3)
    lp = response.choices[0].logprobs
    check(len(lp.tokens) == response.usage.completion_tokens, f"{mode}: a logprob per token")
    check(all(len(top) <= 3 for top in lp.top_logprobs), "at most 3 alternatives")
    check(all(v <= 0 for v in lp.token_logprobs), "log probabilities are <= 0")
    check(
        all(max(top.values()) >= v - 1e-6 for top, v in zip(lp.top_logprobs, lp.token_logprobs)),
        "greedy picks the most likely token",
    )
    with_lp[mode] = (response.choices[0].text, lp.token_logprobs, lp.top_logprobs)
check(with_lp["nonsi"] == with_lp["dsi"], "DSI reports non-SI's log probabilities")
check(with_lp["dsi"][0] == text, "logprobs do not change the text")

chat_lp = client.chat.completions.create(
    model=MODEL,
    messages=[{"role": "user", "content": "hello"}],
    max_tokens=8,
    temperature=0,
    logprobs=True,
    top_logprobs=2,
)
content = chat_lp.choices[0].logprobs.content
check(len(content) == chat_lp.usage.completion_tokens, "chat: a logprob per token")
check(all(len(t.top_logprobs) == 2 and t.bytes is not None for t in content), "chat: alternatives and bytes")
stream_lp = [
    c
    for c in client.completions.create(
        model=MODEL, prompt="def fibonacci(n):", max_tokens=24, temperature=0, logprobs=1, stream=True
    )
    if c.choices and c.choices[0].logprobs
]
check(
    [v for c in stream_lp for v in c.choices[0].logprobs.token_logprobs] == with_lp["dsi"][1],
    "streamed chunks carry the same log probabilities",
)

# --- penalties and logit_bias: DSI = non-SI, and they change the output -----------
first_token = post("/tokenize", {"prompt": text})[1]["tokens"][0]
settings = dict(
    temperature=0,
    presence_penalty=0.8,
    frequency_penalty=0.6,
    logit_bias={str(first_token): -100},
    extra_body={"repetition_penalty": 1.2, "min_tokens": 4},
)
penalized = {mode: completion(mode, **settings).choices[0].text for mode in ["nonsi", "si", "dsi"]}
check(len(set(penalized.values())) == 1, f"penalties: every mode agrees: {penalized}")
check(penalized["dsi"] != text, "penalties and the bias change the text")
sampled_settings = dict(settings, temperature=0.9, seed=11)
sampled = {mode: completion(mode, **sampled_settings).choices[0].text for mode in ["nonsi", "dsi"]}
check(sampled["nonsi"] == sampled["dsi"], "seeded sampling with penalties: DSI = non-SI")

# --- seeds -------------------------------------------------------------------------
a, b = (completion(temperature=1.0, max_tokens=32) for _ in range(2))
check(usage(a)["seed"] != usage(b)["seed"], "an omitted seed is fresh per request")
replay = completion("nonsi", temperature=1.0, max_tokens=32, seed=usage(a)["seed"])
check(replay.choices[0].text == a.choices[0].text, "the returned seed replays the response")

# --- token-id prompts and tokenize/detokenize ----------------------------------------
status, tokenized = post("/tokenize", {"model": MODEL, "prompt": "def fibonacci(n):"})
check(status == 200 and tokenized["count"] == len(tokenized["tokens"]), "/tokenize")
status, detokenized = post("/detokenize", {"tokens": tokenized["tokens"]})
check(status == 200 and detokenized["prompt"] == "def fibonacci(n):", "/detokenize round-trips")
by_ids = completion(temperature=0, prompt=tokenized["tokens"])
check(by_ids.choices[0].text == text, "a token-id prompt = its text")
echoed = completion(temperature=0, echo=True)
check(echoed.choices[0].text == "def fibonacci(n):" + text, "echo puts the prompt first")

# --- every refused field is a 400 naming it -------------------------------------------
refused = {
    "n": lambda: completion(n=2),
    "best_of": lambda: completion(best_of=2),
    "suffix": lambda: completion(suffix="return x"),
    "prompt": lambda: completion(prompt=[[1, 2], [3, 4]]),
    "response_format": lambda: client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "hi"}],
        response_format={"type": "json_object"},
    ),
    "tools": lambda: client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "hi"}],
        tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
    ),
    "functions": lambda: client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "hi"}],
        functions=[{"name": "f", "parameters": {}}],
    ),
    "colour": lambda: completion(extra_body={"colour": "blue"}),
    "logit_bias": lambda: completion(logit_bias={"not-an-id": 1}),
    "presence_penalty": lambda: completion(presence_penalty=3),
    "top_logprobs": lambda: client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], logprobs=True, top_logprobs=21
    ),
    "messages": lambda: client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
    ),
}
for field, call in refused.items():
    try:
        call()
        check(False, f"{field} is refused")
    except openai.BadRequestError as error:
        body = error.body if isinstance(error.body, dict) else {}
        named = body.get("param") == field or field in str(error)
        check(error.status_code == 400 and named, f"{field}: a 400 naming it, got {error}")

print(f"openai {openai.__version__}: {checks} checks passed")
