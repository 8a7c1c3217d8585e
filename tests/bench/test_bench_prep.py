"""bench_prep: the floor runs on generated data, and the report judges ours against the floor and the RSS cap."""

import json
from pathlib import Path

import pytest

from tests.bench.conftest import load_bench

bench = load_bench("bench_prep")


class _NoHeartbeat:
    def step(self, name: str) -> None:
        self.last = name


def _summaries(**walls: float) -> dict[str, dict]:
    return {name: bench._summarise(name, [{"status": "ok", "wall_s": wall, "cpu_s": wall,
                                            "peak_rss_bytes": 2 * 10**9, "steps": {"step": wall}}])
            for name, wall in walls.items()}


def test_floor_writes_the_contract_files_on_generated_data(sample_raw_dir: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(bench, "RESULTS_DIR", tmp_path)
    out = bench._child_floor(sample_raw_dir, _NoHeartbeat())
    assert set(out["steps"]) == {"read transactions.json", "write filtered_sales.csv", "copy customers.csv",
                                 "hand over columns (Parquet)", "aggregate + write features"}
    assert out["wall_s"] >= sum(out["steps"].values()) > 0
    assert list(tmp_path.iterdir()) == []  # its temp folder is gone


def test_contract_floor_reads_lines_finds_the_fields_and_writes_what_the_floor_writes(
        sample_raw_dir: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(bench, "RESULTS_DIR", tmp_path)
    out = bench._child_floor(sample_raw_dir, _NoHeartbeat(), contract=True)
    assert list(out["steps"])[:3] == ["find the fields (keys of every record)", "read lines + parse values",
                                      "id checks (duplicate transactions, unknown customers)"]
    assert "read transactions.json" not in out["steps"] and "write filtered_sales.csv" in out["steps"]
    assert list(tmp_path.iterdir()) == []


def test_report_sets_ours_against_the_contract_floor_without_judging_it():
    summaries = _summaries(ours=90.0, floor=30.0, **{"contract-floor": 45.0})
    rows = bench._verdicts(summaries)
    assert ("speed: ours/contract-floor", "2.00x (contract-floor/floor 1.50x)", "INFO") in rows
    assert rows[0] == ("speed: ours/floor <= 1.5x", "3.00x", "FAIL")


def test_report_judges_ours_against_the_floor_and_the_memory_cap():
    summaries = _summaries(ours=80.0, floor=40.0)
    verdicts = bench._verdicts(summaries)
    assert verdicts == [("speed: ours/floor <= 1.5x", "2.00x", "FAIL"),
                        ("memory: ours peak RSS <= 6 GB", "2.00 GB", "PASS")]
    text = bench.format_report(summaries, verdicts, "header")
    assert "naive" not in text  # the retired "5x the naive reference" target is gone
    assert "ours steps (median wall): step 80.0s" in text
    json.dumps(summaries)  # the report's data stays JSON-ready


def test_report_sets_ours_against_the_floor():
    summaries = {name: {"name": name, "runs": 1, "wall_s_median": wall, "peak_rss_gb_max": 1.0}
                 for name, wall in (("ours", 50.0), ("floor", 40.0))}
    rows = {target: (measured, verdict) for target, measured, verdict in bench._verdicts(summaries)}
    assert rows["speed: ours/floor <= 1.5x"] == ("1.25x", "PASS")
    summaries["ours"]["wall_s_median"] = 61.0
    rows = {target: (measured, verdict) for target, measured, verdict in bench._verdicts(summaries)}
    assert rows["speed: ours/floor <= 1.5x"] == ("1.52x", "FAIL")


def test_without_the_floor_the_speed_target_is_skipped_and_memory_still_judged():
    args = bench.parse_args(["--no-floor", "--memory-limit-gb", "4"])
    assert args.no_floor is True
    rows = bench._verdicts(_summaries(ours=80.0))
    assert rows == [("speed: ours/floor <= 1.5x", "not measured (--no-floor)", "SKIPPED"),
                    ("memory: ours peak RSS <= 6 GB", "2.00 GB", "PASS")]


def test_ours_out_of_memory_fails_both_targets():
    summaries = {"ours": bench._summarise("ours", [{"status": "oom", "wall_s": 12.0, "peak_rss_bytes": 5 * 10**9,
                                                    "memory_limit_gb": 6.0, "error": "child killed by SIGSEGV"}]),
                 **_summaries(floor=40.0)}
    rows = bench._verdicts(summaries)
    assert rows[0] == ("speed: ours/floor <= 1.5x", "ours did not finish", "FAIL")
    assert rows[1][0] == "memory: ours peak RSS <= 6 GB" and rows[1][2] == "FAIL"
    assert rows[1][1].startswith("out of memory at 6.0 GB")


def test_help_states_the_floor_and_memory_targets(capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.parse_args(["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "ours/floor <= 1.5x" in text and "peak RSS <= 6 GB" in text
    assert "naive" not in text
