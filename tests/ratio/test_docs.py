"""docs/ratio.md's commands use options the CLI has (parsed, not run: they train for minutes)."""

import shlex
from pathlib import Path

from minmax.cli import _parser

DOC = Path(__file__).resolve().parents[2] / "docs" / "ratio.md"


def test_every_documented_command_parses():
    blocks = [b.split("\n```")[0] for b in DOC.read_text().split("```bash\n")[1:]]
    commands = [line.split("#")[0] for b in blocks for line in b.splitlines()]
    commands = [shlex.split(c) for c in commands if c.startswith("minmax ")]
    assert {c[1] for c in commands} >= {"train", "calibrate", "sample", "diagnose"}
    for argv in commands:
        args = _parser().parse_args(argv[1:])
        assert args.command == argv[1]
    corrections = [c for c in commands if "--correct" in c]
    assert {c[c.index("--correct") + 1] for c in corrections} == {"drs", "mh", "sir"}
