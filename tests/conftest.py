"""Shared pytest configuration.

pytest-django loads ``tests.settings`` (``DJANGO_SETTINGS_MODULE`` in pyproject.toml)
and sets Django up before this file is read; the hook below is the fallback when
pytest runs without that configuration.
"""

from __future__ import annotations

import os
import sys
import warnings

import pytest


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("DJANGO_SETTINGS_MODULE"):
        return
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    from django.conf import settings

    # Loading the settings fetches Django's cache tests and puts them on sys.path;
    # pytest-django's own pytest_configure (trylast) then calls django.setup().
    settings.INSTALLED_APPS  # noqa: B018


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove the shared-memory segments this process attached.

    Test LOCATIONs carry the pytest process id, so these segments belong to this run
    alone and would otherwise stay in /dev/shm until reboot.
    """
    shm = sys.modules.get("django_nativecache.backends.shm")
    if shm is None:
        return
    for name in shm.attached_segments():
        try:
            shm.unlink(name)
        except Exception as exc:  # a leftover segment must not fail the run
            warnings.warn(f"could not remove shared-memory segment {name}: {exc}", stacklevel=1)


# --- memcached servers ---------------------------------------------------------------


@pytest.fixture(autouse=True)
def _memcached_clients_of_the_test_only():
    """Each test starts without the memcached clients earlier tests kept (their
    connections and the servers they skip)."""
    yield
    from django_nativecache.backends import memcached

    memcached._recent.clear()


@pytest.fixture
def memcached_server():
    """A private memcached on a free loopback port, stopped after the test."""
    from tests.mcserver import MemcachedServer

    server = MemcachedServer().start()
    yield server
    server.cleanup()


@pytest.fixture(scope="module")
def memcached_module():
    """A memcached shared by the tests of one module."""
    from tests.mcserver import MemcachedServer

    server = MemcachedServer(extra=("-t", "4")).start()
    yield server
    server.cleanup()


@pytest.fixture
def memcached_factory():
    """Starts private memcached servers on demand: ``memcached_factory(unix=..., ...)``."""
    from tests.mcserver import MemcachedServer

    started: list[MemcachedServer] = []

    def start(**kwargs):
        server = MemcachedServer(**kwargs).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.cleanup()
