"""bench_serving's verdicts: ratios within a round, the median over rounds, pooled table rows."""

import pytest

from tests.bench.conftest import load_bench

bench = load_bench("bench_serving")
Result = bench.Result


def result(server: str, instances: int, concurrency: int, k: int, *, requests: int, seconds: float = 1.0,
           latency_ms: float = 1.0, cpu_ms: float = 1.0) -> Result:
    r = Result(server, instances, concurrency, round=k, requests=requests, seconds=seconds, sent=requests,
               server_cpu_ms=cpu_ms, client_cpu_ms=0.1, other_cores=0.0)
    r.latencies_ms = [latency_ms] * requests
    return r


def rounds(server_rates: dict[str, list[int]], instances: int = 1000, concurrency: int = 16) -> list[Result]:
    return [result(name, instances, concurrency, k, requests=rate)
            for name, rates in server_rates.items() for k, rate in enumerate(rates)]


def test_ratios_pair_servers_within_a_round():
    rs = rounds({"ours": [100, 50, 120], "joblib": [10, 10, 12]})
    ratios = bench.round_ratios(rs, ("ours", 1000, 16), ("joblib", 1000, 16), lambda r: r.ips)
    assert ratios == pytest.approx([10.0, 5.0, 10.0])


def test_one_disturbed_round_does_not_decide_the_verdict():
    # Round 2 is disturbed (ours slowed to 5x); pooled, the ratio would be 270/32 = 8.4x, a FAIL.
    rs = rounds({"ours": [110, 50, 110], "joblib": [10, 10, 11]})
    [throughput] = [c for c in bench.evaluate(rs, None) if c[0].startswith("throughput")]
    assert throughput[2] is True
    assert "median of 3 rounds" in throughput[1]
    # Two disturbed rounds out of three do decide it.
    rs = rounds({"ours": [110, 50, 50], "joblib": [10, 10, 10]})
    [throughput] = [c for c in bench.evaluate(rs, None) if c[0].startswith("throughput")]
    assert throughput[2] is False


def test_p50_verdict_uses_round_medians():
    rs = [result("ours", 1, 1, k, requests=10, latency_ms=lat) for k, lat in enumerate([0.7, 3.0, 0.8])]
    rs += [result("no-op", 1, 1, k, requests=10, latency_ms=0.4) for k in range(3)]
    [p50] = [c for c in bench.evaluate(rs, None) if c[0].startswith("single-instance")]
    assert p50[2] is True  # ratios 1.75, 7.5, 2.0 -> median 2.0
    assert "2.00×" in p50[1]


def test_pooled_rows_weight_cpu_by_requests():
    a = result("ours", 1000, 16, 0, requests=30, seconds=2.0, cpu_ms=10.0, latency_ms=5.0)
    b = result("ours", 1000, 16, 1, requests=10, seconds=2.0, cpu_ms=20.0, latency_ms=9.0)
    [p] = bench.pool_all([a, b])
    assert (p.requests, p.seconds) == (40, 4.0)
    assert p.server_cpu_ms == pytest.approx(12.5)
    assert p.p50 == 5.0
    assert p.ips == pytest.approx(40 / 4.0 * 1000)


def test_decode_headroom_says_what_10x_leaves():
    rs = rounds({"decode": [120, 120, 120], "ours": [60, 60, 60], "joblib": [10, 10, 10]})
    [line] = bench.decode_headroom(rs)
    assert "reaches 12.0x joblib" in line
    assert "10x allows 83% of its throughput" in line
    assert "ours has 50%" in line


def test_decode_headroom_sets_the_array_form_against_the_floor_decoding_arrays():
    rs = rounds({"decode": [120, 120, 120], "decode-array": [200, 200, 200], "ours": [60, 60, 60],
                 "ours-array": [50, 50, 50], "joblib": [10, 10, 10]})
    objects, arrays = bench.decode_headroom(rs)
    assert objects.startswith("1000-instance requests as objects") and "reaches 12.0x joblib" in objects
    assert arrays.startswith("1000-instance requests as arrays") and "reaches 20.0x joblib" in arrays
    assert "10x allows 50% of its throughput; ours has 25%" in arrays


def test_array_form_has_its_own_throughput_verdict_for_large_requests():
    rs = rounds({"ours": [50, 50, 50], "ours-array": [120, 110, 130], "joblib": [10, 10, 10]})
    checks = {c[0]: c for c in bench.evaluate(rs, None)}
    array = checks["throughput ≥ 10× joblib, 1000-instance requests in array form (c=16)"]
    assert array[2] is True and "12.00× (median of 3 rounds" in array[1]
    assert checks["throughput ≥ 10× joblib, 1000-instance requests (c=16)"][2] is False  # objects: 5x
    small = rounds({"ours-array": [120, 110, 130], "joblib": [10, 10, 10]}, instances=1)
    assert not [c for c in bench.evaluate(small, None) if "array form" in c[0]]  # only for 1000+ instances


def test_forms_are_reported_side_by_side_with_body_sizes_and_ratios():
    rs = rounds({"ours": [50, 50, 50], "ours-array": [120, 110, 130], "joblib": [10, 10, 10]})
    [line] = bench.form_comparison(rs, {("object", 1000): 800_000, ("array", 1000): 200_000})
    assert line.startswith("1000-instance requests, c=16: object 800.0 kB body, 50,000 instances/s")
    assert "5.0x joblib | array 200.0 kB body, 120,000 instances/s" in line and line.endswith("12.0x joblib")


def test_array_form_is_the_feature_values_in_schema_order():
    assert bench.as_array({"customer_id": "c1", "b": 2.0, "a": None}, ["a", "b"]) == [None, 2.0]
