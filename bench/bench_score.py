"""Benchmark: batch scoring (``pipeline.py score``) against its references, on the same data, in one run.

Generates (or reuses, shared with bench_prep) raw sample data and a model trained by the real stages on a
smaller sample of the same generator, then runs, each in its own subprocess (own peak RSS, ``os.wait4``):

* ``prep``: ``data_prep.run`` + ``feature_engineering.run`` into temp folders (what training spends on the
  same raw data; the whole scoring command should take at most 1.3x this);
* ``score``: the whole command, ``components.score.score`` (clean → features with the model's schema →
  ONNX → prediction and top-risk files), the model opened beforehand;
* ``step``: the scoring step alone, features in hand → predictions file written: ours
  (``components.score.write_scores``) and the reference (``joblib`` model ``predict_proba`` + a pandas
  frame of the same columns + ``to_csv``, and the top-risk list by ``nlargest`` + ``to_csv``), alternated
  ``--step-repeats`` times in the same process; the medians are compared. The ONNX graph's run alone
  (``onnx_only``) is timed too: no writer can make the step faster than that.

Targets: step >= 10x the reference; score <= 1.3x prep; score peak RSS <= 6 GB.

Run: ``python bench/bench_score.py --customers 100000`` (default size: 1M customers, 20M transactions).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "bench" / "results"
STEP_TARGET = 10.0  # reference wall / our scoring step wall, at least
COMMAND_TARGET = 1.3  # score wall / (data_prep + feature_engineering) wall, at most
RSS_TARGET_GB = 6.0
GB = 1e9
MODEL_DIR = "model"

_LOG = logging.getLogger("bench")


def _bench_prep() -> Any:
    """bench/bench_prep.py (a script, loaded by path): its data generation and child plumbing are reused."""
    import importlib.util

    if "bench_prep" in sys.modules:
        return sys.modules["bench_prep"]
    path = Path(__file__).with_name("bench_prep.py")
    spec = importlib.util.spec_from_file_location("bench_prep", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path}: not loadable as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_prep"] = module
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- children


def _child_model(data_dir: Path, customers: int, seed: int, transactions_per_customer: float) -> dict:
    """Trains the benchmark's model on ``customers`` generated customers (data_prep → features → train)."""
    from churn.sample_data import generate, write_raw
    from components import data_prep, feature_engineering, train

    with tempfile.TemporaryDirectory(prefix="model-", dir=RESULTS_DIR) as tmp:
        work = Path(tmp)
        write_raw(generate(customers, seed + 1, avg_transactions=transactions_per_customer), work / "raw")
        data_prep.run(work / "raw", work / "interim")
        feature_engineering.run(work / "interim", work / "features", work / "processed", work / "processed")
        facts = train.run(work / "processed", work / "processed", data_dir / MODEL_DIR)
    return {"model_type": facts.get("model_type", ""), "train_customers": customers}


def _child_prep(raw_dir: Path, **_: Any) -> dict:
    from components import data_prep, feature_engineering

    steps = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="prep-", dir=RESULTS_DIR) as tmp:
        out = Path(tmp)
        data_prep.run(raw_dir, out / "interim")
        steps["data_prep"] = time.perf_counter() - started
        feature_engineering.run(out / "interim", out / "features", out / "processed", out / "processed")
        steps["feature_engineering"] = time.perf_counter() - started - steps["data_prep"]
        wall = time.perf_counter() - started
    return {"wall_s": wall, "steps": steps}


def _child_score(raw_dir: Path, model_dir: Path, **_: Any) -> dict:
    from components import score

    model = score.open_model(model_dir)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="score-", dir=RESULTS_DIR) as tmp:
        summary = score.score(raw_dir, model, out_dir=Path(tmp))
        wall = time.perf_counter() - started
    return {"wall_s": wall, "steps": summary["seconds"], "rows_scored": summary["rows_scored"]}


def reference_step(features: Any, loaded: Any, version: str, path: Path, top_path: Path, top: int) -> int:
    """The reference scoring step: joblib pipeline ``predict_proba``, a pandas frame of the file's columns,
    ``to_csv`` (and the top-risk list). Returns the rows written."""
    import numpy as np
    import pandas as pd

    proba = loaded.predict_proba(features)
    frame = features.copy()
    frame.insert(0, "model_version", version)
    frame.insert(0, "timestamp", pd.Timestamp.now(tz="UTC").isoformat())
    frame["churn_probability"] = proba
    frame["churned"] = (proba >= loaded.threshold).astype(int)
    frame["threshold"] = loaded.threshold
    frame["rank"] = frame["churn_probability"].rank(ascending=False, method="first").astype(int)
    frame["decile"] = np.ceil(frame["rank"] * 10 / len(frame)).astype(int)
    frame.to_csv(path, index=False)
    frame.nsmallest(top, "rank").to_csv(top_path, index=False)
    return len(frame)


def _child_step(raw_dir: Path, model_dir: Path, repeats: int = 3, **_: Any) -> dict:
    """Ours and the reference on the same features, alternated in one process."""
    from churn.model_io import load_model
    from components import score

    model = score.open_model(model_dir)
    loaded = load_model(model_dir)
    data = score.load_raw(raw_dir)
    features = score.compute_features(model, data)
    as_of = data.as_of
    del data
    from churn.onnx_model import PROBABILITY_OUTPUT, feed_from_frame

    feed = feed_from_frame(features, model.schema)
    times: dict[str, list[float]] = {"ours": [], "reference": [], "onnx_only": []}
    with tempfile.TemporaryDirectory(prefix="step-", dir=RESULTS_DIR) as tmp:
        out = Path(tmp)
        for _repeat in range(repeats):
            t = time.perf_counter()
            model.session.run([PROBABILITY_OUTPUT], feed)
            times["onnx_only"].append(time.perf_counter() - t)
            t = time.perf_counter()
            score.write_scores(features, model, as_of, out / "ours.csv", out / "ours_top.csv")
            times["ours"].append(time.perf_counter() - t)
            t = time.perf_counter()
            reference_step(features, loaded, model.version, out / "ref.csv", out / "ref_top.csv", score.DEFAULT_TOP)
            times["reference"].append(time.perf_counter() - t)
        sizes = {name: (out / f"{name}.csv").stat().st_size for name in ("ours", "ref")}
    return {"rows": len(features), "times_s": times, "bytes": sizes,
            "wall_s": sum(times["ours"]) + sum(times["reference"])}


def _run_child(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format=f"  [{args.child} %(relativeCreated)7.0fms] %(name)s: %(message)s")
    data_dir = Path(args.data_dir)
    import numpy  # noqa: F401  (imported before any clock starts)
    import pandas  # noqa: F401
    import pyarrow  # noqa: F401

    if args.child == "model":
        result = _child_model(data_dir, args.train_customers, args.seed, args.transactions_per_customer)
    else:
        children: dict[str, Callable[..., dict]] = {"prep": _child_prep, "score": _child_score, "step": _child_step}
        run = children[args.child]
        result = run(data_dir / "raw", model_dir=data_dir / MODEL_DIR, repeats=args.step_repeats)
    Path(args.child_result).write_text(json.dumps({"kind": args.child, "status": "ok", **result}, indent=2) + "\n")
    return 0


def _spawn(kind: str, args: argparse.Namespace) -> dict:
    """Runs one child and returns its result with its own peak RSS."""
    bench_prep = _bench_prep()
    with tempfile.NamedTemporaryFile(prefix=f"{kind}-", suffix=".json", dir=RESULTS_DIR, delete=False) as fh:
        result_path = Path(fh.name)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--child-result", str(result_path),
           "--data-dir", str(args.data_dir), "--customers", str(args.customers), "--seed", str(args.seed),
           "--transactions-per-customer", str(args.transactions_per_customer),
           "--train-customers", str(args.train_customers), "--step-repeats", str(args.step_repeats)]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=bench_prep._child_env(), cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    try:
        result = json.loads(result_path.read_text()) if result_path.stat().st_size else {}
    finally:
        result_path.unlink(missing_ok=True)
    if code != 0 or not result:
        result = {"kind": kind, "status": "crashed", "error": f"child exit code {code}"}
    result.update(peak_rss_bytes=usage.ru_maxrss * 1024, process_wall_s=time.perf_counter() - started,
                  cpu_s=usage.ru_utime + usage.ru_stime)
    return result


# --------------------------------------------------------------------------- report


def verdicts(prep_s: float | None, score_s: float | None, step: dict | None, score_rss_gb: float | None
             ) -> list[tuple[str, str, str]]:
    """(target, measured, PASS/FAIL/SKIPPED) per target."""
    out = []
    if step:
        ours, ref = statistics.median(step["times_s"]["ours"]), statistics.median(step["times_s"]["reference"])
        ratio = ref / ours
        floor = statistics.median(step["times_s"]["onnx_only"]) if step["times_s"].get("onnx_only") else None
        ceiling = f"; onnxruntime alone takes {floor:.2f}s, so at most {ref / floor:.1f}x" if floor else ""
        out.append((f"scoring step >= {STEP_TARGET:g}x the pandas + joblib + to_csv reference",
                    f"{ratio:.1f}x (ours {ours:.2f}s, reference {ref:.2f}s, median of {len(step['times_s']['ours'])}"
                    f"{ceiling})", "PASS" if ratio >= STEP_TARGET else "FAIL"))
    else:
        out.append((f"scoring step >= {STEP_TARGET:g}x reference", "not measured", "SKIPPED"))
    if prep_s and score_s:
        ratio = score_s / prep_s
        out.append((f"score command <= {COMMAND_TARGET:g}x data_prep + feature_engineering",
                    f"{ratio:.2f}x (score {score_s:.1f}s, prep + features {prep_s:.1f}s)",
                    "PASS" if ratio <= COMMAND_TARGET else "FAIL"))
    else:
        out.append((f"score command <= {COMMAND_TARGET:g}x prep", "not measured", "SKIPPED"))
    if score_rss_gb is not None:
        out.append((f"score peak RSS <= {RSS_TARGET_GB:g} GB", f"{score_rss_gb:.2f} GB",
                    "PASS" if score_rss_gb <= RSS_TARGET_GB else "FAIL"))
    return out


def format_report(header: str, runs: dict[str, list[dict]], checks: list[tuple[str, str, str]]) -> str:
    lines = [header, "", f"{'run':<8} {'wall s (median)':>16} {'cpu s':>8} {'peak RSS GB':>12}  steps"]
    for kind, results in runs.items():
        ok = [r for r in results if r.get("status") == "ok"]
        if not ok:
            lines.append(f"{kind:<8} {'failed: ' + results[0].get('error', '') if results else 'not run'}")
            continue
        steps = ok[0].get("steps") or {k: statistics.median(v) for k, v in ok[0].get("times_s", {}).items()}
        rss = max(r["peak_rss_bytes"] for r in ok) / GB
        lines.append(f"{kind:<8} {statistics.median(r['wall_s'] for r in ok):>16.2f} "
                     f"{statistics.median(r['cpu_s'] for r in ok):>8.1f} {rss:>12.2f}"
                     f"  {', '.join(f'{k} {v:.2f}' for k, v in steps.items())}")
    lines += ["", "targets:"] + [f"  [{v}] {t}: {m}" for t, m, v in checks]
    return "\n".join(lines)


def _median_wall(results: list[dict]) -> float | None:
    ok = [r["wall_s"] for r in results if r.get("status") == "ok"]
    return statistics.median(ok) if ok else None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench_score",
        description=(f"Time batch scoring: the scoring step against a pandas + joblib predict_proba + to_csv "
                     f"reference (target >= {STEP_TARGET:g}x), the whole score command against data_prep + "
                     f"feature_engineering on the same data (target <= {COMMAND_TARGET:g}x), and its peak RSS "
                     f"(target <= {RSS_TARGET_GB:g} GB). Each run is its own subprocess. GB = 10^9 bytes."),
    )
    parser.add_argument("--customers", type=int, default=1_000_000, help="customers to score (default: %(default)s)")
    parser.add_argument("--transactions-per-customer", type=float, default=20.0, help="default: %(default)s")
    parser.add_argument("--seed", type=int, default=42, help="data seed (default: %(default)s)")
    parser.add_argument("--train-customers", type=int, default=20_000,
                        help="customers the model is trained on (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of prep and score, interleaved (default: 1)")
    parser.add_argument("--step-repeats", type=int, default=3,
                        help="alternated runs of ours and the reference in the step child (default: 3)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="raw data (and the model) here; shared with bench_prep (default: "
                             "bench/results/data-<size>-seed<seed>)")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write all results to FILE")
    parser.add_argument("--child", choices=("model", "prep", "score", "step"), help=argparse.SUPPRESS)
    parser.add_argument("--child-result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.customers, args.train_customers, args.repeats, args.step_repeats) < 1:
        parser.error("--customers, --train-customers, --repeats and --step-repeats must be positive")
    if args.data_dir is None:
        args.data_dir = _bench_prep().default_data_dir(args.customers, args.transactions_per_customer, args.seed)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the benchmark; 0 when every measured target passes, 1 otherwise."""
    args = parse_args(argv)
    if args.child:
        return _run_child(args)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="[bench %(asctime)s] %(message)s",
                        datefmt="%H:%M:%S")
    _LOG.setLevel(logging.INFO)
    bench_prep = _bench_prep()
    bench_prep._LOG.setLevel(logging.INFO)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    Path(args.data_dir).mkdir(parents=True, exist_ok=True)
    prep_args = argparse.Namespace(customers=args.customers, transactions_per_customer=args.transactions_per_customer,
                                   seed=args.seed, data_dir=args.data_dir, naive_chunksize=0, memory_limit_gb=None)
    params = bench_prep._ensure_data(prep_args)
    model_dir = Path(args.data_dir) / MODEL_DIR
    if not (model_dir / "manifest.json").is_file():
        _LOG.info("training the model on %d generated customers", args.train_customers)
        trained = _spawn("model", args)
        if trained["status"] != "ok":
            raise SystemExit(f"model training failed: {trained.get('error')}")
    runs: dict[str, list[dict]] = {"prep": [], "score": [], "step": []}
    for i in range(args.repeats):
        for kind in ("prep", "score"):
            result = _spawn(kind, args)
            runs[kind].append(result)
            _LOG.info("run %d/%d: %s %s in %.1fs, peak RSS %.2f GB", i + 1, args.repeats, kind, result["status"],
                      result.get("wall_s", float("nan")), result["peak_rss_bytes"] / GB)
    step = _spawn("step", args)
    runs["step"].append(step)
    score_ok = [r for r in runs["score"] if r.get("status") == "ok"]
    checks = verdicts(_median_wall(runs["prep"]), _median_wall(runs["score"]),
                      step if step.get("status") == "ok" else None,
                      max(r["peak_rss_bytes"] for r in score_ok) / GB if score_ok else None)
    header = (f"bench_score: {params['customers']:,} customers, {params['transactions']:,} transactions "
              f"(transactions.json {params['bytes']['transactions'] / GB:.2f} GB); model trained on "
              f"{args.train_customers:,} customers; {args.repeats} run(s) of prep/score; {os.cpu_count()} CPUs, "
              f"load average {os.getloadavg()[0]:.1f} at the end")
    print(format_report(header, runs, checks), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"params": params, "runs": runs,
                                         "verdicts": [dict(zip(("target", "measured", "result"), c, strict=True))
                                                      for c in checks]},
                                        indent=2) + "\n")
    return 0 if all(c[2] in ("PASS", "SKIPPED") for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
