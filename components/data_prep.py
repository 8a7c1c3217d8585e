"""Stage 1 — data_prep: raw customers + transactions → interim (clean, labelled, split).

Raw data is never edited. Every raw row ends up either kept (``data/interim/cleaned_customers.csv``,
``data/interim/filtered_sales.csv``) or rejected with a reason (``data/interim/rejected_<input>.csv``),
and the counts add up: raw = kept + rejected, per input. With a ``churned`` column in customers.csv
the transaction log is optional (absent, empty or ``[]``: ``has_transactions: false``).

The rules are churn.cleaning's (shared with scoring); DuckDB applies them and writes the interim
files. This stage also fixes the label and the train/validation split (stratified, seeded, by
customer); feature_engineering turns that into the processed splits.

Run alone: ``python components/data_prep.py --raw-dir data/raw --out-dir data/interim``.
"""


import argparse
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from churn import cleaning
from churn.cleaning import CUSTOMERS_FILE, REASON, SOURCE_ROW, TRANSACTIONS_FILE, Cleaned, RawDataError
from churn.features import text_isin
from churn.interim import CLEANED_CUSTOMERS, FILTERED_SALES, LABELS_FILE, METADATA_FILE
from churn.schema import ID_COLUMN, LABEL_COLUMN

if TYPE_CHECKING:  # pragma: no cover
    from kfp.dsl import PythonComponent

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Labels:
    """Who is trained on, with which label, and the cutoff the features must respect.

    Attributes:
        frame: ``customer_id``, ``churned`` (0/1) and ``split`` (train/validation).
        cutoff: Features may only use transactions on or before this instant (UTC).
        end: Latest kept transaction (UTC); None without a transaction log.
        source: ``derived`` (from activity after the cutoff) or ``provided`` (customers.csv column).
        excluded: Kept customers not trained on, by reason (reasons with no customer left out).
    """

    frame: pd.DataFrame
    cutoff: pd.Timestamp
    end: pd.Timestamp | None
    source: str
    excluded: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------- labels and split


def label_cutoff(customers: pd.DataFrame, end: pd.Timestamp | None, churn_window_days: int,
                 cutoff: pd.Timestamp | None = None) -> pd.Timestamp:
    """The cutoff: ``cutoff`` when given, else the latest transaction (provided labels), the newest
    ``signup_date`` (provided labels, no transaction log) or the latest transaction − window (derived).

    Args:
        customers: Kept customers (``signup_date`` UTC).
        end: Latest kept transaction, None without a transaction log.
        churn_window_days: Label window in days.
        cutoff: The cutoff asked for (UTC), or None.

    Returns:
        The cutoff (UTC).

    Raises:
        RawDataError: Derived labels whose window (cutoff, cutoff + window] goes past the log's end.
    """
    if churn_window_days <= 0:
        raise ValueError(f"churn_window_days must be positive, got {churn_window_days}")
    window = pd.Timedelta(days=churn_window_days)
    if LABEL_COLUMN in customers.columns:
        if cutoff is not None:
            return cutoff
        return end if end is not None else customers["signup_date"].max()
    if end is None:
        raise ValueError("derived labels need a transaction log")
    if cutoff is None:
        return end - window
    if cutoff + window > end:
        raise RawDataError(
            f"cutoff {cutoff.isoformat()}: the label window ({churn_window_days} days) would end on "
            f"{(cutoff + window).isoformat()}, after the last transaction ({end.isoformat()}), and customers would "
            f"count as churned for lack of data. Use a cutoff on or before {(end - window).isoformat()} "
            f"(or a shorter churn window)."
        )
    return cutoff


def labels_at(customers: pd.DataFrame, end: pd.Timestamp | None, active_after: pd.Series | None,
              churn_window_days: int, cutoff: pd.Timestamp | None = None) -> Labels:
    """Fixes the label of every trainable customer at :func:`label_cutoff`'s cutoff.

    With a ``churned`` column, that label; otherwise churned (1) = no purchase (refunds don't count)
    in (cutoff, cutoff + window].

    Args:
        customers: Kept customers (``signup_date`` UTC).
        end: Latest kept transaction (UTC), None without a transaction log.
        active_after: Customers with a purchase (not a refund) in (cutoff, cutoff + window]; only
            used (and only needed) when customers.csv has no ``churned`` column.
        churn_window_days: Label window in days.
        cutoff: The cutoff asked for, or None for the default (:func:`label_cutoff`).

    Returns:
        The labels, without split. Every kept customer is either in the frame or counted in
        ``excluded``, first reason first: no churned label; signed up after the cutoff.
    """
    cutoff = label_cutoff(customers, end, churn_window_days, cutoff)
    excluded: dict[str, int] = {}
    eligible = customers["signup_date"] <= cutoff
    if LABEL_COLUMN in customers.columns:
        has_label = customers[LABEL_COLUMN].notna()
        excluded["no churned label"] = int((~has_label).sum())
        excluded["signed up after cutoff"] = int((has_label & ~eligible).sum())
        frame = customers.loc[has_label & eligible, [ID_COLUMN, LABEL_COLUMN]].copy()
        frame[LABEL_COLUMN] = frame[LABEL_COLUMN].astype("int8")
        source = "provided"
    else:
        if active_after is None:
            raise ValueError("derived labels need the customers active after the cutoff (active_after)")
        excluded["signed up after cutoff"] = int((~eligible).sum())
        frame = customers.loc[eligible, [ID_COLUMN]].copy()
        active = text_isin(frame[ID_COLUMN], active_after)
        frame[LABEL_COLUMN] = pd.Series(~active, index=frame.index).astype("int8")
        source = "derived"
    excluded = {reason: n for reason, n in excluded.items() if n}
    return Labels(frame=frame.reset_index(drop=True), cutoff=cutoff, end=end, source=source, excluded=excluded)


def split_customers(labels: Labels, validation_fraction: float, seed: int) -> Labels:
    """Assigns each labelled customer to train or validation, stratified by label, seeded.

    Args:
        labels: Output of :func:`labels_at`.
        validation_fraction: Share of customers in validation, in (0, 1).
        seed: Random seed.

    Returns:
        The same labels with a ``split`` column.

    Raises:
        RawDataError: Too few customers of a class to stratify.
    """
    from sklearn.model_selection import train_test_split

    if not 0 < validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    counts = labels.frame[LABEL_COLUMN].value_counts()
    if len(counts) < 2 or counts.min() < 2:
        raise RawDataError(
            f"cannot split: need at least 2 churned and 2 retained customers, got {counts.to_dict()} "
            f"(label source: {labels.source}, cutoff {labels.cutoff}). Provide more history or a "
            f"different churn_window_days."
        )
    frame = labels.frame.copy()
    _, val_idx = train_test_split(
        frame.index, test_size=validation_fraction, random_state=seed, stratify=frame[LABEL_COLUMN]
    )
    frame["split"] = "train"
    frame.loc[val_idx, "split"] = "validation"
    return Labels(frame=frame, cutoff=labels.cutoff, end=labels.end, source=labels.source, excluded=labels.excluded)


# --------------------------------------------------------------------------- the stage


@dataclass(frozen=True)
class Prepared:
    """Everything data_prep produces, as frames."""

    customers: Cleaned
    transactions: Cleaned
    labels: Labels
    has_transactions: bool = True


def _metadata(labels: Labels, customers: dict, transactions: dict, churn_window_days: int, seed: int,
              validation_fraction: float, has_transactions: bool = True) -> dict:
    split_counts = labels.frame.groupby(["split", LABEL_COLUMN]).size().reset_index()
    return {
        "cutoff": labels.cutoff.isoformat(),
        "end": labels.end.isoformat() if labels.end is not None else None,
        "has_transactions": has_transactions,
        "churn_window_days": churn_window_days,
        "label_source": labels.source,
        "seed": seed,
        "validation_fraction": validation_fraction,
        "rows": {CUSTOMERS_FILE: customers, TRANSACTIONS_FILE: transactions},
        "excluded_from_training": labels.excluded,
        "labelled": {f"{s}_{'churned' if y else 'retained'}": int(n)
                     for s, y, n in split_counts.itertuples(index=False)},
        "churn_rate": float(labels.frame[LABEL_COLUMN].mean()),
    }


@dataclass(frozen=True)
class _Stage:
    """A run's results inside its DuckDB session (tables ``cust`` and ``tx``)."""

    columns: list[str]
    fields: list[str]
    customers: Cleaned
    transactions: dict
    labels: Labels
    has_transactions: bool


def _stage(con: Any, raw_dir: Path, churn_window_days: int, validation_fraction: float, seed: int,
           cutoff: "str | pd.Timestamp | None") -> _Stage:
    """Cleans both inputs, fixes the labels and the split (see :func:`run`)."""
    import importlib
    import threading

    # The split's imports take seconds: done while DuckDB works (it releases the GIL).
    threading.Thread(target=importlib.import_module, args=("sklearn.model_selection",), daemon=True).start()
    started = time.monotonic()
    cutoff_at = cleaning.parse_cutoff(cutoff)
    customers_path, tx_path = raw_dir / CUSTOMERS_FILE, raw_dir / TRANSACTIONS_FILE
    raw_customers = cleaning.read_customers(customers_path)
    cleaning.check_label_lookalikes(list(raw_customers.columns), customers_path)
    columns = cleaning.load_customers(con, raw_customers)
    customers = cleaning.fetch_customers(con, columns)
    logger.info("customers: %d raw, %d kept, %d rejected", customers.raw_rows, len(customers.kept),
                len(customers.rejected))
    if customers.kept.empty:
        raise RawDataError(f"{customers_path}: no usable rows ({customers.accounting()['reasons']}).")
    end, active, has_log = None, None, cleaning.has_transaction_log(tx_path)
    fields, tx_acc = [ID_COLUMN, "timestamp", "amount"], cleaning.accounting(0, 0, {})
    if not has_log:
        if LABEL_COLUMN not in customers.kept.columns:
            state = "transactions file not found" if not tx_path.is_file() else "transactions file holds no records"
            raise RawDataError(
                f"{tx_path}: {state}, and {customers_path} has no `{LABEL_COLUMN}` column to label customers "
                f"without one. Put the transactions in {TRANSACTIONS_FILE} (JSON Lines or a JSON array), or add a "
                f"`{LABEL_COLUMN}` column (0/1) to {CUSTOMERS_FILE} (or run `make data` for sample data).")
        logger.info("%s: no transaction log; labels from %s", TRANSACTIONS_FILE, CUSTOMERS_FILE)
    else:
        known = f"(SELECT c{columns.index(ID_COLUMN)} AS {ID_COLUMN} FROM cust WHERE {REASON} IS NULL)"
        fields = cleaning.load_transactions(con, tx_path, known)
        tx_acc = cleaning.transaction_accounting(con)
        logger.info("transactions: %d raw, %d kept, %d rejected (%.1fs)", tx_acc["raw"], tx_acc["kept"],
                    tx_acc["rejected"], time.monotonic() - started)
        if not tx_acc["kept"]:
            raise RawDataError(f"{tx_path}: no usable rows ({tx_acc['reasons']}).")
        end = pd.Timestamp(con.execute(f"SELECT max(ts) FROM tx WHERE {REASON} IS NULL").fetchall()[0][0])
        end = end.tz_convert("UTC")
        cutoff_at = label_cutoff(customers.kept, end, churn_window_days, cutoff_at)
        if LABEL_COLUMN not in customers.kept.columns:
            window = [cutoff_at, cutoff_at + pd.Timedelta(days=churn_window_days)]
            active = con.execute(f"SELECT DISTINCT {cleaning.column(fields, ID_COLUMN)} AS id FROM tx "
                                 f"WHERE {REASON} IS NULL AND NOT is_refund AND ts > ? AND ts <= ?",
                                 [w.to_pydatetime() for w in window]).df()["id"]
    labels = split_customers(labels_at(customers.kept, end, active, churn_window_days, cutoff_at),
                             validation_fraction, seed)
    logger.info("labels (%s): cutoff %s, %d customers, churn rate %.1f%%", labels.source, labels.cutoff.date(),
                len(labels.frame), 100 * labels.frame[LABEL_COLUMN].mean())
    return _Stage(columns, fields, customers, tx_acc, labels, has_log)


def prepare(raw_dir: Path, *, churn_window_days: int = 90, validation_fraction: float = 0.2, seed: int = 42,
            cutoff: "str | pd.Timestamp | None" = None) -> Prepared:
    """:func:`run` without writing: the cleaned inputs, labels and split as frames."""
    with cleaning.connect() as con:
        stage = _stage(con, raw_dir, churn_window_days, validation_fraction, seed, cutoff)
        if stage.has_transactions:
            transactions = cleaning.fetch_transactions(con, stage.fields)
        else:
            transactions = Cleaned(kept=pd.DataFrame(columns=[SOURCE_ROW, *stage.fields, "is_refund"]),
                                   rejected=pd.DataFrame(columns=[SOURCE_ROW, REASON]), raw_rows=0)
    return Prepared(stage.customers, transactions, stage.labels, stage.has_transactions)


def run(raw_dir: Path, out_dir: Path, *, churn_window_days: int = 90, validation_fraction: float = 0.2, seed: int = 42,
        cutoff: "str | pd.Timestamp | None" = None) -> dict:
    """Runs the stage on folders: the interim files of the data contract, written by DuckDB.

    Args:
        raw_dir: Folder with customers.csv and (optional with a ``churned`` column) transactions.json.
        out_dir: Interim folder (created).
        churn_window_days: Label window.
        validation_fraction: Share of labelled customers in validation.
        seed: Split seed.
        cutoff: ISO date or instant (UTC) for features and labels, or None for :func:`label_cutoff`'s default.

    Returns:
        The metadata written to prep_metadata.json (row accounting included).

    Raises:
        RawDataError: An input is missing, lacks required columns, or has no usable rows.
    """
    with cleaning.connect() as con:
        stage = _stage(con, raw_dir, churn_window_days, validation_fraction, seed, cutoff)
        metadata = _metadata(stage.labels, stage.customers.accounting(), stage.transactions, churn_window_days,
                             seed, validation_fraction, stage.has_transactions)
        out_dir.mkdir(parents=True, exist_ok=True)
        con.register("labels_frame", stage.labels.frame)
        sales, rejected = (cleaning.kept_transactions_sql(stage.fields, as_text=True),
                           cleaning.rejected_transactions_sql(stage.fields)) if stage.has_transactions else (
            "SELECT NULL::VARCHAR AS customer_id, NULL::VARCHAR AS timestamp, NULL::DOUBLE AS amount, "
            "NULL::BOOLEAN AS is_refund WHERE false",  # no log: the headers only
            f"SELECT NULL::BIGINT AS {SOURCE_ROW}, NULL::VARCHAR AS {REASON} WHERE false")
        for query, name in ((cleaning.kept_customers_sql(stage.columns, as_text=True), CLEANED_CUSTOMERS),
                            (cleaning.rejected_customers_sql(stage.columns), "rejected_customers.csv"),
                            (sales, FILTERED_SALES), (rejected, "rejected_transactions.csv"),
                            ("SELECT * FROM labels_frame", LABELS_FILE)):
            cleaning.copy(con, query, out_dir / name)
    (out_dir / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    return metadata


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python components/data_prep.py --help``."""
    from churn.layout import DataLayout, setup_cli_logging

    layout = DataLayout()
    parser = argparse.ArgumentParser(
        prog="data_prep",
        description=(
            "Clean raw customers.csv + transactions.json into data/interim: cleaned_customers.csv, "
            "filtered_sales.csv, rejected_<input>.csv (each bad row with its reason), labels.csv "
            "(churn label and train/validation split per customer) and prep_metadata.json (cutoff, row counts)."
        ),
        epilog=("Label rule: cutoff = latest transaction - window; churned = no purchase in (cutoff, cutoff+window]. "
                "With a churned column in customers.csv, transactions.json is optional and the cutoff defaults to "
                "the latest transaction (no log: the newest signup_date)."),
    )
    parser.add_argument("--raw-dir", type=Path, default=layout.raw,
                        help="folder with the raw inputs (default: %(default)s)")
    parser.add_argument("--out-dir", "--interim-dir", dest="out_dir", type=Path, default=layout.interim,
                        help="interim folder (default: %(default)s; --interim-dir as in the later stages)")
    parser.add_argument("--churn-window-days", type=int, default=90, help="label window in days (default: %(default)s)")
    parser.add_argument("--validation-fraction", type=float, default=0.2,
                        help="validation share (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=42, help="split seed (default: %(default)s)")
    parser.add_argument("--cutoff", type=cleaning.cutoff_arg, default="",
                        help="ISO date or instant (UTC) for features and labels (default: from the data, see below)")
    args = parser.parse_args(argv)
    setup_cli_logging()
    try:
        meta = run(args.raw_dir, args.out_dir, churn_window_days=args.churn_window_days,
                   validation_fraction=args.validation_fraction, seed=args.seed, cutoff=args.cutoff or None)
    except RawDataError as exc:
        logger.error("%s", exc)
        return 2
    for name, acc in meta["rows"].items():
        print(f"{name}: raw {acc['raw']} = kept {acc['kept']} + rejected {acc['rejected']} {acc['reasons'] or ''}")
    if not meta["has_transactions"]:
        print(f"{TRANSACTIONS_FILE}: no transaction log; labels from {CUSTOMERS_FILE}")
    print(f"cutoff {meta['cutoff']}, churn rate {meta['churn_rate']:.1%}, written to {args.out_dir}")
    return 0


def component(base_image: str) -> "PythonComponent":
    """The KFP component, built for the project's image (a compile-time setting)."""
    from kfp import dsl
    from kfp.dsl import Dataset, Output

    @dsl.component(base_image=base_image, install_kfp_package=False)
    def data_prep(raw_dir: str, churn_window_days: int, validation_fraction: float, seed: int,
                  interim: Output[Dataset], raw_digest: str = "", cutoff: str = ""):
        """Cleans raw inputs, fixes labels and split; rejected rows are kept with reasons.

        ``cutoff``: ISO date or instant (UTC) for features and labels; "" for the default (from the data).

        ``raw_digest`` (``churn.vertex_jobs.raw_digest`` of ``raw_dir`` at submit time) is part of the task's
        cache key, so new raw files under the same folder never hit an old cache entry.
        """
        from pathlib import Path

        from churn.layout import setup_cli_logging
        from churn.storage import local_input_dir
        from components.data_prep import run

        setup_cli_logging()
        with local_input_dir(raw_dir) as raw:
            meta = run(raw, Path(interim.path), churn_window_days=churn_window_days,
                       validation_fraction=validation_fraction, seed=seed, cutoff=cutoff or None)
        interim.metadata.update({"cutoff": meta["cutoff"], "label_source": meta["label_source"],
                                 "rows": meta["rows"], "churn_rate": meta["churn_rate"],
                                 "has_transactions": meta["has_transactions"],
                                 "raw_dir": raw_dir, "raw_digest": raw_digest})

    return data_prep


if __name__ == "__main__":
    raise SystemExit(main())
