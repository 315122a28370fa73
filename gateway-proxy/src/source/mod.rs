//! Where objects come from: YAML files (standalone mode) and the Kubernetes API.

pub mod files;
pub mod kube;
