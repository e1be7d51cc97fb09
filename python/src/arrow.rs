//! Tables in and out through the Arrow PyCapsule interface: whatever a caller passes (a pyarrow
//! Table, a polars or pandas DataFrame) is read through its `__arrow_c_stream__`, its columns'
//! buffers taken over rather than copied into Python objects (polars re-encodes text as its
//! string views), and results go back as a stream object pyarrow, polars and pandas read.

use polars::prelude::*;
use polars_arrow::array::StructArray;
use polars_arrow::datatypes::{ArrowDataType, Field};
use polars_arrow::ffi::{ArrowArrayStream, ArrowArrayStreamReader, export_iterator};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

const STREAM: &std::ffi::CStr = c"arrow_array_stream";

/// Reads `table` (any object with `__arrow_c_stream__`) into a DataFrame: each record batch's
/// arrays become the frame's chunks. A column of a type polars cannot hold is refused by name.
pub fn import(table: &Bound<'_, PyAny>) -> PyResult<DataFrame> {
    if !table.hasattr("__arrow_c_stream__")? {
        return Err(PyTypeError::new_err(
            "table: expected a pyarrow Table, a polars or pandas DataFrame (any object with __arrow_c_stream__)",
        ));
    }
    let capsule = table.call_method1("__arrow_c_stream__", (table.py().None(),))?;
    let capsule = capsule.cast_into::<PyCapsule>()?;
    let pointer = capsule.pointer_checked(Some(STREAM))?.cast::<ArrowArrayStream>();
    // SAFETY: the capsule holds a valid stream by the PyCapsule interface's contract; it is moved
    // out and an empty (released) one left, so the capsule's destructor releases nothing twice.
    let stream = Box::new(unsafe { std::ptr::replace(pointer.as_ptr(), ArrowArrayStream::empty()) });
    // The producer's own error text may quote a value (a cell it failed to convert): not repeated.
    let unreadable = |_: PolarsError| PyTypeError::new_err("table: its Arrow stream failed to produce a batch");
    // SAFETY: as above, the producer promises a stream by the C stream interface.
    let mut reader = unsafe { ArrowArrayStreamReader::try_new(stream) }.map_err(unreadable)?;
    let ArrowDataType::Struct(fields) = reader.field().dtype().clone() else {
        return Err(PyTypeError::new_err("table: an Arrow stream of record batches (a struct of columns)"));
    };
    let mut frame: Option<DataFrame> = None;
    // SAFETY: as above.
    let not_batches = || PyTypeError::new_err("table: an Arrow stream of record batches (a struct of columns)");
    while let Some(batch) = unsafe { reader.next() } {
        let batch = batch.map_err(unreadable)?;
        let batch = batch.as_any().downcast_ref::<StructArray>().ok_or_else(not_batches)?;
        if batch.validity().is_some_and(|v| v.unset_bits() > 0) {
            return Err(not_batches());
        }
        let columns = fields
            .iter()
            .zip(batch.values())
            .map(|(f, a)| {
                Series::from_arrow(f.name.clone(), a.clone()).map(Column::from).map_err(|_| {
                    PyTypeError::new_err(format!("column `{}`: Arrow type {:?} not supported", f.name, f.dtype))
                })
            })
            .collect::<PyResult<Vec<_>>>()?;
        let chunk = DataFrame::new(batch.len(), columns).map_err(|e| PyTypeError::new_err(format!("table: {e}")))?;
        match &mut frame {
            Some(f) => {
                f.vstack_mut_owned(chunk).map_err(|e| PyTypeError::new_err(format!("table: {e}")))?;
            }
            None => frame = Some(chunk),
        }
    }
    match frame {
        Some(f) => Ok(f),
        None => {
            let columns =
                fields.iter().map(|f| Series::new_empty(f.name.clone(), &DataType::from_arrow_field(f)).into());
            DataFrame::new(0, columns.collect()).map_err(|e| PyTypeError::new_err(format!("table: {e}")))
        }
    }
}

/// A table handed back to Python: read once through `__arrow_c_stream__` (pyarrow's
/// `pa.table(...)`, `polars.DataFrame(...)`), in the Arrow types every reader knows (large
/// strings rather than string views).
#[pyclass(module = "carecast._carecast", name = "ArrowTable")]
pub struct ArrowTable {
    frame: Option<DataFrame>,
}

impl From<DataFrame> for ArrowTable {
    fn from(frame: DataFrame) -> Self {
        Self { frame: Some(frame) }
    }
}

#[pymethods]
impl ArrowTable {
    /// The Arrow PyCapsule interface: the table as a stream of record batches.
    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_stream__<'py>(
        &mut self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        // A requested schema is a hint a producer may ignore (the interface's rule); callers cast.
        let _ = requested_schema;
        let mut frame = self.frame.take().ok_or_else(|| PyTypeError::new_err("this table was already read"))?;
        // Record batches need each column in one chunk alike (a frame built in one piece has).
        frame.rechunk_mut();
        let compat = CompatLevel::oldest();
        let fields: Vec<Field> =
            frame.columns().iter().map(|c| c.dtype().to_arrow_field(c.name().clone(), compat)).collect();
        let dtype = ArrowDataType::Struct(fields.clone());
        let batches: Vec<PolarsResult<Box<dyn polars_arrow::array::Array>>> = frame
            .iter_chunks(compat, false)
            .map(|batch| {
                let len = batch.len();
                Ok(StructArray::new(dtype.clone(), len, batch.into_arrays(), None).boxed())
            })
            .collect();
        let stream = export_iterator(Box::new(batches.into_iter()), Field::new("".into(), dtype, false));
        PyCapsule::new_with_value(py, stream, STREAM)
    }
}
