"""The demo's deliberate cost (django_nativecache.demo.work): what each kind spends."""

from __future__ import annotations

import asyncio
import time

import pytest

from django_nativecache.demo import work

COST_MS = 30


@pytest.fixture
def log(tmp_path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "work.log"
    monkeypatch.setenv("DEMO_WORK_LOG", str(path))
    monkeypatch.setenv("DEMO_COST_MS", str(COST_MS))
    return path


def _spent(fn) -> tuple[float, float, str]:
    """(wall seconds, this thread's CPU seconds, result) of fn()."""
    wall, cpu = time.monotonic(), time.thread_time()
    result = fn()
    return time.monotonic() - wall, time.thread_time() - cpu, result


@pytest.mark.parametrize("async_", [False, True])
def test_a_wait_takes_the_time_and_leaves_the_cpu(log, monkeypatch, async_: bool) -> None:
    monkeypatch.delenv("DEMO_COST_KIND", raising=False)  # the default
    fn = (lambda: asyncio.run(work.acompute("w"))) if async_ else (lambda: work.compute("w"))
    wall, cpu, text = _spent(fn)
    assert wall >= COST_MS / 1000
    assert cpu < COST_MS / 1000 / 2
    assert text.startswith("w, computed by pid")
    assert [what for _, what in work.read_log(str(log))] == ["w"]


@pytest.mark.parametrize("async_", [False, True])
def test_cpu_spends_the_cost_on_this_thread(log, monkeypatch, async_: bool) -> None:
    monkeypatch.setenv("DEMO_COST_KIND", "cpu")
    fn = (lambda: asyncio.run(work.acompute("c"))) if async_ else (lambda: work.compute("c"))
    wall, cpu, _ = _spent(fn)
    assert cpu >= COST_MS / 1000
    assert wall >= COST_MS / 1000
    assert [what for _, what in work.read_log(str(log))] == ["c"]


def test_an_unknown_kind_is_refused_and_nothing_is_logged(log, monkeypatch) -> None:
    monkeypatch.setenv("DEMO_COST_KIND", "gpu")
    with pytest.raises(ValueError, match="DEMO_COST_KIND must be one of wait, cpu, not 'gpu'"):
        work.compute("x")
    assert work.read_log(str(log)) == []


def test_the_sites_environment_names_its_cost_kind_whatever_the_callers_says(
    monkeypatch, tmp_path
) -> None:
    from django_nativecache.demo.run import site_env

    monkeypatch.setenv("DEMO_COST_KIND", "cpu")  # exported in the shell that runs a group
    assert site_env("shm", str(tmp_path), None, 5)["DEMO_COST_KIND"] == "wait"
    assert site_env("shm", str(tmp_path), None, 5, cost_kind="cpu")["DEMO_COST_KIND"] == "cpu"
