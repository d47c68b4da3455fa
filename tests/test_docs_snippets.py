"""Docs snippets: every command and snippet in README.md and docs/**/*.md runs, or says it won't.

Each fenced block of those pages is decided, so the docs cannot rot unnoticed:

- A block is **code** when its info string (the word after the opening fence) is ``bash``,
  ``sh``, ``console``, ``shell`` or ``python``. Blocks tagged ``text``, ``yaml``, ``json``, ...
  are not run: output, config files and usage synopses (``minmax sample RUN_DIR [--n N]``:
  placeholders are ``text``, never ``bash``). A fence with no info string fails, as do
  ``py``, ``python3``, ``pycon``, ``zsh``, ``shell-session`` and ``sh-session``, which would
  otherwise escape both checks.
- A code block has one marker, an HTML comment (invisible on GitHub and in MkDocs) on the
  line directly before its opening fence; without one the test fails at ``page:line``:

  - ``<!-- illustrative -->``: not run, checked cheaply. In a shell block every command that
    calls minmax (``minmax ...`` or ``... -m minmax ...``, after a ``$ `` prompt is dropped,
    ``\\`` continuations are joined and a trailing ``# comment`` is cut; each command of a
    ``&&``/``|``/``;`` chain counts) must pass ``minmax.cli._parser()``, and for ``train``
    its preset must exist and each ``key=value`` override must name a config key and a value
    of its type (values holding a ``$`` shell variable are skipped). So a renamed option, key
    or preset fails the docs. A Python block must compile.
  - ``<!-- run -->``: executed as written (and checked as above first).
  - ``<!-- run: key=value key=value -->``: executed with those overrides appended to every
    ``minmax train`` command in the block, to make it small, e.g. ``<!-- run: train.kimg=0.2
    eval.plots=false -->`` (later overrides win, so they replace the page's own values).

- Use ``illustrative`` for what takes minutes at any size, needs the network, a GPU, torchrun,
  data this test does not have, or earlier commands that are not run; and for set-up: a run
  block that installs things (``pip install``, ``python -m venv``, ``conda install``, ...)
  fails (the README's set-up lines are tests/test_readme.py's and CI's).

How run blocks run: the blocks of one page in order, in one fresh working directory per page,
so a page's ``minmax train --out runs/demo`` is there for its later ``minmax sample runs/demo``
or ``load_generator("runs/demo")``. Shell blocks run as ``bash -euo pipefail`` with the venv's
``minmax`` first on PATH, Python blocks with this interpreter, each with a timeout
(``BLOCK_TIMEOUT_S``); a failure names the page line of the failing command, the block, and the
tail of its stderr and stdout. The environment has no network data: ``MINMAX_CACHE`` is a fresh
folder holding a small synthetic Keras-layout ``mnist.npz`` (416 seeded 28×28 images of
strokes, ten classes; ``docs_snippets.fake_mnist``), so ``--data mnist`` works offline; the
same file is ``mnist.npz`` in the working directory (``--data mnist.npz``) and
``../shared/data/mnist.npz`` (the path this project's pages use for the real file: the
working directory sits where a checkout does, beside ``shared/``). ``OMP_NUM_THREADS=1``: the
docs start many small processes, and on a busy 2-core machine a tiny image run with two
threads was 10× slower than with one.

Keep the executed blocks small: the whole docs run belongs in the default suite, well under a
minute. Overrides that keep a run to seconds: the toy presets (``ring``, ``grid``) with
``train.kimg=0.2 eval.plots=false``; image presets with ``train.kimg=0.1
train.batch_size=16 model.g_channels=8 model.d_channels=8 eval.metrics= eval.plots=false``
(each minmax process also costs ~3 s of imports here). A page that cannot be made small (its
commands take minutes whatever the overrides, e.g. ``minmax calibrate --kimg 500``) goes in
``SLOW_PAGES``: its blocks are still checked by default and run under ``pytest -m slow``.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.docs_snippets import (
    ROOT,
    blocks,
    check_page,
    fake_mnist,
    pages,
    run_block,
    script,
    with_overrides,
)

BLOCK_TIMEOUT_S = 120.0
SLOW_PAGES = {
    # calibrate --kimg 500 twice (the CLI, then Python) and the three samplers: ~1 minute
    "docs/ratio.md",
}
PAGES = pages()


def _run_pages() -> list:
    found = [p for p in PAGES if any(b.marker == "run" and b.is_code for b in blocks(ROOT / p))]
    return [pytest.param(p, marks=pytest.mark.slow) if p in SLOW_PAGES else p for p in found]


@pytest.mark.parametrize("page", PAGES)
def test_every_block_is_decided_and_its_commands_parse(page):
    problems = check_page(ROOT / page)
    assert not problems, "\n".join(problems)


@pytest.fixture(scope="session")
def mnist_npz(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fake-mnist") / "mnist.npz"
    np.savez_compressed(path, **fake_mnist())
    return path


@pytest.mark.parametrize("page", _run_pages())
def test_page_runs(page, tmp_path, mnist_npz):
    work, scratch, cache = tmp_path / "work", tmp_path / "scratch", tmp_path / "cache"
    for target in (work / "mnist.npz", cache / "mnist.npz", tmp_path / "shared/data/mnist.npz"):
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(mnist_npz, target)
    scratch.mkdir()
    env = dict(os.environ, MINMAX_CACHE=str(cache), OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    for block in blocks(ROOT / page):
        if block.marker == "run" and block.is_code:
            failure = run_block(block, work, scratch, env, BLOCK_TIMEOUT_S)
            assert failure is None, failure


# The harness itself, on a page written here.

PAGE = """# A page

<!-- run: train.kimg=0.2 -->
```bash
$ minmax train --preset ring \\
    --out runs/a   # the toy
minmax train --dry-run | head -n 3 && minmax sample runs/a --out x.npy
```

```
bare
```

```bash
minmax sample runs/a
```

<!-- illustrative -->
```bash
minmax train --preset mnist-dcgn
minmax train train.kimg=fast
minmax sample RUN_DIR --out FILE.{png,npy} [--n N]
```

<!-- illustrative -->

```python
x = 1
```

<!-- run -->
```console
$ pip install -e .
Successfully installed
```

<!-- run: train.kimgg=1 -->
```python
print(
```
"""


def test_the_harness_finds_undecided_and_broken_blocks(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(PAGE)
    problems = "\n".join(check_page(page))
    for expected in (
        "page.md:10: give the block a language",
        "page.md:14: mark it <!-- run --> or <!-- illustrative -->",
        "page.md:20: `minmax train --preset mnist-dcgn` is refused: unknown preset",
        "page.md:21: `minmax train train.kimg=fast` is refused: 'train.kimg' must be float",
        "page.md:22: `minmax sample RUN_DIR --out FILE.{png,npy} [--n N]` is refused",
        "(a usage synopsis with placeholders goes in a text block)",
        "page.md:27: the marker must be on the line directly before the fence",
        "page.md:32: a run block installs things",
        "page.md:38: overrides apply to `minmax train` in shell blocks",
        "page.md:39: '(' was never closed",
    ):
        assert expected in problems, f"{expected!r} not in\n{problems}"
    assert "page.md:4:" not in problems and "page.md:5:" not in problems  # that block is fine
    assert problems.count("usage synopsis") == 1  # only where placeholders are
    assert len(problems.splitlines()) == 10


def test_overrides_go_to_every_minmax_train_command_before_comments_and_pipes(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(PAGE)
    lines = script(blocks(page)[0]).splitlines()
    assert lines[4] == "minmax train --preset ring --out runs/a train.kimg=0.2   # the toy"
    assert lines[5] == ""  # the continuation line was joined onto the line it continues
    assert lines[6] == (
        "minmax train --dry-run train.kimg=0.2 | head -n 3 && minmax sample runs/a --out x.npy"
    )
    assert with_overrides('x=$(minmax train "a b" 2>&1) # c', ["k.v=1"]) == (
        'x=$(minmax train "a b" 2>&1) # c'  # inside $(...): not a command of this line
    )
    assert with_overrides("minmax train 2>&1 | tee log", ["k.v=1"]) == (
        "minmax train k.v=1 2>&1 | tee log"
    )


def test_a_failing_block_is_reported_at_its_page_line(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- run -->\n```bash\necho start\ntrue && \\\n  false  # the failure\necho never\n```\n"
        '<!-- run -->\n```python\nimport sys\n\nsys.exit("bad: " + sys.argv[0])\n```\n'
        "<!-- run -->\n```sh\nsleep 5\n```\n"
    )
    shell, python, sleeper = blocks(page)
    env = dict(os.environ)
    failure = run_block(shell, tmp_path, tmp_path, env, 10)
    assert failure.startswith("page.md:2: bash block exited with 1")
    assert "exit 1 at line 4: false" in failure  # the page's line of the failing command
    stdout = failure.split("--- stdout")[1]
    assert "start" in stdout and "never" not in stdout  # bash -e: it stopped there
    failure = run_block(python, tmp_path, tmp_path, env, 10)
    assert failure.startswith("page.md:9: python block exited with 1") and "bad: " in failure
    failure = run_block(sleeper, tmp_path, tmp_path, env, 0.5)
    assert failure.startswith("page.md:15: sh block did not finish in 0.5 s")
