"""Local paths and ``gs://`` URIs behind one interface.

Stages work on local folders. On Vertex AI the raw data lives in Cloud Storage: a ``gs://`` folder is
copied to a temporary local folder first (google-cloud-storage honours ``STORAGE_EMULATOR_HOST``).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path


def is_gcs(uri: str) -> bool:
    """Whether ``uri`` names a Cloud Storage object or prefix."""
    return str(uri).startswith("gs://")


def split_gcs(uri: str) -> tuple[str, str]:
    """Splits ``gs://bucket/prefix`` into ``(bucket, prefix)``."""
    if not is_gcs(uri):
        raise ValueError(f"not a gs:// URI: {uri}")
    bucket, _, prefix = uri[len("gs://"):].partition("/")
    if not bucket:
        raise ValueError(f"{uri}: no bucket name")
    return bucket, prefix


def download_prefix(uri: str, dest: Path) -> list[Path]:
    """Copies every object under ``gs://bucket/prefix/`` into ``dest``, keeping relative paths."""
    from google.cloud import storage

    bucket_name, prefix = split_gcs(uri)
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    client = storage.Client()
    written = []
    for blob in client.list_blobs(bucket_name, prefix=prefix):
        if blob.name.endswith("/"):
            continue
        target = dest / blob.name[len(prefix):]
        target.parent.mkdir(parents=True, exist_ok=True)
        blob.download_to_filename(str(target))
        written.append(target)
    if not written:
        raise FileNotFoundError(f"{uri}: no objects found under this prefix")
    return written


def upload_dir(src: Path, uri: str) -> list[str]:
    """Copies a local folder's files to ``gs://bucket/prefix/``; returns the object URIs."""
    from google.cloud import storage

    bucket_name, prefix = split_gcs(uri)
    prefix = prefix.rstrip("/")
    bucket = storage.Client().bucket(bucket_name)
    uris = []
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        name = f"{prefix}/{path.relative_to(src).as_posix()}" if prefix else path.relative_to(src).as_posix()
        bucket.blob(name).upload_from_filename(str(path))
        uris.append(f"gs://{bucket_name}/{name}")
    return uris


@contextlib.contextmanager
def local_input_dir(uri: str | Path) -> Iterator[Path]:
    """Yields a local folder with the contents of ``uri`` (a local path, or a ``gs://`` prefix)."""
    if is_gcs(str(uri)):
        with tempfile.TemporaryDirectory(prefix="churn-input-") as tmp:
            download_prefix(str(uri), Path(tmp))
            yield Path(tmp)
    else:
        yield Path(uri)
