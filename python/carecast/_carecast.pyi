"""Type stubs of the Rust extension module behind `carecast` (python/src/lib.rs). Call it through
the `carecast` package, which adapts its tables to pandas, polars and pyarrow."""

from pathlib import Path
from typing import Any, List, Optional, Tuple

class CarecastError(Exception):
    """A model, registry, file or audit trail that could not be used."""

class InputError(ValueError):
    """Rows or columns that cannot be scored: `field` names the (first) field at fault, `rows` lists
    every refused row as (row, field, reason); empty when a whole table or column was refused."""

    field: str
    rows: List[Tuple[int, str, str]]

class ArrowTable:
    """Scores handed back through the Arrow PyCapsule interface; it can be read once (a second
    read raises TypeError)."""

    def __arrow_c_stream__(self, requested_schema: Optional[object] = None) -> object: ...

class Model:
    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def path(self) -> Path: ...
    @property
    def features(self) -> List[str]: ...
    @property
    def manifest_json(self) -> str: ...
    def score(
        self,
        table: Any,
        key: Optional[str] = None,
        top: int = 5,
        contributions: bool = True,
        keep_refused: bool = False,
    ) -> Tuple[ArrowTable, List[Tuple[int, str, str]]]: ...

def load(registry: str, model: str, version: Optional[str] = None, audit: Optional[str] = None) -> Model: ...
def load_path(path: str, audit: str) -> Model: ...
def train(
    task: str,
    data: Optional[str],
    meds: Optional[str],
    features: Optional[str],
    registry: str,
    model: str,
    calibration: str,
    positive_weight: float,
    name: Optional[str] = None,
) -> str: ...
def evaluate(
    registry: str,
    model: str,
    data: Optional[str],
    meds: Optional[str],
    version: Optional[str] = None,
    all_rows: bool = False,
) -> str: ...
def recalibrate(
    registry: str, model: str, data: Optional[str], meds: Optional[str], version: Optional[str] = None
) -> Tuple[str, float, str, str]: ...
def synth(output: str, patients: int, seed: int, shard_size: int) -> Tuple[int, int, int, int]: ...
def population(
    model: Model,
    input: str,
    by: List[str],
    output: str,
    at: Optional[str] = None,
    key: Optional[str] = None,
    outcome: Optional[str] = None,
    scenario: List[str] = ...,
    suppress_up_to: Optional[int] = None,
    round_to: Optional[int] = None,
) -> ArrowTable: ...
def descriptor_set() -> bytes: ...
def audit_is_database(audit: str) -> bool: ...
