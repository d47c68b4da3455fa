"""The dataset cache folder, and downloads that are checked before they are used.

A download is written to a temporary name in the destination folder, hashed while it
streams, and ``os.replace``d into place only when its SHA-256 matches the constant in the
code: an interrupted or tampered download never sits where a loader would read it.

``urlopen`` is a module attribute on purpose: tests replace it (or give ``file://`` URLs)
so nothing here ever needs the network to be tested.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

urlopen = urllib.request.urlopen
CHUNK_BYTES = 1 << 20


class DownloadError(Exception):
    """Every mirror of a file failed; the message lists why, one reason per URL."""


@dataclass(frozen=True)
class Remote:
    """One file to fetch: its name on disk, mirrors tried in order, and its SHA-256."""

    file_name: str
    urls: tuple[str, ...]
    sha256: str


def default_root() -> Path:
    """``$MINMAX_CACHE`` if set, else ``~/.cache/minmax``; read per call, never at import."""
    configured = os.environ.get("MINMAX_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "minmax"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _stream(url: str, out, timeout_s: float, label: str) -> str:
    """Copy ``url`` into the open file ``out``; returns the SHA-256 of what was written."""
    digest = hashlib.sha256()
    with urlopen(url, timeout=timeout_s) as response:
        headers = getattr(response, "headers", None)
        total = int(headers.get("Content-Length") or 0) if headers is not None else 0
        with tqdm(total=total or None, unit="B", unit_scale=True, desc=label, disable=None) as bar:
            while chunk := response.read(CHUNK_BYTES):
                out.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
    return digest.hexdigest()


def _fetch_verified(url: str, remote: Remote, folder: Path, timeout_s: float) -> Path:
    """Download one URL to a temporary file; keep it under its real name only if it hashes right."""
    destination = folder / remote.file_name
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=f".{remote.file_name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            got = _stream(url, out, timeout_s, remote.file_name)
        if got != remote.sha256:
            raise DownloadError(
                f"sha256 {got} is not the expected {remote.sha256} (corrupt or changed file)"
            )
        os.replace(temporary, destination)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return destination


def download(remote: Remote, folder: Path, timeout_s: float = 60.0) -> Path:
    """``folder/remote.file_name``, fetched from the first mirror that serves the right bytes.

    A file already there with the right hash is kept. Raises DownloadError when every mirror
    fails (offline, HTTP error, wrong hash); nothing is left behind in that case.
    """
    folder = Path(folder)
    destination = folder / remote.file_name
    if destination.is_file() and sha256_of(destination) == remote.sha256:
        return destination
    folder.mkdir(parents=True, exist_ok=True)
    failures = []
    for url in remote.urls:
        try:
            return _fetch_verified(url, remote, folder, timeout_s)
        except (OSError, http.client.HTTPException, ValueError, DownloadError) as error:
            failures.append(f"{url}: {_one_line(error)}")
    raise DownloadError(f"could not download {remote.file_name} ({'; '.join(failures)})")


def download_all(remotes: list[Remote], folder: Path) -> list[Path]:
    """Each remote into ``folder``, in order; the first failure raises DownloadError."""
    return [download(remote, folder) for remote in remotes]
