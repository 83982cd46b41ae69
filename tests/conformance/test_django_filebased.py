"""Django's own cache tests, run on the filesystem backend.

Django's ``FileBasedCacheTests`` (everything in ``BaseCacheTests`` plus the file checks:
foreign files survive ``clear()``, the directory is kept and recreated, 0700
directories, a deleted or empty file is a miss) and the other classes ``make_suite``
runs (middleware, ``cache_page``, ``{% cache %}``, ...) run unchanged on our
``FileBasedCache``, each alias in a temporary directory.

Tests that patch Python's ``open`` or ``time`` inside Django's module cannot see native
I/O. Each is replaced by an equivalent of ours, listed in ``SKIPS`` with where it lives;
``test_touch``, which Django overrides for its file backend to run on a patched clock, is
run in its original form from ``BaseCacheTests`` (real time).
"""

from __future__ import annotations

import tempfile

from tests.conformance.suite import dj, make_suite

BACKEND = "django_nativecache.backends.filebased.FileBasedCache"
ROOT = tempfile.mkdtemp(prefix="nativecache-conformance-")

_PATCHES_OPEN = "patches builtins.open, which native I/O does not call; replaced by {}"
SKIPS: dict[str, dict[str, str]] = {
    "FileBasedCacheTests": {
        "test_get_does_not_ignore_non_filenotfound_exceptions": _PATCHES_OPEN.format(
            "tests/test_file_cache.py::test_read_errors_other_than_a_missing_file_raise"
        ),
        "test_has_key_race_handling": _PATCHES_OPEN.format(
            "tests/test_file_cache.py::test_has_key_after_the_file_vanished"
        ),
    },
}


def location(own: str | None) -> str:
    return f"{ROOT}/{own or 'shared'}"


globals().update(
    make_suite(
        "File",
        BACKEND,
        location,
        module=__name__,
        base_tests=dj.FileBasedCacheTests,
        base_attrs={"test_touch": dj.BaseCacheTests.test_touch},
        skips=SKIPS,
    )
)
