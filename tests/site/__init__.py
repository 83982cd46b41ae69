"""A small site for tests/test_site.py: views that count their own executions, so a
test tells a response served from the cache (the count did not move) from one the view
computed again."""

from __future__ import annotations

from pathlib import Path

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
