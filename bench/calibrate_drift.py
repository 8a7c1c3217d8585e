"""Measures the drift check's detection and false-alarm rates on seeded generated data (issue #4's bar).

Scenarios (``tests/monitoring/calibration.py``), each trial with a fresh baseline and a fresh current sample
from ``tests/monitoring/synthetic.py``:

* a 10% higher mean of one numeric feature, two ways: ``×1.1`` (every value 10% larger; zeros stay zero)
  and ``+10%`` (10% of the mean added to every value; counts stay integers by random rounding);
* a 5-percentage-point change of one category's share (+5 and -5 for every category);
* a fresh same-distribution sample, through the full run (every feature and the prediction, ``decide``).

Detection uses the vectorised metric code (``monitoring.drift``), not TFDV, which the decision does not use.
Prints a Markdown table; ``--json`` also writes the rates. Run with the monitoring environment, e.g.
``nice -n 5 .venv-monitoring/bin/python bench/calibrate_drift.py --trials 100``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _sizes(text: str) -> list[tuple[int, int]]:
    """``"1000,10000,10000:100000"`` → ``[(1000, 1000), (10000, 10000), (10000, 100000)]`` (current:baseline)."""
    out = []
    for item in filter(None, text.split(",")):  # "" = none
        current, _, baseline = item.partition(":")
        out.append((int(current), int(baseline or current)))
    return out


def _label(n: int, n_base: int) -> str:
    def k(x: int) -> str:
        return f"{x // 1000}k" if x % 1000 == 0 else str(x)
    return k(n) if n == n_base else f"{k(n)} vs {k(n_base)} baseline"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="sizes are current[:baseline] rows; the baseline defaults to the "
                                            "same number of rows")
    parser.add_argument("--trials", type=int, default=100, help="seeded trials per cell (default: %(default)s)")
    parser.add_argument("--detect-sizes", type=_sizes, default=_sizes("1000,10000,100000"),
                        help="sizes for the numeric detection columns (default: 1000,10000,100000)")
    parser.add_argument("--category-sizes", type=_sizes, default=_sizes("10000"),
                        help="sizes for the category-share detection (default: 10000)")
    parser.add_argument("--alarm-sizes", type=_sizes, default=_sizes("1000,10000,100000"),
                        help="sizes for the false-alarm runs (default: 1000,10000,100000)")
    parser.add_argument("--alarm-trials", type=int, default=None,
                        help="seeded runs per false-alarm size (default: --trials); a rate near 1%% needs "
                             "several hundred runs to be known")
    parser.add_argument("--control-sizes", type=_sizes, default=_sizes("10000"),
                        help="sizes for the rounding control: same-distribution runs whose numbers went through "
                             "float32 and pandas to_json (default: 10000; empty: none)")
    parser.add_argument("--false-alarm-rate", type=float, default=None,
                        help="the policy's run-level false-alarm budget (default: DriftPolicy's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the trials (default: %(default)s)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rates to this JSON file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the scenarios and prints the Markdown tables."""
    args = build_parser().parse_args(argv)
    import numpy as np

    from monitoring.drift import DriftPolicy
    from tests.monitoring.calibration import (
        CATEGORIES,
        SCHEMA,
        categorical_detection,
        control_runs,
        false_alarms,
        numeric_detection,
    )

    policy = DriftPolicy() if args.false_alarm_rate is None else DriftPolicy(false_alarm_rate=args.false_alarm_rate)
    started = time.perf_counter()
    modes = (("scale", "×1.1"), ("location", "+10%"))
    detect: dict[str, dict[str, float]] = {}
    for n, n_base in args.detect_sizes:
        ratios = numeric_detection(n, args.trials, policy=policy, seed=args.seed, modes=[m for m, _ in modes],
                                   baseline_rows=n_base)
        for (mode, name), values in ratios.items():
            label = dict(modes)[mode]
            detect.setdefault(name, {})[f"{label}, {_label(n, n_base)}"] = float(np.mean(np.array(values) > 1.0))
        print(f"# numeric detection at {_label(n, n_base)} done ({time.perf_counter() - started:.0f}s)",
              file=sys.stderr, flush=True)
    cats: dict[str, dict[str, float]] = {}
    for n, n_base in args.category_sizes:
        cat_ratios = categorical_detection(n, args.trials, policy=policy, seed=args.seed)
        for (name, _, _), values in cat_ratios.items():
            rate = float(np.mean(np.array(values) > 1.0))
            cell = cats.setdefault(name, {})
            cell[_label(n, n_base)] = min(rate, cell.get(_label(n, n_base), 1.0))
        print(f"# category detection at {_label(n, n_base)} done ({time.perf_counter() - started:.0f}s)",
              file=sys.stderr, flush=True)
    alarms: dict[str, dict] = {}
    for n, n_base in args.alarm_sizes:
        runs = false_alarms(n, args.alarm_trials or args.trials, policy=policy, seed=args.seed, baseline_rows=n_base)
        alarms[_label(n, n_base)] = {"runs": len(runs), "flagged": sum(bool(r) for r in runs),
                                     "features": sorted({f for r in runs for f in r})}
        print(f"# false alarms at {_label(n, n_base)} done ({time.perf_counter() - started:.0f}s)",
              file=sys.stderr, flush=True)

    control: dict[str, dict] = {}
    for n, n_base in args.control_sizes:
        rounded = control_runs(n, args.alarm_trials or args.trials, policy=policy, seed=args.seed,
                               baseline_rows=n_base)
        control[_label(n, n_base)] = {
            writer: {"runs": len(rounded), "flagged": sum(bool(r[writer]) for r in rounded),
                     "differs_from_exact": sum(r[writer] != r["exact"] for r in rounded),
                     "features": sorted({f for r in rounded for f in r[writer]})} for writer in rounded[0]} \
            if rounded else {}
        print(f"# rounding control at {_label(n, n_base)} done ({time.perf_counter() - started:.0f}s)",
              file=sys.stderr, flush=True)

    columns = list(next(iter(detect.values()))) if detect else []
    if columns:
        print(f"Numeric features, mean 10% higher: share of {args.trials} seeded trials flagged "
              f"(false_alarm_rate {policy.false_alarm_rate}).\n")
        print("| feature | " + " | ".join(columns) + " |")
        print("|---|" + "---|" * len(columns))
        for name in SCHEMA.numeric:
            print(f"| {name} | " + " | ".join(f"{detect[name][c]:.0%}" for c in columns) + " |")
    if cats:
        sizes = list(next(iter(cats.values())))
        print(f"\nCategory shares ±5 points: lowest detection over each feature's categories and both "
              f"directions, {args.trials} trials.\n")
        print("| feature | " + " | ".join(sizes) + " |")
        print("|---|" + "---|" * len(sizes))
        for name in CATEGORIES:
            print(f"| {name} | " + " | ".join(f"{cats[name][s]:.0%}" for s in sizes) + " |")
    if alarms:
        print(f"\nFalse alarms: full runs (26 features + the prediction) on fresh same-distribution samples "
              f"(false_alarm_rate {policy.false_alarm_rate}).\n")
        print("| rows | runs flagging anything | features flagged |")
        print("|---|---|---|")
        for label, a in alarms.items():
            print(f"| {label} | {a['flagged']}/{a['runs']} | {', '.join(a['features']) or '—'} |")
    if control:
        print("\nRounding control: same-distribution runs (26 features, 3 tied extra columns, the prediction) with "
              "the current numbers exact and written through float32 / pandas to_json.\n")
        print("| rows | numbers | runs flagging anything | decision differs from exact | features flagged |")
        print("|---|---|---|---|---|")
        for label, writers in control.items():
            for writer, c in writers.items():
                print(f"| {label} | {writer} | {c['flagged']}/{c['runs']} | {c['differs_from_exact']} | "
                      f"{', '.join(c['features']) or '—'} |")
    print(f"\n{time.perf_counter() - started:.0f}s", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps({"trials": args.trials, "policy": policy.to_dict(), "detection": detect,
                                         "categories": cats, "false_alarms": alarms, "rounding_control": control},
                                        indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
