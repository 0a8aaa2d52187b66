//! Recognizing the detection head from the graph (never from the file name), with the rule that
//! matched, so `inspect` can explain itself and `merge` knows what to append.

use std::collections::{HashSet, VecDeque};

use anyhow::{bail, Result};
use serde::Serialize;

use crate::graph::{describe, GraphIndex};
use crate::model::Model;
use crate::onnx::tensor_proto::DataType;
use crate::shape::{fmt_shape, vi_dtype, vi_shape, Dim, Shapes};

use crate::families::common::grid_total;
pub use crate::families::common::{strides_for, STRIDE_SETS};
/// What recognition found: a registered family's raw head, or a state of the graph (the old
/// variants `YoloxRaw` … `TrtPlugin` are its associated constants and variants).
pub use crate::families::Recognized as Family;
use crate::families::{Candidate, Recognized, FAMILIES};

/// Everything `merge`, `resize` and `inspect` need to know about the head.
#[derive(Debug, Clone, Serialize)]
pub struct Head {
    pub family: Recognized,
    /// Why: the rule that matched, naming nodes.
    pub rule: String,
    /// Image input name.
    pub input: String,
    /// Input shape [B, 3, H, W] as declared.
    pub input_shape: Vec<Dim>,
    pub batch: Dim,
    pub height: Option<i64>,
    pub width: Option<i64>,
    /// Head output name (for un-merged models).
    pub output: Option<String>,
    /// Number of candidate boxes.
    pub num_boxes: Option<i64>,
    pub num_classes: Option<usize>,
    pub strides: Vec<i64>,
    /// Grid (h, w) per stride.
    pub grids: Vec<(i64, i64)>,
    /// For merged models: the NMS node and its outputs.
    pub nms_node: Option<String>,
    pub merged_outputs: Vec<String>,
    /// Graph outputs whose declared shape disagrees with shape inference (declared dims that are
    /// symbolic, missing or wrong where inference computes a number): the inferred dims decide.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub declared_vs_inferred: Vec<ShapeDisagreement>,
}

/// A graph output whose declared shape is not what the graph computes.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ShapeDisagreement {
    pub output: String,
    /// `None`: the output declares no shape.
    pub declared: Option<Vec<Dim>>,
    pub inferred: Vec<Dim>,
}

impl ShapeDisagreement {
    /// One line for reports.
    pub fn describe(&self) -> String {
        format!(
            "output `{}` declares {}, shape inference gives {} (the inferred dims decide)",
            self.output,
            self.declared
                .as_ref()
                .map(|s| fmt_shape(s))
                .unwrap_or_else(|| "no shape".into()),
            fmt_shape(&self.inferred)
        )
    }
}

/// The shape that decides for a graph output: per dim, the inferred number when inference computes
/// one, else the declared number, else a symbol. A declared dim never overrides an inferred one.
pub fn deciding_shape(declared: Option<&[Dim]>, inferred: Option<&[Dim]>) -> Option<Vec<Dim>> {
    match (declared, inferred) {
        (None, None) => None,
        (Some(d), None) => Some(d.to_vec()),
        (None, Some(i)) => Some(i.to_vec()),
        (Some(d), Some(i)) if d.len() != i.len() => Some(i.to_vec()),
        (Some(d), Some(i)) => Some(
            i.iter()
                .zip(d)
                .map(|(a, b)| match (a, b) {
                    (Dim::Known(_), _) => a.clone(),
                    (_, Dim::Known(_)) => b.clone(),
                    _ => b.clone(),
                })
                .collect(),
        ),
    }
}

/// Whether inference knows more than (or the opposite of) the declaration: a declared dim that is
/// symbolic or absent where inference has a number, a different number, or a different rank.
fn disagrees(declared: Option<&[Dim]>, inferred: &[Dim]) -> bool {
    let Some(d) = declared else {
        return inferred.iter().any(|x| x.known().is_some());
    };
    if d.len() != inferred.len() {
        return true;
    }
    d.iter()
        .zip(inferred)
        .any(|(a, b)| matches!(b, Dim::Known(_)) && a != b)
}

/// Largest input side a head is recognized at (16384: N = 5.6 M boxes). Larger declared sizes are
/// refused: the grids `merge` appends and the buffers `check`/`detect` allocate would be gigabytes,
/// and 1e12-style dims would overflow the grid arithmetic.
pub const MAX_INPUT_SIDE: i64 = 16384;

/// Largest static batch a head is recognized at (`merge` appends per-image constants of that
/// size, `check` and `detect` allocate that many images).
pub const MAX_BATCH: i64 = 4096;

fn is_trt_plugin(op: &str, domain: &str) -> bool {
    domain == "TRT"
        || domain.starts_with("trt")
        || op.contains("_TRT")
        || op == "BatchedNMSDynamic_TRT"
        || op == "EfficientNMS_TRT"
}

/// Find the image input: the first non-initializer graph input of rank 4.
fn image_input(m: &Model) -> Result<(String, Vec<Dim>)> {
    let g = m.graph();
    let inits: HashSet<&str> = g.initializer.iter().map(|t| t.name()).collect();
    let mut seen = Vec::new();
    for i in g.input.iter().filter(|i| !inits.contains(i.name())) {
        let s = vi_shape(i);
        if let Some(s) = &s {
            if s.len() == 4 {
                return Ok((i.name().to_string(), s.clone()));
            }
        }
        seen.push(format!(
            "`{}` {}",
            i.name(),
            s.map(|s| fmt_shape(&s))
                .unwrap_or_else(|| "(no shape)".into())
        ));
    }
    bail!(
        "no image input found: expected a graph input of shape [B, 3, H, W], found {}",
        if seen.is_empty() {
            "no inputs".to_string()
        } else {
            seen.join(", ")
        }
    )
}

/// Ancestors (node indices) of tensor `name`.
fn ancestors(g: &crate::onnx::GraphProto, ix: &GraphIndex, name: &str) -> Vec<usize> {
    let mut seen = HashSet::new();
    let mut q = VecDeque::from([name.to_string()]);
    let mut out = Vec::new();
    while let Some(t) = q.pop_front() {
        if let Some(&p) = ix.producer.get(&t) {
            if seen.insert(p) {
                out.push(p);
                for i in crate::graph::node_reads(&g.node[p]) {
                    q.push_back(i);
                }
            }
        }
    }
    out.sort_unstable();
    out
}

/// Recognize the head from the shapes the graph computes: declared output shapes that are
/// symbolic, missing or wrong never decide (they are reported in [`Head::declared_vs_inferred`]).
/// `shapes` is a shape inference the caller already has; without it, recognition runs its own.
pub fn recognize(m: &Model, shapes: Option<&Shapes>) -> Result<Head> {
    let own;
    let shapes = match shapes {
        Some(s) => Some(s),
        None => {
            // a graph inference cannot walk (a cycle) is refused by validation with its own
            // message; recognition then has only the declarations
            own = crate::shape::infer(m, &std::collections::HashMap::new()).ok();
            own.as_ref()
        }
    };
    let g = m.graph();
    let ix = GraphIndex::build(g);
    let (input, input_shape) = image_input(m)?;
    let declared_vs_inferred: Vec<ShapeDisagreement> = g
        .output
        .iter()
        .filter_map(|o| {
            let inferred = shapes.and_then(|s| s.shape(o.name()))?;
            let declared = vi_shape(o);
            disagrees(declared.as_deref(), inferred).then(|| ShapeDisagreement {
                output: o.name().to_string(),
                declared,
                inferred: inferred.clone(),
            })
        })
        .collect();
    let batch = input_shape[0].clone();
    // a uint8 [B, H, W, 3] frame input (`--input-format`) has its size on axes 1 and 2
    let (hi, wi) = if crate::passes::input_format::takes_frames(m) {
        (1, 2)
    } else {
        (2, 3)
    };
    let height = input_shape[hi].known();
    let width = input_shape[wi].known();
    for (what, v, max) in [
        ("height", height, MAX_INPUT_SIDE),
        ("width", width, MAX_INPUT_SIDE),
        ("batch", batch.known(), MAX_BATCH),
    ] {
        if let Some(v) = v.filter(|&v| v <= 0 || v > max) {
            bail!("input `{input}` declares shape {}: {what} {v} is outside 1..={max}, not a size this tool can handle", fmt_shape(&input_shape));
        }
    }
    let mut head = Head {
        family: Recognized::Merged,
        rule: String::new(),
        input,
        input_shape,
        batch,
        height,
        width,
        output: None,
        num_boxes: None,
        num_classes: None,
        strides: vec![],
        grids: vec![],
        nms_node: None,
        merged_outputs: vec![],
        declared_vs_inferred,
    };
    if let Some(n) = g
        .node
        .iter()
        .find(|n| is_trt_plugin(n.op_type(), n.domain()))
    {
        head.family = Recognized::TrtPlugin;
        // outputs of an NMS graph are data-dependent; their shapes decide nothing here
        head.declared_vs_inferred.clear();
        head.rule = format!(
            "{} of domain `{}` is a TensorRT plugin: the graph runs only in TensorRT",
            describe(n),
            n.domain()
        );
        head.merged_outputs = g.output.iter().map(|o| o.name().to_string()).collect();
        return Ok(head);
    }
    if let Some(n) = g.node.iter().find(|n| n.op_type() == "NonMaxSuppression") {
        head.family = Recognized::Merged;
        head.declared_vs_inferred.clear();
        head.nms_node = Some(n.name().to_string());
        head.merged_outputs = g.output.iter().map(|o| o.name().to_string()).collect();
        head.rule = format!(
            "{} is in the graph; outputs {}",
            describe(n),
            head.merged_outputs
                .iter()
                .map(|o| format!("`{o}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Ok(head);
    }
    let (Some(h), Some(w)) = (height, width) else {
        bail!("input `{}` has symbolic height/width {}: the head cannot be matched to strides (give a static size, e.g. `resize --size HxW`)", head.input, fmt_shape(&head.input_shape));
    };
    // Candidate outputs: float rank-3.
    let mut found = Vec::new();
    for o in &g.output {
        let declared = vi_shape(o);
        let inferred = shapes.and_then(|s| s.get(o.name()));
        let shape = deciding_shape(
            declared.as_deref(),
            inferred.and_then(|i| i.shape.as_deref()),
        );
        let dt = inferred
            .and_then(|i| i.dtype)
            .or_else(|| vi_dtype(o))
            .unwrap_or(DataType::Float as i32);
        let txt = shape
            .as_ref()
            .map(|s| fmt_shape(s))
            .unwrap_or_else(|| "(no shape)".into());
        let dtxt = declared
            .as_ref()
            .map(|s| fmt_shape(s))
            .unwrap_or_else(|| "(no shape)".into());
        found.push(if dtxt == txt {
            format!("`{}` {txt}", o.name())
        } else {
            format!("`{}` {txt} (declared {dtxt})", o.name())
        });
        let Some(shape) = shape else { continue };
        if shape.len() == 3 && dt == DataType::Float16 as i32 {
            if let Some(n) = shape[1].known().filter(|&n| strides_for(n, h, w).is_some()) {
                bail!("output `{}` {} ({n} boxes) is float16 (a `--half` / model.half() export): the appended post-process computes in float32 and float16 heads are not supported; export in float32", o.name(), fmt_shape(&shape));
            }
        }
        if shape.len() != 3 || dt != DataType::Float as i32 {
            continue;
        }
        let (Some(n), Some(k)) = (shape[1].known(), shape[2].known()) else {
            continue;
        };
        if let Some(strides) = strides_for(n, h, w) {
            if k < 6 {
                bail!("output `{}` {} has {k} columns per box; a YOLOX/Gold-YOLO head has 5 + classes (at least 6)", o.name(), fmt_shape(&shape));
            }
            head.output = Some(o.name().to_string());
            head.num_boxes = Some(n);
            head.num_classes = Some((k - 5) as usize);
            head.grids = strides.iter().map(|s| (h / s, w / s)).collect();
            head.strides = strides;
            break;
        }
        if strides_for(k, h, w).is_some() {
            bail!("output `{}` {} looks like a YOLOv8-style [B, 4+C, N] head (boxes on the last axis); only YOLOX and Gold-YOLO/YOLOv6 [B, N, 5+C] heads are supported", o.name(), fmt_shape(&shape));
        }
    }
    let Some(out) = head.output.clone() else {
        bail!(
            "no detection head found: expected an output [B, N, 5+C] with N = sum of (H/s)*(W/s) over strides 8,16,32 (or up to 64) = {} for a {h}x{w} input; found {}",
            STRIDE_SETS.iter().map(|ss| grid_total(ss, h, w).map(|t| t.to_string()).unwrap_or_else(|| "(overflow)".into())).collect::<Vec<_>>().join(" or "),
            found.join(", ")
        );
    };
    let n = head.num_boxes.unwrap_or(0);
    let strides_txt = format!(
        "N = {n} = {} for strides {:?} at {h}x{w}",
        head.grids
            .iter()
            .map(|(a, b)| format!("{a}*{b}"))
            .collect::<Vec<_>>()
            .join(" + "),
        head.strides
    );
    let anc = ancestors(g, &ix, &out);
    let cand = Candidate {
        model: m,
        index: &ix,
        output: &out,
        ancestors: &anc,
        strides_txt: &strides_txt,
    };
    for &f in FAMILIES {
        if let Some(rule) = f.def().recognize(&cand)? {
            head.family = Recognized::Raw(f);
            head.rule = rule;
            return Ok(head);
        }
    }
    bail!("output `{out}` has the shape of a detection head ({strides_txt}) but matches no family's rule: not a YOLOX or Gold-YOLO head")
}
