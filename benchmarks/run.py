"""Run benchmark groups and record them in benchmarks/RESULTS.md.

From the repository root:

    python -m benchmarks.run                  # every group, full length
    python -m benchmarks.run --group shm      # one group (repeat --group for more)
    python -m benchmarks.run --quick          # short smoke run, printed but not recorded
    python benchmarks/run.py --list           # the groups, registered and planned

Each group measures its subjects side by side in one process tree and reports ratios between
them; see benchmarks/groups/__init__.py for how groups are written and registered.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(ROOT))

from benchmarks import harness, report  # noqa: E402
from benchmarks.groups import Context, PLANNED, load_all  # noqa: E402

DEFAULT_OUT = ROOT / "benchmarks" / "RESULTS.md"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    p.add_argument(
        "--group",
        action="append",
        metavar="NAME",
        help="run only this group (repeatable, or comma-separated); default: all",
    )
    p.add_argument("--quick", action="store_true", help="few iterations, for smoke tests")
    p.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help=f"results file to update (default {DEFAULT_OUT.relative_to(ROOT)}; "
        "--quick runs are only written when --out is given)",
    )
    p.add_argument("--no-write", action="store_true", help="print only, write no results file")
    p.add_argument("--list", action="store_true", help="list groups and exit")
    p.add_argument("--rounds", type=int, help="interleaved latency rounds (default 7, quick 3)")
    p.add_argument(
        "-n",
        type=int,
        help="calls per latency measurement (default 100000, or the group's own; quick: a tenth)",
    )
    p.add_argument(
        "--stat",
        choices=("median", "min"),
        default="median",
        help="how the rounds are summarised (default median)",
    )
    p.add_argument("--duration", type=float, help="seconds per throughput run (default 2)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    groups = load_all()
    if args.list:
        for name, g in groups.items():
            print(f"{name:10} {g.summary}")
        for name, summary in PLANNED.items():
            print(f"{name:10} (planned) {summary}")
        return 0

    wanted = [n.strip() for arg in (args.group or []) for n in arg.split(",") if n.strip()]
    wanted = wanted or list(groups)
    unknown = [n for n in wanted if n not in groups]
    if unknown:
        planned = [n for n in unknown if n in PLANNED]
        print(
            f"unknown group(s): {', '.join(unknown)}"
            + (f" ({', '.join(planned)} not written yet)" if planned else "")
            + f"; available: {', '.join(groups)}",
            file=sys.stderr,
        )
        return 2

    extra: dict = {}
    for n in wanted:
        for key, value in groups[n].settings.items():
            if isinstance(value, dict):
                extra.setdefault(key, {}).update(value)
            else:
                extra[key] = value
    harness.configure_django(extra)

    out: Path | None = None
    if not args.no_write and (args.out or not args.quick):
        out = args.out or DEFAULT_OUT
    command = report.command_line()
    failed = 0
    for name in wanted:
        g = groups[name]
        full_n = g.n or 100_000
        ctx = Context(
            quick=args.quick,
            rounds=args.rounds or (3 if args.quick else g.rounds or 7),
            n=args.n or (max(1, full_n // 10) if args.quick else full_n),
            stat=args.stat,
            duration=args.duration or (0.3 if args.quick else 2.0),
            out_dir=None if out is None else out.parent,
        )
        print(f"== {name}: {g.summary}", flush=True)
        t0 = time.monotonic()
        try:
            with ctx.stack:
                body = g.run(ctx)
        except Exception:
            failed += 1
            traceback.print_exc()
            print(f"== {name} failed", file=sys.stderr)
            continue
        lines = [f"## {name}: {g.summary}", "", *report.machine_lines(ROOT, command), "", body]
        section = "\n".join(lines)
        print()
        print(section)
        print(f"({name} took {time.monotonic() - t0:.0f} s)", flush=True)
        if out is not None:
            report.update_results(out, name, section)
            print(f"updated {out}")
    if out is None:
        print("results not written (--quick without --out, or --no-write)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
