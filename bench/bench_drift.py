"""Benchmark: the nightly drift check on 1M logged predictions with all features.

Generates (or reuses) a baseline ``train.csv`` and a prediction log of ``--rows`` rows each with every
feature of the pipeline's schema (``tests/monitoring/synthetic.py``: the same column kinds and shapes as
the real features; a drift is injected so the whole path runs: decision, report, trigger record). Then
runs the real command in a child process, as ``make drift`` would (``--trigger none``), and reports:

* TensorFlow/TFDV import time, separately (a fixed cost of every run, whatever the data size);
* the check itself: reading both files, the drift metrics, TFDV statistics of both sides and schema
  validation, and writing the summary, statistics JSON and HTML report;
* the child's peak RSS (``os.wait4``).

Targets: the check (TF import excluded) ≤ 60 s and peak RSS ≤ 8 GB. Prints PASS/FAIL against each and
writes ``bench/results/drift-<time>.json``. Run with the monitoring environment:
``.venv-monitoring/bin/python bench/bench_drift.py --help`` (or ``make bench-drift``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "bench" / "results"
TIME_TARGET_S = 60.0
RSS_TARGET_GB = 8.0
GB = 1e9

CHILD = r"""
import json, sys, time
started = time.perf_counter()
from monitoring import drift_check
drift_check.import_tfdv()
imported = time.perf_counter()
args = drift_check.build_parser().parse_args(sys.argv[2:])
config = drift_check.CheckConfig(baseline=args.baseline, current=args.current, output_dir=args.output_dir,
                                 baseline_predictions=args.baseline_predictions, date=args.date,
                                 policy=drift_check._policy(args), trigger=drift_check._trigger(args))
result = drift_check.run_check(config)
drift_check.print_result(result)
done = time.perf_counter()
with open(sys.argv[1], "w") as fh:
    json.dump({"exit_code": result.exit_code, "tf_import_s": imported - started, "check_s": done - imported,
               "steps": result.timings}, fh)
"""


def make_data(rows: int, baseline_rows: int, folder: Path, seed: int) -> dict[str, Path]:
    """Writes (once) ``train.csv``, ``feature_schema.json``, ``train_scores.csv`` and ``v1_outputs.csv``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    sys.path.insert(0, str(ROOT))
    from tests.monitoring.calibration import shift_category, shift_feature
    from tests.monitoring.synthetic import churn_probability, feature_schema, generate, prediction_log

    paths = {"baseline": folder / "train.csv", "schema": folder / "feature_schema.json",
             "scores": folder / "train_scores.csv", "current": folder / "v1_outputs.csv"}
    if all(p.is_file() for p in paths.values()):
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    base = generate(baseline_rows, seed=seed)
    feature_schema().save(paths["schema"])
    pacsv.write_csv(pa.Table.from_pandas(base, preserve_index=False), paths["baseline"])
    pacsv.write_csv(pa.table({"churn_probability": churn_probability(base)}), paths["scores"])
    del base
    rng = np.random.default_rng(seed)
    current = shift_category(shift_feature(generate(rows, seed=seed + 1), "monetary_avg", rng), "plan", "basic",
                             0.05, rng)
    pacsv.write_csv(pa.Table.from_pandas(prediction_log(current), preserve_index=False), paths["current"])
    print(f"generated {baseline_rows:,} baseline and {rows:,} logged rows in {time.perf_counter() - started:.0f}s "
          f"→ {folder}", flush=True)
    return paths


def run_child(paths: dict[str, Path], out: Path) -> dict:
    """Runs the drift check in a child process; returns its timings, wall time and peak RSS."""
    timings = out / "timings.json"
    args = ["--baseline", str(paths["baseline"]), "--current", str(paths["current"]),
            "--baseline-predictions", str(paths["scores"]), "--output-dir", str(out / "monitoring"),
            "--trigger", "none", "--date", "2026-07-01"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(timings), *args], cwd=out, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output, _ = proc.communicate()
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the only child this process waited for
    result = json.loads(timings.read_text()) if timings.is_file() else {"exit_code": proc.returncode}
    decision = json.loads((out / "monitoring" / "drift_decision.json").read_text()) \
        if (out / "monitoring" / "drift_decision.json").is_file() else {}
    result.update(wall_s=wall, peak_rss_gb=usage.ru_maxrss * 1024 / GB, output_tail=output.splitlines()[-12:],
                  decision=decision.get("reason"), drifted=decision.get("drifted_features"))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """``python bench/bench_drift.py [--rows N] [--baseline-rows N]``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="logged predictions (default: %(default)s)")
    parser.add_argument("--baseline-rows", type=int, default=1_000_000,
                        help="baseline (train.csv) rows (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="where the generated files are kept (default: bench/results/drift-data-…)")
    args = parser.parse_args(argv)
    data_dir = args.data_dir or RESULTS_DIR / f"drift-data-{args.baseline_rows}b-{args.rows}c-seed{args.seed}"
    paths = make_data(args.rows, args.baseline_rows, data_dir, args.seed)
    with tempfile.TemporaryDirectory(prefix="bench-drift-") as tmp:
        result = run_child(paths, Path(tmp))
    check_ok = result.get("check_s", float("inf")) <= TIME_TARGET_S
    rss_ok = result["peak_rss_gb"] <= RSS_TARGET_GB
    print("\n".join(result.pop("output_tail")))
    print(f"\n=== drift check on {args.rows:,} logged predictions vs {args.baseline_rows:,} baseline rows, "
          f"{os.cpu_count()} cores ===")
    print(f"TF/TFDV import        {result.get('tf_import_s', float('nan')):6.1f} s   (every run, any data size)")
    print(f"drift check           {result.get('check_s', float('nan')):6.1f} s   target ≤ {TIME_TARGET_S:.0f} s   "
          f"{'PASS' if check_ok else 'FAIL'}")
    steps = result.get("steps", {})
    print("  of which: " + ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in steps.items()
                                     if k != "tfdv_import_s"))
    print(f"process wall time     {result['wall_s']:6.1f} s   (start-up + import + check)")
    print(f"peak RSS              {result['peak_rss_gb']:6.2f} GB  target ≤ {RSS_TARGET_GB:.0f} GB   "
          f"{'PASS' if rss_ok else 'FAIL'}")
    print(f"exit code {result['exit_code']}; decision: {result.get('decision')}")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    record = RESULTS_DIR / f"drift-{time.strftime('%Y%m%d-%H%M%S')}.json"
    record.write_text(json.dumps({**result, "rows": args.rows, "baseline_rows": args.baseline_rows,
                                  "cpus": os.cpu_count(), "python": platform.python_version(),
                                  "pass": check_ok and rss_ok}, indent=2) + "\n")
    print(f"results: {record}")
    return 0 if check_ok and rss_ok and result["exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
