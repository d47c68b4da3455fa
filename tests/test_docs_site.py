"""The docs site builds with ``mkdocs build --strict``: a broken link, a missing page or anchor,
or an API reference to a name that no longer exists fails the suite."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_docs_site_builds_strictly(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "reference" / "config" / "index.html").is_file()
    api = (tmp_path / "reference" / "api" / "index.html").read_text()
    assert "load_generator" in api and "mode_report" in api
