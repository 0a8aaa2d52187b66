//! The rewrite half: what a rule's `rewrite` sees while `resize` walks the graph at the new size
//! (the inference at the old size, the one at the new size so far, the feature maps and grids at
//! both sizes), and the helpers that write a re-derived constant back into the model.

use std::collections::{BTreeMap, HashMap};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::graph::{constant_ref, GraphIndex};
use crate::model::Model;
use crate::onnx::tensor_proto::DataType;
use crate::onnx::{GraphProto, NodeProto, TensorProto};
use crate::shape::{Dim, Info, Shapes};
use crate::tensor::{tensor_from_values, Values};

use super::probe::fmt_vals;

/// One rewritten constant or attribute.
#[derive(Debug, Clone, Serialize)]
pub struct Rewrite {
    pub node: String,
    pub what: String,
    pub old: String,
    pub new: String,
}

/// A level's grid at a size: (stride, grid height, grid width).
pub type Level = (i64, i64, i64);

/// The per-level grids of a head at a size.
pub fn grids(strides: &[i64], h: i64, w: i64) -> Vec<Level> {
    strides.iter().map(|&s| (s, h / s, w / s)).collect()
}

/// The state of a `resize` walk, shared by every rule's `rewrite`.
pub struct RewriteCx<'a> {
    /// Inference at the old size.
    pub s0: &'a Shapes,
    /// The graph's structure never changes during resize (constants are rewritten in place), so
    /// one index serves the whole walk.
    pub ix: std::rc::Rc<GraphIndex>,
    /// Inference at the new size, as far as the walk has come.
    pub s1: Shapes,
    /// rank-4 tensors in topological order with their old spatial dims
    pub maps: Vec<(i64, String, (i64, i64))>,
    pub g0: Vec<Level>,
    pub g1: Vec<Level>,
    /// Number of boxes at the old and the new size.
    pub n0: i64,
    pub n1: i64,
    pub rewrites: Vec<Rewrite>,
    /// constant name → value it was rewritten to (for shared constants)
    pub done: HashMap<String, Values>,
}

/// Spatial dims of a rank-4 shape, when known.
pub fn spatial(s: &[Dim]) -> Option<(i64, i64)> {
    if s.len() == 4 {
        Some((s[2].known()?, s[3].known()?))
    } else {
        None
    }
}

/// Fully known dims of `name` in `s`.
pub fn old_dims(s: &Shapes, name: &str) -> Option<Vec<i64>> {
    s.shape(name)?.iter().map(Dim::known).collect()
}

/// Node `ni` (a copy: rules write into the model) and the name rewrites report it under.
pub fn node_at(m: &Model, ni: usize) -> (NodeProto, String) {
    let n = m.graph().node[ni].clone();
    let name = if n.name().is_empty() {
        n.output.first().cloned().unwrap_or_default()
    } else {
        n.name().to_string()
    };
    (n, name)
}

/// Element-wise equality up to float noise.
pub fn close(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= 1e-6 * (1.0 + y.abs()))
}

impl RewriteCx<'_> {
    /// New spatial dims of the feature map whose old spatial dims were `old`, among tensors
    /// produced before topological position `before`.
    pub fn map_pair(
        &self,
        old: (i64, i64),
        before: i64,
        exclude: &str,
    ) -> Result<Option<(i64, i64)>> {
        let mut found: BTreeMap<(i64, i64), Vec<&str>> = BTreeMap::new();
        for (p, name, dims) in &self.maps {
            if *p >= before || *dims != old || name == exclude {
                continue;
            }
            if let Some(nd) = self.s1.shape(name).and_then(|s| spatial(s)) {
                found.entry(nd).or_default().push(name);
            }
        }
        match found.len() {
            0 => Ok(None),
            1 => Ok(found.keys().next().copied()),
            _ => bail!(
                "feature maps of size {}x{} become different sizes: {}",
                old.0,
                old.1,
                found
                    .iter()
                    .map(|(k, v)| format!("{}x{} (`{}`)", k.0, k.1, v[0]))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// Like `map_pair`, or via PyramidPoolAgg's `(P - 1)//2 + 1`.
    pub fn map_pool_out(
        &self,
        old: (i64, i64),
        before: i64,
        exclude: &str,
    ) -> Result<Option<(i64, i64)>> {
        if let Some(p) = self.map_pair(old, before, exclude)? {
            return Ok(Some(p));
        }
        let mut found: BTreeMap<(i64, i64), &str> = BTreeMap::new();
        for (p, name, dims) in &self.maps {
            if *p >= before || name == exclude {
                continue;
            }
            if (dims.0 - 1) / 2 + 1 == old.0 && (dims.1 - 1) / 2 + 1 == old.1 && dims.0 > old.0 {
                if let Some(nd) = self.s1.shape(name).and_then(|s| spatial(s)) {
                    found.insert(((nd.0 - 1) / 2 + 1, (nd.1 - 1) / 2 + 1), name);
                }
            }
        }
        // prefer the coarsest map (the P5 of PyramidPoolAgg): the last in the list
        Ok(found.into_iter().next_back().map(|(k, _)| k))
    }

    /// The level whose old grid height is `h`.
    pub fn level_of_h(&self, h: i64) -> Option<usize> {
        self.g0.iter().position(|&(_, gh, _)| gh == h)
    }

    /// The level whose old grid width is `w`.
    pub fn level_of_w(&self, w: i64) -> Option<usize> {
        self.g0.iter().position(|&(_, _, gw)| gw == w)
    }

    /// Write a new int vector into constant `cname` (memoized for shared constants).
    pub fn write_int(
        &mut self,
        m: &mut Model,
        cname: &str,
        newv: &[i64],
        node: &str,
        what: &str,
    ) -> Result<()> {
        let (old_t, oldv) = int_const(m.graph(), &self.ix, cname)
            .with_context(|| format!("`{cname}` is not an int constant"))?;
        let values = match DataType::try_from(old_t.data_type()) {
            Ok(DataType::Int32) => Values::I32(newv.iter().map(|&x| x as i32).collect()),
            _ => Values::I64(newv.to_vec()),
        };
        // the old dims when the count is kept, else a vector
        let dims: Vec<i64> = if values.len() as i64 == old_t.dims.iter().product::<i64>() {
            old_t.dims.clone()
        } else {
            vec![values.len() as i64]
        };
        let note = Rewrite {
            node: node.to_string(),
            what: what.to_string(),
            old: fmt_vals(&oldv),
            new: fmt_vals(newv),
        };
        self.write_tensor(m, cname, &dims, values, note)
    }

    /// Write `values` (shaped `dims`) into constant `cname` and record `note` (its `what` gets the
    /// constant's name appended). A constant already rewritten must get the same values again.
    pub fn write_tensor(
        &mut self,
        m: &mut Model,
        cname: &str,
        dims: &[i64],
        values: Values,
        note: Rewrite,
    ) -> Result<()> {
        if let Some(prev) = self.done.get(cname) {
            if *prev == values {
                return Ok(());
            }
            // shared constant needing different values for different consumers
            bail!("constant `{cname}` is shared by consumers that need different values at the new size ({}): not supported", note.node);
        }
        let t = tensor_from_values("", dims, &values);
        set_const(m.graph_mut(), &self.ix, cname, t.clone())?;
        // refresh what inference knows about it
        let mut info = Info {
            dtype: t.data_type,
            shape: Some(dims.iter().map(|&d| Dim::Known(d)).collect()),
            value: Some(values.clone()),
            dims_value: None,
        };
        if dims.len() <= 1 && !values.is_float() {
            info.dims_value = Some(values.as_i64().into_iter().map(Dim::Known).collect());
        }
        self.s1.map.insert(cname.to_string(), info);
        self.done.insert(cname.to_string(), values);
        self.rewrites.push(Rewrite {
            what: format!("{} (`{cname}`)", note.what),
            ..note
        });
        Ok(())
    }
}

fn set_const(g: &mut GraphProto, ix: &GraphIndex, name: &str, t: TensorProto) -> Result<()> {
    if let Some(&i) = ix.initializer.get(name) {
        let keep_name = g.initializer[i].name.clone();
        g.initializer[i] = TensorProto {
            name: keep_name,
            doc_string: g.initializer[i].doc_string.clone(),
            ..t
        };
        return Ok(());
    }
    if let Some(&p) = ix.producer.get(name) {
        let n = &mut g.node[p];
        if n.op_type() == "Constant" {
            n.attribute.retain(|a| !a.name().starts_with("value"));
            n.attribute.push(crate::graph::make_attr_t(
                "value",
                TensorProto { name: None, ..t },
            ));
            return Ok(());
        }
    }
    bail!("`{name}` is not a constant")
}

/// Values of a small int constant.
fn int_const(g: &GraphProto, ix: &GraphIndex, name: &str) -> Option<(TensorProto, Vec<i64>)> {
    let t = constant_ref(g, ix, name)?;
    let v = crate::tensor::values(t).ok()?;
    if v.is_float() || v.len() > 16 {
        return None;
    }
    Some((t.clone(), v.as_i64()))
}
