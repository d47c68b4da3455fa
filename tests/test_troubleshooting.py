"""docs/troubleshooting.md has an entry for every warning and note the trainer prints.

The messages are found by reading the source (ast), not by running anything:

- lines printed to stderr (``print(..., file=sys.stderr)``, ``tqdm.write(...)``),
- what ``minmax.train.loop.warn`` is given (a literal, or the strings a health check such as
  ``health.d_wins`` returns), printed as ``minmax: warning: ...``,
- the speed notes minmax.train.autotune collects and prints as ``minmax: ...``, and its ``say``,
- ``warnings.warn`` messages, and the DivergenceError message (exit code 3).

A message is a template: literal text with holes where values go. The page must show its
start (``PREFIX_CHARS`` literal characters after the ``minmax: [warning: |error: ]`` header)
on one line, any text standing in for the holes, as in a message really printed.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "minmax"
PAGE = ROOT / "docs" / "troubleshooting.md"
PREFIX_CHARS = 30
HEADERS = ("minmax: warning: ", "minmax: error: ", "minmax: ")
Template = list  # of str (literal text) and None (a value filled in when printed)


@dataclass
class Message:
    where: str  # file:line of the code that prints it
    parts: Template

    def pattern(self) -> re.Pattern | None:
        """The start of the message as a regex (holes match anything), or None when it has
        no text of its own after the header (it only passes on a message found elsewhere)."""
        text = "".join(p if p is not None else "\0" for p in self.parts)
        header = next((h for h in HEADERS if text.startswith(h)), "")
        body = text[len(header) :]
        literal = [chunk for chunk in body.split("\0") if chunk]
        if not literal:
            return None
        out, kept = [re.escape(header)], 0
        for i, chunk in enumerate(body.split("\0")):
            if i:
                out.append(".{0,300}?")
            chunk = chunk[: PREFIX_CHARS - kept]
            out.append(re.escape(chunk))
            kept += len(chunk)
            if kept >= PREFIX_CHARS:
                break
        return re.compile("".join(out))


class Scanner:
    """Templates of the strings an expression can print, within one module."""

    def __init__(self, tree: ast.Module, functions: dict[str, list[ast.FunctionDef]]) -> None:
        self.tree, self.functions = tree, functions
        self.parents = {c: p for p in ast.walk(tree) for c in ast.iter_child_nodes(p)}

    def template(self, node: ast.AST) -> Template:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return [node.value]
        if isinstance(node, ast.JoinedStr):
            return [part for value in node.values for part in self.template(value)]
        if isinstance(node, ast.FormattedValue):
            return self.template(node.value) if isinstance(node.value, ast.Name) else [None]
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return self.template(node.left) + self.template(node.right)
        if isinstance(node, ast.Name) and (value := self.assigned(node)) is not None:
            return self.template(value)
        return [None]

    def assigned(self, name: ast.Name) -> ast.AST | None:
        """The value of the one ``name = ...`` in the function using ``name``, if one."""
        scope = name
        while scope in self.parents and not isinstance(scope, ast.FunctionDef):
            scope = self.parents[scope]
        values = [
            n.value
            for n in ast.walk(scope)
            if isinstance(n, ast.Assign)
            and len(n.targets) == 1
            and isinstance(n.targets[0], ast.Name)
            and n.targets[0].id == name.id
        ]
        return values[0] if len(values) == 1 else None

    def returned(self, function: ast.FunctionDef) -> list[Template]:
        """Templates of the strings ``function`` returns (``return None`` left out)."""
        out = []
        for node in ast.walk(function):
            value = node.value if isinstance(node, ast.Return) else None
            if value is not None and not (isinstance(value, ast.Constant) and value.value is None):
                out.append(self.template(value))
        return out


def _to_stderr(call: ast.Call) -> bool:
    func = ast.unparse(call.func)
    to_stderr = any(k.arg == "file" and ast.unparse(k.value) == "sys.stderr" for k in call.keywords)
    return func == "tqdm.write" or (func == "print" and to_stderr)


def printed_messages() -> list[Message]:
    trees = {path: ast.parse(path.read_text(encoding="utf-8")) for path in SRC.rglob("*.py")}
    functions: dict[str, list[ast.FunctionDef]] = {}
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef):
                functions.setdefault(node.name, []).append(node)
    found = []
    for path, tree in trees.items():
        scan = Scanner(tree, functions)
        for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
            where = f"{path.relative_to(ROOT)}:{call.lineno}"
            func = ast.unparse(call.func)
            if not call.args:
                continue
            if _to_stderr(call) or func == "warnings.warn":
                found.append(Message(where, scan.template(call.args[0])))
            elif func == "DivergenceError":
                found.append(Message(where, ["minmax: error: ", *scan.template(call.args[0])]))
            elif func == "warn" and len(call.args) == 3:  # minmax.train.loop.warn(log, count, ...)
                for parts in _warn_messages(scan, call.args[2], where):
                    found.append(Message(where, ["minmax: warning: ", *parts]))
            elif path.name == "autotune.py" and (func == "say" or func.endswith("notes.append")):
                for parts in _notes(scan, call.args[0]):
                    found.append(Message(where, ["minmax: ", *parts]))
        if path.name == "autotune.py":  # speed.notes = ["..."]
            for node in ast.walk(tree):
                if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]).endswith(".notes"):
                    for item in getattr(node.value, "elts", []):
                        where = f"{path.relative_to(ROOT)}:{node.lineno}"
                        found.append(Message(where, ["minmax: ", *scan.template(item)]))
    return found


def _warn_messages(scan: Scanner, arg: ast.AST, where: str) -> list[Template]:
    """What a ``warn(log, count, arg)`` can print: a literal, or a health check's returns."""
    if isinstance(arg, ast.Call) and isinstance(arg.func, ast.Attribute):
        methods = scan.functions.get(arg.func.attr, [])
        assert methods, f"{where}: cannot find {arg.func.attr}() to read its warnings"
        return [t for method in methods for t in scan.returned(method)]
    parts = scan.template(arg)
    assert any(parts), f"{where}: cannot see what warn() prints: give it a literal message"
    return [parts]


def _notes(scan: Scanner, arg: ast.AST) -> list[Template]:
    if isinstance(arg, ast.Call) and isinstance(arg.func, ast.Name):  # a note-making helper
        return [t for f in scan.functions.get(arg.func.id, []) for t in scan.returned(f)]
    return [scan.template(arg)]


MESSAGES = printed_messages()


def test_scanner_finds_the_known_warnings():
    """Guards the scanner itself: if it stopped finding these, the test below would pass
    whatever the page says."""
    text = ["".join(p or "{}" for p in m.parts) for m in MESSAGES]
    for expected in [
        "minmax: warning: D is winning",
        "minmax: warning: mode collapse",
        ": rolled back to ",
        "minmax: error: training diverged at",
        "skipped {} of {} entries in image folder",
        "minmax: reused from this run's speed.json",
        "minmax: out of memory at micro-batch",
        "minmax: train.precision=bf16 but this CPU has no native bf16",
        "the covariance is singular",
        "minmax: skipping checkpoint",
    ]:
        assert any(expected in t for t in text), expected


@pytest.mark.parametrize(
    "message", [m for m in MESSAGES if m.pattern() is not None], ids=lambda m: m.where
)
def test_every_printed_warning_has_an_entry(message):
    pattern = message.pattern()
    lines = PAGE.read_text(encoding="utf-8").splitlines()
    shown = "".join(p if p is not None else "…" for p in message.parts)
    assert any(pattern.search(line) for line in lines), (
        f"{message.where} prints '{shown}', which docs/troubleshooting.md does not show: add "
        "an entry with the message as printed, what it means and what to do"
    )


def test_exit_codes_of_the_cli_are_listed():
    tree = ast.parse((SRC / "cli.py").read_text(encoding="utf-8"))
    main = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "main")
    codes = {
        n.value.value
        for handler in ast.walk(main)
        if isinstance(handler, ast.ExceptHandler)
        for n in ast.walk(handler)
        if isinstance(n, ast.Return) and isinstance(n.value, ast.Constant)
    }
    assert {2, 3} <= codes
    page = PAGE.read_text(encoding="utf-8")
    for code in codes | {0}:
        assert re.search(rf"^\| {code} \|", page, re.MULTILINE), f"exit code {code} not listed"
