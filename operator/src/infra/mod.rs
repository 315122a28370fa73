//! What a fleet consists of (render, pure) and how it is made so in the cluster (apply).

pub mod apply;
pub mod kind;
pub mod names;
pub mod overlay;
pub mod plan;
pub mod render;
