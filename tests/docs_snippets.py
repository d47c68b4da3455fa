"""The fenced code blocks of README.md and docs/: found, checked and run.

The convention is written in tests/test_docs_snippets.py, which uses this module. Nothing here
raises on a badly written page: every problem comes back as a ``page:line: message`` string.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from minmax import config as C
from minmax.cli import _parser
from minmax.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]
SHELL = ("bash", "sh", "console", "shell")
PYTHON = ("python",)
# Tags that look like code but would escape both checks: refused, with the tag to use instead.
ALIASES = {
    "py": "python",
    "python3": "python",
    "pycon": "python",
    "zsh": "bash",
    "shell-session": "console",
    "sh-session": "console",
}
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*(.*)$")
MARKERS = ("run", "illustrative")
MARKER_FORMS = "<!-- run -->, <!-- run: key=value ... --> or <!-- illustrative -->"
COMMENT = re.compile(r"^<!--\s*(.*?)\s*-->$")
PLACEHOLDER = re.compile(r"[\[\]{}<>]|\b[A-Z][A-Z_]{2,}\b")  # [--n N], FILE.{png,npy}, RUN_DIR
OVERRIDE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+=")
INSTALL = re.compile(
    r"\b(pip3?|uv pip|conda|mamba|apt|apt-get|brew)\s+install\b|-m\s+(pip\s+install|venv)\b|"
    r"\bvirtualenv\b"
)
# Words that may come before the command itself: `do minmax ...`, `time minmax ...`.
PREFIX_WORDS = {"do", "then", "else", "time", "!", "exec", "nice", "command"}
BOUNDARY = "|&;()<>"
TRAP = "trap 'echo \"docs: exit $? at line $LINENO: $BASH_COMMAND\" >&2' ERR"


@dataclass
class Block:
    page: str  # path relative to the repository root
    line: int  # 1-based line of the opening fence
    lang: str  # the info string's first word, '' when there is none
    marker: str | None  # 'run' or 'illustrative' from the line above, else None
    overrides: list[str]  # from <!-- run: key=value ... -->
    lines: list[str]  # the content, the fence's indentation removed
    problems: list[str] = field(default_factory=list)  # how the block itself is written

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def is_code(self) -> bool:
        return self.lang in SHELL + PYTHON


def page_name(path: Path) -> str:
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name


def pages() -> list[str]:
    """README.md and every docs/**/*.md, as paths relative to the repository root."""
    found = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return [page_name(p) for p in found if p.is_file()]


def _marker(above: str, where: str) -> tuple[str | None, list[str], list[str]]:
    """(marker, overrides, problems) from the line above a fence."""
    match = COMMENT.match(above.strip())
    name, colon, args = (match.group(1) if match else "").partition(":")
    name = name.strip()
    if name.split(" ")[0] not in MARKERS:
        return None, [], []  # no comment, or another one (<!-- config-reference -->)
    if name not in MARKERS or (colon and name != "run"):
        return None, [], [f"{where}: malformed marker {above.strip()!r}: write {MARKER_FORMS}"]
    try:
        overrides = shlex.split(args)
    except ValueError as error:
        return name, [], [f"{where}: cannot split the marker's overrides ({error})"]
    problems = [
        f"{where}: {o!r} in the marker is not a section.key=value override"
        for o in overrides
        if not OVERRIDE.match(o)
    ]
    if colon and not overrides:
        problems.append(f"{where}: '<!-- run: -->' without overrides: write <!-- run -->")
    return name, overrides, problems


def _closes(line: str, fence: str) -> bool:
    stripped = line.strip()
    return len(stripped) >= len(fence) and set(stripped) == {fence[0]}


def blocks(path: Path) -> list[Block]:
    """Every fenced block of a Markdown page, in order (unclosed ones run to the end)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match or (match.group(2)[0] == "`" and "`" in match.group(3)):
            i += 1
            continue
        indent, fence, info = match.groups()
        end = i + 1
        while end < len(lines) and not _closes(lines[end], fence):
            end += 1
        where = f"{page_name(path)}:{i + 1}"
        marker, overrides, problems = _marker(lines[i - 1] if i else "", where)
        if end == len(lines):
            problems.append(f"{where}: the fence is never closed")
        content = [
            line[len(indent) :] if line.startswith(indent) else line.lstrip()
            for line in lines[i + 1 : end]
        ]
        lang = info.split()[0].strip("{}.").lower() if info.strip() else ""
        block = Block(page_name(path), i + 1, lang, marker, overrides, content, problems)
        if not marker and i >= 2 and not lines[i - 1].strip() and _marker(lines[i - 2], "")[0]:
            block.problems.append(
                f"{where}: the marker must be on the line directly before "
                "the fence (no blank line between)"
            )
        found.append(block)
        i = end + 1
    return found


def logical_lines(block: Block) -> list[tuple[int, str]]:
    """(page line, text) of each command line of a shell block: a leading `$ ` prompt dropped
    (a console block keeps only its prompted lines: the rest is output), `\\` continuations
    joined onto the line they continue."""
    out: list[tuple[int, str]] = []
    pending, start = None, 0
    for k, raw in enumerate(block.lines):
        if pending is None:
            prompted = raw.lstrip().startswith("$ ") or raw.strip() == "$"
            if block.lang == "console" and not prompted:
                continue
            start, text = block.line + 1 + k, raw.lstrip()[2:] if prompted else raw
        else:
            text = f"{pending} {raw.strip()}"
        if text.rstrip().endswith("\\"):
            pending = text.rstrip()[:-1].rstrip()
            continue
        out.append((start, text))
        pending = None
    if pending is not None:
        out.append((start, pending))
    return out


def segments(line: str) -> list[tuple[int, int]]:
    """Spans of the simple commands in one shell line (split at unquoted | & ; ( ) < >,
    not inside $(...)), up to an unquoted # that starts a comment."""
    spans, start, quote, depth, i = [], 0, "", 0, 0
    while i < len(line):
        c = line[i]
        if quote == "'":
            quote = "" if c == "'" else quote
        elif c == "\\":
            i += 1
        elif line.startswith("$(", i):
            depth, i = depth + 1, i + 1
        elif quote == '"':
            quote = "" if c == '"' else quote
            depth -= 1 if depth and c == ")" else 0
        elif c in "'\"":
            quote = c
        elif depth:
            depth += {"(": 1, ")": -1}.get(c, 0)
        elif c == "#" and (i == 0 or line[i - 1].isspace()):
            break
        elif c in BOUNDARY:
            end = i
            if c in "<>":  # `2>&1`: the descriptor belongs to the redirection
                while end > start and line[end - 1].isdigit():
                    end -= 1
                end = end if end == start or line[end - 1].isspace() else i
            spans.append((start, end))
            start = i + 1
        i += 1
    spans.append((start, i))
    return [(a, a + len(line[a:b].rstrip())) for a, b in spans if line[a:b].strip()]


def minmax_argv(words: list[str]) -> list[str] | None:
    """The arguments after `minmax` (or `-m minmax`), or None when the command is another."""
    i = 0
    while i < len(words) and (words[i] in PREFIX_WORDS or re.match(r"^[A-Za-z_]\w*=", words[i])):
        i += 1
    if i < len(words) and words[i] == "minmax":
        return words[i + 1 :]
    for k in range(len(words) - 1):
        if words[k : k + 2] == ["-m", "minmax"]:
            return words[k + 2 :]
    return None


def commands(block: Block) -> list[tuple[int, str, list[str] | None]]:
    """(page line, text, minmax argv or None) of each simple command of a shell block."""
    out = []
    for line_no, text in logical_lines(block):
        for a, b in segments(text):
            try:
                argv = minmax_argv(shlex.split(text[a:b]))
            except ValueError:
                argv = ["<unsplittable>"] if "minmax" in text[a:b] else None
            out.append((line_no, text[a:b], argv))
    return out


def with_overrides(text: str, overrides: list[str]) -> str:
    """The line with the overrides appended to each `minmax train` command in it."""
    if not overrides:
        return text
    extra = " " + " ".join(shlex.quote(o) for o in overrides)
    for a, b in reversed(segments(text)):
        with contextlib.suppress(ValueError):
            argv = minmax_argv(shlex.split(text[a:b]))
            if argv and argv[0] == "train":
                text = text[:b] + extra + text[b:]
    return text


def check_minmax(argv: list[str]) -> str | None:
    """Why ``minmax ARGV`` would be refused before running (None when it parses): the CLI's
    parser, and for `train` the preset's name and every key=value override's key and type."""
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            args = _parser().parse_args(argv)
    except UsageError as error:
        return str(error)
    except SystemExit:  # --help
        return None
    if args.command != "train":
        return None
    try:
        cfg = C.from_dict(C.load_preset(args.preset or "ring"))
        for text in args.overrides:
            if "$" not in text:  # a shell variable's value is not known here
                C.apply_override(cfg, text)
    except UsageError as error:
        return str(error)
    return None


def check_block(block: Block) -> list[str]:
    """What is wrong with a block as written (an empty list when nothing)."""
    where, problems = block.where, list(block.problems)
    if not block.lang:
        return [
            *problems,
            f"{where}: give the block a language: text for output, bash/python for code",
        ]
    if block.lang in ALIASES:
        return [
            *problems,
            f"{where}: '{block.lang}' blocks are neither run nor checked: tag it "
            f"{ALIASES[block.lang]} (marked run or illustrative) or text",
        ]
    if not block.is_code:
        if block.marker:
            problems.append(
                f"{where}: <!-- {block.marker} --> on a '{block.lang}' block: only "
                f"{', '.join(SHELL + PYTHON)} blocks are run or checked"
            )
        return problems
    if not block.marker:
        return [
            *problems,
            f"{where}: mark it <!-- run --> or <!-- illustrative --> (on the "
            "line directly before the fence)",
        ]
    if block.marker == "run" and INSTALL.search("\n".join(block.lines)):
        problems.append(f"{where}: a run block installs things: mark it illustrative")
    if block.lang in PYTHON:
        if block.overrides:
            problems.append(
                f"{where}: overrides apply to `minmax train` in shell blocks, not to Python"
            )
        try:
            compile("\n" * block.line + "\n".join(block.lines), block.where, "exec")
        except SyntaxError as error:
            problems.append(f"{block.page}:{error.lineno}: {error.msg}")
        return problems
    found = commands(block)
    for line_no, text, argv in found:
        if argv is None:
            continue
        why = "cannot split it" if argv == ["<unsplittable>"] else check_minmax(argv)
        if why:
            hint = " (a usage synopsis with placeholders goes in a text block)"
            hint = hint if PLACEHOLDER.search(text) else ""
            problems.append(f"{block.page}:{line_no}: `{text}` is refused: {why}{hint}")
    if block.marker == "run":
        trains = [argv for _, _, argv in found if argv and argv[0] == "train"]
        if block.overrides and not trains:
            problems.append(f"{where}: the marker's overrides have no `minmax train` to go to")
        why = check_minmax(["train", *block.overrides]) if block.overrides else None
        if why:
            problems.append(f"{where}: the marker's overrides are refused: {why}")
    return problems


def check_page(path: Path) -> list[str]:
    return [problem for block in blocks(path) for problem in check_block(block)]


def script(block: Block) -> str:
    """The block as a bash or Python file whose line numbers are the page's lines."""
    if block.lang in PYTHON:
        return "\n" * block.line + "\n".join(block.lines) + "\n"
    lines = [""] * (block.line + len(block.lines) + 1)
    lines[0] = TRAP  # line 1: a marked fence is at line 2 or later
    for line_no, text in logical_lines(block):
        lines[line_no - 1] = with_overrides(text, block.overrides)
    return "\n".join(lines) + "\n"


def run_block(block: Block, cwd: Path, scratch: Path, env: dict, timeout_s: float) -> str | None:
    """Run one block in ``cwd``; None when it succeeds, else why it failed (with output)."""
    name = f"{block.page.replace('/', '_')}_{block.line}"
    if block.lang in PYTHON:
        file = scratch / f"{name}.py"
        argv = [sys.executable, str(file)]
    else:
        file = scratch / f"{name}.sh"
        argv = ["bash", "-euo", "pipefail", str(file)]
    file.write_text(script(block), encoding="utf-8")
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout_s)
        failure = f"exited with {proc.returncode}" if proc.returncode else None
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the block's own process group: minmax included
        out, err = proc.communicate()
        failure = f"did not finish in {timeout_s:g} s"
    if failure is None:
        return None
    shown = "\n".join(f"    {line}" for line in block.lines)
    return (
        f"{block.where}: {block.lang} block {failure} (line numbers are the page's; "
        f"ran in {cwd})\n{shown}\n--- stderr, last 30 lines ---\n"
        + "\n".join(err.splitlines()[-30:])
        + "\n--- stdout, last 10 lines ---\n"
        + "\n".join(out.splitlines()[-10:])
    )


def fake_mnist(n_train: int = 320, n_test: int = 96, seed: int = 0) -> dict[str, np.ndarray]:
    """A Keras-layout MNIST stand-in: uint8 28×28 images of two blurred crossing strokes whose
    angle follows the label (0..9), so a class-conditional G and a classifier have something
    to learn. Seeded: the same arrays every call."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n_train + n_test) % 10
    yy, xx = np.mgrid[0:28, 0:28].astype(np.float32)
    images = np.zeros((len(labels), 28, 28), np.float32)
    for image, label in zip(images, labels, strict=True):
        angle = np.pi * label / 10 + rng.normal(0, 0.1)
        for _ in range(2):
            cx, cy = rng.uniform(9, 19, size=2)
            dx, dy = np.cos(angle), np.sin(angle)
            t = np.clip((xx - cx) * dx + (yy - cy) * dy, -7, 7)  # nearest point on the stroke
            distance2 = (xx - cx - t * dx) ** 2 + (yy - cy - t * dy) ** 2
            np.maximum(image, np.exp(-distance2 / 2), out=image)
            angle += np.pi / 2
    x, y = np.round(255 * images).astype(np.uint8), labels.astype(np.uint8)
    return {
        "x_train": x[:n_train],
        "y_train": y[:n_train],
        "x_test": x[n_train:],
        "y_test": y[n_train:],
    }
