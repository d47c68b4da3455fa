"""The config reference page, generated from the dataclasses in ``minmax.config``.

A key's meaning is the comment written with its field: a trailing ``# ...`` on the field's
line, the ``# ...`` lines directly above it, or both. Reading them from the source keeps the
page in step with the code, and a field added without a comment shows up with an empty
meaning, which tests/test_config_reference.py rejects. docs/hooks.py puts ``markdown()``
into docs/reference/config.md when MkDocs builds the site.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import re
import tokenize
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

from minmax import config as C

PRAGMA = re.compile(r"(fmt|type|ruff|mypy|pyright):|(noqa|pragma)\b")  # tool comments

SECTION_NOTES = {
    "": "Keys outside any section.",
    "data": "What G learns to imitate, and how it is read.",
    "model": "The G and D networks: `mlp` for points, `dcgan`, `resnet` or `biggan` for images.",
    "loss": "The objective both networks play, and the penalties on D and G.",
    "augment": "Differentiable augmentation of every batch D sees, real and generated.",
    "train": "Length, optimizers, averaging, checkpoints, speed settings and what to do when "
    "values go non-finite.",
    "eval": "What is measured on G_ema during and at the end of a run.",
}

OVERRIDES = """\
A run's config is built in three layers: the defaults below, then a preset (`--preset NAME`)
or a YAML file of sections (`--config FILE`), then dotted overrides on the command line, one
`section.key=value` each (`--data X` is short for `data.name=X`):

```
minmax train --preset grid train.lr_d=1e-4 train.seed=3 train.max_minutes=none
```

Each value is parsed by its key's type before anything runs: `true`/`false` (also `yes`/`no`,
`on`/`off`, `1`/`0`) for switches, `none` for keys that may be empty. A key that does not exist
is an error that names the closest one (exit code 2), e.g.
`unknown config key 'train.lr_dd' in train: did you mean 'lr_d'?`.
`minmax train --dry-run` prints the resolved config and exits. The last column lists the
shipped presets that set a key, grouped by the value they give.
"""


TABLE_HEAD = "| Key | Type | Default | Meaning | Presets that set it |\n|---|---|---|---|---|"


@dataclass(frozen=True)
class Key:
    """One row of the reference: every cell as the page shows it."""

    path: str  # dotted, e.g. train.lr_d
    type: str  # as a user writes a value: int, float, bool, text, auto|true|false, ...
    default: str  # as an override would write it
    meaning: str
    presets: str  # e.g. "`0.0005`: grid, points, ring"


def field_comments(source: str) -> dict[str, dict[str, str]]:
    """``{class: {field: comment}}`` for the annotated fields of every class in ``source``.

    Comment lines count as a field's when they sit directly above it (no blank line between:
    a comment with a blank line under it heads a group of fields); its own line's trailing
    comment follows them. Tool pragmas (``# fmt: skip``, ``# noqa``) are dropped."""
    above_only: dict[int, str] = {}  # row -> text of a line holding only a comment
    trailing: dict[int, str] = {}  # row -> text of a comment after code
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type != tokenize.COMMENT:
            continue
        text = token.string.lstrip("#").strip()
        if PRAGMA.match(text):
            continue
        row, column = token.start
        (trailing if token.line[:column].strip() else above_only)[row] = text
    out: dict[str, dict[str, str]] = {}
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ClassDef):
            continue
        fields = out.setdefault(node.name, {})
        for stmt in node.body:
            if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
                continue
            row, above = stmt.lineno - 1, []
            while row in above_only:
                above.insert(0, above_only[row])
                row -= 1
            after = [trailing[r] for r in range(stmt.lineno, stmt.end_lineno + 1) if r in trailing]
            fields[stmt.target.id] = _join(" ".join(above), " ".join(after))
    return out


def _join(above: str, after: str) -> str:
    if not (above and after):
        return above or after
    return f"{above} {after}" if above.endswith(":") else f"{above}; {after}"


def type_name(hint: Any) -> str:
    """A field's type as a user writes its values: ``float or none``, ``auto|true|false``."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) is Literal:
        return "|".join(show(a) for a in args)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in args if a is not type(None)) + " or none"
    return {int: "int", float: "float", bool: "bool", str: "text"}[hint]


def show(value: Any) -> str:
    """``value`` as an override writes it: ``none``, ``true``, ``""``, ``0.001``."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if value == "":
        return '""'
    return repr(value) if isinstance(value, float) else str(value)


def preset_values() -> dict[str, dict[str, list[str]]]:
    """``{dotted key: {value as shown: [presets that set it to that]}}``."""
    out: dict[str, dict[str, list[str]]] = {}

    def walk(data: dict, prefix: str, preset: str) -> None:
        for key, value in data.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.", preset)
            else:
                out.setdefault(f"{prefix}{key}", {}).setdefault(show(value), []).append(preset)

    for name in C.preset_names():
        walk(C.load_preset(name), "", name)
    return out


def sections() -> dict[str, list[Key]]:
    """Rows per section (``""``: keys outside any section), in the dataclasses' order."""
    comments = field_comments(inspect.getsource(C))
    presets = preset_values()
    out: dict[str, list[Key]] = {"": []}
    for top in dataclasses.fields(C.Config):
        hint = typing.get_type_hints(C.Config)[top.name]
        if dataclasses.is_dataclass(hint):
            out[top.name] = _rows(hint, f"{top.name}.", comments, presets)
        else:
            out[""] += _rows(C.Config, "", comments, presets, only=top.name)
    return out


def _rows(cls: type, prefix: str, comments: dict, presets: dict, only: str = "") -> list[Key]:
    hints, instance = typing.get_type_hints(cls), cls()
    rows = []
    for f in dataclasses.fields(cls):
        if only and f.name != only:
            continue
        path = prefix + f.name
        by_value = presets.get(path, {})
        setters = "; ".join(f"`{v}`: {', '.join(names)}" for v, names in by_value.items())
        meaning = comments.get(cls.__name__, {}).get(f.name, "")
        value = getattr(instance, f.name)
        rows.append(Key(path, type_name(hints[f.name]), show(value), meaning, setters))
    return rows


def _cell(text: str) -> str:
    """``text`` safe in a table cell: a pipe splits cells, except inside a code span (where
    Python-Markdown's tables keep it, and a backslash would show)."""
    parts = re.split(r"(`[^`]*`)", text)
    return "".join(p if p.startswith("`") else p.replace("|", "\\|") for p in parts)


def resume_note() -> str:
    """Which keys ``--resume`` lets an override change (minmax.train.fingerprint)."""
    from minmax.train.fingerprint import RESUMABLE, RESUMABLE_SECTIONS  # imports torch

    keys = ", ".join(f"`{key}`" for key in sorted(RESUMABLE))
    sections = " and ".join(f"`{name}`" for name in sorted(RESUMABLE_SECTIONS))
    return (
        "`minmax train --resume RUN key=value` accepts changes to these keys only (how long and "
        f"how fast the run goes, where its data are, what is measured): {keys}, and every key "
        f"under {sections}. Any other change, a learning rate for one, is refused (`cannot "
        "resume from ...: it was trained with other config`): start a new run for it.\n"
    )


def markdown() -> str:
    """The reference as Markdown: how overrides are written, then one table per section."""
    parts = [OVERRIDES, resume_note()]
    for name, keys in sections().items():
        title = f"`{name}`" if name else "Top level"
        parts.append(f"## {title}\n\n{SECTION_NOTES.get(name, '')}\n")
        lines = [TABLE_HEAD]
        for k in keys:
            cells = [f"`{k.path}`", f"`{k.type}`", f"`{k.default}`", k.meaning, k.presets]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)
