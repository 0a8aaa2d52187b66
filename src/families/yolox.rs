//! YOLOX: the official export's raw head (`decode_in_inference=False`: grid offsets, log sizes,
//! sigmoid objectness and classes) and the `--decode_in_inference` head (cx, cy, w, h in input
//! pixels). Two registry entries, one file: they share everything but the box decode.

use anyhow::{bail, Result};

use super::{Candidate, DetectorFamily, Family};
use crate::graph::describe;

/// A YOLOX head; `decoded`: exported with `--decode_in_inference`.
pub struct Yolox {
    decoded: bool,
}

/// The raw head's registry entry.
pub const RAW: Yolox = Yolox { decoded: false };
/// The decoded head's registry entry.
pub const DECODED: Yolox = Yolox { decoded: true };

impl DetectorFamily for Yolox {
    fn family(&self) -> Family {
        if self.decoded {
            Family::YoloxDecoded
        } else {
            Family::YoloxRaw
        }
    }

    fn id(&self) -> &'static str {
        if self.decoded {
            "yolox-decoded"
        } else {
            "yolox-raw"
        }
    }

    fn label(&self) -> &'static str {
        if self.decoded {
            "YOLOX decoded head (--decode_in_inference)"
        } else {
            "YOLOX raw head"
        }
    }

    /// Decoded: an `Exp` (the box decode `exp(wh) * stride`) on the path to the output. Raw: no
    /// `Exp` and a `Sigmoid` on it (refused with the reason when the path has no `Sigmoid`).
    fn recognize(&self, c: &Candidate<'_>) -> Result<Option<String>> {
        let g = c.model.graph();
        let (out, strides_txt) = (c.output, c.strides_txt);
        let exp = c.ancestors.iter().find(|&&i| g.node[i].op_type() == "Exp");
        if self.decoded {
            return Ok(exp.map(|&e| format!("{} is on the path to output `{out}`: the box decode (exp(wh) * stride) is in the graph; {strides_txt}", describe(&g.node[e]))));
        }
        if exp.is_some() {
            return Ok(None);
        }
        let sigmoids = c
            .ancestors
            .iter()
            .filter(|&&i| g.node[i].op_type() == "Sigmoid")
            .count();
        if sigmoids == 0 {
            bail!("output `{out}` has the shape of a detection head ({strides_txt}) but no Sigmoid on its path: not a YOLOX or Gold-YOLO head");
        }
        Ok(Some(format!("output `{out}` has no Exp and no constant-1 column on its path (raw YOLOX head: grid offsets, log sizes, sigmoid obj/cls); {strides_txt}")))
    }
}
