//! The two reports: `inspect` (what a model is) and `diff` (what changed between two models).
pub mod diff;
pub mod inspect;
