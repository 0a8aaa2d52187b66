//! What a graph holds, found without running it: the constants an exporter baked from the input
//! resolution ([`resolution`]) and non-finite weights ([`nonfinite`]).
pub mod nonfinite;
pub mod resolution;
