"""data_prep: the raw data contract, every bad-input rule, row accounting, labels and split."""

import json
from pathlib import Path

import pandas as pd
import pytest

from churn.cleaning import RawDataError, clean_customers, clean_transactions, read_customers
from churn.interim import read_interim
from components import data_prep as dp
from tests.conftest import write_customers, write_transactions

CUSTOMERS = """
customer_id,signup_date,plan,age
00017,2024-01-05,basic,30
00018,2024-02-01,premium,
00019,notadate,basic,40
00017,2024-01-05,basic,31
,2024-01-01,basic,1
00020,2024-03-01,standard,50
00021,2024-03-01,standard,51
00022,2024-03-01,standard,52
00023,2024-03-01,basic,53
"""

GOOD = {"customer_id": "00017", "timestamp": "2024-02-01T10:00:00Z", "amount": 10.5}


def tx(tid: str, cid: str, ts: str, amount, **extra) -> dict:
    return {"transaction_id": tid, "customer_id": cid, "timestamp": ts, "amount": amount, **extra}


TRANSACTIONS = [
    tx("t1", "00017", "2024-02-01T10:00:00Z", 10.5, status="completed"),
    tx("t2", "00018", "2024-06-01", 5),
    "this is not json",
    tx("t3", "00018", "2024-13-01", 5),
    tx("t4", "99999", "2024-06-01", 5),
    tx("t1", "00017", "2024-06-01", 5),
    tx("t5", "00017", "2024-06-01", "abc"),
    tx("t6", "00017", "2024-06-01", -3),
    tx("t7", "00017", "2024-06-02T00:00:00+02:00", -3, status="refunded"),
    tx("t8", "00020", "2024-09-02T00:00:00", 7),
    tx("t9", "00021", "2024-04-02T00:00:00", 7),
    tx("t10", "00022", "2024-04-02T00:00:00", 7),
    tx("t11", "00018", "2024-09-01", 5),
    tx("t12", "00023", "2024-08-01", 5),
    {"transaction_id": "t13", "customer_id": "00023", "amount": 4},
    tx("t14", "00021", "2024-09-01T00:00:00", None),
    tx("t15", "00020", "2024-09-03", 2),
    tx("t16", "00022", "2024-09-03", 2),
]


@pytest.fixture()
def raw_dir(tmp_path: Path) -> Path:
    write_customers(tmp_path, CUSTOMERS)
    write_transactions(tmp_path, TRANSACTIONS)
    return tmp_path


def test_every_raw_row_is_kept_or_rejected_with_a_reason(raw_dir: Path) -> None:
    prepared = dp.prepare(raw_dir, validation_fraction=0.5, seed=1)
    for cleaned, raw_rows in ((prepared.customers, 9), (prepared.transactions, 18)):
        acc = cleaned.accounting()
        assert acc["raw"] == raw_rows
        assert acc["kept"] + acc["rejected"] == acc["raw"]
        assert sum(acc["reasons"].values()) == acc["rejected"]
        assert cleaned.rejected["reason"].str.len().gt(0).all()


def test_customer_rules(raw_dir: Path) -> None:
    cleaned = clean_customers(read_customers(raw_dir / "customers.csv"))
    reasons = dict(zip(cleaned.rejected["source_row"], cleaned.rejected["reason"], strict=True))
    assert reasons[3].startswith("unparseable signup_date")
    assert reasons[4].startswith("duplicate customer_id")
    assert reasons[5] == "missing customer_id"
    assert len(reasons) == 3
    # the first 00017 is kept with its own attributes; ids keep their leading zeros
    kept = cleaned.kept.set_index("customer_id")
    assert kept.loc["00017", "age"] == "30"
    assert list(kept.index[:2]) == ["00017", "00018"]
    # rejected rows keep their original values
    assert cleaned.rejected.loc[cleaned.rejected["source_row"] == 3, "signup_date"].item() == "notadate"


def test_transaction_rules(raw_dir: Path) -> None:
    prepared = dp.prepare(raw_dir, validation_fraction=0.5, seed=1)
    rej = prepared.transactions.rejected.set_index("source_row")["reason"]
    assert rej[3].startswith("malformed JSON")
    assert rej[4].startswith("unparseable timestamp")
    assert rej[5].startswith("unknown customer_id")
    assert rej[6].startswith("duplicate transaction_id")
    assert rej[7] == "non-numeric amount"
    assert rej[8].startswith("negative amount not marked as a refund")
    assert rej[15] == "missing timestamp"
    assert rej[16] == "missing amount"
    assert len(rej) == 8
    kept = prepared.transactions.kept
    refund = kept.loc[kept["transaction_id"] == "t7"].iloc[0]
    assert refund["amount"] == -3 and bool(refund["is_refund"])
    # zone offsets are converted to UTC; naive times are taken as UTC
    assert refund["timestamp"] == pd.Timestamp("2024-06-01T22:00:00Z")
    assert kept.loc[kept["transaction_id"] == "t8", "timestamp"].item() == pd.Timestamp("2024-09-02T00:00:00Z")
    # the malformed line keeps its text in the rejected file
    raw_record = prepared.transactions.rejected.set_index("source_row").loc[3, "raw_record"]
    assert raw_record == "this is not json"


def test_json_array_is_detected_and_gives_the_same_result(raw_dir: Path, tmp_path_factory) -> None:
    other = tmp_path_factory.mktemp("array")
    write_customers(other, CUSTOMERS)
    write_transactions(other, [r for r in TRANSACTIONS if isinstance(r, dict)], fmt="array")
    lines = dp.prepare(raw_dir, validation_fraction=0.5, seed=1).transactions
    array = dp.prepare(other, validation_fraction=0.5, seed=1).transactions
    assert array.raw_rows == lines.raw_rows - 1  # the malformed line has no array counterpart
    assert sorted(array.kept["transaction_id"]) == sorted(lines.kept["transaction_id"])


def test_blank_lines_crlf_and_a_bom_are_not_records(tmp_path: Path) -> None:
    lines = [json.dumps(tx(f"t{i}", "17", "2024-01-02", 1.0 + i)) for i in range(3)]
    (tmp_path / "transactions.json").write_bytes(
        b"\xef\xbb\xbf" + "\r\n\r\n  \r\n".join([lines[0], lines[1], "not json", lines[2]]).encode() + b"\r\n\n")
    cleaned = clean_transactions(tmp_path / "transactions.json", pd.Series(["17"]))
    assert cleaned.raw_rows == 4
    assert cleaned.kept[["source_row", "transaction_id"]].values.tolist() == [[1, "t0"], [2, "t1"], [4, "t2"]]
    assert cleaned.rejected[["source_row", "raw_record"]].values.tolist() == [[3, "not json"]]


def test_numeric_json_customer_ids_match_text_ids(tmp_path: Path) -> None:
    write_customers(tmp_path, "customer_id,signup_date\n17,2024-01-01\n18,2024-01-01")
    write_transactions(tmp_path, [tx("a", 17, "2024-01-02", 1.0), tx("b", "18", "2024-01-02", 2.0)])
    cleaned = clean_transactions(tmp_path / "transactions.json", pd.Series(["17", "18"]))
    assert sorted(cleaned.kept["customer_id"]) == ["17", "18"]


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    write_customers(tmp_path, CUSTOMERS)
    with pytest.raises(RawDataError, match=r"transactions\.json: transactions file not found"):
        dp.prepare(tmp_path)
    with pytest.raises(RawDataError, match=r"customers\.csv: customers file not found"):
        dp.prepare(tmp_path / "nowhere")


def test_missing_required_column_names_file_and_column(tmp_path: Path) -> None:
    write_customers(tmp_path, "customer_id,plan\n1,basic")
    with pytest.raises(RawDataError, match=r"customers\.csv: missing required column\(s\) \['signup_date'\]"):
        read_customers(tmp_path / "customers.csv")


def test_missing_column_spelled_otherwise_names_the_rename(tmp_path: Path) -> None:
    write_customers(tmp_path, "customerID,Signup Date,plan\n1,2024-01-01,basic")
    with pytest.raises(RawDataError, match=r"Rename 'customerID' to 'customer_id', 'Signup Date' to 'signup_date'\."):
        read_customers(tmp_path / "customers.csv")


@pytest.mark.parametrize(("header", "fix"), [
    ("customer_id,signup_date,Churn", r"rename 'Churn' to `churned`"),
    ("customer_id,signup_date,is_churned", r"rename 'is_churned' to `churned`"),
    ("customer_id,signup_date,churned,Churn Flag", r"remove \['Churn Flag'\]"),
])
def test_label_lookalike_column_stops_before_it_leaks_into_features(tmp_path: Path, header: str, fix: str) -> None:
    # A telco-style `Churn` column next to a transaction log would otherwise become a categorical feature.
    n = header.count(",") - 1
    write_customers(tmp_path, f"{header}\n00017,2024-01-05{',1' * n}\n00018,2024-01-05{',0' * n}")
    write_transactions(tmp_path, [tx("t1", "00017", "2024-02-01T10:00:00Z", 10.5)])
    with pytest.raises(RawDataError, match=rf"customers\.csv: column\(s\) .* look like the churn label; .*{fix}"):
        dp.prepare(tmp_path)


def test_label_column_itself_and_unrelated_names_pass(tmp_path: Path) -> None:
    rows = [(i, i % 2, "ab"[i % 2]) for i in range(1, 9)]
    write_customers(tmp_path, "customer_id,signup_date,churned,churn_risk_segment\n"
                    + "\n".join(f"{i},2024-01-05,{c},{s}" for i, c, s in rows))
    write_transactions(tmp_path, [tx(f"t{i}", str(i), "2024-02-01T10:00:00Z", 10.5) for i, _, _ in rows])
    kept = dp.prepare(tmp_path).customers.kept
    assert kept["churn_risk_segment"].tolist() == [s for _, _, s in rows]
    assert kept["churned"].tolist() == [c for _, c, _ in rows]


def test_missing_required_field_in_every_record_stops(tmp_path: Path) -> None:
    write_transactions(tmp_path, [{"customer_id": "1", "timestamp": "2024-01-01"}] * 3)
    with pytest.raises(RawDataError, match=r"transactions\.json: required field\(s\) \['amount'\] appear in no record"):
        clean_transactions(tmp_path / "transactions.json", pd.Series(["1"]))


def test_input_without_usable_rows_stops(tmp_path: Path) -> None:
    write_customers(tmp_path, "customer_id,signup_date\n1,2024-01-01")
    write_transactions(tmp_path, [tx("a", "2", "2024-01-02", 1.0)])
    with pytest.raises(RawDataError, match=r"transactions\.json: no usable rows"):
        dp.prepare(tmp_path)
    write_customers(tmp_path, "customer_id,signup_date\n1,never")
    with pytest.raises(RawDataError, match=r"customers\.csv: no usable rows"):
        dp.prepare(tmp_path)


def test_derived_labels_follow_the_window_rule(raw_dir: Path) -> None:
    prepared = dp.prepare(raw_dir, churn_window_days=90, validation_fraction=0.5, seed=1)
    labels = prepared.labels
    assert labels.source == "derived"
    assert labels.end == pd.Timestamp("2024-09-03T00:00:00Z")
    assert labels.cutoff == labels.end - pd.Timedelta(days=90)
    got = labels.frame.set_index("customer_id")["churned"].to_dict()
    # 00018, 00020, 00022, 00023 buy after the cutoff; 00017 only has a refund after it; 00021's
    # later row was rejected (no amount), so it has no purchase in the window.
    assert got == {"00017": 1, "00018": 0, "00020": 0, "00021": 1, "00022": 0, "00023": 0}


def test_customers_signed_up_after_cutoff_are_not_trained_on(tmp_path: Path) -> None:
    write_customers(tmp_path, "customer_id,signup_date\n" + "\n".join(
        [f"{i:03d},2024-01-01" for i in range(8)] + ["late,2024-08-01"]))
    records = [tx(f"a{i}", f"{i:03d}", "2024-02-01", 1.0) for i in range(8)]
    records += [tx(f"b{i}", f"{i:03d}", "2024-09-01", 1.0) for i in range(4)]
    records += [tx("c", "late", "2024-08-15", 1.0)]
    write_transactions(tmp_path, records)
    prepared = dp.prepare(tmp_path, churn_window_days=60, validation_fraction=0.5, seed=3)
    assert "late" not in set(prepared.labels.frame["customer_id"])
    assert prepared.labels.excluded == {"signed up after cutoff": 1}


def test_provided_label_is_used_and_validated(tmp_path: Path) -> None:
    write_customers(tmp_path, "customer_id,signup_date,churned\n" + "\n".join(
        ["a,2024-01-01,yes", "b,2024-01-01,No", "c,2024-01-01,TRUE", "d,2024-01-01,0", "e,2024-01-01,",
         "f,2024-01-01,maybe"]))
    write_transactions(tmp_path, [tx(str(i), c, "2024-02-01", 1.0) for i, c in enumerate("abcdef")])
    prepared = dp.prepare(tmp_path, validation_fraction=0.5, seed=0)
    assert prepared.labels.source == "provided"
    assert prepared.labels.cutoff == prepared.labels.end
    assert prepared.labels.frame.set_index("customer_id")["churned"].to_dict() == {"a": 1, "b": 0, "c": 1, "d": 0}
    assert prepared.labels.excluded == {"no churned label": 1}
    assert prepared.customers.rejected["reason"].tolist() == ["invalid churned value (use 0/1, true/false or yes/no)"]


def test_split_is_stratified_and_seeded(sample_raw_dir: Path) -> None:
    a = dp.prepare(sample_raw_dir, validation_fraction=0.25, seed=5).labels.frame
    b = dp.prepare(sample_raw_dir, validation_fraction=0.25, seed=5).labels.frame
    c = dp.prepare(sample_raw_dir, validation_fraction=0.25, seed=6).labels.frame
    pd.testing.assert_frame_equal(a, b)
    assert not a["split"].equals(c["split"])
    rates = a.groupby("split")["churned"].mean()
    assert abs(rates["train"] - rates["validation"]) < 0.01
    assert abs((a["split"] == "validation").mean() - 0.25) < 0.01


def test_too_few_of_a_class_to_split_is_a_clear_error(tmp_path: Path) -> None:
    write_customers(tmp_path, "customer_id,signup_date\na,2024-01-01\nb,2024-01-01\nc,2024-01-01")
    write_transactions(tmp_path, [tx(str(i), c, "2024-09-01", 1.0) for i, c in enumerate("abc")])
    with pytest.raises(RawDataError, match="need at least 2 churned and 2 retained"):
        dp.prepare(tmp_path)


def test_interim_round_trip_keeps_ids_and_times(raw_dir: Path, tmp_path_factory) -> None:
    out = tmp_path_factory.mktemp("interim")
    meta = dp.run(raw_dir, out, validation_fraction=0.5, seed=1)
    for name in ("cleaned_customers.csv", "filtered_sales.csv", "rejected_customers.csv",
                 "rejected_transactions.csv", "labels.csv", "prep_metadata.json"):
        assert (out / name).is_file(), name
    interim = read_interim(out)
    assert interim.customers["customer_id"].tolist()[:2] == ["00017", "00018"]
    assert interim.transactions["customer_id"].str.startswith("000").all()
    assert str(interim.transactions["timestamp"].dt.tz) == "UTC"
    assert interim.cutoff == pd.Timestamp(meta["cutoff"])
    rejected = pd.read_csv(out / "rejected_transactions.csv", dtype=str)
    assert len(rejected) == meta["rows"]["transactions.json"]["rejected"]
    assert {"source_row", "reason"} <= set(rejected.columns)


def test_cli_reports_accounting_and_fails_clearly(raw_dir: Path, tmp_path_factory, capsys) -> None:
    out = tmp_path_factory.mktemp("cli")
    assert dp.main(["--raw-dir", str(raw_dir), "--out-dir", str(out), "--validation-fraction", "0.5"]) == 0
    printed = capsys.readouterr().out
    assert "customers.csv: raw 9 = kept 6 + rejected 3" in printed
    assert "transactions.json: raw 18 = kept 10 + rejected 8" in printed
    assert dp.main(["--raw-dir", str(out / "nowhere"), "--out-dir", str(out)]) == 2


# --------------------------------------------------------------------------- issue 12: customers-only data

LABELLED_CUSTOMERS = "customer_id,signup_date,plan,churned\n" + "\n".join(
    f"{i:03d},2024-0{1 + i % 6}-15,{'basic' if i % 3 else 'premium'},{i % 2}" for i in range(24))
NO_LOG = {"absent": None, "0 bytes": b"", "whitespace only": b" \n\t\r\n", "empty array": b"[]",
          "empty array, BOM and spaces": b"\xef\xbb\xbf [ \n ]\n"}


def _write_log(raw: Path, content: bytes | None) -> None:
    path = raw / "transactions.json"
    if content is None:
        path.unlink(missing_ok=True)
    else:
        path.write_bytes(content)


def _csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _assert_everyone_accounted_for(out: Path, meta: dict) -> None:
    """labelled = train + validation + sum(excluded), on the files (contract B)."""
    customers = _csv(out / "cleaned_customers.csv")
    labels = _csv(out / "labels.csv")
    assert labels["customer_id"].is_unique
    assert set(labels["customer_id"]) <= set(customers["customer_id"])
    train, validation = (int((labels["split"] == s).sum()) for s in ("train", "validation"))
    assert train + validation == len(labels)
    assert len(customers) == train + validation + sum(meta["excluded_from_training"].values())
    assert sum(meta["labelled"].values()) == len(labels)


@pytest.mark.parametrize("case", list(NO_LOG))
def test_no_transaction_log_with_churned_column_trains_on_customers(tmp_path: Path, case: str) -> None:
    write_customers(tmp_path / "raw", LABELLED_CUSTOMERS)
    _write_log(tmp_path / "raw", NO_LOG[case])
    meta = dp.run(tmp_path / "raw", tmp_path / "out", validation_fraction=0.25, seed=1)
    assert meta["has_transactions"] is False
    assert meta["label_source"] == "provided"
    assert pd.Timestamp(meta["cutoff"]) == pd.Timestamp("2024-06-15T00:00:00Z")  # the newest signup_date
    assert meta["rows"]["transactions.json"] == {"raw": 0, "kept": 0, "rejected": 0, "reasons": {}}
    assert meta["excluded_from_training"] == {}
    sales = (tmp_path / "out" / "filtered_sales.csv").read_text().splitlines()
    assert [c.strip('"') for c in sales[0].split(",")] == ["customer_id", "timestamp", "amount", "is_refund"]
    assert sales[1:] == []
    assert len(_csv(tmp_path / "out" / "labels.csv")) == 24
    _assert_everyone_accounted_for(tmp_path / "out", meta)
    on_disk = json.loads((tmp_path / "out" / "prep_metadata.json").read_text())
    assert on_disk["has_transactions"] is False
    interim = read_interim(tmp_path / "out")
    assert interim.transactions.empty and interim.cutoff == pd.Timestamp("2024-06-15T00:00:00Z")


def test_every_spelling_of_no_transaction_log_writes_the_same_files(tmp_path: Path) -> None:
    outputs = []
    for case, content in NO_LOG.items():
        write_customers(tmp_path / case, LABELLED_CUSTOMERS)
        _write_log(tmp_path / case, content)
        dp.run(tmp_path / case, tmp_path / f"out-{case}", validation_fraction=0.25, seed=1)
        outputs.append({p.name: p.read_bytes() for p in sorted((tmp_path / f"out-{case}").iterdir())})
    assert all(o == outputs[0] for o in outputs[1:])


@pytest.mark.parametrize("case", list(NO_LOG))
def test_no_transaction_log_without_churned_column_is_a_clear_error(tmp_path: Path, case: str) -> None:
    write_customers(tmp_path, CUSTOMERS)
    _write_log(tmp_path, NO_LOG[case])
    with pytest.raises(RawDataError, match=r"transactions\.json: .*no `churned` column.*add a `churned` column"):
        dp.run(tmp_path, tmp_path / "out")


def test_cutoff_argument_excludes_later_signups_with_a_reason(tmp_path: Path) -> None:
    write_customers(tmp_path / "raw", LABELLED_CUSTOMERS + "\n025,2024-04-01,basic,\n")
    meta = dp.run(tmp_path / "raw", tmp_path / "out", validation_fraction=0.25, seed=1, cutoff="2024-04-15")
    assert pd.Timestamp(meta["cutoff"]) == pd.Timestamp("2024-04-15T00:00:00Z")
    # signups on 05-15 and 06-15 (4 + 4 customers) come after the cutoff; 025 has no label
    assert meta["excluded_from_training"] == {"signed up after cutoff": 8, "no churned label": 1}
    assert len(_csv(tmp_path / "out" / "labels.csv")) == 16
    _assert_everyone_accounted_for(tmp_path / "out", meta)


def test_cutoff_on_the_command_line(tmp_path: Path, capsys) -> None:
    write_customers(tmp_path / "raw", LABELLED_CUSTOMERS)
    out = tmp_path / "out"
    args = ["--raw-dir", str(tmp_path / "raw"), "--out-dir", str(out), "--cutoff", "2024-05-15T00:00:00+02:00"]
    assert dp.main(args) == 0
    assert "no transaction log" in capsys.readouterr().out
    assert json.loads((out / "prep_metadata.json").read_text())["cutoff"] == "2024-05-14T22:00:00+00:00"
    with pytest.raises(SystemExit) as exc:
        dp.main(["--raw-dir", str(tmp_path / "raw"), "--out-dir", str(out), "--cutoff", "last tuesday"])
    assert exc.value.code == 2
    assert "--cutoff: cutoff 'last tuesday': not an ISO date" in capsys.readouterr().err


def test_component_takes_a_cutoff(tmp_path: Path) -> None:
    from kfp.dsl import Dataset

    write_customers(tmp_path / "raw", LABELLED_CUSTOMERS)
    op = dp.component("unused:image")
    assert op.component_spec.inputs["cutoff"].default == ""
    for cutoff, expected in (("", "2024-06-15T00:00:00+00:00"), ("2024-04-15", "2024-04-15T00:00:00+00:00")):
        interim = Dataset(name="interim", uri=str(tmp_path / f"interim{cutoff}"), metadata={})
        op.python_func(raw_dir=str(tmp_path / "raw"), churn_window_days=90, validation_fraction=0.25, seed=1,
                       interim=interim, cutoff=cutoff)
        assert interim.metadata["cutoff"] == expected
        assert interim.metadata["has_transactions"] is False


# --------------------------------------------------------------------------- issue 12: exclusions


def test_provided_labels_exclude_customers_who_signed_up_after_the_cutoff(tmp_path: Path) -> None:
    """Cutoff = newest transaction; later signups and unlabelled customers are counted, not trained on."""
    write_customers(tmp_path / "raw", "customer_id,signup_date,churned\n" + "\n".join(
        [f"{i:03d},2024-01-01,{i % 2}" for i in range(8)] + ["late1,2024-09-01,1", "late2,2024-10-01,0",
                                                             "nolabel,2024-01-01,", "latenolabel,2024-10-01,"]))
    write_transactions(tmp_path / "raw", [tx(f"t{i}", f"{i:03d}", "2024-08-01", 1.0) for i in range(8)])
    out = tmp_path / "out"
    meta = dp.run(tmp_path / "raw", out, validation_fraction=0.5, seed=1)
    assert pd.Timestamp(meta["cutoff"]) == pd.Timestamp("2024-08-01T00:00:00Z")
    assert meta["excluded_from_training"] == {"no churned label": 2, "signed up after cutoff": 2}
    assert not {"late1", "late2", "nolabel", "latenolabel"} & set(_csv(out / "labels.csv")["customer_id"])
    _assert_everyone_accounted_for(out, meta)


def test_derived_labels_account_for_everyone(raw_dir: Path, tmp_path: Path) -> None:
    write_customers(raw_dir, CUSTOMERS + "\n00030,2024-08-20,basic\n")  # signs up after the cutoff
    meta = dp.run(raw_dir, tmp_path / "out", validation_fraction=0.5, seed=1)
    assert meta["excluded_from_training"] == {"signed up after cutoff": 1}
    _assert_everyone_accounted_for(tmp_path / "out", meta)


def test_derived_labels_with_a_cutoff_use_that_window(raw_dir: Path, tmp_path: Path) -> None:
    meta = dp.run(raw_dir, tmp_path / "out", validation_fraction=0.5, seed=1, churn_window_days=60,
                  cutoff="2024-03-15")
    assert pd.Timestamp(meta["cutoff"]) == pd.Timestamp("2024-03-15T00:00:00Z")
    labels = _csv(tmp_path / "out" / "labels.csv").set_index("customer_id")["churned"].astype(int).to_dict()
    # window (03-15, 05-14]: only the 04-02 purchases of 00021 and 00022 are in it (the June and
    # September ones come after it); 00020-00023 signed up 03-01, before the cutoff.
    assert labels == {"00017": 1, "00018": 1, "00020": 1, "00021": 0, "00022": 0, "00023": 1}
    with pytest.raises(RawDataError,
                       match=r"cutoff 2024-08-01T00:00:00\+00:00: the label window \(90 days\) would end"):
        dp.run(raw_dir, tmp_path / "late", cutoff="2024-08-01")


# --------------------------------------------------------------------------- issue 12: hostile raw data


def test_implausible_signup_dates_are_rejected(tmp_path: Path) -> None:
    write_customers(tmp_path / "raw", LABELLED_CUSTOMERS + "\n900,9999-12-31,basic,1\n901,0001-01-01,basic,0\n")
    meta = dp.run(tmp_path / "raw", tmp_path / "out", validation_fraction=0.25, seed=1)
    implausible = "implausible signup_date (before 1900-01-01 or from 2200-01-01 on)"
    assert meta["rows"]["customers.csv"]["reasons"] == {implausible: 2}
    assert pd.Timestamp(meta["cutoff"]) == pd.Timestamp("2024-06-15T00:00:00Z")  # not moved to 9999
    rejected = _csv(tmp_path / "out" / "rejected_customers.csv")
    assert rejected["signup_date"].tolist() == ["9999-12-31", "0001-01-01"]


def test_repeated_header_names_in_customers_are_an_error(tmp_path: Path) -> None:
    for header, repeated in (("customer_id,signup_date,plan,plan", "plan"),
                             ("customer_id,signup_date,customer_id", "customer_id")):
        write_customers(tmp_path, header + "\n1,2024-01-01,a,b\n")
        write_transactions(tmp_path, [tx("a", "1", "2024-01-02", 1.0)])
        with pytest.raises(RawDataError, match=rf"customers\.csv: column name\(s\) \['{repeated}'\] appear more "
                                                  rf"than once in the header\. Give every column a unique name"):
            dp.run(tmp_path, tmp_path / "out")


def test_json_array_rejects_non_finite_amounts_with_their_text(tmp_path: Path) -> None:
    write_customers(tmp_path, CUSTOMERS)
    (tmp_path / "transactions.json").write_text(
        '[{"transaction_id": "a", "customer_id": "00017", "timestamp": "2024-02-01", "amount": NaN},'
        ' {"transaction_id": "b", "customer_id": "00017", "timestamp": "2024-02-01", "amount": -Infinity},'
        ' {"transaction_id": "c", "customer_id": "00017", "timestamp": "2024-02-01", "amount": 2.5}]')
    cleaned = clean_transactions(tmp_path / "transactions.json", pd.Series(["00017"]))
    assert cleaned.kept["transaction_id"].tolist() == ["c"]
    assert cleaned.rejected[["reason", "amount"]].values.tolist() == [["non-finite amount", "NaN"],
                                                                       ["non-finite amount", "-Infinity"]]


def test_json_array_that_is_not_utf8_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "transactions.json").write_bytes(
        b'[{"customer_id": "caf\xe9", "timestamp": "2024-02-01", "amount": 1}]')
    with pytest.raises(RawDataError, match=r"transactions\.json: not valid UTF-8 .* Save the file as UTF-8"):
        clean_transactions(tmp_path / "transactions.json", pd.Series(["1"]))


def test_deeply_nested_lines_are_rejected_not_a_crash(tmp_path: Path) -> None:
    write_customers(tmp_path / "raw", CUSTOMERS)
    (tmp_path / "raw" / "transactions.json").write_text(
        "\n".join(json.dumps(r) for r in TRANSACTIONS[:2]) + "\n" + "[" * 100_000 + "\n"
        + "\n".join(json.dumps(r) for r in TRANSACTIONS[2:] if isinstance(r, dict)) + "\n")
    meta = dp.run(tmp_path / "raw", tmp_path / "out", validation_fraction=0.5, seed=1)
    assert meta["rows"]["transactions.json"]["reasons"]["malformed JSON record (not an object)"] == 1
