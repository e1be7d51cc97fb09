"""`carecast.spark.score` on a real multi-process Spark cluster on this machine: the
`local-cluster[2,1,1024]` master starts two executor JVMs, each with its own Python workers,
and the result must equal `carecast score` on the same rows, with both executors having run
tasks and every batch audited."""

import json
import os
import shutil
import sys
import urllib.request

import numpy as np
import pyarrow.parquet as pq
import pytest

import carecast
from conftest import SUPPORT, cli


@pytest.fixture(scope="module")
def spark():
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        if os.environ.get("CI"):
            pytest.fail("Spark needs a Java runtime (.ci/run installs Debian's openjdk-17-jre-headless)")
        pytest.skip("SKIPPED: no Java runtime for Spark")
    from pyspark.sql import SparkSession

    os.environ["PYSPARK_PYTHON"] = sys.executable
    session = (
        SparkSession.builder.master("local-cluster[2,1,1024]")
        .appName("carecast-test")
        .config("spark.executorEnv.PYSPARK_PYTHON", sys.executable)
        .config("spark.ui.port", "0")
        .getOrCreate()
    )
    yield session
    session.stop()


def test_spark_scores_equal_the_command_line_and_both_executors_work(spark, registry, tmp_path):
    from carecast import spark as carecast_spark

    output = tmp_path / "cli.parquet"
    cli("score", "--registry", str(registry), "--model", "imported", "--input", str(SUPPORT), "--key-column", "sno",
        "--output", str(output), cwd=tmp_path)
    theirs = pq.read_table(output).to_pandas().set_index("sno")

    package = carecast.load(registry, "imported").path
    df = spark.read.csv(str(SUPPORT), header=True, inferSchema=True).repartition(8)
    audit = tmp_path / "audit"
    scored = carecast_spark.score(df, package, key="sno", audit=str(audit), ship=True)
    ours = scored.toPandas().set_index("sno").loc[theirs.index]
    assert len(ours) == len(theirs) == 9105
    assert np.abs(ours["probability"].to_numpy() - theirs["probability"].to_numpy()).max() <= 1e-12
    assert (ours["risk_band"] == theirs["risk_band"]).all()
    assert (ours["factor_1"] == theirs["factor_1"]).all()
    assert "row" not in ours.columns

    # Both executors ran tasks (Spark's own account, from its monitoring API).
    ui = spark.sparkContext.uiWebUrl
    app = spark.sparkContext.applicationId
    with urllib.request.urlopen(f"{ui}/api/v1/applications/{app}/executors") as r:
        executors = [e for e in json.load(r) if e["id"] != "driver"]
    assert len(executors) == 2 and all(e["totalTasks"] > 0 for e in executors), executors

    # Every batch was audited, in its worker's own journal: the runs' scored rows add up.
    journals = list(audit.glob("*.jsonl"))
    assert len(journals) >= 2, journals
    scored_rows = 0
    for journal in journals:
        out = cli("audit", "verify", "--audit", str(journal), cwd=tmp_path)
        assert "chain intact" in out, out
        for line in journal.read_text().splitlines():
            if line.strip():
                scored_rows += json.loads(line)["batch"]["scored"]
    assert scored_rows == 9105
