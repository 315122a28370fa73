//! Where objects come from: files (standalone mode) and, later, the Kubernetes API.

pub mod files;
pub mod kube;
pub mod load;
mod secret;
pub mod yaml;
