"""Where metric assets live, and how they are written and checked.

Everything a metric stores (network weights, reference statistics) goes under
``default_root()`` (``$MINMAX_CACHE``, else ``~/.cache/minmax``), is written to a temporary
name and ``os.replace``d into place (a crash leaves the old file or the new one, never half
of one), and is identified by its SHA-256 so a score can name exactly what produced it.
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Callable
from pathlib import Path

from minmax.data.download import default_root, sha256_of
from minmax.errors import UsageError

__all__ = ["atomic_write", "check_sha256", "default_root", "download", "sha256_file"]

_READ_BYTES = 1 << 20


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    return sha256_of(Path(path))


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary path beside ``path``, then rename it into place.

    If ``write`` raises, the temporary file is removed and ``path`` is left untouched.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def check_sha256(path: Path, expected: str, fix: str) -> None:
    """Refuse a file whose SHA-256 is not ``expected``; ``fix`` tells the user what to do."""
    actual = sha256_file(path)
    if actual != expected:
        raise UsageError(
            f"'{path}' has SHA-256 {actual[:16]}..., expected {expected[:16]}...: "
            f"a different or damaged file; {fix}"
        )


def download(url: str, path: Path, sha256: str, timeout_s: float = 60.0) -> None:
    """Fetch ``url`` to ``path``, keeping it only if its SHA-256 is ``sha256``.

    Network errors become a UsageError naming the URL and where to put the file by hand.
    """

    def fetch(tmp: Path) -> None:
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response, open(tmp, "wb") as f:
                for block in iter(lambda: response.read(_READ_BYTES), b""):
                    f.write(block)
        except OSError as err:  # URLError, timeouts and HTTP errors are all OSErrors
            raise UsageError(
                f"cannot download '{url}' ({err}); fetch it by other means and put it at '{path}'"
            ) from None
        check_sha256(tmp, sha256, f"the download from '{url}' is not the expected file")

    atomic_write(path, fetch)
