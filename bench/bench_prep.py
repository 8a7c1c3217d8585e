"""Benchmark: data_prep + feature_engineering against a lower bound of the same file work, on the same data.

Generates (or reuses) raw sample data, then runs, each in its own subprocess and interleaved so
that machine noise hits both alike:

* ``ours``: ``components.data_prep.run`` + ``components.feature_engineering.run`` into temp folders;
* ``floor``: a lower bound, not a pipeline: the least file work the data contract asks of the two
  stages, all in DuckDB on every core, with no checks at all (no rejected rows, ids, labels, splits or
  schema): transactions.json read once and written as filtered_sales.csv, customers.csv copied, the
  columns feature_engineering needs handed over columnar (Parquet), per-customer aggregates of the
  kind it computes, written with the customer attributes as CSV (``--no-floor`` leaves it out);
* ``contract-floor``: the floor plus what the data contract makes unavoidable for any implementation,
  still without a single rule: transactions.json read as text lines in file order (a rejected record
  keeps its text and line number, so the typed JSON reader cannot be the reader), every record parsed
  for its keys (the fields are the data's, not a fixed list) and for its values, and the two id checks
  that need the whole log (duplicate ``transaction_id``, unknown ``customer_id``). It shows how much
  of the gap to the floor the contract itself costs.

Each child's peak RSS is its own (``os.wait4`` rusage). Children run under an address-space limit
(``RLIMIT_AS``): one that needs more memory fails as "out of memory at N GB" instead of pushing the
shared machine into swap or the OOM killer.

Targets (issue 14): ours within 1.5x of the floor (median wall), ours peak RSS <= 6 GB; the
ratio to the contract floor is reported beside it (no target of its own). The earlier
"5x faster than a naive pandas reference" target is retired: the floor showed it below what the file
work itself costs.

Run: ``python bench/bench_prep.py --help`` (or ``make bench``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "bench" / "results"
RSS_TARGET_GB = 6.0  # ours peak RSS must be at most this
FLOOR_TARGET = 1.5  # ours wall / floor wall must be at most this
GB = 1e9  # decimal gigabytes (10^9 bytes) throughout
PARAMS_FILE = "params.json"
HEARTBEAT_S = 30.0
KINDS = ("ours", "floor", "contract-floor")

_LOG = logging.getLogger("bench")


# --------------------------------------------------------------------------- helpers


def _meminfo_bytes(field: str) -> int | None:
    """A field of ``/proc/meminfo`` in bytes (Linux), else None."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _physical_memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def default_memory_limit_gb() -> float:
    """75% of RAM, but no more than what is available now minus 2 GB (the machine is shared)."""
    limit = 0.75 * _physical_memory_bytes()
    available = _meminfo_bytes("MemAvailable")
    if available is not None:
        limit = min(limit, available - 2 * GB)
    return round(max(limit, 1 * GB) / GB, 1)


def _current_rss_bytes() -> int:
    """Resident set size of this process now (Linux ``/proc``; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def _load_average() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def default_data_dir(customers: int, transactions_per_customer: float, seed: int) -> Path:
    """``bench/results/data-<customers>c-<tpc>tpc-seed<seed>`` (git-ignored)."""
    return RESULTS_DIR / f"data-{customers}c-{transactions_per_customer:g}tpc-seed{seed}"


# --------------------------------------------------------------------------- children


class _Heartbeat:
    """Logs each step as it starts, and every ``interval`` seconds which step is still running."""

    def __init__(self, name: str, interval: float = HEARTBEAT_S) -> None:
        self._name = name
        self._interval = interval
        self._step = "starting"
        self._step_started = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def step(self, name: str) -> None:
        """Marks the start of a step."""
        self._step, self._step_started = name, time.perf_counter()
        _LOG.info("%s: %s", self._name, name)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            _LOG.info("%s: still in %s (%.0fs), RSS %.2f GB", self._name, self._step,
                      time.perf_counter() - self._step_started, _current_rss_bytes() / GB)


def _timed(hb: _Heartbeat, steps: dict[str, float], name: str, fn: Callable[[], Any]) -> Any:
    """Runs one measured step: announces it on the heartbeat and records its wall time in ``steps``."""
    hb.step(name)
    t = time.perf_counter()
    value = fn()
    steps[name] = time.perf_counter() - t
    return value


def _child_generate(raw_dir: Path, customers: int, transactions_per_customer: float, seed: int) -> dict:
    """Generates the raw data (``churn.sample_data``) into ``raw_dir``."""
    from churn.sample_data import generate, write_raw

    logging.getLogger("churn.sample_data").setLevel(logging.INFO)
    data = generate(customers, seed, avg_transactions=transactions_per_customer)
    n_tx = len(data.transactions)
    paths = write_raw(data, raw_dir)
    return {"customers": customers, "transactions": n_tx,
            "bytes": {k: p.stat().st_size for k, p in paths.items()}}


def _child_ours(raw_dir: Path, hb: _Heartbeat) -> dict:
    """Runs data_prep + feature_engineering into temporary folders."""
    import numpy  # noqa: F401  (library imports happen before the clock starts, as in the floor)
    import pandas  # noqa: F401
    import pyarrow  # noqa: F401

    logging.getLogger("components").setLevel(logging.INFO)
    steps: dict[str, float] = {}
    started = time.perf_counter()
    from components import data_prep, feature_engineering

    with tempfile.TemporaryDirectory(prefix="ours-", dir=RESULTS_DIR) as tmp:
        out = Path(tmp)
        hb.step("data_prep.run")
        t = time.perf_counter()
        meta = data_prep.run(raw_dir, out / "interim")
        steps["data_prep"] = time.perf_counter() - t
        hb.step("feature_engineering.run")
        t = time.perf_counter()
        facts = feature_engineering.run(out / "interim", out / "features", out / "processed", out / "processed")
        steps["feature_engineering"] = time.perf_counter() - t
        wall = time.perf_counter() - started
        hb.step("removing the temp folders")
    return {"wall_s": wall, "steps": steps, "rows": meta["rows"], "feature_rows": facts["rows"]}


def _child_floor(raw_dir: Path, hb: _Heartbeat, contract: bool = False) -> dict:
    """The lower bound (see the module docstring): DuckDB, every core, no checks; with ``contract``, the
    contract floor's transaction reading instead of the typed JSON reader's."""
    import duckdb

    from churn.cleaning import REFUND_STATUSES

    steps: dict[str, float] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="floor-", dir=RESULTS_DIR) as tmp:
        out = Path(tmp)
        con = duckdb.connect(config={"threads": os.cpu_count() or 1, "preserve_insertion_order": contract,
                                     "temp_directory": str(out / "spill")})
        con.execute("SET TimeZone = 'UTC'")

        def timed(name: str, sql: str) -> None:
            _timed(hb, steps, name, lambda: con.execute(sql).fetchall())

        tx, customers = raw_dir / "transactions.json", raw_dir / "customers.csv"
        types = ("{'transaction_id': 'VARCHAR', 'customer_id': 'VARCHAR', 'timestamp': 'TIMESTAMPTZ', "
                 "'amount': 'DOUBLE', 'quantity': 'DOUBLE', 'category': 'VARCHAR', 'channel': 'VARCHAR', "
                 "'status': 'VARCHAR'}")
        refunds = ", ".join(f"'{s}'" for s in sorted(REFUND_STATUSES))  # the contract's refund statuses
        if contract:
            _contract_read(con, tx, customers, refunds, timed)
        else:
            timed("read transactions.json", f"CREATE TABLE tx AS SELECT *, coalesce(lower(status) IN ({refunds}), "
                  f"false) AS is_refund FROM read_json('{tx}', format='newline_delimited', columns={types})")
        # Timestamps as the contract writes them (2024-01-31T13:45:00Z; the generated data has whole seconds).
        timed("write filtered_sales.csv", f"COPY tx TO '{out / 'filtered_sales.csv'}' "
              "(HEADER, TIMESTAMP_FORMAT '%Y-%m-%dT%H:%M:%SZ')")
        timed("copy customers.csv", f"COPY (SELECT * FROM read_csv('{customers}', all_varchar=true)) "
              f"TO '{out / 'cleaned_customers.csv'}' (HEADER)")
        timed("hand over columns (Parquet)", "COPY (SELECT customer_id, timestamp, amount, is_refund, category, "
              f"channel FROM tx) TO '{out / 'sales.parquet'}'")
        con.execute("DROP TABLE tx")
        buy = "NOT is_refund"
        days = "(epoch(cutoff) - epoch(timestamp)) / 86400"
        categories = [r[0] for r in con.execute(
            f"SELECT category FROM '{out / 'sales.parquet'}' GROUP BY 1 ORDER BY count(*) DESC LIMIT 8").fetchall()]
        mix = "".join(f", count(*) FILTER ({buy} AND category = '{c}') / greatest(count(*) FILTER ({buy}), 1) "
                      f"AS share_{k}" for k, c in enumerate(categories))
        timed("aggregate + write features", f"""
            COPY (
              WITH t AS (SELECT * FROM '{out / 'sales.parquet'}'),
                   c AS (SELECT max(timestamp) - INTERVAL 90 DAY AS cutoff FROM t),
                   a AS (SELECT customer_id, count(*) FILTER ({buy}) AS frequency,
                                count(*) FILTER ({buy} AND {days} < 30) AS frequency_30d,
                                count(*) FILTER ({buy} AND {days} < 90) AS frequency_90d,
                                sum(amount) AS monetary_total, avg(amount) FILTER ({buy}) AS monetary_avg,
                                sum(amount) FILTER ({buy} AND {days} < 90) AS monetary_90d,
                                count(*) FILTER ({buy} AND {days} >= 90 AND {days} < 180) AS frequency_earlier,
                                count(*) FILTER (is_refund) AS refund_count,
                                min({days}) FILTER ({buy}) AS recency_days{mix}
                         FROM t, c WHERE timestamp <= cutoff GROUP BY customer_id)
              SELECT * FROM read_csv('{out / 'cleaned_customers.csv'}', all_varchar=true)
                       LEFT JOIN a USING (customer_id)
            ) TO '{out / 'features.csv'}' (HEADER)""")
        con.close()
        wall = time.perf_counter() - started
        hb.step("removing the temp folder")
    return {"wall_s": wall, "steps": steps}


def _contract_read(con: Any, tx: Path, customers: Path, refunds: str, timed: Callable[[str, str], None]) -> None:
    """The contract floor's reading of transactions.json into table ``tx`` (see the module docstring)."""
    lines = (f"read_csv('{tx}', columns={{'line': 'VARCHAR'}}, header=false, delim='\\0', quote='', escape='', "
             "auto_detect=false, strict_mode=false, max_line_size=1073741824)")
    timed("find the fields (keys of every record)", f"CREATE TABLE keys AS SELECT DISTINCT json_keys(line) AS k "
          f"FROM {lines}")
    fields = list(dict.fromkeys(k for (keys,) in con.execute("SELECT k FROM keys").fetchall() for k in keys))
    typed = {"timestamp": "TIMESTAMPTZ", "amount": "DOUBLE", "quantity": "DOUBLE"}
    columns = ", ".join(f"try_cast(v[{i + 1}] AS {typed[f]}) AS \"{f}\"" if f in typed else f"v[{i + 1}] AS \"{f}\""
                        for i, f in enumerate(fields))
    paths = ", ".join(f"'$.{f}'" for f in fields)
    status = f"v[{fields.index('status') + 1}]"
    timed("read lines + parse values", f"CREATE TABLE tx AS SELECT {columns}, coalesce(lower({status}) IN ({refunds}), "
          f"false) AS is_refund FROM (SELECT json_extract_string(line, [{paths}]) AS v FROM {lines})")
    timed("id checks (duplicate transactions, unknown customers)",
          "SELECT (SELECT count(*) FROM (SELECT transaction_id FROM tx GROUP BY 1 HAVING count(*) > 1)), "
          f"(SELECT count(*) FROM tx ANTI JOIN read_csv('{customers}', all_varchar=true) c USING (customer_id))")


def _run_child(args: argparse.Namespace) -> int:
    """Entry point of a child process: does one measured thing and writes its result as JSON."""
    kind, result_path = args.child, Path(args.child_result)
    if args.memory_limit_gb:
        limit = int(args.memory_limit_gb * GB)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format=f"  [{kind} %(relativeCreated)7.0fms] %(name)s: %(message)s")
    _LOG.setLevel(logging.INFO)
    raw_dir = Path(args.data_dir) / "raw"
    result: dict[str, Any] = {"kind": kind, "status": "ok"}
    started = time.perf_counter()
    try:
        if kind == "generate":
            result.update(_child_generate(raw_dir, args.customers, args.transactions_per_customer, args.seed))
        else:
            with _Heartbeat(kind) as hb:
                if kind == "ours":
                    result.update(_child_ours(raw_dir, hb))
                else:
                    result.update(_child_floor(raw_dir, hb, contract=kind == "contract-floor"))
    except MemoryError as exc:
        result.update(status="oom", wall_s=time.perf_counter() - started, error=f"{type(exc).__name__}: {exc}")
        _LOG.error("%s: out of memory (limit %s GB): %s", kind, args.memory_limit_gb, exc)
    result_path.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _child_env() -> dict[str, str]:
    """Environment of the children: the project importable, bytecode cached under bench/results.

    With ``PYTHONDONTWRITEBYTECODE`` set (as on some dev machines) every child would recompile
    pandas/sklearn from source (seconds per run) and the benchmark would time the compiler.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env["PYTHONPYCACHEPREFIX"] = str(RESULTS_DIR / "pycache")
    return env


def _warm_up() -> None:
    """Imports what the children import once, so that bytecode is cached before anything is timed."""
    modules = ("numpy, pandas, pyarrow, pyarrow.json, pyarrow.csv, pyarrow.compute, duckdb, sklearn.model_selection, "
               "components.data_prep, components.feature_engineering, churn.sample_data")
    subprocess.run([sys.executable, "-c", f"import {modules}"], env=_child_env(), cwd=ROOT, check=True)


def _spawn(kind: str, args: argparse.Namespace, memory_limit_gb: float | None) -> dict:
    """Runs one child (``kind``) and returns its result with its own peak RSS and wall time."""
    with tempfile.NamedTemporaryFile(prefix=f"{kind}-", suffix=".json", dir=RESULTS_DIR, delete=False) as fh:
        result_path = Path(fh.name)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--child-result", str(result_path),
           "--customers", str(args.customers), "--transactions-per-customer", str(args.transactions_per_customer),
           "--seed", str(args.seed), "--data-dir", str(args.data_dir),
           "--memory-limit-gb", str(memory_limit_gb or 0)]
    load_before = _load_average()
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=_child_env(), cwd=ROOT)
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        proc.wait()
        raise
    proc.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.perf_counter() - started
    peak = usage.ru_maxrss * 1024  # Linux reports kilobytes
    try:
        result = json.loads(result_path.read_text()) if result_path.stat().st_size else {}
    finally:
        result_path.unlink(missing_ok=True)
    if not result:
        code = proc.returncode
        what = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        # C code that does not check its allocations dies (SIGSEGV/SIGABRT) when RLIMIT_AS is hit;
        # the address space is well above the RSS, hence the generous threshold.
        near_limit = bool(memory_limit_gb and peak >= 0.5 * memory_limit_gb * GB)
        result = {"kind": kind, "status": "oom" if near_limit else "crashed", "wall_s": elapsed,
                  "error": f"child {what}"}
    elif proc.returncode != 0:
        result.update(status="crashed", error=f"child exit code {proc.returncode}")
    result.update(peak_rss_bytes=peak, process_wall_s=elapsed, memory_limit_gb=memory_limit_gb,
                  cpu_s=usage.ru_utime + usage.ru_stime, load_average=[load_before, _load_average()])
    return result


# --------------------------------------------------------------------------- report


def _summarise(name: str, runs: list[dict]) -> dict:
    ok = [r for r in runs if r["status"] == "ok"]
    summary: dict[str, Any] = {"name": name, "runs": len(runs), "ok_runs": len(ok)}
    if ok:
        summary["wall_s_median"] = statistics.median(r["wall_s"] for r in ok)
        summary["cpu_s_median"] = statistics.median(r["cpu_s"] for r in ok)
        summary["peak_rss_gb_max"] = max(r["peak_rss_bytes"] for r in ok) / GB
        steps = ok[0].get("steps", {})
        summary["steps_s_median"] = {k: statistics.median(r["steps"][k] for r in ok) for k in steps}
    failed = [r for r in runs if r["status"] != "ok"]
    if failed:
        first = failed[0]
        if first["status"] == "oom":
            how = f", {first['error'][len('child '):]}" if first.get("error", "").startswith("child ") else ""
            summary["failure"] = (f"out of memory at {first['memory_limit_gb']:.1f} GB "
                                  f"(after {first['wall_s']:.0f}s, "
                                  f"peak RSS {first['peak_rss_bytes'] / GB:.1f} GB{how})")
        else:
            summary["failure"] = f"{first['status']}: {first.get('error', '')}"
        summary["failed_wall_s_min"] = min(r["wall_s"] for r in failed)
    return summary


def _verdicts(summaries: dict[str, dict]) -> list[tuple[str, str, str]]:
    """(target, measured, PASS/FAIL/SKIPPED/UNKNOWN) rows."""
    speed = f"speed: ours/floor <= {FLOOR_TARGET:g}x"
    ours, floor = summaries["ours"], summaries.get("floor")
    rows = []
    if "wall_s_median" not in ours:
        rows.append((speed, "ours did not finish", "FAIL"))
    elif floor is None:
        rows.append((speed, "not measured (--no-floor)", "SKIPPED"))
    elif "wall_s_median" not in floor:
        rows.append((speed, f"the floor did not finish: {floor.get('failure', 'n/a')}", "UNKNOWN"))
    else:
        ratio = ours["wall_s_median"] / floor["wall_s_median"]
        rows.append((speed, f"{ratio:.2f}x", "PASS" if ratio <= FLOOR_TARGET else "FAIL"))
    contract = summaries.get("contract-floor", {})
    if "wall_s_median" in ours and "wall_s_median" in contract:
        measured = f"{ours['wall_s_median'] / contract['wall_s_median']:.2f}x"
        floor_s = (floor or {}).get("wall_s_median")
        if floor_s:
            measured += f" (contract-floor/floor {contract['wall_s_median'] / floor_s:.2f}x)"
        rows.append(("speed: ours/contract-floor", measured, "INFO"))
    memory = f"memory: ours peak RSS <= {RSS_TARGET_GB:g} GB"
    if "peak_rss_gb_max" in ours:
        rss = ours["peak_rss_gb_max"]
        rows.append((memory, f"{rss:.2f} GB", "PASS" if rss <= RSS_TARGET_GB else "FAIL"))
    else:
        rows.append((memory, ours.get("failure", "n/a"), "FAIL"))
    return rows


def format_report(summaries: dict[str, dict], verdicts: list[tuple[str, str, str]], header: str) -> str:
    """The table printed at the end."""
    lines = [header, ""]
    lines.append(f"{'name':<14} {'runs':>4} {'wall s (median)':>16} {'CPU s (median)':>15} "
                 f"{'peak RSS GB (max)':>18}  result")
    for s in summaries.values():
        wall = f"{s['wall_s_median']:.1f}" if "wall_s_median" in s else "-"
        cpu = f"{s['cpu_s_median']:.1f}" if "cpu_s_median" in s else "-"
        rss = f"{s['peak_rss_gb_max']:.2f}" if "peak_rss_gb_max" in s else "-"
        result = s.get("failure", "ok")
        lines.append(f"{s['name']:<14} {s['runs']:>4} {wall:>16} {cpu:>15} {rss:>18}  {result}")
    for s in summaries.values():
        if s.get("steps_s_median"):
            detail = ", ".join(f"{k} {v:.1f}s" for k, v in s["steps_s_median"].items())
            lines.append(f"  {s['name']} steps (median wall): {detail}")
    lines.append("")
    width = max(len(t) for t, _, _ in verdicts)
    for target, measured, verdict in verdicts:
        lines.append(f"{target:<{width}}  {measured:<60} {verdict}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def _ensure_data(args: argparse.Namespace) -> dict:
    """Generates the raw data unless ``data_dir`` already holds data of the same size and seed."""
    wanted = {"customers": args.customers, "transactions_per_customer": args.transactions_per_customer,
              "seed": args.seed}
    params_path = Path(args.data_dir) / PARAMS_FILE
    if params_path.is_file():
        params = json.loads(params_path.read_text())
        if {k: params.get(k) for k in wanted} == wanted and (Path(args.data_dir) / "raw").is_dir():
            _LOG.info("reusing data in %s (%d customers, %d transactions)", args.data_dir,
                      params["customers"], params["transactions"])
            return params
    _LOG.info("generating %d customers x ~%g transactions (seed %d) into %s", args.customers,
              args.transactions_per_customer, args.seed, args.data_dir)
    params_path.unlink(missing_ok=True)
    result = _spawn("generate", args, None)
    if result["status"] != "ok":
        raise SystemExit(f"data generation failed: {result.get('error')}")
    params = {**wanted, "transactions": result["transactions"], "bytes": result["bytes"]}
    params_path.write_text(json.dumps(params, indent=2) + "\n")
    _LOG.info("generated in %.0fs: %d transactions, transactions.json %.2f GB", result["process_wall_s"],
              params["transactions"], params["bytes"]["transactions"] / GB)
    return params


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        prog="bench_prep",
        description=(
            "Time data_prep + feature_engineering ('ours') against a lower bound on the same generated data "
            "('floor': the contract's file work alone, in DuckDB on every core, no checks) and the 'contract-floor' "
            "(the floor reading transactions.json as the contract needs: text lines in file order, each record's "
            "keys and values parsed, the duplicate and unknown-id checks). Each run is its own subprocess (own peak "
            "RSS); runs are interleaved ours/floor/contract-floor. Targets: ours/floor <= "
            f"{FLOOR_TARGET:g}x (median wall), ours peak RSS <= {RSS_TARGET_GB:g} GB. Exit status 1 when a "
            "measured target fails. GB = 10^9 bytes."
        ),
    )
    parser.add_argument("--customers", type=int, default=1_000_000, help="customers to generate (default: %(default)s)")
    parser.add_argument("--transactions-per-customer", type=float, default=20.0,
                        help="expected transactions per customer (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=42, help="data seed (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="runs of each, interleaved; the median wall time is reported (default: %(default)s)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="where raw data is generated, or reused when it has the same size and seed "
                             "(default: bench/results/data-<size>-seed<seed>, git-ignored)")
    parser.add_argument("--no-floor", action="store_true",
                        help="leave out the DuckDB lower bound ('floor': the contract's file work, no checks); "
                             "the speed target is then not measured")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write all results to FILE")
    parser.add_argument("--memory-limit-gb", type=float, default=None,
                        help="address-space limit (RLIMIT_AS) of each measured child (default: 75%% of RAM, at "
                             "most the memory available now minus 2 GB)")
    parser.add_argument("--child", choices=("generate", *KINDS), help=argparse.SUPPRESS)
    parser.add_argument("--child-result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.customers < 1 or args.repeats < 1 or not args.transactions_per_customer > 0:
        parser.error("--customers, --repeats and --transactions-per-customer must be positive")
    if args.data_dir is None:
        args.data_dir = default_data_dir(args.customers, args.transactions_per_customer, args.seed)
    if args.memory_limit_gb is None and not args.child:
        args.memory_limit_gb = default_memory_limit_gb()
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the benchmark; returns 0 when every measured target passes, 1 otherwise."""
    args = parse_args(argv)
    if args.child:
        return _run_child(args)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="[bench %(asctime)s] %(message)s",
                        datefmt="%H:%M:%S")
    _LOG.setLevel(logging.INFO)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    Path(args.data_dir).mkdir(parents=True, exist_ok=True)
    _LOG.info("warming up the bytecode cache (bench/results/pycache)")
    _warm_up()
    params = _ensure_data(args)

    kinds = ["ours"] if args.no_floor else list(KINDS)
    runs: dict[str, list[dict]] = {k: [] for k in kinds}
    load_start = _load_average()
    for i in range(args.repeats):
        for kind in kinds:
            _LOG.info("run %d/%d: %s", i + 1, args.repeats, kind)
            result = _spawn(kind, args, args.memory_limit_gb)
            runs[kind].append(result)
            _LOG.info("run %d/%d: %s %s in %.1fs, peak RSS %.2f GB", i + 1, args.repeats, kind,
                      result["status"], result["wall_s"], result["peak_rss_bytes"] / GB)

    summaries = {k: _summarise(k, runs[k]) for k in kinds}
    verdicts = _verdicts(summaries)
    header = (f"bench_prep: {params['customers']:,} customers, {params['transactions']:,} transactions "
              f"(transactions.json {params['bytes']['transactions'] / GB:.2f} GB); {args.repeats} run(s) each; "
              f"{os.cpu_count()} CPUs, load average {load_start:.1f} at start, {_load_average():.1f} at end; "
              f"memory limit per child {args.memory_limit_gb:g} GB")
    print(format_report(summaries, verdicts, header), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"params": params, "repeats": args.repeats, "cpus": os.cpu_count(),
                                         "memory_limit_gb": args.memory_limit_gb, "summaries": summaries,
                                         "verdicts": [dict(zip(("target", "measured", "result"), v, strict=True))
                                                      for v in verdicts],
                                         "runs": runs}, indent=2) + "\n")
    return 0 if all(v[2] in ("PASS", "SKIPPED", "INFO") for v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
