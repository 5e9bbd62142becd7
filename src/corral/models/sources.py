"""Turn a Model's ``spec.source`` into a local file path, without touching the network.

First step of the Model check (:func:`corral.models.inspect_model`): ``file://`` names a file
directly, ``pkg://`` finds a file shipped inside an installed Python package (how the
quickstart model travels), and ``hf://`` is served only from a Hugging Face cache that already
holds the file, because corral never downloads: a hub is not reachable from every machine, and
an artifact that appears by itself would bypass the digest the Model pins.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path, PurePosixPath

from corral.models.errors import (
    ArtifactUnreadable,
    InvalidSource,
    SourceNotFound,
    SourceUnavailable,
)

_PACKAGE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_HF_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_HOW_TO_PROVIDE = (
    "copy the file to this machine and use file:///absolute/path, "
    "or install a Python package that ships it and use pkg://package/path"
)


def resolve_source(source: str) -> Path:
    """The local path of the file ``source`` names; raises an ``ArtifactError`` saying why not."""
    scheme, separator, rest = source.partition("://")
    if not separator:
        raise InvalidSource(f"{source!r}: expected file://, pkg:// or hf:// followed by a location")
    try:
        return _resolve(source, scheme, rest)
    except OSError as error:  # a directory on the way that we may not list, say
        raise ArtifactUnreadable(
            f"{source!r}: cannot look it up: {error.strerror or error} ({error.filename})"
        ) from error


def _resolve(source: str, scheme: str, rest: str) -> Path:
    if scheme == "file":
        return _existing_file(_file_path(source, rest), source)
    if scheme == "pkg":
        return _package_file(source, rest)
    if scheme == "hf":
        return _hub_cache_file(source, rest)
    raise InvalidSource(f"{source!r}: unknown scheme {scheme!r}; use file://, pkg:// or hf://")


def _file_path(source: str, rest: str) -> Path:
    # The path is taken literally (no percent-decoding): manifests are written by hand, and a
    # file name containing '%' must not silently turn into another one.
    if not rest.startswith("/"):
        raise InvalidSource(
            f"{source!r}: a file:// source must be an absolute path, written file:///abs/path "
            f"(three slashes); {rest!r} is relative"
        )
    return Path(rest)


def _existing_file(path: Path, source: str) -> Path:
    if path.is_dir():
        raise ArtifactUnreadable(f"{source!r}: {path} is a directory, not a model file")
    if not path.exists():
        raise SourceNotFound(f"{source!r}: no file at {path}")
    return path


def _relative_parts(source: str, inner: str, what: str) -> tuple[str, ...]:
    parts = PurePosixPath(inner).parts
    if not inner or inner.startswith("/") or not parts:
        raise InvalidSource(f"{source!r}: missing the {what} after the name")
    if ".." in parts or "\\" in inner:
        raise InvalidSource(f"{source!r}: the {what} must stay inside, without '..' or '\\'")
    return parts


def _package_file(source: str, rest: str) -> Path:
    package, _, inner = rest.partition("/")
    if not _PACKAGE_NAME.match(package):
        raise InvalidSource(
            f"{source!r}: {package!r} is not a Python package name; write pkg://package/path"
        )
    parts = _relative_parts(source, inner, "path inside the package")
    # find_spec locates a top-level package without importing it, so a package that ships
    # only weights (or pulls in heavy modules on import) costs nothing; for a dotted name
    # Python must import the parent packages to find the child.
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError) as error:
        raise SourceNotFound(
            f"{source!r}: Python package {package!r} cannot be found: {error}"
        ) from error
    if spec is None:
        raise SourceNotFound(
            f"{source!r}: Python package {package!r} is not installed in this environment, "
            f"so it has no file {'/'.join(parts)!r}; install it (pip install ...) or use file://"
        )
    locations = list(spec.submodule_search_locations or [])
    if not locations:
        raise InvalidSource(f"{source!r}: {package!r} is a module, not a package with files")
    for location in locations:
        candidate = Path(location).joinpath(*parts)
        if candidate.is_file():
            return candidate
    looked_in = ", ".join(str(Path(location)) for location in locations)
    raise SourceNotFound(
        f"{source!r}: Python package {package!r} is installed but has no file "
        f"{'/'.join(parts)!r} (looked in {looked_in})"
    )


def _hub_cache_dir() -> Path:
    """Where huggingface_hub keeps downloads, honouring the same environment variables it does."""
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if value := os.environ.get(variable):
            return Path(value).expanduser()
    if hf_home := os.environ.get("HF_HOME"):
        return Path(hf_home).expanduser() / "hub"
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_home).expanduser() / "huggingface" / "hub"


def _hub_cache_file(source: str, rest: str) -> Path:
    org, _, after_org = rest.partition("/")
    repo, _, inner = after_org.partition("/")
    if not (_HF_NAME.match(org) and _HF_NAME.match(repo)):
        raise InvalidSource(f"{source!r}: expected hf://org/repo/path/to/file")
    parts = _relative_parts(source, inner, "file path inside the repository")
    cache = _hub_cache_dir()
    repo_dir = cache / f"models--{org}--{repo}"
    incomplete: list[Path] = []
    for snapshot in _snapshots_newest_first(repo_dir):
        candidate = snapshot.joinpath(*parts)
        if candidate.is_file():
            return candidate
        if candidate.is_symlink():
            incomplete.append(candidate)
    detail = (
        f"the cache entry {incomplete[0]} points at a blob that is missing (interrupted download)"
        if incomplete
        else f"it is not in the local Hugging Face cache ({repo_dir})"
    )
    raise SourceUnavailable(
        f"{source!r}: {detail}, and corral does not download from the hub (none is reachable "
        f"from here); {_HOW_TO_PROVIDE}"
    )


def _snapshots_newest_first(repo_dir: Path) -> list[Path]:
    snapshots_dir = repo_dir / "snapshots"
    if not snapshots_dir.is_dir():
        return []
    snapshots = sorted(
        (entry for entry in snapshots_dir.iterdir() if entry.is_dir()),
        key=lambda entry: entry.stat().st_mtime_ns,
        reverse=True,
    )
    # refs/main names the revision huggingface_hub would serve; look there first.
    main_ref = repo_dir / "refs" / "main"
    if main_ref.is_file():
        commit = main_ref.read_text(encoding="utf-8").strip()
        snapshots.sort(key=lambda entry: entry.name != commit)
    return snapshots
