//! Appending nodes to a graph: unique prefixed names, constants as initializers, and opset-aware
//! helpers for ops whose signature changed across opsets (Unsqueeze/Squeeze/ReduceSum axes).

use crate::graph::{make_attr_i, make_attr_ints, make_node, NameGen};
use crate::onnx::{AttributeProto, GraphProto, TensorProto};
use crate::tensor::{tensor_f32, tensor_i64};

/// Appends prefixed nodes and initializers to a graph.
pub struct Builder<'a> {
    pub g: &'a mut GraphProto,
    pub names: NameGen,
    pub prefix: String,
    /// Default-domain opset the appended nodes must be valid for.
    pub opset: i64,
}

impl<'a> Builder<'a> {
    pub fn new(g: &'a mut GraphProto, prefix: &str, opset: i64) -> Builder<'a> {
        let names = NameGen::new(g);
        Builder {
            g,
            names,
            prefix: prefix.to_string(),
            opset,
        }
    }

    /// A fresh prefixed name.
    pub fn name(&mut self, what: &str) -> String {
        self.names.fresh(&format!("{}{}", self.prefix, what))
    }

    /// Add an initializer with an exact name (must be unused) — for PINTO-compatible names.
    pub fn init_named(&mut self, mut t: TensorProto, name: &str) -> String {
        let n = self.names.fresh(name);
        t.name = Some(n.clone());
        self.g.initializer.push(t);
        n
    }

    /// Add an initializer with a fresh prefixed name.
    pub fn init(&mut self, what: &str, mut t: TensorProto) -> String {
        let n = self.name(what);
        t.name = Some(n.clone());
        self.g.initializer.push(t);
        n
    }

    pub fn const_i64(&mut self, what: &str, dims: &[i64], v: &[i64]) -> String {
        self.init(what, tensor_i64("", dims, v))
    }

    pub fn const_f32(&mut self, what: &str, dims: &[i64], v: &[f32]) -> String {
        self.init(what, tensor_f32("", dims, v))
    }

    /// Append a node with one output; returns the output name.
    pub fn op(&mut self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        self.op_n(op, inputs, 1, attrs).remove(0)
    }

    /// Append a node with `n_out` outputs.
    pub fn op_n(
        &mut self,
        op: &str,
        inputs: &[&str],
        n_out: usize,
        attrs: Vec<AttributeProto>,
    ) -> Vec<String> {
        let node_name = self.name(op);
        let outs: Vec<String> = (0..n_out)
            .map(|i| {
                if n_out == 1 {
                    format!("{node_name}_output")
                } else {
                    format!("{node_name}_output_{i}")
                }
            })
            .collect();
        for o in &outs {
            let _ = self.names.fresh(o);
        }
        let o_refs: Vec<&str> = outs.iter().map(String::as_str).collect();
        self.g
            .node
            .push(make_node(op, &node_name, inputs, &o_refs, attrs));
        outs
    }

    /// Append a node with explicit node and output names.
    pub fn op_named(
        &mut self,
        op: &str,
        node_name: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: Vec<AttributeProto>,
    ) {
        let node_name = self.names.fresh(node_name);
        for o in outputs {
            let _ = self.names.fresh(o);
        }
        self.g
            .node
            .push(make_node(op, &node_name, inputs, outputs, attrs));
    }

    /// Slice with constant starts/ends/axes (opset ≥ 10 input form).
    pub fn slice(&mut self, x: &str, starts: &[i64], ends: &[i64], axes: &[i64]) -> String {
        let n = starts.len() as i64;
        let s = self.const_i64("slice_starts", &[n], starts);
        let e = self.const_i64("slice_ends", &[n], ends);
        let a = self.const_i64("slice_axes", &[n], axes);
        self.op("Slice", &[x, &s, &e, &a], vec![])
    }

    pub fn unsqueeze(&mut self, x: &str, axes: &[i64]) -> String {
        if self.opset >= 13 {
            let a = self.const_i64("axes", &[axes.len() as i64], axes);
            self.op("Unsqueeze", &[x, &a], vec![])
        } else {
            self.op("Unsqueeze", &[x], vec![make_attr_ints("axes", axes)])
        }
    }

    pub fn squeeze(&mut self, x: &str, axes: &[i64]) -> String {
        if self.opset >= 13 {
            let a = self.const_i64("axes", &[axes.len() as i64], axes);
            self.op("Squeeze", &[x, &a], vec![])
        } else {
            self.op("Squeeze", &[x], vec![make_attr_ints("axes", axes)])
        }
    }

    /// ReduceSum / ReduceMax with constant axes (attribute or input depending on opset).
    pub fn reduce(&mut self, op: &str, x: &str, axes: &[i64], keepdims: bool) -> String {
        let input_form = match op {
            "ReduceSum" => self.opset >= 13,
            _ => self.opset >= 18,
        };
        if input_form {
            let a = self.const_i64("axes", &[axes.len() as i64], axes);
            self.op(op, &[x, &a], vec![make_attr_i("keepdims", keepdims as i64)])
        } else {
            self.op(
                op,
                &[x],
                vec![
                    make_attr_ints("axes", axes),
                    make_attr_i("keepdims", keepdims as i64),
                ],
            )
        }
    }

    pub fn cast(&mut self, x: &str, to: crate::onnx::tensor_proto::DataType) -> String {
        self.op("Cast", &[x], vec![make_attr_i("to", to as i64)])
    }
}
