"""Stage 2 — feature_engineering: the feature schema and per-customer features at the cutoff, written to files.

The features themselves are defined in ``churn/features.py`` (the one feature definition, shared with
scoring, the promotion gate and serving); this stage derives the schema for the interim data, computes
the features of every customer to train on and writes the feature table and the processed splits.

Run alone: ``python components/feature_engineering.py --interim-dir data/interim``.
"""


import argparse
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from churn.features import (
    FEATURE_SET_VERSION,
    MIX_FIELDS,
    TRANSACTION_COLUMNS,
    FeatureInputError,
    derive_schema,
    describe_features,
    features_for,
    interim_transactions,
    processed_splits,
    text_isin,
)
from churn.schema import ID_COLUMN

if TYPE_CHECKING:  # pragma: no cover
    from kfp.dsl import PythonComponent

logger = logging.getLogger(__name__)


def feature_file_name(version: int = FEATURE_SET_VERSION) -> str:
    """``customer_features_v<N>.csv``."""
    return f"customer_features_v{version}.csv"


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Writes a table as CSV with a header, by DuckDB (numbers in their shortest round-trip form)."""
    import duckdb

    with duckdb.connect(config={"threads": max(1, os.cpu_count() or 1)}) as con:
        con.register("frame", frame)
        quoted = str(path).replace(chr(39), chr(39) * 2)
        con.execute(f"COPY (SELECT * FROM frame) TO '{quoted}' (FORMAT csv, HEADER true)")


def customers_to_featurize(customers: pd.DataFrame, labels: pd.DataFrame, cutoff: pd.Timestamp,
                           source: str = "cleaned_customers.csv") -> pd.DataFrame:
    """The customers that get a feature row: every labelled one, and every other one signed up by the cutoff.

    Who is trained on is data_prep's decision (labels.csv); this never drops a labelled customer.

    Args:
        customers: Cleaned customers.
        labels: labels.csv (``customer_id`` unique).
        cutoff: Feature cutoff (UTC).
        source: Name of the customers file, for errors.

    Returns:
        Those customers, in ``customers`` order.

    Raises:
        FeatureInputError: labels.csv repeats a customer or names one the customers file lacks.
    """
    ids = customers[ID_COLUMN].astype(str)
    labelled = labels[ID_COLUMN].astype(str)
    repeated = labelled[labelled.duplicated()]
    if len(repeated):
        raise FeatureInputError(f"labels.csv: customer(s) {repeated.iloc[:3].tolist()} appear more than once "
                                f"({len(repeated)} repeats); rerun data_prep.")
    unknown = labelled[~text_isin(labelled, ids)]
    if len(unknown):
        raise FeatureInputError(f"labels.csv: {len(unknown)} labelled customer(s) are not in {source} "
                                f"(e.g. {unknown.iloc[:3].tolist()}); the interim files come from different "
                                f"runs: rerun data_prep.")
    keep = (customers["signup_date"] <= cutoff).to_numpy() | text_isin(ids, labelled)
    return customers[keep].reset_index(drop=True)


def run(interim_dir: Path, features_dir: Path, train_dir: Path, validation_dir: Path, *, fast: bool = True) -> dict:
    """Runs the stage on folders.

    Args:
        interim_dir: data_prep's output.
        features_dir: Receives ``customer_features_v<N>.csv`` and ``feature_schema.json``.
        train_dir: Receives ``train.csv`` (and a copy of the schema).
        validation_dir: Receives ``validation.csv`` (and a copy of the schema); may equal ``train_dir``.
        fast: Read only the transaction columns the features use, ``category``/``channel`` as
            categoricals (the files written are the same either way).

    Returns:
        Facts about the run: schema version, feature count, features by origin, rows per file, paths.

    Raises:
        FeatureInputError: The interim files disagree (a labelled customer without a customer row).
    """
    from churn.interim import CLEANED_CUSTOMERS, read_interim

    started = time.monotonic()
    interim = read_interim(interim_dir, TRANSACTION_COLUMNS, MIX_FIELDS) if fast else read_interim(interim_dir)
    cutoff = interim.cutoff
    transactions = interim_transactions(interim)
    logger.info("read interim: %d customers, %s (%.1fs)", len(interim.customers),
                "no transaction log" if transactions is None else f"{len(transactions)} transactions",
                time.monotonic() - started)
    schema = derive_schema(interim.customers, transactions, cutoff, interim.metadata["churn_window_days"])
    for column, why in schema.left_out.items():
        logger.warning("%s: attribute %r is left out of the features (%s)", CLEANED_CUSTOMERS, column, why)
    customers = customers_to_featurize(interim.customers, interim.labels, cutoff,
                                       str(interim_dir / CLEANED_CUSTOMERS))
    features = features_for(schema, customers, transactions, cutoff)
    logger.info("built %d features for %d customers (%.1fs)", len(schema.features), len(features),
                time.monotonic() - started)
    labels = interim.labels
    del interim, customers, transactions  # the transactions are done with: free them before writing
    features_dir.mkdir(parents=True, exist_ok=True)
    features_path = features_dir / feature_file_name(schema.version)
    _write_csv(features, features_path)
    paths = {"features": str(features_path), "schema": str(schema.save(features_dir))}
    splits = processed_splits(features, labels)
    for name, folder in (("train", train_dir), ("validation", validation_dir)):
        folder.mkdir(parents=True, exist_ok=True)
        schema.save(folder)
        _write_csv(splits[name], folder / f"{name}.csv")
        paths[name] = str(folder / f"{name}.csv")
    return {
        "schema_version": schema.version,
        "n_features": len(schema.features),
        "features_by_origin": describe_features(schema),
        "rows": {"features": len(features), **{k: len(v) for k, v in splits.items()}},
        "paths": paths,
    }


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python components/feature_engineering.py --help``."""
    from churn.layout import DataLayout, setup_cli_logging

    layout = DataLayout()
    parser = argparse.ArgumentParser(
        prog="feature_engineering",
        description=(
            "Build per-customer features at the cutoff (recency, frequency, monetary, tenure, trends, "
            "category/channel mix, customer attributes) from data/interim. Writes "
            f"{feature_file_name()} + feature_schema.json to the features folder and train.csv / "
            "validation.csv (customer_id, features, churned) to the processed folder."
        ),
    )
    parser.add_argument("--interim-dir", type=Path, default=layout.interim,
                        help="data_prep output (default: %(default)s)")
    parser.add_argument("--features-dir", type=Path, default=layout.features, help="default: %(default)s")
    parser.add_argument("--processed-dir", type=Path, default=layout.processed, help="default: %(default)s")
    args = parser.parse_args(argv)
    setup_cli_logging()
    try:
        facts = run(args.interim_dir, args.features_dir, args.processed_dir, args.processed_dir)
    except (FileNotFoundError, FeatureInputError) as exc:
        logger.error("%s", exc)
        return 2
    note = facts["features_by_origin"]["transaction_note"]
    print(f"features v{facts['schema_version']}: {facts['n_features']} features"
          f"{'; transaction features: ' + note if note else ''}, rows {facts['rows']}")
    for name, path in facts["paths"].items():
        print(f"  {name}: {path}")
    return 0


def component(base_image: str) -> "PythonComponent":
    """The KFP component, built for the project's image (a compile-time setting)."""
    from kfp import dsl
    from kfp.dsl import Dataset, Input, Output

    @dsl.component(base_image=base_image, install_kfp_package=False)
    def feature_engineering(interim: Input[Dataset], features: Output[Dataset], train_data: Output[Dataset],
                            validation_data: Output[Dataset]):
        """Builds features at the cutoff; writes the feature schema and the processed splits."""
        from pathlib import Path

        from churn.layout import setup_cli_logging
        from components.feature_engineering import run

        setup_cli_logging()
        facts = run(Path(interim.path), Path(features.path), Path(train_data.path), Path(validation_data.path))
        for artifact, name in ((train_data, "train"), (validation_data, "validation")):
            artifact.metadata.update({"rows": facts["rows"][name], "schema_version": facts["schema_version"]})
        features.metadata.update({"rows": facts["rows"]["features"], "schema_version": facts["schema_version"],
                                  "n_features": facts["n_features"],
                                  "transaction_features": facts["features_by_origin"]["transaction"]})

    return feature_engineering


if __name__ == "__main__":
    raise SystemExit(main())
