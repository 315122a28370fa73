//! Where objects come from: files (standalone mode) and, later, the Kubernetes API.

pub mod files;
pub mod load;
pub mod yaml;
pub mod kube;
