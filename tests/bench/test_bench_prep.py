"""bench_prep's floor: it runs on generated data and the report sets it against the 5x target."""

import json
from pathlib import Path

from tests.bench.conftest import load_bench

bench = load_bench("bench_prep")


class _NoHeartbeat:
    def step(self, name: str) -> None:
        self.last = name


def test_floor_writes_the_contract_files_on_generated_data(sample_raw_dir: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(bench, "RESULTS_DIR", tmp_path)
    out = bench._child_floor(sample_raw_dir, _NoHeartbeat())
    assert set(out["steps"]) == {"read transactions.json", "write filtered_sales.csv", "copy customers.csv",
                                 "hand over columns (Parquet)", "aggregate + write features"}
    assert out["wall_s"] >= sum(out["steps"].values()) > 0
    assert list(tmp_path.iterdir()) == []  # its temp folder is gone


def test_report_sets_the_floor_against_the_target():
    summaries = {name: bench._summarise(name, [{"status": "ok", "wall_s": wall, "cpu_s": wall,
                                                 "peak_rss_bytes": 10**9, "steps": {}}])
                 for name, wall in (("ours", 80.0), ("naive-chunked", 200.0), ("floor", 40.0))}
    text = bench.format_report(summaries, bench._verdicts(summaries, skip_naive=False), "header")
    assert "5x naive-chunked means at most 40.0s; the floor (file work only, no checks) takes 40.0s, " \
           "5.0x naive-chunked" in text
    assert "2.5x (vs naive-chunked" in text
    json.dumps(summaries)  # the report's data stays JSON-ready


def test_no_floor_flag_parses():
    assert bench.parse_args(["--no-floor", "--skip-naive", "--memory-limit-gb", "4"]).no_floor is True


def test_report_sets_ours_against_the_floor():
    summaries = {name: {"name": name, "runs": 1, "wall_s_median": wall, "peak_rss_gb_max": 1.0}
                 for name, wall in (("ours", 50.0), ("floor", 40.0))}
    rows = {target: (measured, verdict) for target, measured, verdict in bench._verdicts(summaries, skip_naive=True)}
    assert rows["speed: ours/floor <= 1.5x"] == ("1.25x", "PASS")
    summaries["ours"]["wall_s_median"] = 61.0
    rows = {target: (measured, verdict) for target, measured, verdict in bench._verdicts(summaries, skip_naive=True)}
    assert rows["speed: ours/floor <= 1.5x"] == ("1.52x", "FAIL")
