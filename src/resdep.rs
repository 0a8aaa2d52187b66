//! Finding the constants an exporter baked from the input resolution (SPEC §3). The rules live in
//! `crate::resolution` (one file per op kind, find and rewrite together); this module keeps the
//! old paths.

pub use crate::resolution::{const_parts, find_resolution_constants, reshape_groups, ResConst};
