//! Publishing the translator's statuses: the Kubernetes status writer.

pub mod writer;
