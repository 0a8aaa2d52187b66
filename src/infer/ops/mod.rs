//! The shape rules, one function per op (several ops may share one), grouped by op kind. The
//! op → rule table is `registry.rs`.
pub mod elementwise;
pub mod indexing;
pub mod nn;
pub mod reduce;
pub mod shape;
