"""Run every benchmark of issue 16, print the table, write the figures as JSON.

    python benchmarks/run.py [--quick] [--only NAME[,NAME...]] [--json PATH] [--list]

Each figure is graceful against a baseline measured in the same run, interleaved, with the median
and the min-max over repeated rounds (the ratio is taken round by round). Instruction counts
(callgrind) back the micro-benchmarks whose wall time moves with the machine's load. A target
that is missed is printed as MISS with the figure and the target. Not part of the test suite.
The load average at the start and the end says how busy the machine was.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _measure  # noqa: E402
from _measure import Context, Figure, fmt  # noqa: E402

#: In the order of the issue's tables.
MODULES = [
    "bench_import",
    "bench_registry",
    "bench_timeline",
    "bench_children",
    "bench_spawn",
    "bench_guard",
    "bench_sigterm",
    "bench_psycopg",
    "bench_orphans",
    "bench_run",
    "bench_asyncio",
    "bench_idle",
    "bench_sweep",
]


def load(names: list[str]) -> list[Any]:
    import importlib

    return [importlib.import_module(n) for n in names]


def git_revision() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(HERE), "log", "-1", "--format=%h %s"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        dirty = subprocess.run(
            ["git", "-C", str(HERE.parent), "status", "--porcelain", "src"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    rev = out.stdout.strip()[:80]
    return rev + (" (src/ modified)" if dirty.stdout.strip() else "")


def python_version(python: str) -> str:
    out = subprocess.run(
        [python, "-c", "import sys; print(sys.version.split()[0])"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return out.stdout.strip()


def _range(s: Any, unit: str) -> str:
    if s is None:
        return "-"
    return f"{fmt(s.median, unit)} [{fmt(s.low)}-{fmt(s.high)}]"


def _ratio(s: Any) -> str:
    if s is None:
        return "-"
    r = _measure.fmt_ratio
    return f"{r(s.median)} [{r(s.low)[:-1]}-{r(s.high)[:-1]}]"


def _delta(f: Figure) -> str:
    """The difference, where the target is one (import: ``+9.3 ms``)."""
    if f.target is None or f.target.kind != "delta" or f.delta is None:
        return ""
    return f" (d {f.delta.median:+.3g})"


def table(figures: list[Figure]) -> str:
    header = ("benchmark", "figure", "baseline", "baseline value", "graceful", "ratio", "target")
    rows = [header]
    for f in figures:
        if f.unavailable:
            target = f.target.text if f.target else "-"
            rows.append((f.bench, f.name, f.baseline, "-", "N/A", "-", target))
            continue
        delta = _delta(f)
        rows.append(
            (
                f.bench,
                f.name,
                f.baseline,
                _range(f.base, f.unit),
                _range(f.graceful, f.unit) + delta,
                _ratio(f.ratio),
                f.target.text if f.target else "-",
            )
        )
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
    lines = []
    for i, r in enumerate(rows):
        verdict = "verdict" if i == 0 else figures[i - 1].verdict
        cells = [str(c).ljust(w) for c, w in zip(r, widths)]
        lines.append(" | ".join(cells) + " | " + verdict)
        if i == 0:
            lines.append("-+-".join("-" * w for w in widths) + "-+--------")
    return "\n".join(lines)


def markdown(figures: list[Figure]) -> str:
    """The same table in Markdown, for the README."""
    out = [
        "| benchmark | figure | baseline | baseline value | graceful | ratio | target | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for f in figures:
        target = f.target.text if f.target else "-"
        if f.unavailable:
            out.append(f"| {f.bench} | {f.name} | {f.baseline} | - | N/A | - | {target} | N/A |")
            continue
        out.append(
            f"| {f.bench} | {f.name} | {f.baseline} | {_range(f.base, f.unit)} | "
            f"{_range(f.graceful, f.unit)}{_delta(f)} | {_ratio(f.ratio)} | {target} | "
            f"{f.verdict} |"
        )
    return "\n".join(out)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", default=[], help="benchmark name(s) to run")
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    parser.add_argument("--json", default=str(HERE / "results.json"), help="where to write JSON")
    parser.add_argument("--markdown", help="also write the table as Markdown to this file")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument(
        "--render",
        metavar="JSON",
        help="measure nothing: print the table of a saved run (and --markdown it)",
    )
    parser.add_argument(
        "--python", default=sys.executable, help="the interpreter the benchmarks run"
    )
    parser.add_argument(
        "--no-install",
        action="store_true",
        help="never install tini, catatonit or dumb-init; use what is found",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    args.names = {n for item in args.only for n in item.split(",") if n}
    args.error = parser.error
    return args


def describe_machine(args: argparse.Namespace) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "python": python_version(args.python),
        "interpreter": args.python,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "graceful": git_revision(),
        "quick": args.quick,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "loadavg_start": _measure.loadavg(),
        "instruction_counter": (
            "callgrind (valgrind)" if _measure.valgrind() else "none: valgrind not installed"
        ),
        "perf": _measure.perf_instructions_supported(),
    }
    print(
        f"graceful benchmarks: Python {meta['python']} ({args.python}), {meta['cpus']} CPUs, "
        f"graceful at {meta['graceful']}"
    )
    print(
        f"load average at start: {' '.join(f'{x:.2f}' for x in meta['loadavg_start'])}; "
        f"instructions: {meta['instruction_counter']}; {meta['perf']}",
        flush=True,
    )
    return meta


def run_all(
    ctx: Context, chosen: list[Any], meta: dict[str, Any]
) -> tuple[list[Figure], dict[str, str]]:
    """Run the chosen benchmarks; a failing one is reported, the others still run."""
    figures: list[Figure] = []
    errors: dict[str, str] = {}
    timings: dict[str, float] = {}
    try:
        for m in chosen:
            print(f"- {m.NAME}: {m.TITLE}", file=sys.stderr, flush=True)
            t = time.monotonic()
            try:
                figures.extend(m.run(ctx))
            except Exception as exc:
                errors[m.NAME] = f"{type(exc).__name__}: {exc}"
                traceback.print_exc()
                figures.append(
                    _measure.unavailable(m.NAME, m.TITLE, "-", f"failed: {type(exc).__name__}")
                )
            timings[m.NAME] = round(time.monotonic() - t, 1)
            left = ctx.kill_leftovers()
            if left:
                errors[f"{m.NAME}: leftovers"] = f"{len(left)} processes left behind: {left}"
    finally:
        left = ctx.kill_leftovers()
        if left:
            errors["leftovers"] = f"{len(left)} processes left behind: {left}"
        ctx.close()
    meta["loadavg_end"] = _measure.loadavg()
    meta["seconds"] = timings
    meta["notes"] = ctx.notes
    return figures, errors


def report(figures: list[Figure], errors: dict[str, str], meta: dict[str, Any]) -> None:
    print()
    print(table(figures))
    print()
    for f in figures:
        if f.note:
            print(f"note: {f.bench} {f.name}: {f.note}")
    print()
    for f in figures:
        if f.verdict == "MISS":
            print(f.miss_text())
    for f in figures:
        if f.unavailable:
            print(f"N/A: {f.bench} {f.name}: {f.unavailable}")
    for note in meta["notes"]:
        print(f"note: {note}")
    for name, error in errors.items():
        print(f"ERROR: {name}: {error}")
    leftovers = sum(1 for k in errors if k.endswith("leftovers"))
    met = sum(f.verdict == "ok" for f in figures)
    missed = sum(f.verdict == "MISS" for f in figures)
    print(f"targets: {met} met, {missed} missed; processes left behind: {leftovers}")
    print(
        f"load average at end: {' '.join(f'{x:.2f}' for x in meta['loadavg_end'])} "
        f"(start: {' '.join(f'{x:.2f}' for x in meta['loadavg_start'])})"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        saved = json.loads(Path(args.render).read_text())
        figures = [Figure.from_json(d) for d in saved["figures"]]
        print(table(figures))
        if args.markdown:
            Path(args.markdown).write_text(markdown(figures) + "\n")
        return 0
    modules = load(MODULES)
    if args.list:
        for m in modules:
            print(f"{m.NAME:10} {m.TITLE}")
        return 0
    unknown = args.names - {m.NAME for m in modules}
    if unknown:
        args.error(f"unknown benchmark(s): {', '.join(sorted(unknown))} (see --list)")
    chosen = [m for m in modules if not args.names or m.NAME in args.names]
    ctx = Context(
        quick=args.quick, python=args.python, verbose=args.verbose, install=not args.no_install
    )
    meta = describe_machine(args)
    figures, errors = run_all(ctx, chosen, meta)
    report(figures, errors, meta)
    document = {
        "meta": meta,
        "figures": [f.as_json() for f in figures],
        "misses": [f.miss_text() for f in figures if f.verdict == "MISS"],
        "errors": errors,
    }
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1) + "\n")
    print(f"figures written to {path}")
    if args.markdown:
        Path(args.markdown).write_text(markdown(figures) + "\n")
        print(f"Markdown table written to {args.markdown}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
