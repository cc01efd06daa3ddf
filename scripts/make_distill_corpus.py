"""A distillation corpus for the bundled drafter: the target's own greedy
continuations of snippets from the *training* files (never the held-out
ones), so the drafter learns to predict what the target will say.

    python3 scripts/make_distill_corpus.py DSI_BINARY TARGET_DIR OUT_DIR

For every 20th line of each training file (the stdlib with its packages,
less EXCLUDE_DIRS; in each folder every 10th file, sorted by name, starting
with the first, is held out, as `dsi train --recursive --holdout-every 10`
does), the 6 lines up to it are a prompt; the target continues it greedily
for 96 tokens (`dsi generate --mode nonsi`). Each prompt plus continuation
is written to OUT_DIR as one .py file.
"""

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

HOLDOUT_EVERY = 10
# The bundled pair's `dsi train --exclude-dir` list (MODEL_CARD.md).
EXCLUDE_DIRS = {"test", "tests", "idle_test", "site-packages", "__pycache__", "encodings",
                "pydoc_data", "config-3.11-x86_64-linux-gnu"}
EVERY_LINES = 20
CONTEXT_LINES = 6
MAX_SAMPLES = 480


def training_files(folder: Path) -> list[Path]:
    entries = sorted(folder.iterdir())
    files = [p for p in entries if p.is_file() and p.suffix == ".py"]
    chosen = [p for i, p in enumerate(files) if i % HOLDOUT_EVERY != 0]
    for sub in entries:
        if sub.is_dir() and not sub.is_symlink() and not sub.name.startswith(".") \
                and sub.name not in EXCLUDE_DIRS:
            chosen += training_files(sub)
    return chosen


def snippets(files: list[Path]):
    for path in files:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        for end in range(CONTEXT_LINES, len(lines), EVERY_LINES):
            text = "\n".join(lines[end - CONTEXT_LINES : end]).rstrip()
            if text.strip():
                yield text + "\n"


def main() -> None:
    binary, target, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    all_snippets = list(snippets(training_files(Path(sysconfig.get_paths()["stdlib"]))))
    step = max(1, len(all_snippets) // MAX_SAMPLES)
    for i, prompt in enumerate(all_snippets[::step][:MAX_SAMPLES]):
        result = subprocess.run(
            [binary, "generate", "--model", target, "--mode", "nonsi", "--max-tokens", "96",
             "--format", "json", prompt],
            capture_output=True, text=True, check=True,
        )
        text = json.loads(result.stdout)["text"]
        (out / f"sample_{i:04d}.py").write_text(prompt + text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
