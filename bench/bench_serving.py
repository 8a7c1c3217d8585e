"""Benchmark: the prediction server against an HTTP floor, a JSON-decode floor and a joblib/pandas server.

Servers run side by side on 127.0.0.1 under uvicorn with the same worker count: ``no-op`` (a constant: the
HTTP floor), ``decode`` (reads and decodes the JSON body with msgspec: the floor of any Python server that
must read the instances; ``decode-array`` with array-form bodies), ``ours`` (``python -m serving``, log on;
``ours-array`` sent Vertex Batch Prediction's array form) and ``joblib`` (unpickle ``model.joblib``, a
pandas DataFrame, scikit-learn's ``predict_proba``: what common templates ship).

Each scenario (1 or 1000 instances × concurrency 1 or 16) runs in ``--rounds`` rounds, the servers back to
back in each, so noise hits them alike; a target's ratio is the median over the rounds. The in-process
asyncio keep-alive client also reports each side's CPU per request and the cores other processes took,
since on a shared machine throughput follows them. A soak (``--soak-seconds`` at c=32 on ``ours``) counts
errors and samples memory. Targets: single-instance p50 ≤ 2× the floor; ≥ 10× joblib's throughput;
≥ 100k instances/s at 1000 instances; a soak with 0 errors and flat memory. Results: docs/benchmarks.md.

Run: ``python bench/bench_serving.py --help`` (or ``make bench-serving``). Loopback only, bounded in time.
"""

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
RESULTS_DIR = ROOT / "bench" / "results"
P50_RATIO_TARGET = 2.0
THROUGHPUT_RATIO_TARGET = 10.0
BATCH_RATE_TARGET = 100_000.0
MEMORY_GROWTH_TARGET = 0.10  # soak: last-10-s median RSS at most 10% above the first-10-s median
SERVERS = ("no-op", "decode", "ours", "joblib")  # processes
RUNS = ("no-op", "decode", "decode-array", "ours", "ours-array", "joblib")  # each round, back to back
PROCESS = {"ours-array": "ours", "decode-array": "decode"}  # a run that uses another run's process (other payloads)
ARRAY_RUNS = frozenset({"ours-array", "decode-array"})  # runs sent the array form


# --------------------------------------------------------------------------------------------- apps
# Factories for uvicorn --factory (nothing is built at import).

def noop_app() -> Any:
    """The HTTP floor: FastAPI returning a constant."""
    from fastapi import FastAPI, Request
    from fastapi.responses import Response

    app = FastAPI()
    body = b'{"predictions":[{"churn_probability":0.5,"churned":false}]}'

    @app.post("/predict")
    async def predict(request: Request) -> Response:  # the body is not read, on purpose
        return Response(body, media_type="application/json")

    return app


def decode_app() -> Any:
    """The parsing floor: read the body, decode its JSON to Python objects, return a constant."""
    import msgspec
    from fastapi import FastAPI, Request
    from fastapi.responses import Response

    app = FastAPI()
    decode = msgspec.json.Decoder().decode
    body = b'{"predictions":[{"churn_probability":0.5,"churned":false}]}'

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        decoded = decode(await request.body())
        return Response(body if decoded else b"{}", media_type="application/json")

    return app


def joblib_app() -> Any:
    """The conventional server: joblib-unpickled scikit-learn pipeline, pandas DataFrame, predict_proba."""
    from contextlib import asynccontextmanager
    from typing import Any as _Any

    import joblib
    import pandas as pd
    from fastapi import FastAPI
    from pydantic import BaseModel

    folder = Path(os.environ["BENCH_MODEL_DIR"])
    state: dict[str, _Any] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        state["pipeline"] = joblib.load(folder / "model.joblib")
        state["card"] = json.loads((folder / "model_card.json").read_text())
        state["columns"] = [f["name"] for f in json.loads((folder / "feature_schema.json").read_text())["features"]]
        yield

    class Request(BaseModel):
        instances: list[dict[str, _Any]]

    app = FastAPI(lifespan=lifespan)

    @app.post("/predict")
    def predict(request: Request) -> dict:
        frame = pd.DataFrame(request.instances)
        proba = state["pipeline"].predict_proba(frame[state["columns"]])[:, 1]
        threshold = state["card"]["threshold"]
        return {"predictions": [{"churn_probability": float(p), "churned": bool(p >= threshold)} for p in proba]}

    return app


# --------------------------------------------------------------------------------------------- model + data

def prepare(work: Path, customers: int, candidates: str) -> tuple[Path, list[dict[str, Any]]]:
    """Generates data, trains and saves a model folder; returns it and validation rows as instances."""
    sys.path.insert(0, str(ROOT))
    from churn.features import read_split
    from churn.sample_data import generate, write_raw
    from churn.schema import FeatureSchema
    from components import data_prep, feature_engineering, train

    write_raw(generate(customers, seed=42), work / "raw")
    data_prep.run(work / "raw", work / "interim", seed=42)
    feature_engineering.run(work / "interim", work / "features", work / "processed", work / "processed")
    schema = FeatureSchema.load(work / "processed")
    tr = read_split(work / "processed" / "train.csv", schema)
    va = read_split(work / "processed" / "validation.csv", schema)
    trained = train.train_model(tr, va, schema, seed=42, candidates=tuple(candidates.split(",")))
    train.save_model(trained, schema, work / "model")
    return work / "model", instances_from(va, schema)


def as_array(instance: dict[str, Any], names: list[str]) -> list[Any]:
    """An instance in Vertex AI Batch Prediction's array form: the feature values in schema order."""
    return [instance.get(name) for name in names]


def instances_from(frame: Any, schema: Any) -> list[dict[str, Any]]:
    """Rows as JSON request instances."""
    from components.export import request_instances

    frame = frame.assign(customer_id=frame["customer_id"].astype(str))
    return request_instances(frame, schema)


# --------------------------------------------------------------------------------------------- servers

def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """A server process under test."""

    name: str
    port: int
    proc: subprocess.Popen
    log: Path

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"


def start(name: str, model_dir: Path, work: Path, workers: int, log_predictions: bool = True) -> Server:
    """Starts one of the three servers and waits until it answers."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_MODEL_DIR": str(model_dir)}
    if name == "ours":
        env.update(AIP_HTTP_PORT=str(port), AIP_STORAGE_URI=str(model_dir), SERVING_WORKERS=str(workers),
                   SERVING_HOST=HOST, SERVING_PREDICTION_LOG_DIR=str(work / "predictions"),
                   SERVING_PREDICTION_LOG=str(log_predictions).lower())
        cmd = [sys.executable, "-m", "serving"]
    else:
        factory = {"no-op": "noop_app", "decode": "decode_app", "joblib": "joblib_app"}[name]
        # The same uvicorn setup as ours (serving.__main__.serve), so only the app differs.
        env["PYTHONPATH"] = f"{ROOT}:{ROOT / 'bench'}"
        cmd = [sys.executable, "-c", f"from serving.__main__ import serve; serve('bench_serving:{factory}', "
               f"host='{HOST}', port={port}, workers={workers}, factory=True, log_level='warning')"]
    log = work / f"{name}.log"
    proc = subprocess.Popen(cmd, env=env, cwd=work, stdout=log.open("w"), stderr=subprocess.STDOUT)
    server = Server(name, port, proc, log)
    probe = server.url("/health") if name == "ours" else server.url("/docs")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(probe, timeout=2) as resp:
                if resp.status == 200:
                    return server
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{name} did not become ready: {log.read_text()[-2000:]}")


def stop(server: Server) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()


def _tree(pid: int) -> set[int]:
    """A process and its descendants (Linux /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, frontier = {pid}, [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parents.items() if pp == p and c not in tree]
        tree.update(kids)
        frontier.extend(kids)
    return tree


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of a process and its descendants (Linux /proc)."""
    total = 0
    for p in _tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def tree_cpu_seconds(pids: set[int]) -> float:
    """User + system CPU time of these processes, all their threads (Linux /proc)."""
    total = 0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time all CPUs spent busy since boot (``/proc/stat``: everything but idle and iowait)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------------------------- load

def request_bytes(path: str, body: bytes) -> bytes:
    head = (f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return head + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return status


@dataclass
class Result:
    """One scenario on one server."""

    server: str
    instances: int
    concurrency: int
    round: int = 0
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    server_cpu_ms: float = float("nan")  # per request, the server's process tree, warm-up included
    client_cpu_ms: float = float("nan")  # per request, this process (the load generator)
    other_cores: float = float("nan")  # cores busy with other processes during the run, on average
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    sent: int = field(default=0, repr=False)  # requests answered, warm-up included

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies_ms) if self.latencies_ms else float("nan")

    @property
    def p99(self) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def ips(self) -> float:
        return self.rps * self.instances


def pooled(rounds: list[Result]) -> Result:
    """The rounds of one server and scenario as one result (latencies and requests pooled, CPU per request
    weighted by requests)."""
    first = rounds[0]
    out = Result(first.server, first.instances, first.concurrency, round=-1)
    out.requests, out.errors = sum(r.requests for r in rounds), sum(r.errors for r in rounds)
    out.seconds, out.sent = sum(r.seconds for r in rounds), sum(r.sent for r in rounds)
    out.latencies_ms = [x for r in rounds for x in r.latencies_ms]
    measured = [r for r in rounds if r.sent and r.server_cpu_ms == r.server_cpu_ms]
    if measured:
        sent = sum(r.sent for r in measured)
        out.server_cpu_ms = sum(r.server_cpu_ms * r.sent for r in measured) / sent
        out.client_cpu_ms = sum(r.client_cpu_ms * r.sent for r in measured) / sent
        out.other_cores = sum(r.other_cores * r.seconds for r in measured) / sum(r.seconds for r in measured)
    return out


def pool_all(results: list[Result]) -> list[Result]:
    """One pooled result per (server, instances, concurrency), in first-seen order."""
    groups: dict[tuple[str, int, int], list[Result]] = {}
    for r in results:
        groups.setdefault((r.server, r.instances, r.concurrency), []).append(r)
    return [pooled(g) for g in groups.values()]


def round_ratios(results: list[Result], a: tuple[str, int, int], b: tuple[str, int, int],
                 metric: Any) -> list[float]:
    """``metric(a) / metric(b)`` per round in which both ran."""
    by_round: dict[int, dict[tuple[str, int, int], Result]] = {}
    for r in results:
        by_round.setdefault(r.round, {})[(r.server, r.instances, r.concurrency)] = r
    ratios = []
    for got in by_round.values():
        if a in got and b in got and metric(got[b]):
            ratios.append(metric(got[a]) / metric(got[b]))
    return ratios


def _median_text(ratios: list[float], unit: str = "×") -> str:
    each = ", ".join(f"{x:.2f}" for x in ratios)
    return f"{statistics.median(ratios):.2f}{unit} (median of {len(ratios)} rounds: {each})"


async def _connection(port: int, payloads: list[bytes], stop_at: float, warm_until: float, result: Result,
                      max_requests: int) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    i = 0
    try:
        while time.perf_counter() < stop_at and result.requests < max_requests:
            payload = payloads[i % len(payloads)]
            i += 1
            t0 = time.perf_counter()
            try:
                writer.write(payload)
                status = await _read_response(reader)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                result.errors += 1
                writer.close()
                reader, writer = await asyncio.open_connection(HOST, port)
                continue
            result.sent += 1
            if t0 >= warm_until:
                result.latencies_ms.append((time.perf_counter() - t0) * 1e3)
                result.requests += 1
                result.errors += status != 200
    finally:
        writer.close()


def _run(main: Any) -> None:
    """Runs a coroutine on uvloop when installed (a cheaper client), else asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


def run_load(port: int, payloads: list[bytes], concurrency: int, seconds: float, warmup: float,
             result: Result, max_requests: int = 10**9, server_pid: int | None = None) -> Result:
    """Drives ``concurrency`` keep-alive connections for ``warmup + seconds``; with ``server_pid``, also
    measures the CPU time per request of the server and of this client, and what other processes took."""
    async def main() -> None:
        start_t = time.perf_counter()
        warm_until, stop_at = start_t + warmup, start_t + warmup + seconds
        await asyncio.gather(*(_connection(port, payloads[k::concurrency] or payloads, stop_at, warm_until, result,
                                           max_requests) for k in range(concurrency)))
        result.seconds = max(1e-9, time.perf_counter() - warm_until)

    pids = _tree(server_pid) if server_pid else set()
    server0, client0 = tree_cpu_seconds(pids), time.process_time()
    busy0, wall0 = machine_busy_seconds(), time.perf_counter()
    _run(main())
    server, client = tree_cpu_seconds(pids) - server0, time.process_time() - client0
    busy, wall = machine_busy_seconds() - busy0, time.perf_counter() - wall0
    if server_pid and result.sent:
        result.server_cpu_ms, result.client_cpu_ms = server / result.sent * 1e3, client / result.sent * 1e3
        result.other_cores = max(0.0, busy - server - client) / wall
    return result


# --------------------------------------------------------------------------------------------- report

def _fmt(x: float, digits: int = 2) -> str:
    return "-" if x != x else f"{x:,.{digits}f}"


def print_table(results: list[Result]) -> None:
    print(f"{'instances':>9} {'conc':>4}  {'server':<10} {'requests':>8} {'errors':>6} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'req/s':>9} {'instances/s':>12} {'srv cpu ms':>10} {'cli cpu ms':>10} {'others':>6}")
    for r in results:
        print(f"{r.instances:>9} {r.concurrency:>4}  {r.server:<10} {r.requests:>8} {r.errors:>6} {_fmt(r.p50):>8} "
              f"{_fmt(r.p99):>8} {_fmt(r.rps, 0):>9} {_fmt(r.ips, 0):>12} {_fmt(r.server_cpu_ms, 3):>10} "
              f"{_fmt(r.client_cpu_ms, 3):>10} {_fmt(r.other_cores):>6}")
    print("srv/cli cpu ms: CPU time per request of the server's processes and of the load generator; others: "
          "cores other processes kept busy meanwhile")


def evaluate(results: list[Result], soak: dict[str, Any] | None) -> list[tuple[str, str, bool]]:
    """Target lines: ``(description, measured, passed)``; ratios are the median over the rounds, each round
    comparing servers that ran back to back."""
    pool = {(r.server, r.instances, r.concurrency): r for r in pool_all(results)}
    checks = []
    p50 = round_ratios(results, ("ours", 1, 1), ("no-op", 1, 1), lambda r: r.p50)
    if p50:
        ratio = statistics.median(p50)
        checks.append(("single-instance p50 ≤ 2× the no-op floor (c=1)",
                       f"{pool['ours', 1, 1].p50:.2f} ms vs {pool['no-op', 1, 1].p50:.2f} ms pooled; "
                       f"{_median_text(p50)}", ratio <= P50_RATIO_TARGET))
    for n in sorted({r.instances for r in results}):
        ratios = round_ratios(results, ("ours", n, 16), ("joblib", n, 16), lambda r: r.ips)
        if ratios:
            o, j = pool[("ours", n, 16)], pool[("joblib", n, 16)]
            checks.append((f"throughput ≥ 10× joblib, {n}-instance requests (c=16)",
                           f"{o.ips:,.0f} vs {j.ips:,.0f} instances/s pooled; {_median_text(ratios)}",
                           statistics.median(ratios) >= THROUGHPUT_RATIO_TARGET))
    for n in sorted({r.instances for r in results if r.server == "ours-array" and r.instances >= 1000}):
        ratios = round_ratios(results, ("ours-array", n, 16), ("joblib", n, 16), lambda r: r.ips)
        if ratios:
            o, j = pool[("ours-array", n, 16)], pool[("joblib", n, 16)]
            checks.append((f"throughput ≥ 10× joblib, {n}-instance requests in array form (c=16)",
                           f"{o.ips:,.0f} vs {j.ips:,.0f} instances/s pooled; {_median_text(ratios)}",
                           statistics.median(ratios) >= THROUGHPUT_RATIO_TARGET))
    rates = [r.ips for r in results if (r.server, r.instances, r.concurrency) == ("ours", 1000, 16)]
    if rates:
        checks.append(("≥ 100k instances/s with 1000-instance requests (c=16)",
                       f"{statistics.median(rates):,.0f} instances/s (median of {len(rates)} rounds: "
                       f"{', '.join(f'{x:,.0f}' for x in rates)})", statistics.median(rates) >= BATCH_RATE_TARGET))
    if soak:
        checks.append((f"soak {soak['seconds']:.0f} s at c={soak['concurrency']}: 0 errors",
                       f"{soak['requests']:,} requests, {soak['errors']} errors", soak["errors"] == 0))
        checks.append(("soak: flat memory (last 10 s ≤ first 10 s + 10%)",
                       f"{soak['rss_first_mb']:.0f} MB → {soak['rss_last_mb']:.0f} MB ({soak['rss_growth']:+.1%})",
                       soak["rss_growth"] <= MEMORY_GROWTH_TARGET))
    return checks


def decode_headroom(results: list[Result]) -> list[str]:
    """Per request size and form (c=16): how far the ``decode`` floor is above 10× joblib, i.e. how much of
    its throughput a server may lose to validation, scoring, the response and the log and still make 10×
    (medians over the rounds). The array form is set against the floor decoding the same array bodies."""
    pool = {(r.server, r.instances, r.concurrency): r for r in pool_all(results)}
    lines = []
    for n in sorted({r.instances for r in results}):
        for form, floor_name, ours_name in (("objects", "decode", "ours"), ("arrays", "decode-array", "ours-array")):
            floor = round_ratios(results, (floor_name, n, 16), ("joblib", n, 16), lambda r: r.ips)
            ours = round_ratios(results, (ours_name, n, 16), (floor_name, n, 16), lambda r: r.ips)
            if not (floor and ours):
                continue
            floor_ratio = statistics.median(floor)
            lines.append(f"{n}-instance requests as {form} (c=16): the decode floor (read + JSON decode, nothing "
                         f"else) reaches {floor_ratio:.1f}x joblib, so 10x allows "
                         f"{min(1.0, THROUGHPUT_RATIO_TARGET / floor_ratio):.0%} of its throughput; ours has "
                         f"{statistics.median(ours):.0%} (medians of {len(ours)} rounds; server CPU per request: "
                         f"floor {pool[floor_name, n, 16].server_cpu_ms:.2f} ms, ours "
                         f"{pool[ours_name, n, 16].server_cpu_ms:.2f} ms)")
    return lines


def form_comparison(results: list[Result], body_bytes: dict[tuple[str, int], int]) -> list[str]:
    """Object vs array form side by side, per request size and concurrency: body size, instances/s, server
    CPU per request, and each form's ratio to joblib (median over the rounds)."""
    pool = {(r.server, r.instances, r.concurrency): r for r in pool_all(results)}
    lines = []
    for n, c in sorted({(r.instances, r.concurrency) for r in results if r.server == "ours-array"}):
        cells = []
        for form, name in (("object", "ours"), ("array", "ours-array")):
            r = pool.get((name, n, c))
            if r is None:
                continue
            ratios = round_ratios(results, (name, n, c), ("joblib", n, c), lambda x: x.ips)
            vs = f", {statistics.median(ratios):.1f}x joblib" if ratios else ""
            cells.append(f"{form} {body_bytes.get((form, n), 0) / 1e3:,.1f} kB body, {r.ips:,.0f} instances/s, "
                         f"server {r.server_cpu_ms:.2f} ms CPU/request{vs}")
        lines.append(f"{n}-instance requests, c={c}: " + " | ".join(cells))
    return lines


# --------------------------------------------------------------------------------------------- main

def soak_run(server: Server, payloads: list[bytes], seconds: float, concurrency: int) -> dict[str, Any]:
    """Load for ``seconds`` while sampling the server's memory every second."""
    import threading

    samples: list[tuple[float, int]] = []
    done = threading.Event()

    def sample() -> None:
        t0 = time.monotonic()
        while not done.wait(1.0):
            samples.append((time.monotonic() - t0, tree_rss_bytes(server.proc.pid)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    result = run_load(server.port, payloads, concurrency, seconds, 0.0, Result("ours", 0, concurrency))
    done.set()
    sampler.join()
    window = min(10.0, seconds / 3)
    first = [rss for t, rss in samples if t <= window] or [samples[0][1]]
    last = [rss for t, rss in samples if t >= seconds - window] or [samples[-1][1]]
    m_first, m_last = statistics.median(first), statistics.median(last)
    return {"seconds": seconds, "concurrency": concurrency, "requests": result.requests, "errors": result.errors,
            "p50_ms": result.p50, "p99_ms": result.p99, "rss_first_mb": m_first / 1e6, "rss_last_mb": m_last / 1e6,
            "rss_growth": (m_last - m_first) / m_first, "rss_samples_mb": [round(r / 1e6, 1) for _, r in samples]}


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python bench/bench_serving.py --help``."""
    parser = argparse.ArgumentParser(
        prog="bench_serving",
        description="Latency and throughput of the prediction server next to a no-op FastAPI floor and a "
                    "conventional joblib + pandas server, on 127.0.0.1; then a soak. Prints a table, ratios "
                    "and PASS/FAIL per target.")
    parser.add_argument("--model-dir", type=Path, help="model folder (with model.onnx and model.joblib); default: "
                        "train one on generated data (needs --validation-csv to be given together)")
    parser.add_argument("--validation-csv", type=Path, help="processed split to build instances from")
    parser.add_argument("--customers", type=int, default=3000, help="generated customers (default: %(default)s)")
    parser.add_argument("--candidates", default="logistic_regression,hist_gradient_boosting",
                        help="training candidates, best kept (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)),
                        help="uvicorn workers per server (default: CPUs available, %(default)s)")
    parser.add_argument("--seconds", type=float, default=2.0,
                        help="measured seconds per server, scenario and round (default: %(default)s)")
    parser.add_argument("--warmup", type=float, default=0.5,
                        help="warm-up seconds per server, scenario and round (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds per scenario, the servers back to back in each; ratios are the median over "
                             "the rounds, so a burst of other work spoils one round, not the verdict "
                             "(default: %(default)s)")
    parser.add_argument("--sizes", default="1,1000", help="instances per request (default: %(default)s)")
    parser.add_argument("--concurrency", default="1,16", help="concurrent connections (default: %(default)s)")
    parser.add_argument("--soak-seconds", type=float, default=60.0,
                        help="soak length, 0 to skip (default: %(default)s)")
    parser.add_argument("--soak-concurrency", type=int, default=32, help="default: %(default)s")
    parser.add_argument("--no-prediction-log", action="store_true",
                        help="run ours with SERVING_PREDICTION_LOG=false (to see what the CSV log costs)")
    parser.add_argument("--json", type=Path, help="also write the results here (default: bench/results/serving-*.json)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.seconds <= 0 or args.warmup < 0:
        parser.error("--rounds and --seconds must be positive, --warmup not negative")

    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        work = Path(tmp)
        if args.model_dir:
            if not args.validation_csv:
                parser.error("--model-dir needs --validation-csv")
            sys.path.insert(0, str(ROOT))
            from churn.features import read_split
            from churn.schema import FeatureSchema

            schema = FeatureSchema.load(args.model_dir)
            model_dir, rows = args.model_dir, instances_from(read_split(args.validation_csv, schema), schema)
        else:
            print(f"training a model on {args.customers} generated customers …", flush=True)
            model_dir, rows = prepare(work, args.customers, args.candidates)
        card = json.loads((model_dir / "model_card.json").read_text())
        names = [f["name"] for f in json.loads((model_dir / "feature_schema.json").read_text())["features"]]
        print(f"model: {card['model_type']}, {len(rows)} validation rows as instances; {args.workers} workers per "
              f"server; {os.cpu_count()} CPUs", flush=True)
        servers = {name: start(name, model_dir, work, args.workers, not args.no_prediction_log) for name in SERVERS}
        results: list[Result] = []
        body_bytes: dict[tuple[str, int], int] = {}
        soak = None
        try:
            for size in (int(s) for s in args.sizes.split(",")):
                bodies: dict[str, list[bytes]] = {"object": [], "array": []}
                for k in range(8):
                    chunk = [rows[(k * size + i) % len(rows)] for i in range(size)]
                    bodies["object"].append(json.dumps({"instances": chunk}).encode())
                    bodies["array"].append(json.dumps({"instances": [as_array(x, names) for x in chunk]}).encode())
                for form, sent in bodies.items():
                    body_bytes[form, size] = round(statistics.mean(map(len, sent)))
                payloads = {form: [request_bytes("/predict", b) for b in sent] for form, sent in bodies.items()}
                for conc in (int(c) for c in args.concurrency.split(",")):
                    for k, name in ((k, name) for k in range(args.rounds) for name in RUNS):
                        server = servers[PROCESS.get(name, name)]
                        form = "array" if name in ARRAY_RUNS else "object"
                        res = run_load(server.port, payloads[form], conc, args.seconds, args.warmup,
                                       Result(name, size, conc, round=k), server_pid=server.proc.pid)
                        results.append(res)
                        print(f"  {size:>5} instances, c={conc:<3} round {k + 1}/{args.rounds} {name:<10} "
                              f"p50 {_fmt(res.p50)} ms, "
                              f"{_fmt(res.ips, 0)} instances/s, {res.errors} errors, CPU/request server "
                              f"{_fmt(res.server_cpu_ms, 3)} ms client {_fmt(res.client_cpu_ms, 3)} ms, other "
                              f"processes {_fmt(res.other_cores)} cores", flush=True)
            if args.soak_seconds > 0:
                mix = [request_bytes("/predict", json.dumps({"instances": rows[k:k + n]}).encode())
                       for k, n in ((0, 1), (5, 1), (9, 10), (20, 1), (31, 100), (40, 1))]
                print(f"soak: {args.soak_seconds:.0f} s at c={args.soak_concurrency} on ours …", flush=True)
                soak = soak_run(servers["ours"], mix, args.soak_seconds, args.soak_concurrency)
        finally:
            for server in servers.values():
                stop(server)
        logged = sum(max(0, sum(1 for _ in p.open()) - 1) for p in (work / "predictions").glob("*_outputs.csv")) \
            if (work / "predictions").is_dir() else 0

    print()
    print_table(pool_all(results))
    if soak:
        print(f"\nsoak: {soak['requests']:,} requests in {soak['seconds']:.0f} s at c={soak['concurrency']}, "
              f"{soak['errors']} errors, p50 {soak['p50_ms']:.2f} ms, p99 {soak['p99_ms']:.2f} ms; server RSS "
              f"{soak['rss_first_mb']:.0f} MB (first 10 s) → {soak['rss_last_mb']:.0f} MB (last 10 s)")
    print(f"prediction log: {logged:,} rows written by ours during the run")
    print(f"machine: {os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at the end")
    print()
    for line in decode_headroom(results):
        print(line)
    print("\nobject vs array form (the same instances; arrays: feature values in schema order):")
    for line in form_comparison(results, body_bytes):
        print(f"  {line}")
    print()
    checks = evaluate(results, soak)
    for desc, measured, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {desc}: {measured}")
    out = args.json or RESULTS_DIR / f"serving-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"model_type": card["model_type"], "workers": args.workers,
                               "results": [{**{k: v for k, v in asdict(r).items() if k != "latencies_ms"},
                                            "p50_ms": r.p50, "p99_ms": r.p99, "rps": r.rps, "ips": r.ips}
                                           for r in results],
                               "pooled": [{**{k: v for k, v in asdict(r).items() if k not in ("latencies_ms", "round")},
                                           "p50_ms": r.p50, "p99_ms": r.p99, "rps": r.rps, "ips": r.ips}
                                          for r in pool_all(results)],
                               "load_average": os.getloadavg(), "soak": soak,
                               "decode_headroom": decode_headroom(results),
                               "forms": form_comparison(results, body_bytes),
                               "body_bytes": {f"{form}/{n}": b for (form, n), b in body_bytes.items()},
                               "checks": [{"target": d, "measured": m, "pass": ok} for d, m, ok in checks]},
                              indent=2) + "\n")
    print(f"results: {out}")
    return 0 if all(ok for _, _, ok in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
