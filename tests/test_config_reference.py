"""The generated config reference (minmax.config_reference) and the MkDocs hook that inserts it.

Every config key must appear with its type, its real default and a meaning read from the
comment beside its field: a field added without a comment fails here.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import typing
from pathlib import Path

import pytest

from minmax import config as C
from minmax import config_reference as R

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- config-reference -->"


def config_fields() -> list[tuple[str, type, dataclasses.Field]]:
    """(dotted key, owning dataclass, field) for every value field of the config tree."""
    out = []
    for top in dataclasses.fields(C.Config):
        hint = typing.get_type_hints(C.Config)[top.name]
        if dataclasses.is_dataclass(hint):
            out += [(f"{top.name}.{f.name}", hint, f) for f in dataclasses.fields(hint)]
        else:
            out.append((top.name, C.Config, top))
    return out


def cells(line: str) -> list[str]:
    """A table row's cells: split on pipes that are neither escaped nor inside a code span."""
    out, current, in_code, previous = [], "", False, ""
    for char in line.strip().strip("|"):
        if char == "`":
            in_code = not in_code
        if char == "|" and not in_code and previous != "\\":
            out.append(current.strip())
            current = ""
        else:
            current += char
        previous = char
    return [*out, current.strip()]


@pytest.fixture(scope="module")
def rows() -> dict[str, list[str]]:
    """{dotted key: [key, type, default, meaning, presets]} as the page's tables hold them."""
    table = {}
    for line in R.markdown().splitlines():
        if line.startswith("| `"):
            row = cells(line)
            table[row[0].strip("`")] = row
    return table


def test_every_field_has_one_row_with_a_meaning(rows):
    keys = [key for key, _, _ in config_fields()]
    assert sorted(rows) == sorted(keys)
    for key in keys:
        assert len(rows[key]) == 5, rows[key]
        assert rows[key][3], f"{key} has no meaning: write a '# ...' comment on its field"


def test_defaults_shown_are_the_dataclass_defaults(rows):
    for key, cls, f in config_fields():
        shown = rows[key][2].strip("`")
        text = "" if shown == '""' else shown
        hint = typing.get_type_hints(cls)[f.name]
        expected = getattr(cls(), f.name)
        parsed = C._coerce(text, hint, key, from_text=True)  # as an override would read it
        assert parsed == expected and type(parsed) is type(expected), (key, shown, expected)


def test_types_are_written_as_a_user_writes_values(rows):
    assert rows["train.max_minutes"][1] == "`float or none`"
    assert rows["data.root"][1] == "`text or none`"
    assert rows["train.channels_last"][1] == "`auto|true|false`"
    assert rows["train.compile"][1] == "`bool`"
    assert rows["train.batch_size"][1] == "`int`"
    assert rows["data.name"][1] == "`text`"


def test_presets_column_names_each_preset_and_its_value(rows):
    for name in C.preset_names():

        def walk(data: dict, prefix: str = "", name: str = name) -> None:
            for key, value in data.items():
                if isinstance(value, dict):
                    walk(value, f"{prefix}{key}.")
                    continue
                cell = rows[prefix + key][4]
                group = next(g for g in cell.split("; ") if g.startswith(f"`{R.show(value)}`:"))
                assert name in group.split(": ", 1)[1].split(", "), (prefix + key, cell)

        walk(C.load_preset(name))
    assert rows["train.kimg"][4] and not rows["train.seed"][4]


def test_page_says_how_overrides_are_written_and_its_example_resolves():
    text = R.markdown()
    assert "section.key=value" in text
    assert "did you mean" in text
    assert "`train.kimg`" in R.resume_note()  # keys a --resume may change
    command = next(line for line in text.splitlines() if line.startswith("minmax train "))
    words = command.split()[2:]
    preset = words[words.index("--preset") + 1]
    cfg = C.resolve(preset, overrides=[w for w in words if "=" in w])
    assert cfg.preset == preset and cfg.train.max_minutes is None


SOURCE = """
class Example:
    plain: int = 1  # trailing
    # above one
    # above two
    both: int = 2  # and trailing

    # a heading over a group, a blank line under it

    after_blank: int = 3
    # ends with a colon:
    joined: str = "x"  # the rest
    pragma: int = 4  # fmt: skip
    text: str = "# not a comment"
    bare: int = 5
"""


def test_comment_reader_takes_trailing_and_directly_above_comments_only():
    found = R.field_comments(SOURCE)["Example"]
    assert found == {
        "plain": "trailing",
        "both": "above one above two; and trailing",
        "after_blank": "",
        "joined": "ends with a colon: the rest",
        "pragma": "",
        "text": "",
        "bare": "",
    }


def load_hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hook_replaces_the_marker_line_with_the_reference():
    hooks = load_hooks()
    page = f"# Config\n\nIntro.\n\n{MARKER}\n\nAfter.\n"
    out = hooks.on_page_markdown(page, page=None, config=None, files=None)
    assert MARKER not in out
    assert out.startswith("# Config\n\nIntro.\n\n") and out.endswith("\n\nAfter.\n")
    assert R.markdown().strip() in out
    plain = "# Other\n\nNo marker here.\n"
    assert hooks.on_page_markdown(plain, page=None, config=None, files=None) == plain


def test_reference_page_holds_the_marker_once():
    lines = (ROOT / "docs" / "reference" / "config.md").read_text().splitlines()
    assert [line.strip() for line in lines].count(MARKER) == 1
