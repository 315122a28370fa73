//! Test support for the black-box suite.
