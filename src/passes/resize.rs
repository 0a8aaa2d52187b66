//! `resize`: re-specialize a model exported at one resolution (and batch) to another, producing
//! what a native export at the new size would be (SPEC §3).
//!
//! Shape inference walks the graph in topological order at the NEW size while the inference at the
//! old size is known. Before each node is inferred, the constants the exporter baked from the old
//! size are re-derived from what they meant at the old size:
//! - `Resize` target sizes and the output size of adaptive-pool `AveragePool`s are matched to the
//!   feature map they copied (an earlier tensor with those spatial dims, or `(P5 - 1)//2 + 1` of
//!   one for PyramidPoolAgg), whose new dims are then known;
//! - `AveragePool` kernel/strides follow `onnx_AdaptiveAvgPool2d`: stride = floor(in/out),
//!   kernel = in - (out - 1)·stride (only when the old attributes are exactly that formula);
//! - `Reshape` targets are split into groups of equal element count; a changed group is
//!   re-derived (one dim: the product; dims copied from a feature map: that map's new dims);
//! - decoded-head tensors (grids, strides, anchor points, ones, aranges, `[1, N, 2]` shapes) are
//!   recognized by their values at the old size and regenerated for the new grids.
//!
//! Anything baked that cannot be explained is an error naming the node and the value.

use std::collections::{BTreeMap, HashMap};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::graph::{attr_ints, constant_ref, describe, set_attr_ints, topo_order, GraphIndex};
use crate::head::{recognize, Head};
use crate::model::Model;
use crate::onnx::tensor_proto::DataType;
use crate::onnx::{GraphProto, TensorProto};
use crate::shape::{fmt_shape, infer, infer_node, set_vi_shape, Dim, Info, Shapes};
use crate::tensor::{tensor_from_values, Values};

/// Batch of the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchSpec {
    Static(i64),
    /// A symbolic `batch` dimension.
    Dynamic,
}

/// Options of `resize`.
#[derive(Debug, Clone)]
pub struct ResizeOptions {
    pub height: i64,
    pub width: i64,
    /// `None` keeps the model's batch.
    pub batch: Option<BatchSpec>,
}

/// One rewritten constant or attribute.
#[derive(Debug, Clone, Serialize)]
pub struct Rewrite {
    pub node: String,
    pub what: String,
    pub old: String,
    pub new: String,
}

/// What `resize` did.
#[derive(Debug, Clone, Serialize)]
pub struct ResizeReport {
    pub from: (i64, i64),
    pub to: (i64, i64),
    pub batch_from: String,
    pub batch_to: String,
    pub boxes_from: i64,
    pub boxes_to: i64,
    pub rewrites: Vec<Rewrite>,
    pub notes: Vec<String>,
}

/// Largest accepted side (a sanity bound; a 8192x8192 YOLOX has 1.4 M boxes).
pub const MAX_SIDE: i64 = 8192;

/// Parse `HxW`.
pub fn parse_size(s: &str) -> Result<(i64, i64)> {
    let (h, w) = s
        .split_once(['x', 'X'])
        .with_context(|| format!("size `{s}` is not HxW (e.g. 128x160, height first)"))?;
    let h: i64 = h
        .trim()
        .parse()
        .with_context(|| format!("size `{s}`: height `{h}` is not a number"))?;
    let w: i64 = w
        .trim()
        .parse()
        .with_context(|| format!("size `{s}`: width `{w}` is not a number"))?;
    Ok((h, w))
}

fn fmt_vals(v: &[i64]) -> String {
    format!("{v:?}")
}

fn spatial(s: &[Dim]) -> Option<(i64, i64)> {
    if s.len() == 4 {
        Some((s[2].known()?, s[3].known()?))
    } else {
        None
    }
}

/// The per-level grids of a head at a size.
fn grids(strides: &[i64], h: i64, w: i64) -> Vec<(i64, i64, i64)> {
    strides.iter().map(|&s| (s, h / s, w / s)).collect()
}

struct Ctx<'a> {
    s0: &'a Shapes,
    /// The graph's structure never changes during resize (constants are rewritten in place), so
    /// one index serves the whole walk.
    ix: std::rc::Rc<GraphIndex>,
    s1: Shapes,
    /// rank-4 tensors in topological order with their old spatial dims
    maps: Vec<(i64, String, (i64, i64))>,
    g0: Vec<(i64, i64, i64)>,
    g1: Vec<(i64, i64, i64)>,
    n0: i64,
    n1: i64,
    rewrites: Vec<Rewrite>,
    /// constant name → value it was rewritten to (for shared constants)
    done: HashMap<String, Values>,
}

impl Ctx<'_> {
    /// New spatial dims of the feature map whose old spatial dims were `old`, among tensors
    /// produced before topological position `before`.
    fn map_pair(&self, old: (i64, i64), before: i64, exclude: &str) -> Result<Option<(i64, i64)>> {
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
    fn map_pool_out(
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
        Ok(found
            .into_iter()
            .next_back()
            .map(|(k, _)| k)
            .filter(|_| true))
    }

    fn level_of_h(&self, h: i64) -> Option<usize> {
        self.g0.iter().position(|&(_, gh, _)| gh == h)
    }
    fn level_of_w(&self, w: i64) -> Option<usize> {
        self.g0.iter().position(|&(_, _, gw)| gw == w)
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

/// Re-specialize `m` in place.
pub fn resize(m: &mut Model, opts: &ResizeOptions) -> Result<ResizeReport> {
    crate::shape::validate_structure(m)?;
    let head = recognize(m, None)?;
    if head.family.family().is_none() {
        bail!("resize works on un-merged exports ({}); resize first, then merge (or use `merge --size`)", head.rule);
    }
    let (h0, w0) = (
        head.height.context("no static input height")?,
        head.width.context("no static input width")?,
    );
    let (h1, w1) = (opts.height, opts.width);
    let max_stride = *head.strides.iter().max().unwrap_or(&32);
    if h1 <= 0 || w1 <= 0 {
        bail!("size {h1}x{w1}: height and width must be positive");
    }
    if h1 > MAX_SIDE || w1 > MAX_SIDE {
        bail!("size {h1}x{w1}: larger than {MAX_SIDE} on a side (a model that large is almost certainly a typo)");
    }
    if h1 % max_stride != 0 || w1 % max_stride != 0 {
        bail!(
            "size {h1}x{w1}: height and width must be multiples of the largest stride {max_stride} of this model ({}); e.g. {}x{}",
            head.family.label(),
            (h1 / max_stride).max(1) * max_stride,
            (w1 / max_stride).max(1) * max_stride
        );
    }
    // A symbolic batch is walked at the batch the exporter traced with (the number its Reshapes
    // baked), so that the constants baked from it are found and re-derived like any other.
    let traced = match &head.batch {
        Dim::Sym(_) => Some(traced_batch(m, &head)?),
        Dim::Known(_) => None,
    };
    let s0 = match traced {
        Some(tb) => {
            let mut at = head.input_shape.clone();
            at[0] = Dim::Known(tb);
            infer(m, &HashMap::from([(head.input.clone(), at)]))?
        }
        None => infer(m, &HashMap::new())?,
    };
    // a malformed node (shape::validate_nodes) is reported as such, before "cannot explain"
    if let Some(d) = s0.defects.first() {
        bail!("{d}");
    }
    if !s0.unknown.is_empty() {
        bail!("shape inference at the original size failed, so baked constants cannot be explained: {}", s0.unknown[0]);
    }
    let b0 = head.batch.clone();
    let b1 = match &opts.batch {
        None => b0.clone(),
        Some(BatchSpec::Static(b)) if *b > crate::head::MAX_BATCH => bail!(
            "batch {b} is larger than {} (a batch that large is almost certainly a typo)",
            crate::head::MAX_BATCH
        ),
        Some(BatchSpec::Static(b)) if *b >= 1 => Dim::Known(*b),
        Some(BatchSpec::Static(b)) => bail!("batch {b} must be at least 1"),
        Some(BatchSpec::Dynamic) => Dim::Sym("batch".into()),
    };
    let mut notes = Vec::new();
    let g0 = grids(&head.strides, h0, w0);
    let g1 = grids(&head.strides, h1, w1);
    let n0: i64 = g0.iter().map(|(_, a, b)| a * b).sum();
    let n1: i64 = g1.iter().map(|(_, a, b)| a * b).sum();

    let order = topo_order(m.graph())?;
    let mut pos: HashMap<String, i64> = HashMap::new();
    for (p, &i) in order.iter().enumerate() {
        for o in &m.graph().node[i].output {
            pos.insert(o.clone(), p as i64);
        }
    }
    if let Some(tb) = traced {
        notes.push(format!(
            "the input declares a symbolic batch `{b0}`; the graph was walked at the traced batch {tb} (the batch its baked constants were computed for)"
        ));
    }
    let mut maps: Vec<(i64, String, (i64, i64))> = Vec::new();
    maps.push((-1, head.input.clone(), (h0, w0)));
    for &i in &order {
        for o in &m.graph().node[i].output {
            if let Some(sp) = s0.shape(o).and_then(|s| spatial(s)) {
                maps.push((pos[o], o.clone(), sp));
            }
        }
    }
    let mut new_input = head.input_shape.clone();
    new_input[0] = b1.clone();
    new_input[2] = Dim::Known(h1);
    new_input[3] = Dim::Known(w1);
    let mut s1 = Shapes::default();
    for i in &m.graph().input {
        let mut info = s0.get(i.name()).cloned().unwrap_or_default();
        if i.name() == head.input {
            info.shape = Some(new_input.clone());
        }
        s1.map.insert(i.name().to_string(), info);
    }
    for t in &m.graph().initializer {
        if let Some(info) = s0.get(t.name()) {
            s1.map
                .entry(t.name().to_string())
                .or_insert_with(|| info.clone());
        }
    }
    let mut cx = Ctx {
        s0: &s0,
        ix: std::rc::Rc::new(GraphIndex::build(m.graph())),
        s1,
        maps,
        g0,
        g1,
        n0,
        n1,
        rewrites: Vec::new(),
        done: HashMap::new(),
    };

    for (p, &ni) in order.iter().enumerate() {
        let before: Vec<String> = cx.done.keys().cloned().collect();
        rewrite_node(m, &mut cx, ni, p as i64, &head)?;
        // constants just rewritten may feed already-inferred helpers of this node (the Concat that
        // assembles a Resize `sizes`, a Cast, an Unsqueeze): infer those again
        let changed: Vec<String> = cx
            .done
            .keys()
            .filter(|k| !before.contains(k))
            .cloned()
            .collect();
        if !changed.is_empty() {
            let ix = cx.ix.clone();
            refresh_inputs(m.graph(), &ix, &mut cx.s1, ni, &changed, 3)?;
        }
        let g = m.graph();
        let n = &g.node[ni];
        let outs =
            infer_node(n, &cx.s1).with_context(|| format!("at {}x{}: {}", h1, w1, describe(n)))?;
        for (o, info) in n.output.iter().zip(outs) {
            cx.s1.map.insert(o.clone(), info);
        }
    }
    // declared shapes
    let s1 = cx.s1;
    let g = m.graph_mut();
    for v in g.input.iter_mut() {
        if v.name() == head.input {
            set_vi_shape(v, &new_input);
        }
    }
    for v in g.output.iter_mut() {
        match s1.shape(v.name()) {
            Some(s) => set_vi_shape(v, &s.clone()),
            None => bail!(
                "the shape of output `{}` at {h1}x{w1} cannot be inferred",
                v.name()
            ),
        }
    }
    let mut dropped = 0;
    for v in g.value_info.iter_mut() {
        match s1.shape(v.name()) {
            Some(s) => set_vi_shape(v, &s.clone()),
            None => {
                if let Some(crate::onnx::type_proto::Value::TensorType(tt)) =
                    v.r#type.as_mut().and_then(|t| t.value.as_mut())
                {
                    if tt.shape.is_some() {
                        tt.shape = None;
                        dropped += 1;
                    }
                }
            }
        }
    }
    if dropped > 0 {
        notes.push(format!("{dropped} value_info shapes could not be inferred at the new size and were removed (not made up)"));
    }
    if let Dim::Sym(sy) = &b1 {
        notes.push(format!(
            "batch is symbolic (`{sy}`); height and width are fixed at {h1}x{w1}"
        ));
    }
    // the head output must have the new N
    let out_shape = head
        .output
        .as_ref()
        .and_then(|o| s1.shape(o))
        .cloned()
        .unwrap_or_default();
    if out_shape.get(1).and_then(Dim::known) != Some(n1) {
        bail!("after re-specialization the head output has shape {}, expected N = {n1}: a baked constant was not explained", fmt_shape(&out_shape));
    }
    // a symbolic batch must really be one: the result is inferred at two concrete batches
    if let Dim::Sym(sy) = &b1 {
        if let Some(why) = batch_defects(m, &head.input, &new_input, &[1, 2, 3])? {
            bail!("the result cannot keep the symbolic batch `{sy}`: {why}; give a static batch (e.g. --batch 1)");
        }
    }
    Ok(ResizeReport {
        from: (h0, w0),
        to: (h1, w1),
        batch_from: b0.to_string(),
        batch_to: b1.to_string(),
        boxes_from: n0,
        boxes_to: n1,
        rewrites: cx.rewrites,
        notes,
    })
}

/// The batch an exporter traced a symbolic-batch graph with: the leading number a `Reshape` puts
/// where its input has the symbolic batch (Gold-YOLO `--dynamic-batch` keeps `[1, 4, 8, 100]` in its
/// attention). 1 when no node bakes one; an error when two nodes bake different ones.
pub fn traced_batch(m: &Model, head: &Head) -> Result<i64> {
    let Dim::Sym(sym) = &head.batch else {
        return Ok(head.batch.known().unwrap_or(1));
    };
    let s = infer(m, &HashMap::new())?;
    let mut seen: BTreeMap<i64, String> = BTreeMap::new();
    for n in m.graph().node.iter().filter(|n| n.op_type() == "Reshape") {
        let (Some(i), Some(o)) = (s.shape(&n.input[0]), s.shape(&n.output[0])) else {
            continue;
        };
        if let (Some(Dim::Sym(a)), Some(Dim::Known(k))) = (i.first(), o.first()) {
            if a == sym && *k >= 1 {
                seen.entry(*k).or_insert_with(|| describe(n));
            }
        }
    }
    match seen.len() {
        0 => Ok(1),
        1 => Ok(*seen.keys().next().unwrap_or(&1)),
        _ => bail!(
            "the graph bakes different batches for its symbolic batch `{sym}`: {}",
            seen.iter()
                .map(|(k, n)| format!("{k} ({n})"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Why a graph that declares a symbolic batch does not run at some of `batches`: the first node
/// whose shape cannot be inferred there (and can at the first batch of the list). `None` = it
/// runs at all of them as far as shape inference sees.
pub fn batch_defects(
    m: &Model,
    input: &str,
    shape: &[Dim],
    batches: &[i64],
) -> Result<Option<String>> {
    let at = |b: i64| -> Result<Vec<String>> {
        let mut sh = shape.to_vec();
        sh[0] = Dim::Known(b);
        let s = infer(m, &HashMap::from([(input.to_string(), sh)]))?;
        Ok(s.defects)
    };
    let Some((&first, rest)) = batches.split_first() else {
        return Ok(None);
    };
    let base = at(first)?;
    for &b in rest {
        if let Some(d) = at(b)?.into_iter().find(|d| !base.contains(d)) {
            return Ok(Some(format!("at batch {b}, {d}")));
        }
    }
    Ok(None)
}

/// Repair a graph whose input declares a symbolic batch it does not really have (Gold-YOLO
/// `--dynamic-batch`: the attention Reshapes keep the traced batch, so onnxruntime fails at batch
/// 2): re-derive the baked constants at the same size with the batch kept symbolic. `Ok(None)` when
/// the batch is static or the graph already runs at any batch; an error when it cannot be
/// repaired (naming the node), so that no model that only runs at batch 1 leaves with a symbolic
/// batch.
pub fn repair_symbolic_batch(m: &mut Model) -> Result<Option<ResizeReport>> {
    let head = recognize(m, None)?;
    if !matches!(head.batch, Dim::Sym(_)) || head.family.family().is_none() {
        return Ok(None);
    }
    let (Some(h), Some(w)) = (head.height, head.width) else {
        return Ok(None);
    };
    if batch_defects(m, &head.input, &head.input_shape, &[1, 2, 3])?.is_none() {
        return Ok(None);
    }
    resize(
        m,
        &ResizeOptions {
            height: h,
            width: w,
            batch: None,
        },
    )
    .map(Some)
    .with_context(|| {
        format!(
            "input `{}` declares the symbolic batch `{}` but the graph does not run at every batch",
            head.input, head.batch
        )
    })
}

/// Re-infer the producers of node `ni`'s inputs that read a `changed` tensor (up to `depth`
/// levels up), so the node sees the new values.
fn refresh_inputs(
    g: &GraphProto,
    ix: &GraphIndex,
    s1: &mut Shapes,
    ni: usize,
    changed: &[String],
    depth: usize,
) -> Result<bool> {
    let mut any = false;
    for inp in &g.node[ni].input {
        let Some(&p) = ix.producer.get(inp) else {
            continue;
        };
        let pn = &g.node[p];
        if pn.op_type() == "Constant" {
            continue;
        }
        let direct = pn.input.iter().any(|i| changed.contains(i));
        let deeper = depth > 1 && refresh_inputs(g, ix, s1, p, changed, depth - 1)?;
        if direct || deeper {
            let outs = infer_node(pn, s1).with_context(|| describe(pn))?;
            for (o, info) in pn.output.iter().zip(outs) {
                s1.map.insert(o.clone(), info);
            }
            any = true;
        }
    }
    Ok(any)
}

fn old_dims(s: &Shapes, name: &str) -> Option<Vec<i64>> {
    s.shape(name)?.iter().map(Dim::known).collect()
}

/// Apply the rules to node `ni` (at topological position `p`) before it is inferred.
fn rewrite_node(m: &mut Model, cx: &mut Ctx, ni: usize, p: i64, head: &Head) -> Result<()> {
    let g = m.graph();
    let ix = cx.ix.clone();
    let ix = &*ix;
    let n = g.node[ni].clone();
    let name = if n.name().is_empty() {
        n.output.first().cloned().unwrap_or_default()
    } else {
        n.name().to_string()
    };
    match n.op_type() {
        "Resize" => {
            let Some(sz) = n.input.get(3).filter(|s| !s.is_empty()) else {
                return Ok(());
            };
            let parts = crate::resdep::const_parts(g, ix, Some(cx.s0), sz);
            if parts.is_empty() {
                return Ok(());
            }
            let Some(old) = old_dims(cx.s0, &n.output[0]) else {
                return Ok(());
            };
            if old.len() != 4 {
                return Ok(());
            }
            let new_pair = cx
                .map_pair((old[2], old[3]), p, &n.output[0])?
                .with_context(|| {
                    format!(
                        "{}: baked target size {}x{} matches no feature map; cannot re-derive it",
                        describe(&n),
                        old[2],
                        old[3]
                    )
                })?;
            let x1 = cx.s1.shape(&n.input[0]).cloned().unwrap_or_default();
            let mut full: Vec<i64> = vec![
                x1.first().and_then(Dim::known).unwrap_or(old[0]),
                x1.get(1).and_then(Dim::known).unwrap_or(old[1]),
                new_pair.0,
                new_pair.1,
            ];
            if !matches!(x1.first(), Some(Dim::Known(_))) {
                full[0] = old[0];
            }
            for (cname, vals, off) in parts {
                let newv: Vec<i64> = (0..vals.len())
                    .map(|k| full.get(off + k).copied().unwrap_or(vals[k]))
                    .collect();
                if off < 2 && !matches!(x1.first(), Some(Dim::Known(_))) {
                    bail!("{}: the Resize sizes bake the batch dimension; a symbolic batch is not possible", describe(&n));
                }
                write_int(m, cx, &cname, &newv, &name, "Resize target size")?;
            }
        }
        "AveragePool" => {
            let (Some(i0), Some(o0)) =
                (old_dims(cx.s0, &n.input[0]), old_dims(cx.s0, &n.output[0]))
            else {
                return Ok(());
            };
            if i0.len() != 4 {
                return Ok(());
            }
            let k = attr_ints(&n, "kernel_shape").unwrap_or(&[]).to_vec();
            let st = attr_ints(&n, "strides")
                .map(<[i64]>::to_vec)
                .unwrap_or_else(|| vec![1; 2]);
            let pads = attr_ints(&n, "pads")
                .map(<[i64]>::to_vec)
                .unwrap_or_else(|| vec![0; 4]);
            if k.len() != 2 || pads.iter().any(|&x| x != 0) {
                return Ok(());
            }
            let formula = |inp: i64, out: i64| -> (i64, i64) {
                let s = inp / out;
                (inp - (out - 1) * s, s)
            };
            let adaptive = (0..2).all(|d| formula(i0[2 + d], o0[2 + d]) == (k[d], st[d]));
            let Some(i1) = cx.s1.shape(&n.input[0]).and_then(|s| spatial(s)) else {
                return Ok(());
            };
            if !adaptive {
                return Ok(()); // a plain pool: its attributes do not depend on the size
            }
            if (i0[2], i0[3]) == i1 {
                return Ok(());
            }
            let out1 = cx.map_pool_out((o0[2], o0[3]), p, &n.output[0])?.with_context(|| {
                format!("{}: adaptive-pool output {}x{} matches no feature map (nor (P-1)//2+1 of one); cannot re-derive kernel/strides", describe(&n), o0[2], o0[3])
            })?;
            let (kh, sh) = formula(i1.0, out1.0);
            let (kw, sw) = formula(i1.1, out1.1);
            if out1.0 <= 0 || out1.1 <= 0 || sh <= 0 || sw <= 0 || kh <= 0 || kw <= 0 {
                bail!(
                    "{}: adaptive pool {}x{} -> {}x{} is impossible",
                    describe(&n),
                    i1.0,
                    i1.1,
                    out1.0,
                    out1.1
                );
            }
            let (nk, ns) = (vec![kh, kw], vec![sh, sw]);
            if nk != k || ns != st {
                let node = &mut m.graph_mut().node[ni];
                set_attr_ints(node, "kernel_shape", &nk);
                set_attr_ints(node, "strides", &ns);
                cx.rewrites.push(Rewrite {
                    node: name,
                    what: format!(
                        "AveragePool kernel/strides (adaptive {}x{} -> {}x{})",
                        i1.0, i1.1, out1.0, out1.1
                    ),
                    old: format!("kernel {k:?} strides {st:?}"),
                    new: format!("kernel {nk:?} strides {ns:?}"),
                });
            }
        }
        "Reshape" => {
            let parts = crate::resdep::const_parts(g, ix, Some(cx.s0), &n.input[1]);
            if parts.is_empty() {
                return Ok(());
            }
            let (Some(i0), Some(o0)) =
                (old_dims(cx.s0, &n.input[0]), old_dims(cx.s0, &n.output[0]))
            else {
                return Ok(());
            };
            let i1 = cx.s1.shape(&n.input[0]).cloned().unwrap_or_default();
            if i1.len() != i0.len() {
                return Ok(());
            }
            let unchanged = i1.iter().zip(&i0).all(|(a, b)| a.known() == Some(*b));
            // head-sized constants (decoded heads: [1, N, 2] ScatterND plumbing) even if unchanged input
            let Some(groups) = crate::resdep::reshape_groups(&i0, &o0) else {
                return Ok(());
            };
            let mut o1: Vec<Dim> = o0.iter().map(|&d| Dim::Known(d)).collect();
            // tokens back to a map: the token count may stay the same while the map's h x w
            // changes (10x10 at 640x640 and 5x20 at 288x1280 are both 100 tokens)
            for (gi, go) in &groups {
                if go.len() == 2 && gi.len() == 1 && i1[gi.start].known() == Some(i0[gi.start]) {
                    let out0 = &o0[go.clone()];
                    if let Some(pair) = cx.map_pair((out0[0], out0[1]), p, &n.output[0])? {
                        if pair.0 * pair.1 == i0[gi.start] {
                            o1[go.start] = Dim::Known(pair.0);
                            o1[go.start + 1] = Dim::Known(pair.1);
                        }
                    }
                }
            }
            if !unchanged {
                for (gi, go) in &groups {
                    let in0 = &i0[gi.clone()];
                    let in1 = &i1[gi.clone()];
                    if in1.iter().zip(in0).all(|(a, b)| a.known() == Some(*b)) {
                        continue;
                    }
                    let out0 = &o0[go.clone()];
                    if let Some(prod) = in1.iter().map(Dim::known).product::<Option<i64>>() {
                        let non_one: Vec<usize> = go.clone().filter(|&k| o0[k] != 1).collect();
                        if go.len() == 1 {
                            o1[go.start] = Dim::Known(prod);
                        } else if non_one.len() == 1 {
                            // [1, N] style: the single non-1 dim takes the whole group
                            o1[non_one[0]] = Dim::Known(prod);
                        } else if out0 == in0 {
                            for (k, d) in in1.iter().enumerate() {
                                o1[go.start + k] = d.clone();
                            }
                        } else if go.len() == 2 {
                            // dims copied from a feature map (attention: tokens back to h x w)
                            let pair = cx
                                .map_pair((out0[0], out0[1]), p, &n.output[0])?
                                .filter(|q| q.0 * q.1 == prod);
                            let Some(pair) = pair else {
                                bail!("{}: cannot re-derive the baked shape {:?} (input {} -> {}): dims {:?} match no feature map of {prod} elements", describe(&n), o0, fmt_shape(&i0.iter().map(|&d| Dim::Known(d)).collect::<Vec<_>>()), fmt_shape(&i1), out0);
                            };
                            o1[go.start] = Dim::Known(pair.0);
                            o1[go.start + 1] = Dim::Known(pair.1);
                        } else {
                            bail!(
                                "{}: cannot re-derive the baked shape {:?} for input {}",
                                describe(&n),
                                o0,
                                fmt_shape(&i1)
                            );
                        }
                    } else {
                        // symbolic batch group
                        if go.len() == 1 && gi.len() == 1 {
                            o1[go.start] = in1[0].clone();
                        } else {
                            bail!(
                                "{}: a symbolic dimension enters the baked shape {:?}",
                                describe(&n),
                                o0
                            );
                        }
                    }
                }
            }
            // allowzero = 1 (opset 14+): a 0 is a zero-sized dim, not "copy the input's"
            let allowzero = crate::graph::attr_i(&n, "allowzero")
                .map(|a| a != 0)
                .unwrap_or(false);
            for (cname, vals, off) in parts {
                let mut newv = vals.clone();
                for k in 0..vals.len() {
                    let idx = off + k;
                    if vals[k] == -1 || (vals[k] == 0 && !allowzero) {
                        continue;
                    }
                    match o1.get(idx) {
                        Some(Dim::Known(v)) => newv[k] = *v,
                        Some(Dim::Sym(_)) => {
                            newv[k] = if !allowzero
                                && idx < i0.len()
                                && i1
                                    .get(idx)
                                    .map(|d| matches!(d, Dim::Sym(_)))
                                    .unwrap_or(false)
                            {
                                0
                            } else {
                                -1
                            }
                        }
                        None => {}
                    }
                    // N baked independently of the input (decoded-head plumbing)
                    if unchanged && vals[k] == cx.n0 && cx.n0 > 1 {
                        newv[k] = cx.n1;
                    }
                }
                if newv.iter().filter(|&&x| x == -1).count() > 1 {
                    bail!(
                        "{}: re-derived shape {:?} would need two -1 dims",
                        describe(&n),
                        newv
                    );
                }
                if newv != vals {
                    write_int(m, cx, &cname, &newv, &name, "Reshape target shape")?;
                }
            }
        }
        _ => {
            if matches!(
                n.op_type(),
                "Conv" | "ConvTranspose" | "Gemm" | "BatchNormalization"
            ) {
                return Ok(());
            }
            // shape-like int operands and baked tensors of decoded heads
            let consts: Vec<(String, TensorProto)> = n
                .input
                .iter()
                .filter(|s| !s.is_empty())
                .filter_map(|inp| constant_ref(g, ix, inp).cloned().map(|t| (inp.clone(), t)))
                .collect();
            for (inp, t) in consts {
                rewrite_baked(m, cx, &n, &name, &inp, &t, head)?;
            }
        }
    }
    Ok(())
}

/// Write a new int vector into constant `cname` (memoized for shared constants).
fn write_int(
    m: &mut Model,
    cx: &mut Ctx,
    cname: &str,
    newv: &[i64],
    node: &str,
    what: &str,
) -> Result<()> {
    let g = m.graph();
    let ix = cx.ix.clone();
    let (old_t, oldv) =
        int_const(g, &ix, cname).with_context(|| format!("`{cname}` is not an int constant"))?;
    let values = match DataType::try_from(old_t.data_type()) {
        Ok(DataType::Int32) => Values::I32(newv.iter().map(|&x| x as i32).collect()),
        _ => Values::I64(newv.to_vec()),
    };
    write_values(
        m,
        cx,
        cname,
        &old_t,
        values,
        node,
        what,
        fmt_vals(&oldv),
        fmt_vals(newv),
    )
}

#[allow(clippy::too_many_arguments)]
fn write_values(
    m: &mut Model,
    cx: &mut Ctx,
    cname: &str,
    old_t: &TensorProto,
    values: Values,
    node: &str,
    what: &str,
    old_s: String,
    new_s: String,
) -> Result<()> {
    let dims_new: Vec<i64> = if values.len() as i64 == old_t.dims.iter().product::<i64>() {
        old_t.dims.clone()
    } else {
        vec![values.len() as i64]
    };
    write_tensor(
        m, cx, cname, old_t, &dims_new, values, node, what, old_s, new_s,
    )
}

#[allow(clippy::too_many_arguments)]
fn write_tensor(
    m: &mut Model,
    cx: &mut Ctx,
    cname: &str,
    _old_t: &TensorProto,
    dims: &[i64],
    values: Values,
    node: &str,
    what: &str,
    old_s: String,
    new_s: String,
) -> Result<()> {
    if let Some(prev) = cx.done.get(cname) {
        if *prev == values {
            return Ok(());
        }
        // shared constant needing different values for different consumers
        bail!("constant `{cname}` is shared by consumers that need different values at the new size ({node}): not supported");
    }
    let t = tensor_from_values("", dims, &values);
    let ix = cx.ix.clone();
    let g = m.graph_mut();
    set_const(g, &ix, cname, t.clone())?;
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
    cx.s1.map.insert(cname.to_string(), info);
    cx.done.insert(cname.to_string(), values);
    cx.rewrites.push(Rewrite {
        node: node.to_string(),
        what: format!("{what} (`{cname}`)"),
        old: old_s,
        new: new_s,
    });
    Ok(())
}

/// Generated per-anchor patterns at a grid set.
fn anchor_pattern(grids: &[(i64, i64, i64)], kind: &str) -> Vec<f64> {
    let mut v = Vec::new();
    for &(s, gh, gw) in grids {
        for y in 0..gh {
            for x in 0..gw {
                match kind {
                    "stride" => v.push(s as f64),
                    "xy" => v.extend([x as f64, y as f64]),
                    "xy+0.5" => v.extend([x as f64 + 0.5, y as f64 + 0.5]),
                    "xy+0.5*s" => {
                        v.extend([(x as f64 + 0.5) * s as f64, (y as f64 + 0.5) * s as f64])
                    }
                    _ => {}
                }
            }
        }
    }
    v
}

fn close(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= 1e-6 * (1.0 + y.abs()))
}

/// Baked tensors of decoded heads, and small int operands holding N or a grid.
fn rewrite_baked(
    m: &mut Model,
    cx: &mut Ctx,
    n: &crate::onnx::NodeProto,
    node: &str,
    cname: &str,
    t: &TensorProto,
    _head: &Head,
) -> Result<()> {
    let dims = t.dims.clone();
    let (n0, n1) = (cx.n0, cx.n1);
    let count = crate::tensor::numel(&dims).unwrap_or(0);
    if count == 0 || count > 4 * n0 as usize + 16 {
        return Ok(());
    }
    let vals = match m.tensor_values(t) {
        Ok(v) => v,
        Err(_) => return Ok(()),
    };
    let is_float = vals.is_float();
    let f = vals.as_f64();
    let has_n = dims.contains(&n0) && n0 > 1;
    if has_n {
        let new_dims: Vec<i64> = dims.iter().map(|&d| if d == n0 { n1 } else { d }).collect();
        let per = count / n0 as usize;
        let regenerated: Option<(&str, Vec<f64>)> = if f.iter().all(|&x| x == 1.0) {
            Some(("ones", vec![1.0; n1 as usize * per]))
        } else if per == 1 && close(&f, &anchor_pattern(&cx.g0, "stride")) {
            Some(("per-anchor strides", anchor_pattern(&cx.g1, "stride")))
        } else if per == 1 && close(&f, &(0..n0).map(|x| x as f64).collect::<Vec<_>>()) {
            Some(("anchor indices", (0..n1).map(|x| x as f64).collect()))
        } else if per == 2 {
            ["xy", "xy+0.5", "xy+0.5*s"]
                .iter()
                .find(|k| close(&f, &anchor_pattern(&cx.g0, k)))
                .map(|k| (*k, anchor_pattern(&cx.g1, k)))
        } else {
            None
        };
        let Some((what, nv)) = regenerated else {
            bail!("{}: baked tensor `{cname}` {:?} is sized by N = {n0} but its values are no known grid/stride/anchor/ones pattern; cannot re-derive it", describe(n), dims);
        };
        let values = if is_float {
            Values::F32(nv.iter().map(|&x| x as f32).collect())
        } else {
            Values::I64(nv.iter().map(|&x| x as i64).collect())
        };
        return write_tensor(
            m,
            cx,
            cname,
            t,
            &new_dims,
            values,
            node,
            &format!("baked {what} {:?}", dims),
            format!("{:?}", dims),
            format!("{:?}", new_dims),
        );
    }
    // [h,1] / [1,w] aranges of a level grid (YOLOX decode meshgrid)
    if dims.len() == 2 && !is_float && count > 1 {
        let arange = |k: i64| (0..k).map(|x| x as f64).collect::<Vec<_>>();
        if dims[1] == 1 && close(&f, &arange(dims[0])) {
            if let Some(l) = cx.level_of_h(dims[0]) {
                let h1 = cx.g1[l].1;
                return write_tensor(
                    m,
                    cx,
                    cname,
                    t,
                    &[h1, 1],
                    Values::I64((0..h1).collect()),
                    node,
                    "grid row indices",
                    format!("{:?}", dims),
                    format!("[{h1}, 1]"),
                );
            }
        }
        if dims[0] == 1 && close(&f, &arange(dims[1])) {
            if let Some(l) = cx.level_of_w(dims[1]) {
                let w1 = cx.g1[l].2;
                return write_tensor(
                    m,
                    cx,
                    cname,
                    t,
                    &[1, w1],
                    Values::I64((0..w1).collect()),
                    node,
                    "grid column indices",
                    format!("{:?}", dims),
                    format!("[1, {w1}]"),
                );
            }
        }
    }
    // small int vectors: N, or a trailing level grid
    if !is_float && dims.len() == 1 && count <= 8 {
        let v = vals.as_i64();
        let mut nv = v.clone();
        let mut why = None;
        for x in nv.iter_mut() {
            if *x == n0 && n0 > 1 {
                *x = n1;
                why = Some("shape holding N");
            }
        }
        if why.is_none()
            && v.len() >= 2
            && matches!(
                n.op_type(),
                "Expand" | "Tile" | "ConstantOfShape" | "Reshape"
            )
        {
            let tail = (v[v.len() - 2], v[v.len() - 1]);
            if let Some(l) = cx.g0.iter().position(|&(_, a, b)| (a, b) == tail) {
                let (_, a, b) = cx.g1[l];
                let len = nv.len();
                nv[len - 2] = a;
                nv[len - 1] = b;
                why = Some("shape ending in a level grid");
            }
        }
        if let Some(why) = why {
            if nv != v {
                return write_int(m, cx, cname, &nv, node, why);
            }
        }
    }
    Ok(())
}
