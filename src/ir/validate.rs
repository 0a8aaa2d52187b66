//! Structural validation of a graph: references and cycles. The per-node half
//! ([`crate::infer::validate_nodes`]) needs shape inference and lives there.

use anyhow::Result;

use crate::graph::topo_order;
use crate::model::Model;

/// Refuse a graph that cannot be a valid model, first half: every tensor read is defined, and
/// there is no cycle. Callers recognize the head next (its messages are the more specific ones),
/// then call [`crate::infer::validate_nodes`].
pub fn validate_structure(model: &Model) -> Result<()> {
    crate::graph::check_references(model.graph())?;
    topo_order(model.graph()).map(|_| ())
}
