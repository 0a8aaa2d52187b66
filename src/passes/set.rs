//! `set`: retune the NMS parameters of an already merged model — ours, PINTO's `_post_` files and
//! YOLOv6/Gold-YOLO `--end2end --ort` exports — whether each parameter is an initializer, a
//! `Constant` node or a graph input with a default. A constant shared with other consumers is left
//! alone: the NMS node gets its own copy (`<name>_mod`, as sam4onnx does). Nodes `merge` appended
//! (named `postmerge/…`) that read an NMS parameter are not "other consumers": they read it on
//! purpose — the post-NMS filter keeps only selections above the NMS score threshold — and are
//! retuned with it.

use anyhow::{bail, Result};
use serde::Serialize;

use crate::graph::{constant, describe, ConstSource, GraphIndex, NameGen};
use crate::model::Model;
use crate::onnx::tensor_proto::DataType;
use crate::onnx::TensorProto;
use crate::record::MergeRecord;
use crate::tensor::{tensor_from_values, Values};

/// New values; `None` keeps the current one.
#[derive(Debug, Clone, Default)]
pub struct SetOptions {
    pub score_threshold: Option<f32>,
    pub iou_threshold: Option<f32>,
    pub max_per_class: Option<i64>,
}

/// One change.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SetChange {
    pub node: String,
    pub parameter: String,
    pub tensor: String,
    pub old: String,
    pub new: String,
    /// how it was stored / what was done
    pub how: String,
}

const PARAMS: [(usize, &str); 3] = [
    (2, "max_output_boxes_per_class"),
    (3, "iou_threshold"),
    (4, "score_threshold"),
];

fn fmt_values(v: &Values) -> String {
    match v {
        Values::F32(x) => format!("{x:?}"),
        Values::F64(x) => format!("{x:?}"),
        other => format!("{:?}", other.as_i64()),
    }
}

/// New tensor like `old` (same dtype and dims) holding `value`. NonMaxSuppression takes its
/// `max_output_boxes_per_class` as int64 and its thresholds as float, each one value (a scalar,
/// or [1] as PINTO's exports have it); anything else is refused rather than rewritten.
fn like(old: &TensorProto, name: &str, value: f64, count: bool) -> Result<TensorProto> {
    let dims = old.dims.clone();
    if crate::tensor::numel(&dims) != Some(1) {
        bail!(
            "tensor `{}` has shape {:?}, expected one value (a scalar or [1])",
            old.name(),
            dims
        );
    }
    let dt = DataType::try_from(old.data_type());
    let v = match dt {
        Ok(DataType::Int64) if count => Values::I64(vec![value as i64]),
        Ok(DataType::Float) if !count => Values::F32(vec![value as f32]),
        _ => bail!(
            "tensor `{}` is {}, expected {} (the NonMaxSuppression input's type)",
            old.name(),
            crate::tensor::dtype_name(old.data_type()),
            crate::tensor::dtype_name(if count {
                DataType::Int64 as i32
            } else {
                DataType::Float as i32
            })
        ),
    };
    let mut t = tensor_from_values(name, &dims, &v);
    t.doc_string = old.doc_string.clone();
    Ok(t)
}

/// Retune every NonMaxSuppression node of the model.
pub fn set(m: &mut Model, opts: &SetOptions) -> Result<Vec<SetChange>> {
    if let Some(v) = opts.iou_threshold {
        if !(0.0..=1.0).contains(&v) {
            bail!("--iou {v} is outside [0, 1]");
        }
    }
    if let Some(v) = opts.max_per_class {
        if v <= 0 {
            bail!("--max-per-class {v}: must be at least 1 (0 means \"none\" in onnxruntime but \"unlimited\" in tract)");
        }
    }
    if opts.score_threshold.is_none()
        && opts.iou_threshold.is_none()
        && opts.max_per_class.is_none()
    {
        bail!("nothing to set: give --score, --iou and/or --max-per-class");
    }
    let nms: Vec<usize> = m
        .graph()
        .node
        .iter()
        .enumerate()
        .filter(|(_, n)| n.op_type() == "NonMaxSuppression")
        .map(|(i, _)| i)
        .collect();
    if nms.is_empty() {
        let hint = m
            .graph()
            .node
            .iter()
            .find(|n| n.op_type().contains("NMS"))
            .map(|n| {
                format!(
                    " (it has {}: a TensorRT plugin, whose parameters are attributes)",
                    describe(n)
                )
            })
            .unwrap_or_default();
        bail!("the model has no NonMaxSuppression node: nothing to retune{hint}; use `postmerge merge` to append post-processing");
    }
    let mut changes = Vec::new();
    for ni in nms {
        for (idx, pname) in PARAMS {
            let value: Option<f64> = match idx {
                2 => opts.max_per_class.map(|v| v as f64),
                3 => opts.iou_threshold.map(|v| v as f64),
                _ => opts.score_threshold.map(|v| v as f64),
            };
            let Some(value) = value else { continue };
            let count = idx == 2; // max_output_boxes_per_class (int64), else a threshold (float)
            let g = m.graph_mut();
            let ix = GraphIndex::build(g);
            let node_desc = describe(&g.node[ni]);
            let node_name = g.node[ni].name().to_string();
            let tname = g.node[ni].input.get(idx).cloned().unwrap_or_default();
            if tname.is_empty() {
                // absent optional input: add an initializer
                let proto = if idx == 2 {
                    crate::tensor::tensor_i64("", &[1], &[0])
                } else {
                    crate::tensor::tensor_f32("", &[1], &[0.0])
                };
                let mut names = NameGen::new(g);
                let new_name = names.fresh(&format!("{node_name}_{pname}"));
                let t = like(&proto, &new_name, value, count)?;
                while g.node[ni].input.len() <= idx {
                    g.node[ni].input.push(String::new());
                }
                g.node[ni].input[idx] = new_name.clone();
                g.initializer.push(t);
                changes.push(SetChange {
                    node: node_name.clone(),
                    parameter: pname.into(),
                    tensor: new_name,
                    old: "(absent)".into(),
                    new: format!("{value}"),
                    how: "added an initializer".into(),
                });
                continue;
            }
            let is_input = ix.inputs.contains(&tname);
            let src = if is_input {
                ix.initializer
                    .get(&tname)
                    .map(|&i| (ConstSource::Initializer(i), g.initializer[i].clone()))
            } else {
                constant(g, &ix, &tname)
            };
            let Some((src, old)) = src else {
                if is_input {
                    bail!("{node_desc}: `{pname}` is graph input `{tname}` with no default initializer; pass the value at run time instead");
                }
                let prod = ix
                    .producer
                    .get(&tname)
                    .map(|&p| describe(&g.node[p]))
                    .unwrap_or_else(|| "nothing".into());
                bail!("{node_desc}: `{pname}` input `{tname}` is computed by {prod}, not a constant; cannot retune it in the file");
            };
            let old_v = m
                .tensor_values(&old)
                .map(|v| fmt_values(&v))
                .unwrap_or_else(|_| "?".into());
            let g = m.graph_mut();
            // postmerge's own appended nodes (the post-NMS score filter) follow the NMS value
            let follows = |c: usize| g.node[c].name().starts_with(crate::passes::merge::PREFIX);
            let followers: Vec<usize> = ix
                .consumers_of(&tname)
                .iter()
                .copied()
                .filter(|&c| c != ni && follows(c))
                .collect();
            let shared = ix
                .consumers_of(&tname)
                .iter()
                .any(|&c| c != ni && !follows(c))
                || (ix.outputs.contains(&tname));
            let (how, tensor) = if shared && !is_input {
                let mut names = NameGen::new(g);
                let new_name = names.fresh(&format!("{tname}_mod"));
                g.initializer.push(like(&old, &new_name, value, count)?);
                g.node[ni].input[idx] = new_name.clone();
                // the appended post-NMS filter reads what the NMS node reads
                for c in followers {
                    for i in g.node[c].input.iter_mut().filter(|i| **i == tname) {
                        *i = new_name.clone();
                    }
                }
                (
                    format!(
                        "`{tname}` is shared with other consumers: gave {node_name} its own copy"
                    ),
                    new_name,
                )
            } else {
                match src {
                    ConstSource::Initializer(i) => {
                        let t = like(&old, &tname, value, count)?;
                        g.initializer[i] = TensorProto {
                            name: Some(tname.clone()),
                            ..t
                        };
                        (
                            (if is_input {
                                "default of graph input (initializer)"
                            } else {
                                "initializer"
                            })
                            .to_string(),
                            tname.clone(),
                        )
                    }
                    ConstSource::ConstantNode(p) => {
                        let t = like(&old, old.name(), value, count)?;
                        let cn = &mut g.node[p];
                        cn.attribute
                            .retain(|a| a.name() != "value" && !a.name().starts_with("value_"));
                        cn.attribute.push(crate::graph::make_attr_t("value", t));
                        (format!("Constant node `{}`", cn.name()), tname.clone())
                    }
                }
            };
            let new_v = {
                let t = if let Some(&i) = GraphIndex::build(m.graph()).initializer.get(&tensor) {
                    m.graph().initializer[i].clone()
                } else {
                    like(&old, "", value, count)?
                };
                m.tensor_values(&t)
                    .map(|v| fmt_values(&v))
                    .unwrap_or_default()
            };
            changes.push(SetChange {
                node: node_name,
                parameter: pname.into(),
                tensor,
                old: old_v,
                new: new_v,
                how,
            });
        }
    }
    // keep the record of what the model computes in step with the graph
    if let Some(mut r) = MergeRecord::of(m) {
        r.score = opts.score_threshold.or(r.score);
        r.iou = opts.iou_threshold.or(r.iou);
        r.max_per_class = opts
            .max_per_class
            .and_then(|v| usize::try_from(v).ok())
            .or(r.max_per_class);
        r.store(m);
    }
    Ok(changes)
}
