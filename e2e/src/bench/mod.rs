//! Benchmark building blocks: processes to measure, a load generator driver, config generators.

pub mod config;
pub mod process;
pub mod wrk;
