"""Locations that may be fsspec URLs (``s3://bucket/key``, ``gs://...``, ``file://...``) as well as local paths.

Everything here goes through fsspec, so credentials, endpoints and regions come from each filesystem's usual
environment and configuration (for S3: ``AWS_ACCESS_KEY_ID``, ``AWS_PROFILE``, ``AWS_ENDPOINT_URL``,
``~/.aws/config``; fsspec's own ``~/.config/fsspec``), never from this package's files. ``file://`` URLs are
plain local paths. Storage errors become one-line :class:`~deepcr_dask.errors.InputError` messages that name
the location: a missing bucket or key, refused credentials, a filesystem whose package is not installed.
"""

from __future__ import annotations

import datetime as _dt
import os
import posixpath
import re
from collections.abc import Iterable
from pathlib import Path

from ..errors import InputError

__all__ = ["download_file", "exists", "filesystem", "find_files", "is_url", "join", "local_path", "read_bytes",
           "relative_to", "stamp", "storage_error", "upload_file", "upload_tree"]


def is_url(location: str | os.PathLike | None) -> bool:
    """True for a URL of a filesystem other than the local one (``s3://``, ``gs://``, ``memory://``...)."""
    if location is None or isinstance(location, Path):
        return False
    scheme, sep, _ = str(location).partition("://")
    return bool(sep and re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]+", scheme)) and scheme.lower() not in ("file", "local")


def local_path(location: str | os.PathLike) -> str:
    """A local location without its ``file://`` prefix (other locations unchanged)."""
    text = os.fspath(location)
    for prefix in ("file://", "local://"):
        if text.lower().startswith(prefix):
            return text[len(prefix):]
    return text


def storage_error(location: str, exc: BaseException) -> InputError:
    """A one-line error naming ``location`` and what the store said."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if isinstance(exc, PermissionError) or "credential" in first.lower() or "AccessDenied" in first:
        return InputError(f"{location}: access denied by the store ({first}); check the filesystem's credentials")
    if isinstance(exc, FileNotFoundError):
        return InputError(f"{location}: no such bucket, file or folder ({first})")
    if isinstance(exc, (ImportError, ValueError)) and "protocol" in first.lower():
        return InputError(f"{location}: {first} (install the fsspec filesystem for this protocol)")
    return InputError(f"{location}: storage error ({type(exc).__name__}: {first})")


def filesystem(url: str):
    """``(fsspec filesystem, path without protocol)`` of a URL."""
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(url)
    except Exception as exc:  # unknown protocol, missing package, malformed URL
        raise storage_error(url, exc) from None
    return fs, path


def _protocol(url: str) -> str:
    return url.partition("://")[0]


def join(base: str, *parts: str) -> str:
    """``base`` joined with ``/``-separated parts; keeps a URL's protocol."""
    if is_url(base):
        protocol, _, path = base.partition("://")
        return f"{protocol}://" + posixpath.join(path.rstrip("/"), *[p.strip("/") for p in parts if p not in ("", ".")])
    return os.path.join(base, *parts)


def relative_to(url: str, root: str) -> str | None:
    """``url``'s path below ``root`` (``/``-separated), or None when it is not below it."""
    path, base = url.partition("://")[2], root.partition("://")[2].rstrip("/")
    if base and not (path == base or path.startswith(base + "/")):
        return None
    return path[len(base):].lstrip("/") if base else path


def _with_protocol(fs, url: str, path: str) -> str:
    return f"{_protocol(url)}://{fs._strip_protocol(path)}"


def find_files(url: str, suffixes: Iterable[str]) -> tuple[list[str], str]:
    """Files under (or matching) ``url`` whose names end with ``suffixes``, as URLs, and their root.

    Raises
    ------
    InputError
        A missing bucket, file or folder, refused credentials, or nothing matching a pattern.
    """
    fs, path = filesystem(url)
    suffixes = tuple(s.lower() for s in suffixes)
    try:
        if any(c in path for c in "*?["):
            found = [p for p in fs.glob(path) if fs.isfile(p)]
            if not found:
                raise InputError(f"{url}: no file matches")
            root = posixpath.dirname(path.split("*")[0].split("?")[0].split("[")[0].rstrip("/")) or path
        elif fs.isdir(path):
            found, root = fs.find(path), path
        elif fs.isfile(path):
            found, root = [path], posixpath.dirname(path)
        else:
            # Ask once more in a way that says why (a missing bucket, refused credentials), else: not there.
            fs.ls(posixpath.dirname(path.rstrip("/")) or path)
            raise InputError(f"{url}: no such file or folder")
    except InputError:
        raise
    except Exception as exc:
        raise storage_error(url, exc) from None
    files = sorted(_with_protocol(fs, url, p) for p in found if p.lower().endswith(suffixes))
    return files, _with_protocol(fs, url, root)


def stamp(location: str) -> tuple[int, float]:
    """``(size in bytes, modification time)`` of a file, local or remote (what the manifest compares).

    A remote file's figures come from the filesystem's listing cache when it holds one: an archive run has
    just listed its inputs (:func:`find_files`), so the driver sends no request per file.
    """
    if not is_url(location):
        info = os.stat(local_path(location))
        return info.st_size, info.st_mtime
    fs, path = filesystem(location)
    try:
        info = fs.info(path)
    except Exception as exc:
        raise storage_error(location, exc) from None
    for key in ("LastModified", "mtime", "last_modified", "updated", "created"):
        value = info.get(key)
        if isinstance(value, _dt.datetime):
            return int(info.get("size") or 0), value.timestamp()
        if isinstance(value, (int, float)):
            return int(info.get("size") or 0), float(value)
        if isinstance(value, str):
            try:
                return int(info.get("size") or 0), _dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                pass
    return int(info.get("size") or 0), 0.0


def exists(location: str) -> bool:
    """True when the file exists (a fresh look, not a cached listing)."""
    if not is_url(location):
        return os.path.isfile(local_path(location))
    fs, path = filesystem(location)
    try:
        fs.invalidate_cache(path)
        return fs.isfile(path)
    except Exception as exc:
        raise storage_error(location, exc) from None


def read_bytes(location: str) -> bytes:
    """A whole (small) file."""
    if not is_url(location):
        return Path(local_path(location)).read_bytes()
    fs, path = filesystem(location)
    try:
        return fs.cat_file(path)
    except Exception as exc:
        raise storage_error(location, exc) from None


def download_file(url: str, destination: str | os.PathLike) -> Path:
    """Copy a remote file to a local path (its folders made)."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    fs, path = filesystem(url)
    try:
        fs.get_file(path, str(destination))
    except Exception as exc:
        raise storage_error(url, exc) from None
    return destination


def upload_file(source: str | os.PathLike, url: str) -> str:
    """Copy a local file to a URL. An object store shows the object only once it is whole (a PUT or a
    completed multipart upload), so readers never see part of it."""
    fs, path = filesystem(url)
    try:
        fs.put_file(str(source), path)
        fs.invalidate_cache(path)
    except Exception as exc:
        raise storage_error(url, exc) from None
    return url


def upload_tree(folder: str | os.PathLike, url: str, *, last: str = "zarr.json") -> str:
    """Copy a local folder to a URL, files named ``last`` after all others and deepest first.

    For a Zarr v3 group this publishes the chunks, then each array's metadata, then the group's own
    ``zarr.json``: a reader of the store sees the group only once everything in it is there.
    """
    folder = Path(folder)
    files = [p for p in folder.rglob("*") if p.is_file()]
    ordered = sorted(files, key=lambda p: (p.name == last, -len(p.relative_to(folder).parts)))
    for file in ordered:
        upload_file(file, join(url, file.relative_to(folder).as_posix()))
    return url
