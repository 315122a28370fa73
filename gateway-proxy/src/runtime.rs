//! Ties a source to the translator, the data plane and the status view.
