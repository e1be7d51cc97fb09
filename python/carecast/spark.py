"""Scoring a Spark DataFrame: national registers on a cluster, by the same Rust scorer.

    from carecast import spark as carecast_spark
    scores = carecast_spark.score(df, "/dbfs/models/support2_hospdead-gbm/v3", key="sno",
                                  audit="postgresql://audit@db/carecast")

Each executor's Python worker loads the package once and scores each Arrow record batch Spark
hands it (``DataFrame.mapInArrow``) in one call into Rust: no row crosses into Python objects.
Rows are identified by their ``key`` (Spark keeps no row order).
"""

from __future__ import annotations

import hashlib
import os
import socket
from typing import Any, Dict, Iterator, Optional, Tuple

import pyarrow as pa

_MODELS: Dict[Tuple[str, str], Any] = {}


def _model(path: str, audit: str) -> Any:
    """The package at ``path``, loaded once per Python worker; a journal of this worker's own
    when ``audit`` is a directory (a journal has one writer)."""
    import carecast
    from carecast import _carecast

    if not _carecast.audit_is_database(audit):
        os.makedirs(audit, exist_ok=True)
        audit = os.path.join(audit, f"{socket.gethostname()}-{os.getpid()}.jsonl")
    loaded = _MODELS.get((path, audit))
    if loaded is None:
        loaded = _MODELS[(path, audit)] = carecast.load_path(path, audit=audit)
    return loaded


def _spark_arrow(schema: pa.Schema) -> pa.Schema:
    """The scores' Arrow schema in the types Spark's Arrow reads (no unsigned or large types)."""

    def kind(t: pa.DataType) -> pa.DataType:
        if pa.types.is_large_string(t) or pa.types.is_string(t):
            return pa.string()
        if pa.types.is_unsigned_integer(t):
            return pa.int64()
        return t

    return pa.schema([pa.field(f.name, kind(f.type)) for f in schema if f.name != "row"])


def score(
    df: Any,
    model_path: str,
    *,
    audit: str,
    key: Optional[str] = None,
    top: int = 5,
    contributions: bool = False,
    ship: bool = False,
) -> Any:
    """Scores every row of the Spark DataFrame ``df`` with the package in the folder
    ``model_path``, exactly as ``carecast score`` does, and returns a Spark DataFrame of the
    scores (the columns of ``Model.score``, less ``row``).

    ``model_path``: a folder every executor can read (shared storage: NFS, DBFS, a volume), or,
    with ``ship=True``, one on the driver, zipped and copied to each executor
    (``SparkContext.addArchive``).
    ``audit``: a PostgreSQL connection string (one chain for every executor), or a folder on
    shared storage in which each executor's Python worker keeps its own journal
    (``<host>-<pid>.jsonl``); every batch is audited as one run when it is scored. The result is
    lazy, as Spark's are: each action on it (and each retried or speculative task) scores again
    and is audited again, so write it out once, or ``persist()`` it, and leave speculation off.
    ``key``: a column of pseudonymous keys, checked on every row; without one, the scores carry
    nothing to join them back to their rows by. Only the model's inputs and the key reach
    Carecast, and the identifier guard checks them batch by batch, as it checks a file. Any
    refused row fails the job: the driver sees Spark's ``PythonException`` carrying
    :class:`carecast.InputError`'s message (its field, and its row counted within the failing
    Arrow batch); clean the rows, or score them with ``carecast score`` to get every refusal in
    a file.
    """
    import carecast
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

    path = os.path.abspath(model_path)
    shipped = _ship(df.sparkSession.sparkContext, path) if ship else None
    local = carecast.load_path(path, audit=os.devnull)
    # Only the columns the model reads travel to Python, under plain names (Spark takes a dot
    # in a column's name, as in SUPPORT's `num.co`, for a field of a struct); each batch gets
    # its names back before it is scored.
    names = [c for c in df.columns if c in set(local.features) | {key}]
    plain = df.select([F.col(f"`{c}`").alias(f"c{i}") for i, c in enumerate(names)])
    # The output's columns, from scoring no rows on the driver (nothing is audited for that).
    empty = pa.Table.from_batches([], schema=to_arrow_schema(plain.schema)).rename_columns(names)
    schema = _spark_arrow(pa.table(local._inner.score(empty, key, top, contributions, False)[0]).schema)

    def each(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark import SparkFiles

        # The unpacked archive on the executor: the package's checksums are checked on load.
        package = SparkFiles.get(shipped) if shipped else path
        model = _model(package, audit)
        for batch in batches:
            if batch.num_rows == 0:
                continue
            named = pa.Table.from_batches([pa.RecordBatch.from_arrays(batch.columns, names=names)])
            scores = pa.table(model._inner.score(named, key, top, contributions, False)[0])
            yield from scores.select(schema.names).cast(schema).to_batches()

    return plain.mapInArrow(each, from_arrow_schema(schema))


def _ship(context: Any, path: str) -> str:
    """Ships the package folder to every executor as a zip archive (Spark copies files, not
    folders, to a cluster's executors, and unpacks archives there); returns the archive's name."""
    import shutil
    import tempfile

    name = "carecast-" + hashlib.sha256(path.encode()).hexdigest()[:16]
    archive = shutil.make_archive(os.path.join(tempfile.mkdtemp(), name), "zip", root_dir=path)
    context.addArchive(archive)
    return os.path.basename(archive)
