//! `resize`: re-specialize a model exported at one resolution (and batch) to another, producing
//! what a native export at the new size would be (SPEC §3).
//!
//! Shape inference walks the graph in topological order at the NEW size while the inference at the
//! old size is known. Before each node is inferred, its resolution rule (`crate::resolution`)
//! re-derives the constants the exporter baked from the old size from what they meant there:
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

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::graph::{describe, topo_order, GraphIndex};
use crate::head::{recognize, Head};
use crate::model::Model;
use crate::onnx::GraphProto;
use crate::resolution::{grids, rule_for, spatial, RewriteCx};
use crate::shape::{fmt_shape, infer, infer_node, set_vi_shape, Dim, Shapes};

/// The batch an exporter traced a symbolic-batch graph with.
pub use crate::resolution::traced_batch;
/// One rewritten constant or attribute (the resolution rules write them).
pub use crate::resolution::Rewrite;

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
    check_size(&head, h1, w1)?;
    // A symbolic batch is walked at the batch the exporter traced with (the number its Reshapes
    // baked), so that the constants baked from it are found and re-derived like any other.
    let traced = match &head.batch {
        Dim::Sym(_) => Some(traced_batch(m, &head)?),
        Dim::Known(_) => None,
    };
    let s0 = old_shapes(m, &head, traced)?;
    let b0 = head.batch.clone();
    let b1 = new_batch(&b0, opts.batch.as_ref())?;
    let mut notes = Vec::new();
    let g0 = grids(&head.strides, h0, w0);
    let g1 = grids(&head.strides, h1, w1);
    let n0: i64 = g0.iter().map(|(_, a, b)| a * b).sum();
    let n1: i64 = g1.iter().map(|(_, a, b)| a * b).sum();

    let order = topo_order(m.graph())?;
    if let Some(tb) = traced {
        notes.push(format!(
            "the input declares a symbolic batch `{b0}`; the graph was walked at the traced batch {tb} (the batch its baked constants were computed for)"
        ));
    }
    let mut new_input = head.input_shape.clone();
    new_input[0] = b1.clone();
    new_input[2] = Dim::Known(h1);
    new_input[3] = Dim::Known(w1);
    let mut cx = RewriteCx {
        s0: &s0,
        ix: std::rc::Rc::new(GraphIndex::build(m.graph())),
        s1: new_start(m, &head, &s0, &new_input),
        maps: feature_maps(m, &head, &s0, &order, (h0, w0)),
        g0,
        g1,
        n0,
        n1,
        rewrites: Vec::new(),
        done: HashMap::new(),
    };
    walk(m, &mut cx, &order, (h1, w1))?;
    let s1 = cx.s1;
    declare_shapes(m, &head, &new_input, &s1, (h1, w1), &mut notes)?;
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

/// The new size must be positive, sane, and a multiple of the head's largest stride.
fn check_size(head: &Head, h1: i64, w1: i64) -> Result<()> {
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
    Ok(())
}

/// Inference at the old size (at the `traced` batch when the batch is symbolic); every node must
/// be inferred, or the baked constants cannot be explained.
fn old_shapes(m: &Model, head: &Head, traced: Option<i64>) -> Result<Shapes> {
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
    Ok(s0)
}

/// The batch of the result.
fn new_batch(b0: &Dim, batch: Option<&BatchSpec>) -> Result<Dim> {
    Ok(match batch {
        None => b0.clone(),
        Some(BatchSpec::Static(b)) if *b > crate::head::MAX_BATCH => bail!(
            "batch {b} is larger than {} (a batch that large is almost certainly a typo)",
            crate::head::MAX_BATCH
        ),
        Some(BatchSpec::Static(b)) if *b >= 1 => Dim::Known(*b),
        Some(BatchSpec::Static(b)) => bail!("batch {b} must be at least 1"),
        Some(BatchSpec::Dynamic) => Dim::Sym("batch".into()),
    })
}

/// Rank-4 tensors (the input first) with their topological position and old spatial dims.
fn feature_maps(
    m: &Model,
    head: &Head,
    s0: &Shapes,
    order: &[usize],
    (h0, w0): (i64, i64),
) -> Vec<(i64, String, (i64, i64))> {
    // a tensor's position is that of its (last) producer
    let mut pos: HashMap<&str, i64> = HashMap::new();
    for (p, &i) in order.iter().enumerate() {
        for o in &m.graph().node[i].output {
            pos.insert(o, p as i64);
        }
    }
    let mut maps: Vec<(i64, String, (i64, i64))> = vec![(-1, head.input.clone(), (h0, w0))];
    for &i in order {
        for o in &m.graph().node[i].output {
            if let Some(sp) = s0.shape(o).and_then(|s| spatial(s)) {
                maps.push((pos[o.as_str()], o.clone(), sp));
            }
        }
    }
    maps
}

/// The walk's starting point at the new size: graph inputs (the head input at `new_input`) and
/// initializers.
fn new_start(m: &Model, head: &Head, s0: &Shapes, new_input: &[Dim]) -> Shapes {
    let mut s1 = Shapes::default();
    for i in &m.graph().input {
        let mut info = s0.get(i.name()).cloned().unwrap_or_default();
        if i.name() == head.input {
            info.shape = Some(new_input.to_vec());
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
    s1
}

/// Walk the graph in topological order: each node's resolution rule rewrites what it bakes, then
/// the node is inferred at the new size.
fn walk(m: &mut Model, cx: &mut RewriteCx, order: &[usize], (h1, w1): (i64, i64)) -> Result<()> {
    for (p, &ni) in order.iter().enumerate() {
        let before: Vec<String> = cx.done.keys().cloned().collect();
        let rule = rule_for(m.graph().node[ni].op_type());
        (rule.rewrite)(m, cx, ni, p as i64)?;
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
        let n = &m.graph().node[ni];
        let outs =
            infer_node(n, &cx.s1).with_context(|| format!("at {}x{}: {}", h1, w1, describe(n)))?;
        for (o, info) in n.output.iter().zip(outs) {
            cx.s1.map.insert(o.clone(), info);
        }
    }
    Ok(())
}

/// Write the new shapes into the input, the outputs and value_info (a value_info shape that
/// cannot be inferred is removed, and counted in `notes`).
fn declare_shapes(
    m: &mut Model,
    head: &Head,
    new_input: &[Dim],
    s1: &Shapes,
    (h1, w1): (i64, i64),
    notes: &mut Vec<String>,
) -> Result<()> {
    let g = m.graph_mut();
    for v in g.input.iter_mut() {
        if v.name() == head.input {
            set_vi_shape(v, new_input);
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
    Ok(())
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
