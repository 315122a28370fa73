//! The Gantry operator.
