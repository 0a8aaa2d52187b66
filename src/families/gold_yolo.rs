//! Gold-YOLO / YOLOv6 v3: a decoded `[B, N, 5+C]` head (cx, cy, w, h in input pixels, column 4 a
//! constant 1, sigmoid class scores in columns 5…).

use anyhow::Result;

use super::{Candidate, DetectorFamily, Family};
use crate::graph::{constant_ref, describe, GraphIndex};
use crate::model::Model;

/// The Gold-YOLO / YOLOv6 family.
pub struct GoldYolo;

/// Its registry entry.
pub const GOLD_YOLO: GoldYolo = GoldYolo;

/// Is `name` (an input of the final Concat) a constant-1 column?
fn ones_column(m: &Model, ix: &GraphIndex, name: &str) -> Option<String> {
    let g = m.graph();
    if let Some(&p) = ix.producer.get(name) {
        let n = &g.node[p];
        if n.op_type() == "ConstantOfShape" {
            let t = crate::graph::attr(n, "value").and_then(|a| a.t.as_ref())?;
            let v = crate::tensor::values(t).ok()?.as_f64();
            if v.len() == 1 && v[0] == 1.0 {
                return Some(describe(n));
            }
            return None;
        }
    }
    let t = constant_ref(g, ix, name)?;
    if t.dims.last() != Some(&1) {
        return None;
    }
    let v = m.tensor_values(t).ok()?.as_f64();
    if !v.is_empty() && v.iter().all(|&x| x == 1.0) {
        return Some(format!("constant `{}` (all ones {:?})", name, t.dims));
    }
    None
}

impl DetectorFamily for GoldYolo {
    fn family(&self) -> Family {
        Family::GoldYolo
    }

    fn id(&self) -> &'static str {
        "gold-yolo"
    }

    fn label(&self) -> &'static str {
        "Gold-YOLO / YOLOv6 (decoded head, constant-1 objectness column)"
    }

    /// `Concat(boxes, ones, cls)` at the output.
    fn recognize(&self, c: &Candidate<'_>) -> Result<Option<String>> {
        let (m, ix, out) = (c.model, c.index, c.output);
        let g = m.graph();
        if let Some(&p) = ix.producer.get(out) {
            let last = &g.node[p];
            if last.op_type() == "Concat" && last.input.len() == 3 {
                if let Some(why) = ones_column(m, ix, &last.input[1]) {
                    return Ok(Some(format!("output `{out}` is produced by {} whose middle input (column 4) is the constant 1 of {why}; {}", describe(last), c.strides_txt)));
                }
            }
        }
        Ok(None)
    }
}
