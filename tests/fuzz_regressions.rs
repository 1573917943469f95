//! Every input the fuzz targets (`fuzz/`) start from or once failed on,
//! replayed through the same entry points: what the fuzzers found stays
//! fixed. New crashers go into `fuzz/regressions/<target>/`.

use std::path::Path;

use inventory_service::transcode::fuzzing;

/// The files of `fuzz/seeds/<target>` and `fuzz/regressions/<target>`.
fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut inputs = Vec::new();
    for kind in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(kind).join(target)) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_file() && path.file_name().is_some_and(|n| n != ".gitkeep") {
                let data = std::fs::read(&path).expect("readable");
                inputs.push((path.display().to_string(), data));
            }
        }
    }
    assert!(!inputs.is_empty(), "no inputs for {target}");
    inputs
}

#[test]
fn path_template_inputs_hold() {
    for (name, data) in inputs("path_template") {
        let outcome = std::panic::catch_unwind(|| fuzzing::template_and_path(&data));
        assert!(outcome.is_ok(), "{name}");
    }
}

#[tokio::test]
async fn rest_request_inputs_hold() {
    for (name, data) in inputs("rest_request") {
        let outcome = tokio::spawn(async move { fuzzing::request(&data).await }).await;
        assert!(outcome.is_ok(), "{name}");
    }
}

#[test]
fn reply_json_inputs_hold() {
    for (name, data) in inputs("reply_json") {
        let outcome = std::panic::catch_unwind(|| fuzzing::reply_json(&data));
        assert!(outcome.is_ok(), "{name}");
    }
}
