//! Resolution rules (SPEC §3): for each op kind, how to FIND the constants an exporter baked from
//! the input resolution (`inspect`, `find_resolution_constants`) and how to REWRITE them at a new
//! size (`resize`), side by side in one file per op kind:
//!
//! - `resize_op`: `Resize` target sizes;
//! - `pool`: adaptive-pool `AveragePool` kernel/strides;
//! - `reshape`: `Reshape` targets over spatial dims, `Expand` / `Tile` / `ConstantOfShape` shapes;
//! - `baked`: decoded-head tensors sized by N or a grid (the anchor-point patterns), and the rules
//!   of ops without shape semantics (index operands, weights, everything else).
//!
//! The probe loop (`probe`) and `resize`'s walk both dispatch through `rule_for`, so the two halves
//! cannot disagree on which op is handled how. A new op = one file with its `find` and `rewrite`,
//! plus one line in `RULES`.

mod baked;
mod pool;
mod probe;
mod reshape;
mod resize_op;
mod rewrite;

use anyhow::Result;

use crate::model::Model;
use crate::onnx::NodeProto;
use crate::shape::Info;

pub use baked::{BakedPattern, Scan, BAKED_PATTERNS};
pub use probe::{
    const_parts, find_resolution_constants, is_spatial, reshape_groups, traced_batch, Probe,
    ResConst,
};
pub use rewrite::{grids, spatial, Level, Rewrite, RewriteCx};

/// Find: look at node `n` (topological position `at`) in the symbolic probe, record what it bakes
/// (`Probe::set` / `Probe::add`), and give the output dims a baked value fixed fresh symbols in
/// `outs` (its inferred outputs, stored into the probe afterwards).
pub type FindFn = fn(p: &mut Probe, n: &NodeProto, at: usize, outs: &mut [Info]);

/// Rewrite: before node `ni` (topological position `p`) is inferred at the new size, re-derive
/// what it bakes and write it into the model (`RewriteCx::write_int` / `write_tensor`).
pub type RewriteFn = fn(m: &mut Model, cx: &mut RewriteCx, ni: usize, p: i64) -> Result<()>;

/// Both halves of one op kind's resolution rule.
pub struct ResolutionRule {
    /// The ONNX op types (default domain) it applies to.
    pub ops: &'static [&'static str],
    pub find: FindFn,
    pub rewrite: RewriteFn,
}

/// Every rule; an op is in at most one. Ops in none get `baked::OTHER`.
pub static RULES: &[ResolutionRule] = &[
    resize_op::RESIZE,
    pool::AVERAGE_POOL,
    reshape::RESHAPE,
    reshape::EXPAND_TILE,
    reshape::CONSTANT_OF_SHAPE,
    baked::INDEX_OPERANDS,
    baked::CONV,
    baked::WEIGHTS,
];

/// The rule for op type `op`.
pub fn rule_for(op: &str) -> &'static ResolutionRule {
    RULES
        .iter()
        .find(|r| r.ops.contains(&op))
        .unwrap_or(&baked::OTHER)
}

#[cfg(test)]
mod tests {
    use super::RULES;

    #[test]
    fn each_op_has_at_most_one_rule() {
        let mut seen = std::collections::BTreeSet::new();
        for op in RULES.iter().flat_map(|r| r.ops) {
            assert!(seen.insert(*op), "op {op} is in two rules");
        }
    }
}
