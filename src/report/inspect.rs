//! `inspect`: what a model is — IR, opsets, producer, I/O, op histogram, parameters, the detection
//! head it recognizes (and why), and the resolution-dependent constants it bakes.

use std::fmt::Write as _;

use anyhow::Result;
use serde::Serialize;

use crate::graph::op_histogram;
use crate::head::{recognize, Head};
use crate::model::Model;
use crate::resdep::{find_resolution_constants, ResConst};
use crate::shape::{fmt_shape, vi_dtype, vi_shape, Dim};
use crate::tensor::{dtype_name, dtype_size, numel};

/// One graph input or output.
#[derive(Debug, Clone, Serialize)]
pub struct Io {
    pub name: String,
    pub dtype: String,
    pub shape: Option<Vec<Dim>>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub ir_version: i64,
    pub opsets: Vec<(String, i64)>,
    pub producer: String,
    pub inputs: Vec<Io>,
    pub outputs: Vec<Io>,
    pub nodes: usize,
    pub op_histogram: Vec<(String, usize)>,
    pub initializers: usize,
    pub parameters: u64,
    pub parameter_bytes: u64,
    pub metadata: Vec<(String, String)>,
    /// `nchw-f32`, or the uint8 frame format the input takes (`--input-format`), with what the
    /// graph does to it; an inconsistent declaration is reported as such.
    pub input_format: String,
    pub head: Option<Head>,
    pub head_error: Option<String>,
    pub resolution_constants: Vec<ResConst>,
    /// Float weights holding NaN / ±Inf (see [`crate::nonfinite`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nonfinite: Vec<crate::nonfinite::NonFinite>,
}

fn io(v: &crate::onnx::ValueInfoProto) -> Io {
    Io {
        name: v.name().to_string(),
        dtype: vi_dtype(v).map(dtype_name).unwrap_or_else(|| "?".into()),
        shape: vi_shape(v),
    }
}

/// Build the report.
pub fn inspect(m: &Model) -> Result<Report> {
    let p = &m.proto;
    let g = m.graph();
    let inits: std::collections::HashSet<&str> = g.initializer.iter().map(|t| t.name()).collect();
    let mut parameters = 0u64;
    let mut parameter_bytes = 0u64;
    for t in &g.initializer {
        let n = numel(&t.dims).unwrap_or(0) as u64;
        parameters = parameters.saturating_add(n);
        parameter_bytes = parameter_bytes
            .saturating_add(n.saturating_mul(dtype_size(t.data_type()).unwrap_or(0) as u64));
    }
    let (head, head_error) = match recognize(m, None) {
        Ok(h) => (Some(h), None),
        Err(e) => (None, Some(format!("{e:#}"))),
    };
    let resolution_constants = match &head {
        Some(h) => find_resolution_constants(m, h).unwrap_or_default(),
        None => vec![],
    };
    let input_format = match crate::passes::input_format::input_format(m) {
        Ok(f) if f.is_frame() => p
            .metadata_props
            .iter()
            .find(|e| e.key() == crate::passes::input_format::METADATA_KEY)
            .map(|e| e.value().to_string())
            .unwrap_or_else(|| f.name().to_string()),
        Ok(f) => f.name().to_string(),
        Err(e) => format!("invalid: {e:#}"),
    };
    Ok(Report {
        input_format,
        ir_version: p.ir_version(),
        opsets: p
            .opset_import
            .iter()
            .map(|o| {
                (
                    if o.domain().is_empty() {
                        "ai.onnx".to_string()
                    } else {
                        o.domain().to_string()
                    },
                    o.version(),
                )
            })
            .collect(),
        producer: format!("{} {}", p.producer_name(), p.producer_version())
            .trim()
            .to_string(),
        inputs: g
            .input
            .iter()
            .filter(|i| !inits.contains(i.name()))
            .map(io)
            .collect(),
        outputs: g.output.iter().map(io).collect(),
        nodes: g.node.len(),
        op_histogram: op_histogram(g),
        initializers: g.initializer.len(),
        parameters,
        parameter_bytes,
        metadata: p
            .metadata_props
            .iter()
            .map(|e| (e.key().to_string(), e.value().to_string()))
            .collect(),
        head,
        head_error,
        resolution_constants,
        nonfinite: crate::nonfinite::scan(m),
    })
}

fn fmt_io(v: &Io) -> String {
    format!(
        "{} {}{}",
        v.name,
        v.dtype,
        v.shape
            .as_ref()
            .map(|s| fmt_shape(s))
            .unwrap_or_else(|| " (no shape)".into())
    )
}

/// Human-readable rendering (stable: used in snapshots).
pub fn render(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "ir_version: {}", r.ir_version);
    let _ = writeln!(
        s,
        "opsets:     {}",
        r.opsets
            .iter()
            .map(|(d, v)| format!("{d} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        s,
        "producer:   {}",
        if r.producer.is_empty() {
            "(none)"
        } else {
            &r.producer
        }
    );
    for i in &r.inputs {
        let _ = writeln!(s, "input:      {}", fmt_io(i));
    }
    if r.input_format != "nchw-f32" {
        let _ = writeln!(s, "input format: {}", r.input_format);
    }
    for o in &r.outputs {
        let _ = writeln!(s, "output:     {}", fmt_io(o));
    }
    let _ = writeln!(s, "nodes:      {}", r.nodes);
    let _ = writeln!(
        s,
        "params:     {} in {} initializers ({} bytes)",
        r.parameters, r.initializers, r.parameter_bytes
    );
    let _ = writeln!(
        s,
        "ops:        {}",
        r.op_histogram
            .iter()
            .map(|(o, c)| format!("{o}:{c}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    for (k, v) in &r.metadata {
        let _ = writeln!(s, "metadata:   {k} = {v}");
    }
    match (&r.head, &r.head_error) {
        (Some(h), _) => {
            let _ = writeln!(s, "head:       {}", h.family.label());
            let _ = writeln!(s, "  rule:     {}", h.rule);
            let _ = writeln!(
                s,
                "  input:    {} {} (batch {})",
                h.input,
                fmt_shape(&h.input_shape),
                h.batch
            );
            if let (Some(hh), Some(ww)) = (h.height, h.width) {
                let _ = writeln!(s, "  size:     {hh}x{ww} (HxW)");
            }
            if let Some(o) = &h.output {
                let _ = writeln!(s, "  output:   {o}");
            }
            for d in &h.declared_vs_inferred {
                let _ = writeln!(s, "  shapes:   {}", d.describe());
            }
            if let Some(c) = h.num_classes {
                let _ = writeln!(s, "  classes:  {c}");
            }
            if !h.strides.is_empty() {
                let _ = writeln!(s, "  strides:  {:?}", h.strides);
                let _ = writeln!(
                    s,
                    "  grids:    {}",
                    h.grids
                        .iter()
                        .map(|(a, b)| format!("{a}x{b}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                let _ = writeln!(s, "  boxes:    {}", h.num_boxes.unwrap_or(0));
            }
            if let Some(n) = &h.nms_node {
                let _ = writeln!(s, "  nms:      {n}");
            }
        }
        (None, Some(e)) => {
            let _ = writeln!(s, "head:       not recognized: {e}");
        }
        _ => {}
    }
    for b in &r.nonfinite {
        let _ = writeln!(s, "non-finite: {}", b.describe());
    }
    if !r.resolution_constants.is_empty() {
        let _ = writeln!(
            s,
            "resolution-dependent constants: {}",
            r.resolution_constants.len()
        );
        for c in &r.resolution_constants {
            let _ = writeln!(s, "  {} ({}): {} = {}", c.node, c.op, c.what, c.value);
        }
    } else if r.head.as_ref().map(|h| h.output.is_some()).unwrap_or(false) {
        let _ = writeln!(
            s,
            "resolution-dependent constants: none (only the I/O shapes depend on the input size)"
        );
    }
    s
}
