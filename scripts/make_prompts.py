"""Held-out prompts for the bundled pair: HumanEval-like function stubs.

Takes the files `dsi train --holdout-every 10` held out (every 10th top-level
.py file of the CPython standard library, sorted by name, starting with the
first) and writes, for each top-level function or method with a docstring,
its signature and docstring as a prompt, one JSON object per line.

    python3 scripts/make_prompts.py > models/pystd/prompts.jsonl
"""

import ast
import json
import sys
import sysconfig
from pathlib import Path

HOLDOUT_EVERY = 10
MAX_PROMPTS = 64
MAX_DOC_LINES = 12


def held_out_files(stdlib: Path) -> list[Path]:
    files = sorted(p for p in stdlib.iterdir() if p.is_file() and p.suffix == ".py")
    return [p for i, p in enumerate(files) if i % HOLDOUT_EVERY == 0]


def stubs(path: Path):
    source = path.read_text(encoding="utf-8", errors="replace")
    lines = source.splitlines()
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        doc = ast.get_docstring(node, clean=False)
        if not doc or node.name.startswith("__"):
            continue
        body = node.body[0]
        if body.end_lineno - body.lineno >= MAX_DOC_LINES:
            continue
        # The signature's lines through the docstring, dedented to column 0.
        start = node.lineno - 1
        if node.decorator_list:
            start = node.decorator_list[0].lineno - 1
        text = lines[start : body.end_lineno]
        indent = len(text[0]) - len(text[0].lstrip())
        text = [line[indent:] for line in text]
        yield {"file": path.name, "name": node.name, "prompt": "\n".join(text) + "\n"}


def main() -> None:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    prompts = []
    for path in held_out_files(stdlib):
        prompts.extend(stubs(path))
    # Spread the selection over the files: every n-th stub.
    step = max(1, len(prompts) // MAX_PROMPTS)
    for prompt in prompts[::step][:MAX_PROMPTS]:
        sys.stdout.write(json.dumps(prompt) + "\n")


if __name__ == "__main__":
    main()
