//! `crdgen`: writes the generated CRD YAML into `crds/yaml/` and the Helm chart.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use gantry_crds::crdgen::{GeneratedFile, gantry_crds, gateway_api_crds};

fn main() -> ExitCode {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    match run(&root) {
        Ok(written) => {
            for path in written {
                println!("wrote {}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("crdgen: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(root: &Path) -> Result<Vec<PathBuf>, String> {
    let own = gantry_crds().map_err(|e| e.to_string())?;
    let upstream = gateway_api_crds().map_err(|e| e.to_string())?;
    let mut written = Vec::new();
    for dir in ["crds/yaml", "charts/gantry/crds"] {
        written.extend(write_all(&root.join(dir), &own)?);
    }
    written.extend(write_all(
        &root.join("charts/gantry/gateway-api-crds"),
        &upstream,
    )?);
    Ok(written)
}

fn write_all(dir: &Path, files: &[GeneratedFile]) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    files
        .iter()
        .map(|file| {
            let path = dir.join(&file.name);
            std::fs::write(&path, &file.yaml)
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
            Ok(path)
        })
        .collect()
}
