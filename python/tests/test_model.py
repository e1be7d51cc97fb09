"""The package scores, explains, trains, evaluates, draws and summarises as the command line does:
the same functions in process, checked against the command line's own outputs and brute force."""

import json
import re

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import carecast

from conftest import SUPPORT, cli


def audit_runs(registry) -> int:
    """Batch runs in the registry's audit trail, as `carecast audit verify` counts them (the chain
    checked whole)."""
    out = cli("audit", "verify", "--registry", str(registry), cwd=registry.parent)
    assert "chain intact" in out, out
    return int(re.search(r"(\d+) batch run", out).group(1))


@pytest.mark.parametrize("name", ["support2_hospdead-gbm", "imported"])
def test_scores_equal_the_command_lines_on_the_same_rows(registry, tmp_path, name):
    output = tmp_path / "cli.parquet"
    cli("score", "--registry", str(registry), "--model", name, "--input", str(SUPPORT), "--key-column", "sno",
        "--contributions", "--output", str(output), cwd=tmp_path)
    theirs = pq.read_table(output).to_pandas()
    model = carecast.load(registry, name)
    before = audit_runs(registry)
    ours = model.score(pd.read_csv(SUPPORT), key="sno")
    assert audit_runs(registry) == before + 1, "the call is audited as one batch run"
    assert isinstance(ours, pd.DataFrame) and len(ours) == len(theirs) == 9105
    assert list(ours.columns) == list(theirs.columns)
    assert (ours["sno"] == theirs["sno"]).all() and (ours["risk_band"] == theirs["risk_band"]).all()
    numbers = ["probability", "margin", "base_value"] + [f"contribution_{f}" for f in model.features]
    assert np.abs(ours[numbers].to_numpy() - theirs[numbers].to_numpy()).max() <= 1e-12
    assert (ours["factor_1_explanation"] == theirs["factor_1_explanation"]).all()
    # Every contribution adds up to the margin.
    total = ours[[f"contribution_{f}" for f in model.features]].sum(axis=1) + ours["base_value"]
    assert np.abs(total - ours["margin"]).max() < 1e-9

    # polars and pyarrow in give the same scores, in their own kind.
    from_polars = model.score(pl.read_csv(SUPPORT), key="sno")
    assert isinstance(from_polars, pl.DataFrame)
    assert np.abs(from_polars["probability"].to_numpy() - theirs["probability"].to_numpy()).max() <= 1e-12
    from_arrow = model.score(pa.Table.from_pandas(pd.read_csv(SUPPORT)), key="sno")
    assert isinstance(from_arrow, pa.Table)
    assert np.abs(from_arrow["probability"].to_numpy() - theirs["probability"].to_numpy()).max() <= 1e-12


def test_an_explanation_is_a_shap_explanation_that_adds_up_and_plots(registry):
    import matplotlib

    matplotlib.use("Agg")
    import shap

    model = carecast.load(registry, "support2_hospdead-gbm")
    rows = pd.read_csv(SUPPORT).head(300)
    e = model.explain(rows)
    assert isinstance(e, shap.Explanation)
    assert e.values.shape == (300, len(model.features)) and e.feature_names == model.features
    margins = model.score(rows)["margin"].to_numpy()
    assert np.abs(e.values.sum(axis=1) + e.base_values - margins).max() < 1e-9
    assert e.display_data[0, model.features.index("sex")] == rows["sex"][0]
    shap.plots.waterfall(e[0], show=False)
    shap.plots.beeswarm(e, show=False)


def test_bad_inputs_raise_naming_the_field_and_never_the_value(registry):
    model = carecast.load(registry, "support2_hospdead-gbm")
    rows = pd.read_csv(SUPPORT).head(8)

    text = rows.copy()
    text["age"] = text["age"].astype(str)
    text.loc[2, "age"] = "seventy-one"
    with pytest.raises(carecast.InputError) as err:
        model.score(text)
    assert err.value.field == "age" and err.value.rows == [(3, "age", "expected a number")]
    assert "seventy-one" not in str(err.value)

    absurd = rows.copy()
    absurd.loc[3, "age"] = 712.0
    absurd.loc[5, "temp"] = np.inf
    with pytest.raises(ValueError) as err:  # InputError is a ValueError
        model.score(absurd)
    assert [(r, f) for r, f, _ in err.value.rows] == [(4, "age"), (6, "temp")]
    assert "712" not in str(err.value) and "unit" in err.value.rows[0][2]
    scores, refused = model.score(absurd, refused="return")
    assert len(scores) == 6 and refused.column("field").to_pylist() == ["age", "temp"]

    mixed = rows.copy()
    mixed["hrt"] = mixed["hrt"].astype(object)
    mixed.loc[1, "hrt"] = "fast"
    with pytest.raises(carecast.InputError, match="hrt") as err:
        model.score(mixed)
    assert "fast" not in str(err.value)

    with pytest.raises(carecast.InputError, match="`age`: required by the model"):
        model.score(rows.drop(columns=["age"]))

    keyed = rows.copy()
    keyed["sno"] = keyed["sno"].astype(str)
    keyed.loc[1, "sno"] = "9434765919"
    with pytest.raises(carecast.InputError, match="NHS number") as err:
        model.score(keyed, key="sno")
    assert "943" not in str(err.value)

    # A table carrying direct identifiers is refused whole, as a file is: the column named, no value.
    named = rows.copy()
    named["postcode"] = ["SW1A 1AA", "M1 1AE", "B33 8TH", "CR2 6XH", "DN55 1PT", "EC1A 1BB", "W1A 0AX", "LS1 4AP"]
    with pytest.raises(carecast.InputError, match="de-identified records only") as err:
        model.score(named)
    assert "postcode" in str(err.value) and "SW1A" not in str(err.value) and err.value.rows == []

    # A column the model does not read may be of any type (here nested lists): it is left alone.
    nested = pa.Table.from_pandas(rows).append_column("visits", pa.array([[1, 2]] * 8, pa.list_(pa.int64())))
    assert model.score(nested).num_rows == 8

    with pytest.raises(TypeError, match="table"):
        model.score([[1, 2]])
    with pytest.raises(ValueError, match="refused"):
        model.score(rows, refused="drop")
    with pytest.raises(carecast.CarecastError, match="nope"):
        carecast.load(registry, "nope")
    with pytest.raises(ValueError, match="model: `forest`"):
        carecast.train("support2_hospdead", SUPPORT, registry=registry, model="forest")


def test_evaluation_matches_brute_force_auroc_on_the_same_scores(registry):
    model = carecast.load(registry, "imported")
    metrics = carecast.evaluate("imported", SUPPORT, registry=registry, all_rows=True)
    m = metrics
    data = pd.read_csv(SUPPORT)
    p = model.score(data)["probability"].to_numpy()
    y = data["hospdead"].to_numpy() == 1
    assert m["n"] == len(data)
    # AUROC by its definition: the chance a case outranks a non-case, ties counting half.
    cases, controls = p[y], p[~y]
    greater = (cases[:, None] > controls[None, :]).mean()
    ties = (cases[:, None] == controls[None, :]).mean()
    assert abs(m["auroc"] - (greater + ties / 2)) < 1e-12
    assert abs(m["brier"] - np.mean((p - y) ** 2)) < 1e-12


def test_synth_and_population_write_what_the_command_line_writes(registry, tmp_path):
    drawn = carecast.synth(tmp_path / "py", patients=300, seed=11, shard_size=100)
    said = cli("synth", "--patients", "300", "--seed", "11", "--shard-size", "100", "--output",
               str(tmp_path / "cli"), cwd=tmp_path)
    assert said.startswith(f"300 patients, {drawn['events']} events, {drawn['dementia_onsets']} dementia onsets")
    files = sorted(p.relative_to(tmp_path / "cli") for p in (tmp_path / "cli").rglob("*.parquet"))
    assert files and files == sorted(p.relative_to(tmp_path / "py") for p in (tmp_path / "py").rglob("*.parquet"))
    for f in files:
        assert pq.read_table(tmp_path / "py" / f).equals(pq.read_table(tmp_path / "cli" / f)), f

    model = carecast.load(registry, "support2_hospdead-gbm")
    args = ["--by", "dzgroup", "--by", "age=65,80", "--outcome", "hospdead", "--scenario", "meanbp>=70"]
    cli("population", "--registry", str(registry), "--model", model.name, "--input", str(SUPPORT), *args,
        "--output", str(tmp_path / "cli-summary"), cwd=tmp_path)
    summary = carecast.population(model, pd.read_csv(SUPPORT), by=["dzgroup", "age=65,80"], outcome="hospdead",
                                  scenario=["meanbp>=70"], output=tmp_path / "summary")
    theirs = pd.read_csv(tmp_path / "cli-summary.csv")
    assert (tmp_path / "summary.csv").read_text() == (tmp_path / "cli-summary.csv").read_text()
    assert len(summary) == len(theirs) and "people" in summary.columns
    ours_json, theirs_json = (json.loads((tmp_path / f).read_text()) for f in ("summary.json", "cli-summary.json"))
    assert ours_json["disclosure_control"] == theirs_json["disclosure_control"] and ours_json["people"]
    assert (tmp_path / "summary.html").read_text().startswith("<!DOCTYPE html>")
    with pytest.raises(ValueError, match="by `age=old`"):
        carecast.population(model, SUPPORT, by=["age=old"], output=tmp_path / "bad")
