"""Scoring a register on Spark beside `carecast score`, on the same rows, in the same run.

SUPPORT's rows resampled into a Parquet register of N rows (default 1,000,000); the shared XGBoost
fixture imported into a package; then (1) `carecast score --top 5` on it, and (2) Spark on
`local[2]` (the same 2 cores) reading the same Parquet, scoring with `carecast.spark.score` (top 5)
and writing Parquet. Each side reads the register and writes every row's scores; the time is wall
clock from start to the output written, Spark's session start excluded (reported apart).

    pip install ./python pyspark   # the wheel built in release, as users install it
    python benches/spark_score.py [rows] [--carecast path/to/release/carecast]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("rows", nargs="?", type=int, default=1_000_000)
    parser.add_argument("--carecast", default=str(ROOT / "target" / "release" / "carecast"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="carecast-spark-bench-"))
    support = pcsv.read_csv(SHARED / "data" / "support2.csv")
    picks = np.random.default_rng(18).integers(0, support.num_rows, args.rows)
    register = support.take(pa.array(picks)).set_column(
        support.schema.get_field_index("sno"), "sno", pa.array(np.arange(1, args.rows + 1))
    )
    pq.write_table(register, work / "register.parquet", row_group_size=65_536)
    subprocess.run(
        [args.carecast, "import", "--file", str(SHARED / "fixtures/xgboost/support2_hospdead.json"), "--format",
         "xgboost", "--task", "support2_hospdead", "--data", str(SHARED / "data/support2.csv"), "--name", "bench",
         "--registry", str(work / "registry")],
        check=True, capture_output=True,
    )

    started = time.perf_counter()
    subprocess.run(
        [args.carecast, "score", "--registry", str(work / "registry"), "--model", "bench", "--input",
         str(work / "register.parquet"), "--key-column", "sno", "--top", "5", "--output", str(work / "cli.parquet")],
        check=True, capture_output=True,
    )
    cli = time.perf_counter() - started

    import carecast
    from carecast import spark as carecast_spark
    from pyspark.sql import SparkSession

    os.environ["PYSPARK_PYTHON"] = sys.executable
    started = time.perf_counter()
    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "65536")
        .config("spark.driver.memory", "4g")
        .getOrCreate()
    )
    session = time.perf_counter() - started
    package = carecast.load(work / "registry", "bench").path
    started = time.perf_counter()
    df = spark.read.parquet(str(work / "register.parquet"))
    scores = carecast_spark.score(df, package, key="sno", top=5, audit=str(work / "spark-audit"))
    scores.write.mode("overwrite").parquet(str(work / "spark.parquet"))
    on_spark = time.perf_counter() - started
    spark.stop()

    written = pq.read_table(work / "spark.parquet", columns=["probability"]).num_rows
    assert written == args.rows, (written, args.rows)
    print(f"{args.rows} rows, 2 cores")
    print(f"carecast score            {cli:7.1f} s  {args.rows / cli:9.0f} rows/s")
    print(f"Spark local[2], mapInArrow {on_spark:6.1f} s  {args.rows / on_spark:9.0f} rows/s  (session start {session:.1f} s apart)")
    print(f"Spark / carecast score: {cli / on_spark:.2f}x the speed")


if __name__ == "__main__":
    main()
