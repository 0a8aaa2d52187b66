//! Running models in-process with tract (no Python needed by the user): the checker behind
//! `check`, `merge --check` and the tests.
//!
//! Models go to tract as encoded bytes decoded by tract's own protobuf types (they are an older IR
//! than ours, so editing never depends on them); external data is resolved from the model's folder.
//! tract is called inside `catch_unwind`: a panic in the runtime becomes an error.

use std::panic::{catch_unwind, AssertUnwindSafe};

use anyhow::{anyhow, bail, Context, Result};
use tract_onnx::prelude::*;

use crate::model::Model;
use crate::npy::{Npy, NpyData};

/// A prepared (optimized) tract plan for one model and fixed input shapes.
pub struct Runner {
    plan: Plan,
    /// True when tract could not type the model (e.g. an `If` node) and it runs un-typed
    /// (slower, still exact).
    pub fallback: bool,
    pub output_names: Vec<String>,
}

enum Plan {
    Typed(std::sync::Arc<TypedSimplePlan>),
    Inference(std::sync::Arc<InferenceSimplePlan>),
}

fn to_tensor(n: &Npy) -> Result<Tensor> {
    Ok(match &n.data {
        NpyData::F32(v) => Tensor::from_shape(&n.shape, v)?,
        NpyData::F64(v) => Tensor::from_shape(&n.shape, v)?,
        NpyData::I64(v) => Tensor::from_shape(&n.shape, v)?,
        NpyData::I32(v) => Tensor::from_shape(&n.shape, v)?,
        NpyData::U8(v) => Tensor::from_shape(&n.shape, v)?,
        NpyData::Bool(v) => Tensor::from_shape(&n.shape, v)?,
    })
}

fn from_tensor(t: &Tensor) -> Result<Npy> {
    let shape = t.shape().to_vec();
    let dt = t.datum_type();
    let data = if dt == f32::datum_type() {
        NpyData::F32(t.to_plain_array_view::<f32>()?.iter().copied().collect())
    } else if dt == i32::datum_type() {
        NpyData::I32(t.to_plain_array_view::<i32>()?.iter().copied().collect())
    } else if dt == bool::datum_type() {
        NpyData::Bool(t.to_plain_array_view::<bool>()?.iter().copied().collect())
    } else if dt == f64::datum_type() {
        NpyData::F64(t.to_plain_array_view::<f64>()?.iter().copied().collect())
    } else {
        // i64 and TDim (tract reports Cast-to-int64 results as TDim)
        let c = t.cast_to::<i64>()?;
        NpyData::I64(c.to_plain_array_view::<i64>()?.iter().copied().collect())
    };
    Npy::new(shape, data)
}

fn datum(n: &Npy) -> DatumType {
    match n.data {
        NpyData::F32(_) => f32::datum_type(),
        NpyData::F64(_) => f64::datum_type(),
        NpyData::I64(_) => i64::datum_type(),
        NpyData::I32(_) => i32::datum_type(),
        NpyData::U8(_) => u8::datum_type(),
        NpyData::Bool(_) => bool::datum_type(),
    }
}

impl Runner {
    /// Prepare `m` for inputs shaped like `inputs` (in graph-input order, initializer-backed
    /// inputs excluded unless given). `extra_outputs` adds internal tensors as outputs (e.g. the
    /// head output inside a merged model).
    pub fn new(m: &Model, inputs: &[&Npy], extra_outputs: &[&str]) -> Result<Runner> {
        let mut proto = m.proto.clone();
        let g = proto.graph.get_or_insert_with(Default::default);
        for e in extra_outputs {
            if !g.output.iter().any(|o| o.name() == *e) {
                g.output.push(crate::onnx::ValueInfoProto {
                    name: Some(e.to_string()),
                    ..Default::default()
                });
            }
        }
        let output_names: Vec<String> = g.output.iter().map(|o| o.name().to_string()).collect();
        let bytes = prost::Message::encode_to_vec(&proto);
        let dir = m
            .base_dir
            .as_ref()
            .and_then(|d| d.to_str().map(str::to_string));
        let inputs: Vec<(Vec<usize>, DatumType)> =
            inputs.iter().map(|n| (n.shape.clone(), datum(n))).collect();
        let res = catch_unwind(AssertUnwindSafe(|| -> TractResult<(Plan, bool)> {
            let pb = <tract_onnx::pb::ModelProto as prost::Message>::decode(bytes.as_slice())?;
            let mut model = tract_onnx::onnx()
                .with_ignore_value_info(true)
                .parse(&pb, dir.as_deref())?
                .model;
            for (i, (shape, dt)) in inputs.iter().enumerate() {
                model.set_input_fact(
                    i,
                    InferenceFact::dt_shape(
                        *dt,
                        shape.iter().map(|&d| d as i64).collect::<TVec<_>>(),
                    ),
                )?;
            }
            match model
                .clone()
                .into_optimized()
                .and_then(|t| t.into_runnable())
            {
                Ok(p) => Ok((Plan::Typed(p), false)),
                // e.g. `If` cannot be typed: the un-typed plan runs it (slower)
                Err(_) => Ok((Plan::Inference(model.into_runnable()?), true)),
            }
        }));
        let (plan, fallback) = match res {
            Ok(r) => r
                .map_err(|e| anyhow!("{e:#}"))
                .with_context(|| format!("tract cannot prepare `{}`", m.source))?,
            Err(_) => bail!("tract panicked while preparing `{}`", m.source),
        };
        Ok(Runner {
            plan,
            fallback,
            output_names,
        })
    }

    /// Run on inputs; returns every output by name.
    pub fn run(&self, inputs: &[&Npy]) -> Result<Vec<(String, Npy)>> {
        let tv: TVec<TValue> = inputs
            .iter()
            .map(|n| to_tensor(n).map(|t| t.into_tvalue()))
            .collect::<Result<_>>()?;
        let out = match catch_unwind(AssertUnwindSafe(|| match &self.plan {
            Plan::Typed(p) => p.run(tv),
            Plan::Inference(p) => p.run(tv),
        })) {
            Ok(r) => r
                .map_err(|e| anyhow!("{e:#}"))
                .context("tract failed to run the model")?,
            Err(_) => bail!("tract panicked while running the model"),
        };
        out.iter()
            .zip(&self.output_names)
            .map(|(t, n)| Ok((n.clone(), from_tensor(t)?)))
            .collect()
    }
}

/// Prepare and run once.
pub fn run_once(m: &Model, inputs: &[&Npy], extra_outputs: &[&str]) -> Result<Vec<(String, Npy)>> {
    Runner::new(m, inputs, extra_outputs)?.run(inputs)
}
