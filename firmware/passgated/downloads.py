"""Published deny-list files, downloaded to disk: streamed (never all in memory), resumed with
``Range`` after a cut, and checked against the size and SHA-256 the bundle named before the list
code reads a byte of them (which then checks the signature, as for any list file).

A cut download stays as ``<sha256>.part`` in the downloads folder and the next round asks only for
the rest; a server that ignores ``Range`` sends it all again (200), which is taken whole. A file
longer than named, or whose digest differs, is deleted and the round reports why.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import requests

from passgate import wire

CHUNK = 1 << 16  # bytes written at a time
HASH_STEP = 1 << 20  # bytes read at a time to check the digest


class DownloadError(ValueError):
    """A list file could not be fetched whole and intact (one line: why)."""


def url_of(named: wire.ListFile, hub_url: str) -> str:
    """Where to fetch a file the bundle names: its URL, relative to the hub's if it is relative."""
    url = urljoin(hub_url.rstrip("/") + "/", named.url)
    if urlsplit(url).scheme not in ("http", "https"):
        raise DownloadError(f"list file URL {named.url[:80]!r} is not http or https")
    return url


def download(session: requests.Session, url: str, named: wire.ListFile, folder: Path, *,
             verify: bool | str, timeout: float | tuple[float, float], max_bytes: int) -> Path:
    """The file at ``url``, whole and with the named digest, as ``folder/<sha256>.pgdl``. Raises
    ``DownloadError`` (the part already received is kept for the next try when it can be resumed)
    or ``requests.RequestException`` (likewise)."""
    if named.size > max_bytes:
        raise DownloadError(f"list file of {named.size} bytes is over the gate's cap of {max_bytes}")
    folder.mkdir(parents=True, exist_ok=True)
    done = folder / f"{named.sha256}.pgdl"
    if done.exists():
        return done
    part = folder / f"{named.sha256}.part"
    have = part.stat().st_size if part.exists() else 0
    if have > named.size:
        part.unlink()
        have = 0
    if have < named.size:
        have = _fetch(session, url, named, part, have, verify=verify, timeout=timeout)
    if have < named.size:
        raise DownloadError(f"{url}: cut short at {have} of {named.size} bytes (resumes next round)")
    digest = hashlib.sha256()
    with open(part, "rb") as f:
        while block := f.read(HASH_STEP):
            digest.update(block)
    if digest.hexdigest() != named.sha256:
        part.unlink()
        raise DownloadError(f"{url}: SHA-256 {digest.hexdigest()[:16]}… is not the "
                            f"{named.sha256[:16]}… the bundle named")
    part.replace(done)
    return done


def _fetch(session: requests.Session, url: str, named: wire.ListFile, part: Path, have: int, *,
           verify: bool | str, timeout: float | tuple[float, float]) -> int:
    """Append the rest of the file to ``part``; returns how many bytes it holds now."""
    headers = {"Range": f"bytes={have}-"} if have else {}
    with session.get(url, headers=headers, stream=True, timeout=timeout, verify=verify) as response:
        if response.status_code == 416:  # the part is no prefix of this file
            part.unlink(missing_ok=True)
            raise DownloadError(f"{url}: the server refused to resume (HTTP 416); starts again")
        if response.status_code == 206 and have:
            if not response.headers.get("Content-Range", "").startswith(f"bytes {have}-"):
                raise DownloadError(f"{url}: resumed at the wrong place "
                                    f"({response.headers.get('Content-Range')!r})")
        elif response.status_code == 200:
            have = 0  # the whole file again
        else:
            raise DownloadError(f"{url}: HTTP {response.status_code}")
        with open(part, "ab" if have else "wb") as out:
            try:
                for chunk in response.iter_content(CHUNK):
                    if have + len(chunk) > named.size:
                        out.close()
                        part.unlink()
                        raise DownloadError(f"{url}: longer than the {named.size} bytes the bundle named")
                    out.write(chunk)
                    have += len(chunk)
            finally:
                if not out.closed:
                    out.flush()
                    os.fsync(out.fileno())
    return have
