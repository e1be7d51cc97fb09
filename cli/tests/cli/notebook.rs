//! The researchers' notebook (`notebooks/train_and_score.ipynb`) executed from top to bottom by a
//! real Jupyter kernel (nbclient, ipykernel, pandas and pyarrow from PyPI into a virtual
//! environment, as `notebooks/requirements.txt` pins them), against this build's `carecast` and
//! the shared SUPPORT data: every cell runs without error, and what it shows is what the
//! packages it trained hold.

use crate::common::{python, run};
use std::path::Path;
use std::process::Command;

/// Executes the notebook at argv[1] with its working directory argv[3], writing it to argv[2].
const EXECUTE: &str = r#"
import sys, nbformat, nbclient
nb = nbformat.read(sys.argv[1], as_version=4)
nbclient.NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": sys.argv[3]}}).execute()
nbformat.write(nb, sys.argv[2])
"#;

/// The text a code cell shows: its streams and its plain-text results.
fn shown(cell: &serde_json::Value) -> String {
    let mut text = String::new();
    for output in cell["outputs"].as_array().unwrap() {
        for part in [&output["text"], &output["data"]["text/plain"]] {
            match part {
                serde_json::Value::String(s) => text += s,
                serde_json::Value::Array(lines) => lines.iter().for_each(|l| text += l.as_str().unwrap()),
                _ => {}
            }
        }
    }
    text
}

#[test]
fn the_researchers_notebook_runs_from_top_to_bottom() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = python("notebook-venv", &root.join("notebooks/requirements.txt"));
    let dir = std::env::temp_dir().join(format!("carecast-notebook-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let executed = dir.join("executed.ipynb");
    let data = root.join("../shared/data/support2.csv");
    run(Command::new(&python)
        .args(["-c", EXECUTE])
        .arg(root.join("notebooks/train_and_score.ipynb"))
        .arg(&executed)
        .arg(&dir)
        .env("CARECAST_BIN", env!("CARGO_BIN_EXE_carecast"))
        .env("CARECAST_DATA", &data));

    let nb: serde_json::Value = serde_json::from_slice(&std::fs::read(&executed).unwrap()).unwrap();
    let code: Vec<&serde_json::Value> =
        nb["cells"].as_array().unwrap().iter().filter(|c| c["cell_type"] == "code").collect();
    assert!(code.len() >= 5, "the notebook's code cells");
    for cell in &code {
        assert!(cell["execution_count"].is_number(), "every code cell ran");
        assert!(
            cell["outputs"].as_array().unwrap().iter().all(|o| o["output_type"] != "error"),
            "a cell failed: {}",
            shown(cell)
        );
    }
    // The metrics table shows each package's AUROC as its metrics.json holds it.
    let registry = carecast_models::Registry::new(dir.join("registry"));
    let table = shown(code[1]);
    for model in ["support2_hospdead-logistic", "support2_hospdead-gbm"] {
        let package = carecast_models::load_package(&registry.resolve(model, None).unwrap().1).unwrap();
        let auroc = format!("{:.3}", package.metrics.auroc);
        assert!(table.contains(model) && table.contains(&auroc), "{model}'s AUROC {auroc} not in the table:\n{table}");
    }
    // The whole population was scored: the band counts by disease group add up to its rows.
    let rows = std::fs::read_to_string(&data).unwrap().lines().count() - 1;
    let scores = dir.join("scores.parquet");
    assert!(scores.exists(), "the notebook scored the population");
    let counted = run(Command::new(&python)
        .arg("-c")
        .arg("import sys, pyarrow.parquet as pq; print(pq.read_metadata(sys.argv[1]).num_rows)")
        .arg(&scores));
    assert_eq!(counted.trim(), rows.to_string());
    std::fs::remove_dir_all(&dir).unwrap();
}
