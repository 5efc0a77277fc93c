"""Run gitstore's benchmark suite: ``python bench/run.py [--quick] [--case NAME]``.

Prints a table of medians (gitstore next to baselines measured in the same
run, and their ratio) to stdout, progress to stderr, and writes the full
results with machine information as JSON. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` and `gitstore` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from bench.cases import CASES

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"
HEADERS = ("case", "size", "measure", "gitstore", "baseline", "baseline value", "ratio",
           "target", "met")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python bench/run.py", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="every case at small sizes (a smoke run, well under a minute)")
    p.add_argument("--runs", type=int, default=None,
                   help="timed runs per measurement; the median is reported (default 5, "
                        "quick 3)")
    p.add_argument("--case", action="append", choices=sorted(CASES), metavar="NAME",
                   help=f"run only this case (repeatable): {', '.join(CASES)}")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, metavar="PATH",
                   help="where to write the JSON results (default bench/results/latest.json)")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    p.add_argument("--profile", action="store_true",
                   help="append case: also cProfile one append at the largest history")
    p.add_argument("--no-fsync", dest="fsync", action="store_false",
                   help="turn fsync off for gitstore and every baseline (not the default)")
    p.add_argument("--tmp", type=Path, default=None, metavar="DIR",
                   help="scratch directory (default: the system's; fsync cost depends on it)")
    p.add_argument("--keep", action="store_true", help="keep the scratch repositories")
    args = p.parse_args(argv)
    if args.runs is None:
        args.runs = 3 if args.quick else 5
    if args.runs < 1:
        p.error("--runs must be at least 1")
    return args


def _cells(row: common.Row) -> list[str]:
    ratio = "-" if row.ratio is None else f"{row.ratio:.2f}"
    met = "" if row.ok is None else ("yes" if row.ok else "NO")
    return [row.case, row.size, row.measure, common.fmt_value(row.gitstore, row.unit),
            row.baseline, common.fmt_value(row.baseline_value, row.unit), ratio, row.target, met]


def render_table(results: list[common.CaseResult], markdown: bool) -> str:
    rows = [list(HEADERS)]
    for res in results:
        if res.error is not None:
            rows.append([res.name, "", "FAILED", "", "", "", "", "", res.error.splitlines()[-1]])
        rows.extend(_cells(r) for r in res.rows)
    lines = []
    if markdown:
        lines.append("| " + " | ".join(rows[0]) + " |")
        lines.append("|" + "|".join("---:" if h in ("gitstore", "baseline value", "ratio")
                                    else "---" for h in rows[0]) + "|")
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |"
                  for row in rows[1:]]
    else:
        widths = [max(len(row[i]) for row in rows) for i in range(len(HEADERS))]
        for n, row in enumerate(rows):
            lines.append("  ".join(c.rjust(w) if HEADERS[i] in ("gitstore", "baseline value",
                                                                "ratio") else c.ljust(w)
                                   for i, (c, w) in enumerate(zip(row, widths, strict=True)))
                         .rstrip())
            if n == 0:
                lines.append("  ".join("-" * w for w in widths))
    notes = [f"{res.name}: {text}" for res in results for text in res.notes]
    notes += [f"{r.case} {r.size} {r.measure}: {r.note}" for res in results for r in res.rows
              if r.note]
    notes = list(dict.fromkeys(notes))
    if notes:
        lines.append("")
        lines += [("- " if markdown else "* ") + text for text in notes]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tmp_root = args.tmp or Path(tempfile.gettempdir())
    tmp_root.mkdir(parents=True, exist_ok=True)
    ctx = common.Context(quick=args.quick, runs=args.runs, tmp_root=tmp_root, keep=args.keep,
                         fsync=args.fsync, profile=args.profile)
    machine = common.machine_info(tmp_root)
    common.log(f"machine: {machine['cpu_count']} cpus, load {machine['load_average']}, "
               f"python {machine['python']}, pygit2 {machine['pygit2']} (libgit2 "
               f"{machine['libgit2']}), {machine['git']}, scratch on {machine['tmp_filesystem']}")
    names = args.case or list(CASES)
    results: list[common.CaseResult] = []
    started = time.monotonic()
    for name in names:
        module = CASES[name]
        common.log(f"== {name}: {module.TITLE}")
        t0 = time.monotonic()
        try:
            res = module.run(ctx)
        except Exception as exc:
            res = common.CaseResult(name)
            res.error = f"{type(exc).__name__}: {exc}"
            common.log(f"{name} FAILED:\n{traceback.format_exc()}")
        finally:
            ctx.cleanup()
        res.seconds = time.monotonic() - t0
        for text in res.checks:
            common.log(f"{name}: verified: {text}")
        common.log(f"{name}: done in {res.seconds:.1f} s")
        results.append(res)
    total = time.monotonic() - started
    print(render_table(results, args.markdown))
    report = {
        "format": "gitstore-bench", "format_version": 1,
        "machine": machine,
        "settings": {"quick": args.quick, "runs": args.runs, "fsync": args.fsync,
                     "cases": names, "statistic": "median"},
        "seconds": round(total, 1),
        "cases": {res.name: res.to_json() for res in results},
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n",
                         encoding="utf-8")
    common.log(f"all done in {total:.1f} s; results in {args.json}")
    return 1 if any(res.error for res in results) else 0


if __name__ == "__main__":
    sys.exit(main())
