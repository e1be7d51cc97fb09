"""Carecast in Python: explained clinical risk scores from the same Rust code as the ``carecast``
command line, called in this process (not a subprocess).

    import carecast
    model = carecast.load("registry", "support2_hospdead-gbm")
    scores = model.score(df)                 # pandas, polars or pyarrow in, the same kind out
    explanation = model.explain(df.head(50)) # a shap.Explanation: shap.plots.waterfall(explanation[0])

Tables cross into Rust through the Arrow PyCapsule interface (``__arrow_c_stream__``): their
columns are read where they lie, not copied into Python objects. Every call that returns scores
is audited, as one batch run, in the registry's audit trail (or the one ``audit`` names).

Errors: :class:`InputError` (a ``ValueError``) for rows or columns that cannot be scored, naming the
field (``err.field``) and listing every refused row (``err.rows``: row, field, reason; rows
numbered from 1) without echoing any value; :class:`CarecastError` for a model, registry, file or
audit trail that cannot be used.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import pyarrow as pa

from . import _carecast
from ._carecast import CarecastError, InputError

__all__ = [
    "CarecastError",
    "InputError",
    "Model",
    "load",
    "load_path",
    "train",
    "evaluate",
    "recalibrate",
    "synth",
    "population",
    "Client",
]

try:
    from importlib.metadata import version as _version

    __version__ = _version("carecast")
except Exception:  # running from a source tree
    __version__ = "0+unknown"

PathLike = Union[str, "os.PathLike[str]"]


def _fspath(path: Optional[PathLike]) -> Optional[str]:
    return None if path is None else os.fspath(path)


def _as_arrow(table: Any) -> Tuple[str, Any]:
    """The kind of table given (to return the same kind) and an object with ``__arrow_c_stream__``."""
    module = type(table).__module__.split(".")[0]
    if module == "pandas":
        # pandas converts through pyarrow (zero-copy where it can) whether or not it has the
        # PyCapsule export (2.2 on); a column it cannot convert is named, its values never shown.
        try:
            return "pandas", pa.Table.from_pandas(table, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            column = re.search(r"for column (.+?) with type", str(e))
            field = column.group(1) if column else "table"
        # Raised outside the handler, so that pyarrow's message (which quotes the value) is not
        # kept as this error's context.
        error = InputError(f"`{field}`: mixed kinds of value in one column (numbers and text): not one Arrow type")
        error.field, error.rows = field, []
        raise error
    if module == "pyarrow" and isinstance(table, pa.RecordBatch):
        return "pyarrow", pa.Table.from_batches([table])
    if not hasattr(table, "__arrow_c_stream__"):
        raise TypeError(f"table: expected a pandas or polars DataFrame or a pyarrow Table, not {type(table).__name__}")
    return "polars" if module == "polars" else "pyarrow", table


def _as_kind(kind: str, table: pa.Table) -> Any:
    if kind == "pandas":
        return table.to_pandas()
    if kind == "polars":
        import polars

        return polars.from_arrow(table)
    return table


class Model:
    """A published model package, loaded and checked: ``carecast.load(...)``.

    Attributes: ``name``, ``version``, ``features`` (the inputs, in the order of the
    contributions), ``path`` (the package folder) and ``manifest`` (its ``manifest.json``).
    """

    def __init__(self, inner: "_carecast.Model") -> None:
        self._inner = inner

    @property
    def name(self) -> str:
        return self._inner.name

    @property
    def version(self) -> str:
        return self._inner.version

    @property
    def features(self) -> List[str]:
        return self._inner.features

    @property
    def path(self) -> str:
        return str(self._inner.path)

    @property
    def manifest(self) -> Dict[str, Any]:
        return json.loads(self._inner.manifest_json)

    def __repr__(self) -> str:
        return f"<carecast.Model {self.name} v{self.version}: {len(self.features)} features>"

    def score(
        self,
        table: Any,
        *,
        key: Optional[str] = None,
        top: int = 5,
        contributions: bool = True,
        refused: str = "raise",
    ) -> Any:
        """Scores every row of ``table`` (a pandas or polars DataFrame, or a pyarrow Table, with a
        column per feature) exactly as ``carecast score`` does.

        Returns a table of the same kind with, per scored row: ``row`` (1-based), the ``key``
        column if named, ``model``, ``model_version``, ``probability``, ``risk_band``, ``margin``
        (log-odds), ``additivity_error``, the ``top`` clinical factors with their contributions and
        sentences, ``warnings``, and with ``contributions`` the ``base_value`` and every feature's
        exact contribution ``contribution_<feature>`` (they add up to ``margin``).

        ``key``: a column of pseudonymous patient keys, checked on every row. ``refused``:
        ``"raise"`` (the default) raises :class:`InputError` if any row cannot be scored;
        ``"return"`` returns ``(scores, refused_rows)``, the second a pyarrow Table of row, field
        and reason.
        """
        if refused not in ("raise", "return"):
            raise ValueError(f"refused: `{refused}` is not one of raise, return")
        kind, arrow = _as_arrow(table)
        scores, rows = self._inner.score(arrow, key, top, contributions, refused == "return")
        result = _as_kind(kind, pa.table(scores))
        if refused == "return":
            rows_table = pa.table(
                {
                    "row": pa.array([r[0] for r in rows], pa.uint64()),
                    "field": pa.array([r[1] for r in rows], pa.string()),
                    "reason": pa.array([r[2] for r in rows], pa.string()),
                }
            )
            return result, rows_table
        return result

    def explain(self, table: Any, *, key: Optional[str] = None) -> Any:
        """Every row's exact explanation as a ``shap.Explanation``: ``values`` (rows x features,
        log-odds), ``base_values``, ``data`` (numbers; a category as a number, with the words
        in ``display_data``) and ``feature_names``, so that
        ``shap.plots.waterfall(e[0])`` and ``shap.plots.beeswarm(e)`` work. For each row,
        ``base_values + values.sum()`` is the model's margin. Any refused row raises
        :class:`InputError`. A category's number in ``data`` is its place among the sorted
        categories of this call's rows, for colouring plots only: it is not comparable between
        calls.
        """
        import numpy as np
        import shap

        _, arrow = _as_arrow(table)
        inputs = pa.table(arrow)
        scores = pa.table(self._inner.score(inputs, key, 0, True, False)[0])
        features = self.features
        values = np.column_stack([scores[f"contribution_{f}"].to_numpy() for f in features])
        shown = inputs.select(features).to_pandas()
        data = np.empty(shown.shape, dtype=float)
        for j, f in enumerate(features):
            column = shown[f]
            if column.dtype.kind in "biuf":
                data[:, j] = column.astype(float).to_numpy()
            else:
                codes, _ = column.factorize(sort=True)
                data[:, j] = np.where(codes < 0, np.nan, codes)
        return shap.Explanation(
            values=values,
            base_values=scores["base_value"].to_numpy(),
            data=data,
            display_data=shown.to_numpy(dtype=object),
            feature_names=list(features),
        )


def load(registry: PathLike, model: str, version: Optional[str] = None, *, audit: Optional[str] = None) -> Model:
    """Loads ``model`` (its promoted version, or ``version``) from the registry folder ``registry``.

    Scores are audited to ``audit`` (a journal file or a PostgreSQL connection string), by default
    the registry's ``audit.jsonl``, as ``carecast score`` does.
    """
    return Model(_carecast.load(os.fspath(registry), model, version, audit))


def load_path(path: PathLike, *, audit: str) -> Model:
    """Loads the package in the folder ``path`` (a copy shipped to a Spark executor), auditing to
    ``audit`` (a journal file, or a PostgreSQL connection string shared by every executor)."""
    return Model(_carecast.load_path(os.fspath(path), audit))


def train(
    task: str,
    data: Optional[PathLike] = None,
    *,
    meds: Optional[PathLike] = None,
    features: Optional[PathLike] = None,
    registry: PathLike = "registry",
    model: Union[str, Sequence[str]] = "gbm",
    calibration: str = "none",
    positive_weight: float = 1.0,
    name: Optional[str] = None,
) -> Union[Dict[str, Any], List[Dict[str, Any]]]:
    """Trains ``model`` (logistic, lasso, elastic_net, gbm, mlp, gru, hazard, stack; or a list of them),
    evaluates it on the task's test split and publishes it to ``registry``, as ``carecast
    train`` does: on the table ``data`` for ``task`` (a bundled task such as
    ``support2_hospdead``, or a task spec TOML file), or on the MEDS dataset ``meds`` for the
    event task spec file ``task`` with the feature spec file ``features``. Returns the training
    report (test metrics, model selection, rows used), a list of them when given a list.
    """
    models = [model] if isinstance(model, str) else list(model)
    reports = [
        json.loads(
            _carecast.train(
                os.fspath(task), _fspath(data), _fspath(meds), _fspath(features), os.fspath(registry), m, calibration,
                positive_weight, name,
            )
        )
        for m in models
    ]
    return reports[0] if isinstance(model, str) else reports


def evaluate(
    model: str,
    data: Optional[PathLike] = None,
    *,
    meds: Optional[PathLike] = None,
    registry: PathLike = "registry",
    version: Optional[str] = None,
    all_rows: bool = False,
) -> Dict[str, Any]:
    """Evaluates a published model on the table ``data`` or the MEDS dataset ``meds`` (its
    task's test split; every row with ``all_rows``, for a new site) as ``carecast evaluate``
    does: discrimination with DeLong intervals, calibration (slope, intercept, ICI and the
    curve), net benefit and subgroups. Returns the metrics file as a dict (``["auroc"]``,
    ``["calibration_slope"]``, ``["calibration_curve"]``, ``["subgroups"]``...).
    """
    return json.loads(_carecast.evaluate(os.fspath(registry), model, _fspath(data), _fspath(meds), version, all_rows))


def recalibrate(
    model: str,
    data: Optional[PathLike] = None,
    *,
    meds: Optional[PathLike] = None,
    registry: PathLike = "registry",
    version: Optional[str] = None,
) -> Dict[str, Any]:
    """Recalibrates a model in the large for a new site, as ``carecast recalibrate`` does: its
    log-odds shifted so that its mean risk on the site's rows (every row of ``data`` or ``meds``)
    matches their observed rate, published as a new version and promoted once it passes its
    promotion gates on those rows (the task spec's: calibration slope and intercept within
    limits, AUROC not below the served version's by more than a margin). Returns the new
    ``version``, the ``shift`` (log-odds), its ``metrics`` on the site's rows and its
    ``promotion`` (``{"status": "promoted" | "held" | "first", "gates": ...}``).
    """
    new, shift, metrics, promotion = _carecast.recalibrate(
        os.fspath(registry), model, _fspath(data), _fspath(meds), version
    )
    return {"version": new, "shift": shift, "metrics": json.loads(metrics), "promotion": json.loads(promotion)}


def synth(output: PathLike, *, patients: int = 50_000, seed: int = 42, shard_size: int = 250_000) -> Dict[str, int]:
    """Draws a synthetic population into the MEDS dataset folder ``output`` as ``carecast synth``
    does (the same seed draws the same people). Returns the counts written."""
    events, onsets, observations, deteriorations = _carecast.synth(os.fspath(output), patients, seed, shard_size)
    return {
        "patients": patients,
        "events": events,
        "dementia_onsets": onsets,
        "observations": observations,
        "deteriorations": deteriorations,
    }


def population(
    model: Model,
    register: Any,
    *,
    by: Iterable[str],
    output: PathLike,
    key: Optional[str] = None,
    outcome: Optional[str] = None,
    scenario: Iterable[str] = (),
    suppress_up_to: Optional[int] = None,
    round_to: Optional[int] = None,
    at: Optional[str] = None,
) -> Any:
    """Summarises a register for planners as ``carecast population`` does: by each grouping in
    ``by`` (``"dzgroup"``, ``"age=65,80"``), people, people per band, expected cases with 95%
    intervals, observed cases (``outcome``), each factor's burden, and the ``scenario`` (``"meanbp>=70"``),
    with small numbers suppressed and rounded. Publishes ``<output>.parquet``, ``.csv``, ``.json``
    and the report ``.html`` (audited), and returns the summary as a pandas DataFrame.

    ``register``: a CSV or Parquet file, or a table (written to a temporary Parquet file
    first); or, with ``at`` (a date, ``"2020-01-01"``), a MEDS dataset folder for an
    event-trained model, everyone in it scored on their events before that date, where a
    grouping that is not an input of the model is a coded attribute named by its code prefix
    (``"IMD//DECILE_"``).
    """
    if isinstance(register, (str, os.PathLike)):
        path, temporary = os.fspath(register), None
    else:
        import pyarrow.parquet as pq

        _, arrow = _as_arrow(register)
        temporary = tempfile.NamedTemporaryFile(suffix=".parquet", delete=False)
        temporary.close()
        pq.write_table(pa.table(arrow), temporary.name)
        path = temporary.name
    try:
        summary = _carecast.population(
            model._inner, path, list(by), os.fspath(output), at, key, outcome, list(scenario), suppress_up_to,
            round_to,
        )
    finally:
        if temporary is not None:
            os.unlink(temporary.name)
    return pa.table(summary).to_pandas()


def __getattr__(name: str) -> Any:
    # The gRPC client needs grpcio and protobuf (`pip install carecast[client]`): imported on use.
    if name == "Client":
        from .client import Client

        return Client
    raise AttributeError(f"module 'carecast' has no attribute {name!r}")
