"""Fetch Django's own cache tests for the installed Django version.

Django's ``tests/`` tree is not installed with Django, but its source distribution
carries it. ``ensure()`` downloads that sdist with pip (once per Django version),
extracts the ``cache`` package and the few ``template_tests`` modules the
``{% cache %}`` tests need into ``build/django-tests/`` at the repository root,
and puts that directory on ``sys.path`` so they import as top-level packages
(``cache``, ``template_tests``), as they do under Django's own runner.

The extracted tree is never part of the repository (``build/`` is ignored, and the
directory carries its own ``.gitignore``). Set ``NATIVECACHE_DJANGO_TESTS=0`` to
never download (the conformance suite is then skipped unless already fetched), or
``NATIVECACHE_DJANGO_TESTS_DIR`` to use another directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import django

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_DIR = REPO_ROOT / "build"
DEFAULT_DEST = BUILD_DIR / "django-tests"
MARKER = ".django-version"

# Paths inside the sdist's tests/ directory. A trailing slash copies a whole package.
WANTED = (
    "cache/",
    "template_tests/__init__.py",
    "template_tests/utils.py",
    "template_tests/templatetags/__init__.py",
    "template_tests/templatetags/custom.py",
    "template_tests/syntax_tests/__init__.py",
    "template_tests/syntax_tests/test_cache.py",
)
# Files whose presence shows a complete extraction.
REQUIRED = (
    "cache/__init__.py",
    "cache/tests.py",
    "cache/models.py",
    *(w for w in WANTED if not w.endswith("/")),
)

DOWNLOAD_TIMEOUT = 600

_state: dict[str, Path | None] = {}


def destination() -> Path:
    return Path(os.environ.get("NATIVECACHE_DJANGO_TESTS_DIR") or DEFAULT_DEST)


def django_version() -> str:
    return django.__version__


def is_ready(dest: Path | None = None) -> bool:
    """True if ``dest`` holds a complete extraction for the installed Django."""
    dest = dest or destination()
    marker = dest / MARKER
    try:
        if marker.read_text().strip() != django_version():
            return False
    except OSError:
        return False
    return all((dest / rel).is_file() for rel in REQUIRED)


def downloads_allowed() -> bool:
    return os.environ.get("NATIVECACHE_DJANGO_TESTS", "1").lower() not in {"0", "no", "false", "off"}


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise concurrent fetches (e.g. several pytest-xdist workers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _find_sdist(directory: Path, version: str) -> Path | None:
    for name in (f"django-{version}.tar.gz", f"Django-{version}.tar.gz"):
        candidate = directory / name
        if candidate.is_file():
            return candidate
    return None


def _download_sdist(directory: Path, version: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    found = _find_sdist(directory, version)
    if found:
        return found
    cmd = [
        sys.executable, "-m", "pip", "download",
        "--no-deps", "--no-binary", ":all:", "--disable-pip-version-check",
        "--dest", str(directory),
        f"Django=={version}",
    ]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT, check=False
    )
    found = _find_sdist(directory, version)
    if proc.returncode != 0 or found is None:
        raise RuntimeError(
            f"could not download the Django {version} sdist "
            f"(exit {proc.returncode}): {proc.stderr.strip()[-2000:]}"
        )
    return found


def _wanted(relative: str) -> bool:
    return any(
        relative.startswith(w) if w.endswith("/") else relative == w for w in WANTED
    )


def _extract(sdist: Path, dest: Path, version: str) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=".django-tests-", dir=dest.parent))
    tmp.chmod(0o755)
    try:
        with tarfile.open(sdist) as tar:
            for member in tar.getmembers():
                parts = member.name.split("/", 2)
                # <django-x.y.z>/tests/<relative>
                if len(parts) < 3 or parts[1] != "tests" or not member.isfile():
                    continue
                relative = parts[2]
                if not _wanted(relative) or ".." in relative.split("/"):
                    continue
                target = tmp / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None
                with source, open(target, "wb") as out:
                    shutil.copyfileobj(source, out)
        missing = [rel for rel in REQUIRED if not (tmp / rel).is_file()]
        if missing:
            raise RuntimeError(f"{sdist.name} lacks {', '.join(missing)}")
        (tmp / ".gitignore").write_text("*\n")
        (tmp / MARKER).write_text(version + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def fetch(dest: Path | None = None) -> Path:
    """Make ``dest`` hold Django's cache tests for the installed version; return it."""
    dest = dest or destination()
    if is_ready(dest):
        return dest
    version = django_version()
    with _locked(dest.parent / ".django-tests.lock"):
        if is_ready(dest):
            return dest
        sdist = _download_sdist(dest.parent / "sdist", version)
        _extract(sdist, dest, version)
    return dest


def ensure() -> Path | None:
    """Fetch if needed and allowed, put the tests on ``sys.path``; None if unavailable.

    Never raises: a failed download leaves the conformance suite skipped with a
    warning, and the rest of the test suite runs.
    """
    if "dest" in _state:
        return _state["dest"]
    dest: Path | None = destination()
    assert dest is not None
    try:
        if not is_ready(dest):
            if downloads_allowed():
                fetch(dest)
            else:
                dest = None
    except Exception as exc:  # network, pip or archive trouble
        warnings.warn(f"Django's cache tests are unavailable: {exc}", stacklevel=2)
        dest = None
    if dest is not None and str(dest) not in sys.path:
        sys.path.insert(0, str(dest))
    _state["dest"] = dest
    return dest


def available() -> bool:
    return _state.get("dest") is not None
