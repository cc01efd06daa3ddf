"""How often the bundled target writes Python that parses: for each prompt
of a prompts file, its 128-token greedy continuation (`dsi generate --mode
nonsi`), prompt and continuation together, parsed by Python's own parser
(`ast.parse`) after cutting at most the last two lines (a continuation
stops mid-statement).

    python3 scripts/parse_rate.py DSI_BINARY [TARGET_DIR [PROMPTS [TOKENS]]]

Defaults: models/pystd/target, models/pystd/prompts.jsonl, 128 tokens.
Prints one JSON object: the rate, the counts, and the prompts that failed.
"""

import ast
import json
import subprocess
import sys
import warnings
from pathlib import Path

MAX_CUT_LINES = 2


def parses(text: str) -> bool:
    lines = text.splitlines()
    for cut in range(MAX_CUT_LINES + 1):
        if cut > len(lines):
            break
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # invalid escapes in generated strings
                ast.parse("\n".join(lines[: len(lines) - cut]))
            return True
        except (SyntaxError, ValueError):
            continue
    return False


def main() -> None:
    binary = sys.argv[1]
    target = sys.argv[2] if len(sys.argv) > 2 else "models/pystd/target"
    prompts_file = Path(sys.argv[3] if len(sys.argv) > 3 else "models/pystd/prompts.jsonl")
    tokens = sys.argv[4] if len(sys.argv) > 4 else "128"
    prompts = [json.loads(line)["prompt"] for line in prompts_file.read_text().splitlines() if line.strip()]
    failed = []
    for i, prompt in enumerate(prompts):
        result = subprocess.run(
            [binary, "generate", "--model", target, "--mode", "nonsi", "--max-tokens", tokens,
             "--format", "json", prompt],
            capture_output=True, text=True, check=True,
        )
        if not parses(prompt + json.loads(result.stdout)["text"]):
            failed.append(i)
    passed = len(prompts) - len(failed)
    print(json.dumps({
        "parse_rate": passed / len(prompts),
        "parsed": passed,
        "prompts": len(prompts),
        "tokens": int(tokens),
        "max_cut_lines": MAX_CUT_LINES,
        "failed_prompts": failed,
    }))


if __name__ == "__main__":
    main()
