"""Run the benchmarks and refresh the README's performance table.

Every ``benchmarks/bench_<area>.py`` exposes ``main(quick: bool = False) -> dict``; it runs its
measurements, writes ``benchmarks/results/<area>.json`` and returns the same dict. A result may
carry ``"readme_rows"``: a list of ``{"benchmark", "figure", "value", "goal", "met"}`` rows
that this runner gathers into the README.md table between the ``<!-- bench:begin -->`` and
``<!-- bench:end -->`` markers, in benchmark-name order.

A benchmark that exposes ``fleet_policies(quick) -> int`` (``controller``, ``metrics``) queries
the emulated fleet and its Prometheus of :mod:`benchmarks.support.fleetenv`, which needs a few
minutes to fill its rate windows before anything is measured. The runner starts that fleet first,
runs the benchmarks that mostly wait or measure their own CPU time (:data:`WHILE_FLEET_WARMS`)
meanwhile, then the fleet's users on the one steady fleet, stops it, and runs the rest (the
CPU-heavy simulations) without it in the background.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.support import fleetenv

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
WHILE_FLEET_WARMS = ("decision", "reaction")
"""Run while the shared fleet warms up: ``reaction`` mostly sleeps (its own Prometheus and
controller at 5 s intervals), ``decision`` measures the CPU time of its own process."""


def _discover() -> list[str]:
    package = Path(__file__).resolve().parent
    return sorted(
        info.name.removeprefix("bench_")
        for info in pkgutil.iter_modules([str(package)])
        if info.name.startswith("bench_")
    )


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| benchmark | figure | measured | goal | met |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        met = row.get("met")
        mark = "yes" if met is True else "no" if met is False else "-"
        lines.append(
            f"| {row.get('benchmark', '')} | {row.get('figure', '')} | {row.get('value', '')} "
            f"| {row.get('goal', '')} | {mark} |"
        )
    return "\n".join(lines)


def _update_readme(rows: list[dict[str, Any]], quick: bool) -> None:
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        return
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    note = (
        "_Quick mode (reduced sizes); run `make bench` for the full figures._\n\n" if quick else ""
    )
    readme.write_text(f"{head}{BEGIN}\n{note}{_table(rows)}\n{END}{tail}", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Run the selected (default: all) benchmarks."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--quick", action="store_true", help="small sizes, under 5 minutes")
    parser.add_argument(
        "--from-results",
        action="store_true",
        help="measure nothing: rebuild the README table from benchmarks/results/*.json",
    )
    parser.add_argument("names", nargs="*", help=f"subset of: {', '.join(_discover())}")
    args = parser.parse_args(argv)
    names = args.names or _discover()
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    failed = []
    if args.from_results:
        for name in names:
            path = RESULTS / f"{name}.json"
            if path.exists():
                rows.extend(json.loads(path.read_text()).get("readme_rows", []))
        _update_readme(rows, quick=False)
        print(_table(rows))
        return 0
    modules = {name: importlib.import_module(f"benchmarks.bench_{name}") for name in names}
    users = [name for name in names if hasattr(modules[name], "fleet_policies")]
    early = [name for name in names if users and name in WHILE_FLEET_WARMS]
    order = early + users + [name for name in names if name not in early + users]
    by_name: dict[str, list[dict[str, Any]]] = {}
    if users:
        policies = max(modules[name].fleet_policies(args.quick) for name in users)
        print(
            f"== starting the shared fleet ({policies} policies) for {', '.join(users)}; "
            f"order: {', '.join(order)}",
            file=sys.stderr,
            flush=True,
        )
        fleetenv.prepare(policies, fleetenv.window(args.quick))
    try:
        for name in order:
            started = time.monotonic()
            print(f"== {name} ...", file=sys.stderr, flush=True)
            try:
                result = modules[name].main(quick=args.quick)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # pytest.fail() from the test harnesses
                print(f"== {name} FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
                failed.append(name)
                continue
            finally:
                if users and name == users[-1]:
                    fleetenv.release()  # before the CPU-heavy benchmarks
            by_name[name] = result.get("readme_rows", [])
            print(f"== {name} done in {time.monotonic() - started:.1f} s", file=sys.stderr)
    finally:
        fleetenv.release()
    rows = [row for name in names for row in by_name.get(name, [])]
    if not args.names:  # a subset must not replace the summary of a full run
        summary = {"quick": args.quick, "rows": rows}
        (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        _update_readme(rows, args.quick)
    print(_table(rows))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
