"""Machine description and the RESULTS.md file: one section per group, replaced in place."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import shlex
import subprocess
import sys
from pathlib import Path

HEADER = """# Benchmark results

Every figure below comes from one run of `benchmarks/run.py` in which all subjects of a group
were measured side by side, interleaved round by round. The machine is shared and noisy, so
read the ratios between subjects of the same section; absolute times are only indicative.
Each section is replaced when its group is run again.
"""

_START = "<!-- group:{name}:start -->"
_END = "<!-- group:{name}:end -->"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def nproc() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def git_revision(root: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        rev = out.stdout.strip()
        if out.returncode != 0 or not rev:
            return "none"
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return rev + ("+changes" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine_lines(root: Path, command: str) -> list[str]:
    import django

    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return [
        f"- date: {now}",
        f"- machine: {nproc()} CPUs, {cpu_model()}, {platform.system()} {platform.release()}",
        f"- Python {platform.python_version()} ({platform.python_implementation()}), "
        f"Django {django.get_version()}",
        f"- revision: {git_revision(root)}",
        f"- command: `{command}`",
    ]


def command_line() -> str:
    args = sys.argv[1:]
    return " ".join(["python", "-m", "benchmarks.run", *map(shlex.quote, args)])


def update_results(path: Path, group: str, body: str) -> None:
    """Write ``body`` as the section for ``group``, keeping the other groups' sections."""
    start, end = _START.format(name=group), _END.format(name=group)
    section = f"{start}\n{body.rstrip()}\n{end}\n"
    text = path.read_text(encoding="utf-8") if path.exists() else HEADER
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end) + r"\n?", re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text, count=1)
    else:
        text = text.rstrip() + "\n\n" + section
    path.write_text(text, encoding="utf-8")
