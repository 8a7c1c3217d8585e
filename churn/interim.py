"""The interim files of the data contract (data_prep's output), by name, and read back typed.

Core I/O: data_prep writes these files; feature_engineering, register_model and the tests read them
here rather than importing one stage from another.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from churn.schema import ID_COLUMN, LABEL_COLUMN

CLEANED_CUSTOMERS = "cleaned_customers.csv"
FILTERED_SALES = "filtered_sales.csv"
LABELS_FILE = "labels.csv"
METADATA_FILE = "prep_metadata.json"


@dataclass(frozen=True)
class Interim:
    """The interim files read back, typed, for feature engineering."""

    customers: pd.DataFrame
    transactions: pd.DataFrame
    labels: pd.DataFrame
    metadata: dict

    @property
    def cutoff(self) -> pd.Timestamp:
        return pd.Timestamp(self.metadata["cutoff"])


def read_interim(interim_dir: Path, columns: Sequence[str] | None = None,
                 categorical: Sequence[str] = ()) -> Interim:
    """Reads what data_prep wrote (ids stay text, timestamps UTC).

    Args:
        interim_dir: data_prep's output folder.
        columns: The transaction columns wanted (those the file has), or None for all. Fewer
            columns are read with every core (all columns are read block by block: less memory).
        categorical: Transaction text columns with few distinct values (say ``category``), read as
            pandas categoricals: an integer code per row instead of a string.

    Returns:
        The interim data.
    """

    meta_path = interim_dir / METADATA_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path}: not found; run data_prep first (python components/data_prep.py).")
    metadata = json.loads(meta_path.read_text())
    transactions = _read_sales(interim_dir / FILTERED_SALES, columns, categorical)
    customers = pd.read_csv(interim_dir / CLEANED_CUSTOMERS, dtype=str, keep_default_na=False, na_filter=False)
    customers["signup_date"] = pd.to_datetime(customers["signup_date"], format="ISO8601", utc=True)
    if LABEL_COLUMN in customers.columns:
        customers[LABEL_COLUMN] = pd.to_numeric(customers[LABEL_COLUMN].replace("", None)).astype("Int8")
    labels = pd.read_csv(interim_dir / LABELS_FILE, dtype={ID_COLUMN: "str", LABEL_COLUMN: "int8", "split": "str"})
    return Interim(customers=customers, transactions=transactions, labels=labels, metadata=metadata)


def _read_sales(path: Path, columns: Sequence[str] | None, categorical: Sequence[str] = ()) -> pd.DataFrame:
    """filtered_sales.csv (``columns`` of it, or all) with pyarrow: text as text (``categorical`` ones as
    pandas categoricals), timestamps UTC."""
    import csv

    import pyarrow as pa
    import pyarrow.csv as pacsv

    # Text is read as large_string, which is what pandas keeps it as (reading string would mean a
    # converted copy of every text column in to_pandas).
    text_cols = {"customer_id": pa.large_string(), "transaction_id": pa.large_string(), "category": pa.large_string(),
                 "channel": pa.large_string(), "status": pa.large_string()}
    # Dictionary-encoded while parsing: a code per row, no string per row (a third of the read time
    # of 20M rows went into the strings of two columns of a handful of values each).
    text_cols.update({c: pa.dictionary(pa.int32(), pa.string()) for c in categorical})
    read_options = pacsv.ReadOptions(block_size=16 << 20)  # fewer, larger blocks: less overhead per block
    include = []  # all
    if columns is not None:
        with path.open(newline="", encoding="utf-8") as fh:
            include = [c for c in next(csv.reader(fh), []) if c in set(columns)]
    convert_options = pacsv.ConvertOptions(column_types={**text_cols, "timestamp": pa.timestamp("us", tz="UTC")},
                                           include_columns=include)
    pa.default_memory_pool().release_unused()
    try:
        if include:  # a few columns: in threads (read_csv holds about the whole file on top of them)
            table = pacsv.read_csv(path, read_options=read_options, convert_options=convert_options)
        else:
            # Block by block: read_csv holds about the whole file on top of the table (~2.5 GB more
            # for 20M rows). The other columns' types come from the first block here ...
            with pacsv.open_csv(path, read_options=read_options, convert_options=convert_options) as reader:
                table = reader.read_all()
    except pa.ArrowInvalid:
        # ... and from all blocks in read_csv: a later block that doesn't fit (say, the first
        # decimal amount after a block of whole ones) needs it.
        table = pacsv.read_csv(path, read_options=read_options,
                               convert_options=convert_options)
    pa.default_memory_pool().release_unused()
    text = pd.StringDtype("pyarrow")
    transactions = table.to_pandas(types_mapper={pa.string(): text, pa.large_string(): text}.get)
    del table
    return transactions
