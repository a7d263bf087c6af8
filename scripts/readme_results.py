"""Regenerate the result blocks of the README and docs by running the commands they name.

    .venv/bin/python scripts/readme_results.py [--match TEXT] [FILE ...]     (make readme-results)

A result block is

    <!-- output of: COMMAND -->
    ...
    <!-- end of output -->

``COMMAND`` (``prewarm ...`` or ``python -m benchmarks....``) runs from the repository root with the virtualenv's
``bin`` first on PATH. Its standard output replaces the block's content: verbatim when the command prints Markdown
(``output of:``), in a ``text`` fence when the marker says ``text output of:``. ``--match`` regenerates only the
blocks whose command contains TEXT. The figures in these blocks are therefore printed by the command, never typed;
tests/test_readme_results.py re-runs the quick ones and compares.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FILES = (
    "README.md",
    "docs/forecaster.md",
    "docs/simulator.md",
    "docs/control-plane.md",
    "docs/production.md",
    "docs/cost.md",
    "docs/zero.md",
    "docs/decision.md",
)
BLOCK = re.compile(
    r"<!-- (?P<kind>text output|output) of: (?P<command>.+?) -->\n(?P<content>.*?)<!-- end of output -->",
    re.DOTALL,
)
ALLOWED_PREFIXES = ("prewarm ", "python -m benchmarks.")


@dataclass(frozen=True)
class ResultBlock:
    """One generated block: the command that prints it and its current content."""

    command: str
    fenced: bool
    content: str
    start: int
    end: int


def find_blocks(text: str) -> list[ResultBlock]:
    """The result blocks of a Markdown text, in order."""
    return [
        ResultBlock(
            command=match["command"].strip(),
            fenced=match["kind"] == "text output",
            content=match["content"],
            start=match.start("content"),
            end=match.end("content"),
        )
        for match in BLOCK.finditer(text)
    ]


def fenced_body(block: ResultBlock) -> str:
    """The command output a block holds (without the fence of a text block)."""
    content = block.content.strip("\n")
    if block.fenced:
        lines = content.splitlines()
        if len(lines) < 2 or lines[0] != "```text" or lines[-1] != "```":
            raise ValueError(f"block of {block.command!r} is not a ```text fence")
        content = "\n".join(lines[1:-1])
    return content


def run_command(command: str) -> str:
    """Run a block's command from the repository root; its standard output (stderr is left to the terminal)."""
    if not command.startswith(ALLOWED_PREFIXES):
        raise ValueError(f"refusing to run {command!r}: blocks run only {' or '.join(ALLOWED_PREFIXES)}")
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    argv = shlex.split(command)
    if argv[0] == "python":
        argv[0] = sys.executable
    done = subprocess.run(argv, cwd=ROOT, env=env, check=True, stdout=subprocess.PIPE, text=True)
    return done.stdout.strip("\n")


def regenerate(text: str, match: str | None = None, outputs: dict[str, str] | None = None) -> str:
    """``text`` with every (matching) block's content replaced by its command's fresh output. ``outputs`` keeps
    what each command printed, so that a command named by several blocks (the README and a doc) runs once and
    every block shows the same run."""
    outputs = {} if outputs is None else outputs
    out, position = [], 0
    for block in find_blocks(text):
        out.append(text[position : block.start])
        if match is None or match in block.command:
            if block.command not in outputs:
                print(f"running: {block.command}", file=sys.stderr, flush=True)
                outputs[block.command] = run_command(block.command)
            output = outputs[block.command]
            out.append(f"```text\n{output}\n```\n" if block.fenced else f"\n{output}\n\n")
        else:
            out.append(block.content)
        position = block.end
    out.append(text[position:])
    return "".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("files", nargs="*", default=list(DEFAULT_FILES))
    parser.add_argument("--match", default=None, help="only blocks whose command contains this text")
    args = parser.parse_args()
    outputs: dict[str, str] = {}
    for name in args.files:
        path = ROOT / name
        text = path.read_text()
        new = regenerate(text, args.match, outputs)
        if new != text:
            path.write_text(new)
            print(f"updated {name}", file=sys.stderr)


if __name__ == "__main__":
    main()
