"""data_prep's transactions rules end to end: bad rows, odd values and hostile records, each rejected
with its reason and its text, or kept; the interim files and the accounting agree."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churn.cleaning import (
    AFTER_LOG_END,
    DUPLICATE_TRANSACTION,
    IMPLAUSIBLE_AMOUNT,
    IMPLAUSIBLE_TIMESTAMP,
    MALFORMED,
    MAX_ABS_AMOUNT,
    NEGATIVE_AMOUNT,
    UNKNOWN_CUSTOMER,
    UNPARSEABLE_TIMESTAMP,
    RawDataError,
    clean_transactions,
    log_end_limit,
)
from components import data_prep as dp
from tests.conftest import write_customers

INTERIM_FILES = ("cleaned_customers.csv", "filtered_sales.csv", "rejected_customers.csv",
                 "rejected_transactions.csv", "labels.csv", "prep_metadata.json")

CUSTOMERS = "customer_id,signup_date,plan\n" + "\n".join(
    [f"{i:05d},2024-01-{1 + i % 28:02d},{'basic' if i % 2 else 'premium'}" for i in range(1, 21)]
    + ["00007,2024-02-01,basic", ",2024-01-01,basic", "00099,never,basic"])


def tx(tid: str, cid: str, ts: str, amount, **extra) -> dict:
    return {"transaction_id": tid, "customer_id": cid, "timestamp": ts, "amount": amount,
            "quantity": 1, "category": "books", "channel": "web", "status": "completed", **extra}


def _good_rows() -> list[dict]:
    """Purchases of customers 1-20 in Jan-Jul; the even ones buy again in December (not churned)."""
    rows = []
    for i in range(1, 21):
        for k in range(4 + (i % 2 == 0)):
            month = 12 if k == 4 else 1 + 2 * k
            rows.append(tx(f"g{i}-{k}", f"{i:05d}", f"2024-{month:02d}-{1 + (i * k) % 28:02d}T{k:02d}:15:00Z",
                           round(3.5 * i + k, 2), category=["books", "games", "home"][(i + k) % 3],
                           channel=["web", "app"][k % 2]))
    return rows


def _without(row: dict, *keys: str) -> dict:
    return {k: v for k, v in row.items() if k not in keys}


# Every rule, in rows next to good ones.
BAD_ROWS = [
    _without(tx("b1", "00001", "2024-05-01", 5.0), "customer_id"),          # missing customer_id
    tx("b2", "", "2024-05-01", 5.0),                                        # empty customer_id
    _without(tx("b3", "00002", "x", 5.0), "timestamp"),                     # missing timestamp
    tx("b4", "00002", "2024-13-01", 5.0),                                   # unparseable (safe pattern)
    tx("b5", "00002", "2024-02-30T10:00:00Z", 5.0),                         # no such day
    tx("b6", "00002", "notadate", 5.0),                                     # unparseable (pandas decides)
    tx("b7", "00003", "20240601", 5.0),                                     # ISO basic format: pandas decides
    tx("b8", "00003", "2024-06-01T10:00:00.123456+02:00", 5.0),             # offset and fraction
    tx("b9", "00003", "2024-06-01 10:00", 7.25),                            # no seconds: pandas decides
    tx("b10", "00003", "2024-06-01T10:00:00.5Z", 7.25),
    _without(tx("b11", "00004", "2024-06-01", 0), "amount"),                # missing amount
    tx("b12", "00004", "2024-06-01", -3),                                   # negative, not a refund
    tx("b13", "00004", "2024-06-02T00:00:00+02:00", -3, status="Refunded"),  # a refund (any case)
    tx("b14", "99999", "2024-06-01", 5),                                    # unknown customer
    tx("b15", "00099", "2024-06-01", 5),                                    # customer rejected itself
    tx("g1-0", "00005", "2024-06-01", 5),                                   # repeated transaction id
    tx("d1", "99999", "2024-06-01", 5),                                     # first d1: unknown customer
    tx("d1", "00005", "2024-06-03", 6),                                     # ... so this one is a repeat
    tx("d2", "00005", "nope", 5),                                           # first d2 rejected per record
    tx("d2", "00005", "2024-06-04", 6),                                     # ... so this one is kept
    _without(tx("b16", "00006", "2024-06-05T08:00:00Z", 12.5), "category", "quantity"),
    tx("b17", "00006", "2024-06-06T08:00:00Z", -0.0, category=""),
    tx("b18", "00006", "2024-06-07T08:00:00Z", 123456789.125, quantity=3.0),
    tx("b19", "00007", "2024-06-08T08:00:00Z", 0.001, category="a,b"),
    tx("b20", "00008", "1900-01-01T00:30:00+01:00", 5.0),                   # implausible: 1899 in UTC
    tx("b21", "00008", "2199-12-31T23:30:00-01:00", 5.0),                   # implausible: 2200 in UTC
    tx("b22", "00008", "9999-12-31T00:00:00Z", 5.0),                        # implausible (pandas parses it)
    tx("b23", "00008", "0001-01-01", 5.0),                                  # implausible (pandas parses it)
    tx("b24", "00009", "2025-03-01T00:00:00Z", 5.0),                        # after the log's end
    tx("b25", "99999", "2099-03-01T00:00:00Z", 5.0),                        # after the log's end, unknown too
    tx("b26", "00009", "2024-06-09T08:00:00Z", 999999999.5),                # large but plausible
]


def _write_jsonl(raw: Path, rows: list, *, compact: bool = True) -> None:
    raw.mkdir(parents=True, exist_ok=True)
    seps = (",", ":") if compact else (", ", ": ")
    (raw / "transactions.json").write_text(
        "".join((r if isinstance(r, str) else json.dumps(r, separators=seps)) + "\n" for r in rows))


def _run(raw: Path, out: Path, **kw) -> dict:
    meta = dp.run(raw, out, validation_fraction=0.5, seed=3, **kw)
    for name in INTERIM_FILES:
        assert (out / name).is_file(), name
    for name, acc in meta["rows"].items():
        assert acc["raw"] == acc["kept"] + acc["rejected"] == acc["kept"] + sum(acc["reasons"].values()), name
    on_disk = {"customers.csv": ("cleaned_customers.csv", "rejected_customers.csv"),
               "transactions.json": ("filtered_sales.csv", "rejected_transactions.csv")}
    for name, (kept, rejected) in on_disk.items():
        assert len(_read(out / kept)) == meta["rows"][name]["kept"], kept
        assert len(_read(out / rejected)) == meta["rows"][name]["rejected"], rejected
    assert json.loads((out / "prep_metadata.json").read_text()) == meta
    return meta


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


@pytest.mark.parametrize("compact", [True, False])
def test_bad_rows_are_rejected_with_their_reasons(tmp_path: Path, compact: bool) -> None:
    write_customers(tmp_path / "raw", CUSTOMERS)
    rows = _good_rows()
    rows[5:5] = BAD_ROWS
    _write_jsonl(tmp_path / "raw", rows, compact=compact)
    meta = _run(tmp_path / "raw", tmp_path / "out")
    acc = meta["rows"]["transactions.json"]
    assert acc["raw"] == len(rows)
    rejected = _read(tmp_path / "out" / "rejected_transactions.csv")
    by_id = dict(zip(rejected["transaction_id"] + "@" + rejected["source_row"], rejected["reason"], strict=True))
    assert by_id == {
        "b1@6": "missing customer_id", "b2@7": "missing customer_id", "b3@8": "missing timestamp",
        **{f"{t}@{r}": UNPARSEABLE_TIMESTAMP for t, r in (("b4", 9), ("b5", 10), ("b6", 11), ("b7", 12))},
        "b11@16": "missing amount", "b12@17": NEGATIVE_AMOUNT,
        "b14@19": UNKNOWN_CUSTOMER, "b15@20": UNKNOWN_CUSTOMER, "g1-0@21": DUPLICATE_TRANSACTION,
        "d1@22": UNKNOWN_CUSTOMER, "d1@23": DUPLICATE_TRANSACTION, "d2@24": UNPARSEABLE_TIMESTAMP,
        **{f"{t}@{r}": IMPLAUSIBLE_TIMESTAMP for t, r in (("b20", 30), ("b21", 31), ("b22", 32), ("b23", 33))},
        "b24@34": AFTER_LOG_END, "b25@35": AFTER_LOG_END,
    }
    # rejected rows keep their original texts
    assert rejected.set_index("transaction_id").loc["b6", "timestamp"] == "notadate"
    sales = _read(tmp_path / "out" / "filtered_sales.csv").set_index("transaction_id")
    assert list(sales.columns) == ["customer_id", "timestamp", "amount", "quantity", "category", "channel", "status",
                                   "is_refund"]
    assert sales.loc["b13", ["timestamp", "amount", "is_refund"]].tolist() == ["2024-06-01T22:00:00Z", "-3.0", "true"]
    assert sales.loc["b8", "timestamp"] == "2024-06-01T08:00:00.123456Z"
    assert sales.loc["b9", "timestamp"] == "2024-06-01T10:00:00Z"
    assert sales.loc["d2", "customer_id"] == "00005" and sales.loc["b19", "category"] == "a,b"
    assert sales.loc["b16", ["category", "quantity"]].tolist() == ["", ""]
    assert float(sales.loc["b26", "amount"]) == 999999999.5
    assert sales["customer_id"].str.fullmatch(r"\d{5}").all()


def test_generated_sample_accounts_for_every_row(sample_raw_dir: Path, tmp_path: Path) -> None:
    meta = _run(sample_raw_dir, tmp_path / "out")
    assert meta["rows"]["transactions.json"]["kept"] > 0 and meta["label_source"] == "derived"


def test_provided_labels(tmp_path: Path) -> None:
    write_customers(tmp_path / "raw", "customer_id,signup_date,churned\n" + "\n".join(
        f"{i:03d},2024-01-01,{['yes', 'no', ''][i % 3]}" for i in range(12)))
    _write_jsonl(tmp_path / "raw", [tx(f"t{i}", f"{i % 12:03d}", f"2024-03-{1 + i % 28:02d}", 1.5 + i)
                                    for i in range(40)])
    meta = _run(tmp_path / "raw", tmp_path / "out")
    assert meta["label_source"] == "provided" and meta["excluded_from_training"] == {"no churned label": 4}
    customers = _read(tmp_path / "out" / "cleaned_customers.csv")
    assert customers["churned"].tolist() == ["1", "0", ""] * 4


# Odd values: each is kept or rejected with its reason (None: kept).
ODD = {
    "malformed line": (["this is not json"], MALFORMED),
    "not an object": (["[1, 2]"], MALFORMED),
    "null line": (["null"], MALFORMED),
    "empty object": ([{}], "missing customer_id"),
    "text amount": ([tx("s1", "00001", "2024-05-01", "12.5")], None),
    "bool amount": ([tx("s1", "00001", "2024-05-01", True)], "non-numeric amount"),
    "huge amount": ([tx("s1", "00001", "2024-05-01", 1.5e12)], IMPLAUSIBLE_AMOUNT),
    "exponent amount": ([tx("s1", "00001", "2024-05-01", 1e-7)], None),
    "numeric customer id": ([tx("s1", 1, "2024-05-01", 1.0)], UNKNOWN_CUSTOMER),
    "numeric transaction id": ([tx(17.0, "00001", "2024-05-01", 1.0)], None),
    "padded category": ([tx("s1", "00001", "2024-05-01", 1.0, category=" books")], None),
    "explicit null": ([tx("s1", "00001", "2024-05-01", None)], "missing amount"),
    "unknown key": ([tx("s1", "00001", "2024-05-01", 1.0, coupon="X1")], None),
    "unknown null key": ([tx("s1", "00001", "2024-05-01", 1.0, coupon=None)], None),
    "nested value": ([tx("s1", "00001", "2024-05-01", 1.0, category={"a": "b"})], None),
    "escaped text": ([tx("s1", "00001", "2024-05-01", 1.0, category='say "hi"')], None),
    "non-ASCII text": ([tx("s1", "00001", "2024-05-01", 1.0, category="café")], None),
    "infinite amount": (['{"transaction_id":"s1","customer_id":"00001","timestamp":"2024-05-01","amount":Infinity}'],
                        "non-finite amount"),
    "NaN amount": (['{"transaction_id":"s1","customer_id":"00001","timestamp":"2024-05-01","amount":NaN}'],
                   "non-finite amount"),
    "implausible amount": ([tx("s1", "00001", "2024-05-01", 1e308)], IMPLAUSIBLE_AMOUNT),
    "truncated line": (['{"transaction_id":"s1","customer_id":"00001","timestamp":"2024-'], MALFORMED),
}


@pytest.mark.parametrize("case", sorted(ODD))
def test_odd_values_are_kept_or_rejected_with_their_reason(tmp_path: Path, case: str) -> None:
    rows, reason = ODD[case]
    write_customers(tmp_path / "raw", CUSTOMERS)
    good = _good_rows()
    _write_jsonl(tmp_path / "raw", good[:7] + rows + good[7:])
    meta = _run(tmp_path / "raw", tmp_path / "out")
    acc = meta["rows"]["transactions.json"]
    assert acc["raw"] == len(good) + 1
    assert acc["reasons"] == ({reason: 1} if reason else {})
    if reason:
        assert _read(tmp_path / "out" / "rejected_transactions.csv")["source_row"].tolist() == ["8"]
    else:
        sales = _read(tmp_path / "out" / "filtered_sales.csv")
        assert len(sales) == len(good) + 1


TIMESTAMPS = [
    "2024-06-01", "2024-06-01T10:00:00Z", "2024-06-01T10:00:00", "2024-06-01 10:00:00", "2024-06-01T10:00:00.5Z",
    "2024-06-01T10:00:00.000000Z", "2024-06-01T10:00:00.123456-05:30", "2024-06-01T23:59:59+23:59",
    "2024-02-29T00:00:00Z", "2023-02-29T00:00:00Z", "2024-04-31", "2024-00-10", "2024-06-00", "1900-01-01",
    "2199-12-31T23:59:59Z", "2024-06-01T24:00:00Z", "2024-06-01T10:60:00Z", "2024-06-01T10:00:60Z",
]


def test_timestamps_are_read_as_iso_8601_like_pandas_reads_them(tmp_path: Path) -> None:
    write_customers(tmp_path, CUSTOMERS)
    _write_jsonl(tmp_path, [tx(f"t{i}", "00001", ts, 1.0) for i, ts in enumerate(TIMESTAMPS)])
    cleaned = clean_transactions(tmp_path / "transactions.json", pd.Series(["00001"]))
    ours = dict(zip(cleaned.kept["transaction_id"], cleaned.kept["timestamp"], strict=True))
    unread = set(cleaned.rejected.loc[cleaned.rejected["reason"] == UNPARSEABLE_TIMESTAMP, "transaction_id"])
    assert set(cleaned.rejected["reason"]) <= {UNPARSEABLE_TIMESTAMP, AFTER_LOG_END}
    theirs = pd.to_datetime(pd.Series(TIMESTAMPS), format="ISO8601", utc=True, errors="coerce")
    differ = {}
    for i, (text, expected) in enumerate(zip(TIMESTAMPS, theirs, strict=True)):
        got = ours.get(f"t{i}", pd.NaT if f"t{i}" in unread else expected)  # after the log's end: read
        if pd.isna(got) != pd.isna(expected) or (not pd.isna(got) and got != expected):
            differ[text] = (got, expected)
    # 24:00:00 is the next day's midnight for DuckDB (ISO 8601 allows it); pandas refuses it
    assert differ == {"2024-06-01T24:00:00Z": (pd.Timestamp("2024-06-02T00:00:00Z"), pd.NaT)}, differ


def test_customer_errors_still_come_first(tmp_path: Path) -> None:
    _write_jsonl(tmp_path / "raw", _good_rows())
    with pytest.raises(RawDataError, match=r"customers\.csv: customers file not found"):
        dp.run(tmp_path / "raw", tmp_path / "out")
    write_customers(tmp_path / "raw", "customer_id,signup_date\n1,never")
    with pytest.raises(RawDataError, match=r"customers\.csv: no usable rows"):
        dp.run(tmp_path / "raw", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- hostile raw data (issue 12)

def _line(tid: str, amount: str = "5.5", ts: str = '"2024-05-01T10:00:00Z"', category: str = '"books"') -> bytes:
    return (f'{{"transaction_id":"{tid}","customer_id":"00003","timestamp":{ts},"amount":{amount},"quantity":1,'
            f'"category":{category},"channel":"web","status":"completed"}}').encode()


# Each: the hostile line, the reason it must be rejected with, and the text the rejected row must keep.
HOSTILE = {
    "truncated last line": (_line("h1")[:60], "malformed JSON record", '{"transaction_id":"h1","customer_id":"00003"'),
    "Infinity amount": (_line("h1", amount="Infinity"), "non-finite amount", "Infinity"),
    "-Infinity amount": (_line("h1", amount="-Infinity"), "non-finite amount", "-Infinity"),
    "NaN amount": (_line("h1", amount="NaN"), "non-finite amount", "NaN"),
    "overflowing amount": (_line("h1", amount="1e999"), "non-finite amount", "1e999"),
    "huge amount": (_line("h1", amount="1e308"), "implausible amount", "1e308"),
    "huge refund": (_line("h1", amount="-2e9").replace(b"completed", b"refunded"), "implausible amount", "-2e9"),
    "non-UTF-8 byte": (_line("h1", category='"caf\xe9"').replace("\xe9".encode(), b"\xe9"), "not valid UTF-8",
                       'caf\\xe9'),
    "year 9999": (_line("h1", ts='"9999-12-31T00:00:00Z"'), "implausible timestamp", "9999-12-31T00:00:00Z"),
    "year 1": (_line("h1", ts='"0001-01-01"'), "implausible timestamp", "0001-01-01"),
}


def _raw_with(tmp_path: Path, lines: list[bytes], *, last_newline: bool = True) -> Path:
    raw = tmp_path / "raw"
    write_customers(raw, CUSTOMERS)
    good = [json.dumps(r, separators=(",", ":")).encode() for r in _good_rows()]
    (raw / "transactions.json").write_bytes(b"\n".join(good + lines) + (b"\n" if last_newline else b""))
    return raw


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_record_is_rejected_with_its_reason_and_text(tmp_path: Path, case: str) -> None:
    line, reason, text = HOSTILE[case]
    raw = _raw_with(tmp_path, [line], last_newline=case != "truncated last line")
    acc = _run(raw, tmp_path / "out")["rows"]["transactions.json"]
    assert acc["raw"] == len(_good_rows()) + 1 and acc["kept"] == len(_good_rows())
    assert list(acc["reasons"]) == [next(r for r in acc["reasons"] if r.startswith(reason))]
    rejected = _read(tmp_path / "out" / "rejected_transactions.csv")
    assert len(rejected) == 1 and rejected["source_row"].item() == str(len(_good_rows()) + 1)
    assert any(text in value for value in rejected.iloc[0].tolist()), rejected.iloc[0].to_dict()
    # the whole line as written (bytes that are not UTF-8 as \xNN), from its first character on
    assert rejected["raw_record"].item() == line.decode("utf-8", errors="backslashreplace")
    sales = pd.read_csv(tmp_path / "out" / "filtered_sales.csv")
    assert np.isfinite(sales["amount"]).all() and sales["amount"].abs().max() <= MAX_ABS_AMOUNT


def test_a_file_of_only_bad_lines_is_a_clear_error(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    write_customers(raw, CUSTOMERS)
    (raw / "transactions.json").write_bytes(b"not json\n" + _line("h1", amount="NaN") + b"\n" + _line("h2")[:40])
    with pytest.raises(RawDataError, match=r"transactions\.json: no usable rows \(\{'malformed JSON record "
                                              r"\(not an object\)': 2, 'non-finite amount': 1\}\)"):
        dp.run(raw, tmp_path / "out")


def _with_extra_row(src: Path, dest: Path, timestamp: str) -> Path:
    """A copy of a generated raw folder plus one purchase of its first customer at ``timestamp``."""
    import shutil

    shutil.copytree(src, dest)
    with (dest / "transactions.json").open("rb") as fh:
        row = json.loads(fh.readline())
    row.update(transaction_id="outlier", timestamp=timestamp)
    with (dest / "transactions.json").open("a") as fh:
        fh.write(json.dumps(row, separators=(",", ":")) + "\n")
    return dest


def test_future_outliers_do_not_move_the_cutoff(sample_raw_dir: Path, tmp_path: Path) -> None:
    clean = dp.run(sample_raw_dir, tmp_path / "clean", validation_fraction=0.25, seed=5)
    end = pd.Timestamp(clean["end"])
    for name, ts in (("40 days late", end + pd.Timedelta(days=40)), ("2099", pd.Timestamp("2099-01-01T00:00:00Z"))):
        raw = _with_extra_row(sample_raw_dir, tmp_path / f"raw {name}", ts.strftime("%Y-%m-%dT%H:%M:%SZ"))
        fast = dp.run(raw, tmp_path / name / "fast", validation_fraction=0.25, seed=5)
        assert (fast["cutoff"], fast["end"], fast["churn_rate"]) == (clean["cutoff"], clean["end"], clean["churn_rate"])
        labels_csv = (tmp_path / name / "fast" / "labels.csv").read_bytes()
        assert labels_csv == (tmp_path / "clean" / "labels.csv").read_bytes()
        rejected = pd.read_csv(tmp_path / name / "fast" / "rejected_transactions.csv", dtype=str, keep_default_na=False)
        outlier = rejected.loc[rejected["transaction_id"] == "outlier"]
        assert outlier["reason"].tolist() == [AFTER_LOG_END]
        assert fast["rows"]["transactions.json"]["rejected"] == clean["rows"]["transactions.json"]["rejected"] + 1


def test_a_few_rows_cannot_move_the_log_end() -> None:
    days = pd.Series(pd.to_datetime(["2024-01-01"] * 3 + ["2024-03-01", "2024-03-02"], utc=True))
    assert log_end_limit(days) == pd.Timestamp("2024-01-31T00:00:00Z")  # the 3rd latest + 30 days
    steady = pd.Series(pd.date_range("2022-01-01", "2024-12-31", freq="h", tz="UTC"))
    with_outliers = pd.concat([steady, pd.Series(pd.to_datetime(["2099-01-01"] * 20, utc=True))])
    # 20 rows in 2099 shift the 99.9th percentile by 20 of 26,000 rows (hours), not to 2099
    assert abs(log_end_limit(with_outliers) - log_end_limit(steady)) < pd.Timedelta(days=1)
    assert steady.max() < log_end_limit(steady) < steady.max() + pd.Timedelta(days=32)


@pytest.mark.parametrize("labels", ["derived", "provided"])
def test_a_given_cutoff_is_used(tmp_path: Path, labels: str) -> None:
    customers = CUSTOMERS if labels == "derived" else CUSTOMERS.replace("signup_date,plan", "signup_date,plan,churned")
    if labels == "provided":
        lines = customers.splitlines()
        customers = "\n".join([lines[0]] + [f"{line},{i % 2}" for i, line in enumerate(lines[1:])])
    write_customers(tmp_path / "raw", customers)
    rows = _good_rows()
    rows[5:5] = BAD_ROWS
    _write_jsonl(tmp_path / "raw", rows)
    fast = _run(tmp_path / "raw", tmp_path / "fast", cutoff="2024-09-20")
    assert fast["label_source"] == labels
    assert fast["cutoff"] == "2024-09-20T00:00:00+00:00"
    # every kept customer signed up in January, before the cutoff: all are trained on
    labels_csv = pd.read_csv(tmp_path / "fast" / "labels.csv", dtype=str)
    assert len(labels_csv) == 20 and fast["excluded_from_training"] == {}


@pytest.mark.parametrize("key", ["café", 'say "hi"', "a.b", "it's", "$x"])
def test_any_field_name_is_kept(tmp_path: Path, key: str) -> None:
    write_customers(tmp_path / "raw", CUSTOMERS)
    _write_jsonl(tmp_path / "raw", [{**row, key: f"v{i}"} for i, row in enumerate(_good_rows())])
    _run(tmp_path / "raw", tmp_path / "out")
    sales = pd.read_csv(tmp_path / "out" / "filtered_sales.csv", dtype=str)
    assert sales[key].tolist() == [f"v{i}" for i in range(len(_good_rows()))]


def test_an_empty_or_reserved_field_name_is_a_clear_error(tmp_path: Path) -> None:
    write_customers(tmp_path / "raw", CUSTOMERS)
    for key in ("", "reason"):
        _write_jsonl(tmp_path / "raw", [{**row, key: "x"} for row in _good_rows()])
        with pytest.raises(RawDataError,
                           match=r"transactions\.json: field name\(s\) \['" + key + r"'\] cannot be used"):
            dp.run(tmp_path / "raw", tmp_path / "out")
