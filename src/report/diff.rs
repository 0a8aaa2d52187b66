//! Semantic graph diffs (`postmerge diff A B`): what a reviewer needs to see between two models,
//! rendered as stable text (snapshotted by the test suite) or serialized with serde (`--json`).
//!
//! What is compared:
//! - **header**: IR version, opset imports (per domain; `""` is written `ai.onnx`), producer name
//!   and version, model domain and version, graph name, `metadata_props` (per key), model-local
//!   functions (per `domain::name`, by encoded content), and the order of graph inputs/outputs;
//! - **inputs / outputs / value_info**: by name — dtype and shape (`f32[1,3,640,640]`, symbolic dims
//!   by name);
//! - **nodes**: paired by name (a node without a name by its first output, written
//!   `output:<name>`; duplicate keys get `#2`, `#3`, ... in graph order) — op type, domain,
//!   inputs, outputs, attributes. Node order alone is not a change;
//! - **initializers** (and sparse initializers): by name — dtype, shape and content.
//!
//! Tensors (initializers, `Constant` values, tensor attributes) are never shown raw: small integer
//! tensors (≤ 16 elements) and small float tensors (≤ 8 elements) are shown in full
//! (`i64[2] = [40, 40]`, floats with `{:?}` of the stored value: shortest exact round-trip form),
//! anything else by dtype, shape and the first 8 hex digits of the sha256 of its little-endian
//! element bytes (`f32[64,3,3,3] #a1b2c3d4`). Content is compared on those bytes, so the same
//! values stored as `raw_data`, in the typed fields (`float_data`, `int64_data`, ...) or in an
//! external file compare equal; a change of storage alone is reported as
//! `(storage: raw -> external:w.bin)`.
//!
//! Ordering (deterministic, no hash-map order leaks): header fields in a fixed order (opsets,
//! metadata keys and functions sorted); inputs and outputs in B's order, then removed ones in A's
//! order; nodes in B's graph order, each removed node placed right after the node that preceded
//! it in A (when that one still exists in B; else at the top); initializers and value_info by
//! name.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use anyhow::{Context, Result};
use bytes::Bytes;
use prost::Message;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::model::Model;
use crate::onnx::{
    attribute_proto::AttributeType, tensor_proto::DataType, AttributeProto, GraphProto, NodeProto,
    SparseTensorProto, TensorProto, ValueInfoProto,
};
use crate::shape::{fmt_shape, vi_dtype, vi_shape, Dim};
use crate::tensor::{dtype_name, external_entry, is_external, values_with, Values};

/// Integer tensors up to this many elements are shown in full.
pub const MAX_SHOWN_INTS: usize = 16;
/// Float tensors up to this many elements are shown in full.
pub const MAX_SHOWN_FLOATS: usize = 8;
/// INTS / FLOATS / STRINGS attributes up to this many elements are shown in full.
pub const MAX_SHOWN_ATTR_LIST: usize = 16;
/// How many consumers a `used by:` line names.
const MAX_USED_BY: usize = 4;

/// What happened to an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Added,
    Removed,
    Changed,
}

impl Kind {
    fn sign(self) -> char {
        match self {
            Kind::Added => '+',
            Kind::Removed => '-',
            Kind::Changed => '~',
        }
    }
    fn word(self) -> &'static str {
        match self {
            Kind::Added => "added",
            Kind::Removed => "removed",
            Kind::Changed => "changed",
        }
    }
    fn of<T>(old: &Option<T>, new: &Option<T>) -> Kind {
        match (old, new) {
            (None, Some(_)) => Kind::Added,
            (Some(_), None) => Kind::Removed,
            _ => Kind::Changed,
        }
    }
}

/// A tensor as a diff shows it: never its raw contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TensorSummary {
    /// `f32`, `i64`, ... (see [`dtype_name`]).
    pub dtype: String,
    pub dims: Vec<i64>,
    /// First 8 hex digits of the sha256 of the little-endian element bytes (storage-independent).
    pub hash: String,
    /// The elements, rendered (`[40, 40]`, or `0.25` for a scalar), for small tensors only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub values: Option<String>,
    /// `raw`, `typed`, `external:<location>` or `sparse`.
    pub storage: String,
}

impl TensorSummary {
    /// `f32[64,3,3,3]`
    fn head(&self) -> String {
        let dims: Vec<String> = self.dims.iter().map(|d| d.to_string()).collect();
        format!("{}[{}]", self.dtype, dims.join(","))
    }
    /// `= [40, 40]` or `#a1b2c3d4`
    fn body(&self) -> String {
        match &self.values {
            Some(v) => format!("= {v}"),
            None => format!("#{}", self.hash),
        }
    }
    fn same_content(&self, o: &TensorSummary) -> bool {
        self.dtype == o.dtype
            && self.dims == o.dims
            && self.hash == o.hash
            && self.values == o.values
    }
}

impl std::fmt::Display for TensorSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.head(), self.body())
    }
}

/// `old -> new` for two tensors, compact when dtype and shape agree
/// (`i64[2] = [40, 40] -> [8, 10]`), with a storage note when the storage differs.
fn tensor_pair(a: &TensorSummary, b: &TensorSummary) -> String {
    let mut s = if a.same_content(b) {
        a.to_string()
    } else if a.dtype == b.dtype && a.dims == b.dims {
        match (&a.values, &b.values) {
            (Some(x), Some(y)) => format!("{} = {x} -> {y}", a.head()),
            _ => format!("{} {} -> {}", a.head(), a.body(), b.body()),
        }
    } else {
        format!("{a} -> {b}")
    };
    if a.storage != b.storage {
        let _ = write!(s, " (storage: {} -> {})", a.storage, b.storage);
    }
    s
}

/// A value shown in a diff: plain text (numbers, lists, names) or a tensor summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Shown {
    Text(String),
    Tensor(TensorSummary),
}

impl std::fmt::Display for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shown::Text(t) => f.write_str(t),
            Shown::Tensor(t) => write!(f, "{t}"),
        }
    }
}

fn shown_pair(a: &Shown, b: &Shown) -> String {
    match (a, b) {
        (Shown::Tensor(x), Shown::Tensor(y)) => tensor_pair(x, y),
        _ => format!("{a} -> {b}"),
    }
}

/// One changed field: a header field, a node's op/inputs/outputs, or an attribute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// What changed: `ir_version`, `opset ai.onnx`, `metadata "key"`, `inputs`, an attribute name, ...
    pub what: String,
    pub kind: Kind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<Shown>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<Shown>,
}

impl Change {
    fn new(what: impl Into<String>, old: Option<Shown>, new: Option<Shown>) -> Change {
        Change {
            what: what.into(),
            kind: Kind::of(&old, &new),
            old,
            new,
        }
    }
    fn text(what: impl Into<String>, old: Option<String>, new: Option<String>) -> Change {
        Change::new(what, old.map(Shown::Text), new.map(Shown::Text))
    }
    fn line(&self) -> String {
        let sign = self.kind.sign();
        match (&self.old, &self.new) {
            (Some(a), Some(b)) => format!("{sign} {}: {}", self.what, shown_pair(a, b)),
            (Some(a), None) => format!("{sign} {}: {a}", self.what),
            (None, Some(b)) => format!("{sign} {}: {b}", self.what),
            (None, None) => format!("{sign} {}", self.what),
        }
    }
}

/// Declared type of a graph input/output or value_info entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Signature {
    /// `f32`, ...; `None` when not a tensor or not declared.
    pub dtype: Option<String>,
    /// `None` when the shape is not declared.
    pub shape: Option<Vec<Dim>>,
}

impl Signature {
    fn of(v: &ValueInfoProto) -> Signature {
        Signature {
            dtype: vi_dtype(v).map(dtype_name),
            shape: vi_shape(v),
        }
    }
}

impl std::fmt::Display for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dt = self.dtype.as_deref().unwrap_or("?");
        match &self.shape {
            Some(s) => write!(f, "{dt}{}", fmt_shape(s)),
            None => write!(f, "{dt}[?]"),
        }
    }
}

/// A graph input, output or value_info entry that was added, removed or changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IoChange {
    pub name: String,
    pub kind: Kind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<Signature>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<Signature>,
}

/// A node as a diff shows it (for added and removed nodes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeSummary {
    pub name: String,
    pub op_type: String,
    pub domain: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    /// By attribute name.
    pub attributes: BTreeMap<String, Shown>,
}

/// A node that was added, removed or changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeChange {
    /// How the node was paired: its name, or `output:<first output>` when it has none.
    pub key: String,
    pub kind: Kind,
    /// Op type (in B; in A for a removed node), `domain::Op` outside the default domain.
    pub op: String,
    /// The whole node, for added and removed nodes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeSummary>,
    /// What changed, for changed nodes: `op`, `domain`, `inputs`, `outputs`, attributes by name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
    /// For changed `Constant` nodes: the nodes reading its output (`name (Op)`), for context.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub used_by: Vec<String>,
}

/// An initializer that was added, removed or changed (content, dtype, shape or storage).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TensorChange {
    pub name: String,
    pub kind: Kind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<TensorSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<TensorSummary>,
    /// For changed initializers: the nodes reading it (`name (Op)`), for context.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub used_by: Vec<String>,
}

/// Number of added / removed / changed items in one section.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub added: usize,
    pub removed: usize,
    pub changed: usize,
}

impl Counts {
    fn of(kinds: impl Iterator<Item = Kind>) -> Counts {
        let mut c = Counts::default();
        for k in kinds {
            match k {
                Kind::Added => c.added += 1,
                Kind::Removed => c.removed += 1,
                Kind::Changed => c.changed += 1,
            }
        }
        c
    }
    fn get(&self, k: Kind) -> usize {
        match k {
            Kind::Added => self.added,
            Kind::Removed => self.removed,
            Kind::Changed => self.changed,
        }
    }
}

/// Per-section counts (also the summary line of [`render`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub header: Counts,
    pub inputs: Counts,
    pub outputs: Counts,
    pub nodes: Counts,
    pub initializers: Counts,
    pub value_info: Counts,
}

/// Everything that differs between two models (A = old, B = new). Items in each list are in the
/// documented deterministic order (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GraphDiff {
    pub summary: Summary,
    pub header: Vec<Change>,
    pub inputs: Vec<IoChange>,
    pub outputs: Vec<IoChange>,
    pub nodes: Vec<NodeChange>,
    pub initializers: Vec<TensorChange>,
    pub value_info: Vec<IoChange>,
}

impl GraphDiff {
    /// True when the models do not differ in anything this diff looks at.
    pub fn is_empty(&self) -> bool {
        self.header.is_empty()
            && self.inputs.is_empty()
            && self.outputs.is_empty()
            && self.nodes.is_empty()
            && self.initializers.is_empty()
            && self.value_info.is_empty()
    }

    /// The node change with this key (node name), if any.
    pub fn node(&self, key: &str) -> Option<&NodeChange> {
        self.nodes.iter().find(|n| n.key == key)
    }

    fn summarize(&mut self) {
        self.summary = Summary {
            header: Counts::of(self.header.iter().map(|c| c.kind)),
            inputs: Counts::of(self.inputs.iter().map(|c| c.kind)),
            outputs: Counts::of(self.outputs.iter().map(|c| c.kind)),
            nodes: Counts::of(self.nodes.iter().map(|c| c.kind)),
            initializers: Counts::of(self.initializers.iter().map(|c| c.kind)),
            value_info: Counts::of(self.value_info.iter().map(|c| c.kind)),
        };
    }

    /// `inputs: 1 changed; nodes: 2 added, 20 changed` (sections and kinds with a nonzero count,
    /// in a fixed order), or `no differences`.
    pub fn summary_line(&self) -> String {
        let s = &self.summary;
        let sections: [(&Counts, &str); 6] = [
            (&s.header, "header"),
            (&s.inputs, "inputs"),
            (&s.outputs, "outputs"),
            (&s.nodes, "nodes"),
            (&s.initializers, "initializers"),
            (&s.value_info, "value_info"),
        ];
        let mut parts = Vec::new();
        for (c, title) in sections {
            let kinds: Vec<String> = [Kind::Added, Kind::Removed, Kind::Changed]
                .into_iter()
                .filter(|&k| c.get(k) > 0)
                .map(|k| format!("{} {}", c.get(k), k.word()))
                .collect();
            if !kinds.is_empty() {
                parts.push(format!("{title}: {}", kinds.join(", ")));
            }
        }
        if parts.is_empty() {
            "no differences".to_string()
        } else {
            parts.join("; ")
        }
    }
}

// ---------------------------------------------------------------------------------------------
// tensors

/// The tensor's elements as little-endian bytes, wherever they are stored.
fn content_bytes(m: &Model, t: &TensorProto) -> Result<Bytes> {
    if is_external(t) {
        return m.external_slice(t);
    }
    if let Some(r) = t.raw_data.as_ref().filter(|r| !r.is_empty()) {
        return Ok(r.clone());
    }
    fn le<T: Copy, const N: usize>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Bytes {
        Bytes::from(v.iter().flat_map(|&x| f(x)).collect::<Vec<u8>>())
    }
    let dt = DataType::try_from(t.data_type()).ok();
    Ok(match dt {
        Some(DataType::Float | DataType::Complex64) => le(&t.float_data, f32::to_le_bytes),
        Some(DataType::Double | DataType::Complex128) => le(&t.double_data, f64::to_le_bytes),
        Some(DataType::Int64) => le(&t.int64_data, i64::to_le_bytes),
        Some(DataType::Uint64) => le(&t.uint64_data, u64::to_le_bytes),
        Some(DataType::Uint32) => le(&t.uint64_data, |x| (x as u32).to_le_bytes()),
        Some(DataType::Int32) => le(&t.int32_data, i32::to_le_bytes),
        Some(DataType::Int16 | DataType::Uint16 | DataType::Float16 | DataType::Bfloat16) => {
            le(&t.int32_data, |x| (x as u16).to_le_bytes())
        }
        Some(DataType::String) => {
            let mut v = Vec::new();
            for s in &t.string_data {
                v.extend_from_slice(&(s.len() as u64).to_le_bytes());
                v.extend_from_slice(s);
            }
            Bytes::from(v)
        }
        // 1-byte types (int8, uint8, bool, float8 variants) and packed 4-bit types: one byte each.
        _ => le(&t.int32_data, |x| [x as u8]),
    })
}

fn storage_of(t: &TensorProto) -> String {
    if is_external(t) {
        format!("external:{}", external_entry(t, "location").unwrap_or(""))
    } else if t.raw_data.as_ref().is_some_and(|r| !r.is_empty()) {
        "raw".to_string()
    } else {
        "typed".to_string()
    }
}

fn short_hash(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize()[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn list<T>(v: &[T], f: impl Fn(&T) -> String) -> String {
    format!("[{}]", v.iter().map(f).collect::<Vec<_>>().join(", "))
}

/// Small tensors in full: `[40, 40]`, a scalar as `0.25`.
fn show_values(v: &Values, scalar: bool) -> Option<String> {
    let limit = if v.is_float() {
        MAX_SHOWN_FLOATS
    } else {
        MAX_SHOWN_INTS
    };
    if v.len() > limit {
        return None;
    }
    let s = match v {
        Values::F32(x) => list(x, |e| format!("{e:?}")),
        Values::F64(x) => list(x, |e| format!("{e:?}")),
        Values::I64(x) => list(x, |e| e.to_string()),
        Values::I32(x) => list(x, |e| e.to_string()),
        Values::U8(x) => list(x, |e| e.to_string()),
        Values::I8(x) => list(x, |e| e.to_string()),
        Values::Bool(x) => list(x, |e| e.to_string()),
    };
    if scalar && v.len() == 1 {
        Some(s[1..s.len() - 1].to_string())
    } else {
        Some(s)
    }
}

fn summarize_bytes(t: &TensorProto, dims: &[i64], bytes: &Bytes, storage: String) -> TensorSummary {
    let small = crate::tensor::numel(dims).is_some_and(|n| n <= MAX_SHOWN_INTS);
    let values = if small {
        // `bytes` are little-endian elements whatever the storage: decode them as raw data.
        values_with(t, Some(bytes))
            .ok()
            .and_then(|v| show_values(&v, dims.is_empty()))
    } else {
        None
    };
    TensorSummary {
        dtype: dtype_name(t.data_type()),
        dims: dims.to_vec(),
        hash: short_hash(&[bytes]),
        values,
        storage,
    }
}

/// A tensor's summary (reads external data through the model).
pub fn summarize_tensor(m: &Model, t: &TensorProto) -> Result<TensorSummary> {
    let bytes = content_bytes(m, t).with_context(|| format!("tensor `{}`", t.name()))?;
    Ok(summarize_bytes(t, &t.dims, &bytes, storage_of(t)))
}

/// A tensor reduced to what a diff compares: dtype, dims, content bytes, storage.
struct Content<'a> {
    t: &'a TensorProto,
    dims: &'a [i64],
    bytes: Bytes,
    storage: String,
}

impl<'a> Content<'a> {
    fn dense(m: &Model, t: &'a TensorProto) -> Result<Content<'a>> {
        let bytes = content_bytes(m, t).with_context(|| format!("tensor `{}`", t.name()))?;
        Ok(Content {
            t,
            dims: &t.dims,
            bytes,
            storage: storage_of(t),
        })
    }
    /// A sparse tensor: values then indices, hashed together.
    fn sparse(m: &Model, s: &'a SparseTensorProto, values: &'a TensorProto) -> Result<Content<'a>> {
        let mut v = content_bytes(m, values)?.to_vec();
        if let Some(i) = &s.indices {
            v.extend_from_slice(&content_bytes(m, i)?);
        }
        Ok(Content {
            t: values,
            dims: &s.dims,
            bytes: Bytes::from(v),
            storage: "sparse".to_string(),
        })
    }
    fn same_content(&self, o: &Content) -> bool {
        self.t.data_type() == o.t.data_type() && self.dims == o.dims && self.bytes == o.bytes
    }
    fn summary(&self) -> TensorSummary {
        if self.storage == "sparse" {
            // Never expand a sparse tensor into values: hash only.
            TensorSummary {
                dtype: dtype_name(self.t.data_type()),
                dims: self.dims.to_vec(),
                hash: short_hash(&[&self.bytes]),
                values: None,
                storage: self.storage.clone(),
            }
        } else {
            summarize_bytes(self.t, self.dims, &self.bytes, self.storage.clone())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// attributes

fn attr_type(a: &AttributeProto) -> AttributeType {
    if a.r#type.is_some() {
        return a.r#type();
    }
    // Old models may omit the type: infer it from the field that is set.
    if a.t.is_some() {
        AttributeType::Tensor
    } else if a.g.is_some() {
        AttributeType::Graph
    } else if a.f.is_some() {
        AttributeType::Float
    } else if a.i.is_some() {
        AttributeType::Int
    } else if a.s.is_some() {
        AttributeType::String
    } else if !a.floats.is_empty() {
        AttributeType::Floats
    } else if !a.ints.is_empty() {
        AttributeType::Ints
    } else if !a.strings.is_empty() {
        AttributeType::Strings
    } else if !a.tensors.is_empty() {
        AttributeType::Tensors
    } else if !a.graphs.is_empty() {
        AttributeType::Graphs
    } else {
        AttributeType::Undefined
    }
}

fn show_list<T>(
    v: &[T],
    kind: &str,
    bytes: impl Fn(&T) -> Vec<u8>,
    f: impl Fn(&T) -> String,
) -> String {
    if v.len() <= MAX_SHOWN_ATTR_LIST {
        list(v, f)
    } else {
        let all: Vec<u8> = v.iter().flat_map(bytes).collect();
        format!("{kind}[{}] #{}", v.len(), short_hash(&[&all]))
    }
}

fn show_graph(g: &GraphProto) -> String {
    format!(
        "graph `{}` ({} nodes) #{}",
        g.name(),
        g.node.len(),
        short_hash(&[&g.encode_to_vec()])
    )
}

/// How an attribute's value is shown.
fn show_attr(m: &Model, a: &AttributeProto) -> Result<Shown> {
    if let Some(r) = a.ref_attr_name.as_deref().filter(|r| !r.is_empty()) {
        return Ok(Shown::Text(format!("@{r}")));
    }
    let text = match attr_type(a) {
        AttributeType::Float => format!("{:?}", a.f()),
        AttributeType::Int => a.i().to_string(),
        AttributeType::String => format!("{:?}", String::from_utf8_lossy(a.s())),
        AttributeType::Tensor => match &a.t {
            Some(t) => return Ok(Shown::Tensor(summarize_tensor(m, t)?)),
            None => "(no tensor)".to_string(),
        },
        AttributeType::Graph => {
            a.g.as_ref()
                .map(show_graph)
                .unwrap_or_else(|| "(no graph)".to_string())
        }
        AttributeType::Floats => show_list(
            &a.floats,
            "floats",
            |x| x.to_le_bytes().to_vec(),
            |x| format!("{x:?}"),
        ),
        AttributeType::Ints => show_list(
            &a.ints,
            "ints",
            |x| x.to_le_bytes().to_vec(),
            |x| x.to_string(),
        ),
        AttributeType::Strings => show_list(
            &a.strings,
            "strings",
            |s| [&(s.len() as u64).to_le_bytes()[..], s].concat(),
            |s| format!("{:?}", String::from_utf8_lossy(s)),
        ),
        AttributeType::Tensors => {
            let v: Vec<String> = a
                .tensors
                .iter()
                .map(|t| summarize_tensor(m, t).map(|s| s.to_string()))
                .collect::<Result<_>>()?;
            format!("[{}]", v.join(", "))
        }
        AttributeType::Graphs => format!(
            "[{}]",
            a.graphs
                .iter()
                .map(show_graph)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        AttributeType::SparseTensor => match &a.sparse_tensor {
            Some(s) => format!("sparse tensor #{}", short_hash(&[&s.encode_to_vec()])),
            None => "(no sparse tensor)".to_string(),
        },
        AttributeType::SparseTensors => {
            format!(
                "{} sparse tensors #{}",
                a.sparse_tensors.len(),
                short_hash(&[&a.encode_to_vec()])
            )
        }
        AttributeType::TypeProto | AttributeType::TypeProtos => {
            format!("type #{}", short_hash(&[&a.encode_to_vec()]))
        }
        AttributeType::Undefined => "(empty)".to_string(),
    };
    Ok(Shown::Text(text))
}

/// Attributes are equal when every field is; tensors by content (not storage), floats bitwise.
/// Returns (equal values, storage differs).
fn attr_eq(ma: &Model, a: &AttributeProto, mb: &Model, b: &AttributeProto) -> Result<(bool, bool)> {
    let strip = |x: &AttributeProto| AttributeProto {
        t: None,
        tensors: Vec::new(),
        f: None,
        floats: Vec::new(),
        doc_string: None,
        r#type: Some(attr_type(x) as i32),
        ..x.clone()
    };
    if strip(a) != strip(b)
        || a.f.map(f32::to_bits) != b.f.map(f32::to_bits)
        || a.floats.len() != b.floats.len()
        || a.floats
            .iter()
            .zip(&b.floats)
            .any(|(x, y)| x.to_bits() != y.to_bits())
        || a.t.is_some() != b.t.is_some()
        || a.tensors.len() != b.tensors.len()
    {
        return Ok((false, false));
    }
    let mut storage_differs = false;
    for (x, y) in
        a.t.iter()
            .chain(&a.tensors)
            .zip(b.t.iter().chain(&b.tensors))
    {
        let (cx, cy) = (Content::dense(ma, x)?, Content::dense(mb, y)?);
        if !cx.same_content(&cy) {
            return Ok((false, false));
        }
        storage_differs |= cx.storage != cy.storage;
    }
    Ok((true, storage_differs))
}

// ---------------------------------------------------------------------------------------------
// nodes

fn op_label(n: &NodeProto) -> String {
    if n.domain().is_empty() || n.domain() == "ai.onnx" {
        n.op_type().to_string()
    } else {
        format!("{}::{}", n.domain(), n.op_type())
    }
}

/// Pairing keys in graph order: the node name, else `output:<first output>`, else `#<index>`;
/// repeated keys get `#2`, `#3`, ...
fn node_keys(g: &GraphProto) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    g.node
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let base = if !n.name().is_empty() {
                n.name().to_string()
            } else if let Some(o) = n.output.iter().find(|o| !o.is_empty()) {
                format!("output:{o}")
            } else {
                format!("#{i}")
            };
            let c = seen.entry(base.clone()).or_insert(0);
            *c += 1;
            if *c == 1 {
                base
            } else {
                format!("{base}#{c}")
            }
        })
        .collect()
}

fn node_summary(m: &Model, n: &NodeProto) -> Result<NodeSummary> {
    let mut attributes = BTreeMap::new();
    for a in &n.attribute {
        attributes.insert(a.name().to_string(), show_attr(m, a)?);
    }
    Ok(NodeSummary {
        name: n.name().to_string(),
        op_type: n.op_type().to_string(),
        domain: n.domain().to_string(),
        inputs: n.input.clone(),
        outputs: n.output.clone(),
        attributes,
    })
}

fn names(v: &[String]) -> String {
    list(v, |s| {
        if s.is_empty() {
            "\"\"".to_string()
        } else {
            s.clone()
        }
    })
}

fn norm_domain(d: &str) -> &str {
    if d.is_empty() {
        "ai.onnx"
    } else {
        d
    }
}

fn node_changes(ma: &Model, a: &NodeProto, mb: &Model, b: &NodeProto) -> Result<Vec<Change>> {
    let mut out = Vec::new();
    if a.op_type() != b.op_type() {
        out.push(Change::text(
            "op",
            Some(a.op_type().into()),
            Some(b.op_type().into()),
        ));
    }
    if norm_domain(a.domain()) != norm_domain(b.domain()) {
        out.push(Change::text(
            "domain",
            Some(format!("{:?}", a.domain())),
            Some(format!("{:?}", b.domain())),
        ));
    }
    if a.input != b.input {
        out.push(Change::text(
            "inputs",
            Some(names(&a.input)),
            Some(names(&b.input)),
        ));
    }
    if a.output != b.output {
        out.push(Change::text(
            "outputs",
            Some(names(&a.output)),
            Some(names(&b.output)),
        ));
    }
    let aa: BTreeMap<&str, &AttributeProto> = a.attribute.iter().map(|x| (x.name(), x)).collect();
    let ba: BTreeMap<&str, &AttributeProto> = b.attribute.iter().map(|x| (x.name(), x)).collect();
    let all: BTreeSet<&str> = aa.keys().chain(ba.keys()).copied().collect();
    for k in all {
        match (aa.get(k), ba.get(k)) {
            (Some(x), Some(y)) => {
                let (eq, storage) = attr_eq(ma, x, mb, y)?;
                if !eq || storage {
                    out.push(Change::new(
                        k,
                        Some(show_attr(ma, x)?),
                        Some(show_attr(mb, y)?),
                    ));
                }
            }
            (Some(x), None) => out.push(Change::new(k, Some(show_attr(ma, x)?), None)),
            (None, Some(y)) => out.push(Change::new(k, None, Some(show_attr(mb, y)?))),
            (None, None) => {}
        }
    }
    Ok(out)
}

/// Readers of each tensor name: `name (Op)` in graph order.
fn consumers(g: &GraphProto) -> HashMap<&str, Vec<usize>> {
    let mut c: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, n) in g.node.iter().enumerate() {
        for x in n.input.iter().filter(|x| !x.is_empty()) {
            let v = c.entry(x.as_str()).or_default();
            if v.last() != Some(&i) {
                v.push(i);
            }
        }
    }
    c
}

fn used_by(g: &GraphProto, cons: &HashMap<&str, Vec<usize>>, names: &[String]) -> Vec<String> {
    let mut idx: Vec<usize> = names
        .iter()
        .flat_map(|n| cons.get(n.as_str()).into_iter().flatten().copied())
        .collect();
    idx.sort_unstable();
    idx.dedup();
    let mut v: Vec<String> = idx
        .iter()
        .take(MAX_USED_BY)
        .map(|&i| format!("{} ({})", g.node[i].name(), op_label(&g.node[i])))
        .collect();
    if idx.len() > MAX_USED_BY {
        v.push(format!("and {} more", idx.len() - MAX_USED_BY));
    }
    v
}

fn diff_nodes(ma: &Model, mb: &Model) -> Result<Vec<NodeChange>> {
    let (ga, gb) = (ma.graph(), mb.graph());
    let (ka, kb) = (node_keys(ga), node_keys(gb));
    let ia: HashMap<&str, usize> = ka
        .iter()
        .enumerate()
        .map(|(i, k)| (k.as_str(), i))
        .collect();
    let ib: HashMap<&str, usize> = kb
        .iter()
        .enumerate()
        .map(|(i, k)| (k.as_str(), i))
        .collect();
    let cons_b = consumers(gb);
    // (sort key, change): B nodes at (pos_b, 0, 0); a removed node after the B position of the
    // closest preceding A node that is still in B.
    let mut items: Vec<((i64, u8, usize), NodeChange)> = Vec::new();
    for (j, b) in gb.node.iter().enumerate() {
        let key = &kb[j];
        let ch = match ia.get(key.as_str()) {
            None => NodeChange {
                key: key.clone(),
                kind: Kind::Added,
                op: op_label(b),
                node: Some(node_summary(mb, b)?),
                changes: Vec::new(),
                used_by: Vec::new(),
            },
            Some(&i) => {
                let a = &ga.node[i];
                let changes =
                    node_changes(ma, a, mb, b).with_context(|| format!("node `{key}`"))?;
                if changes.is_empty() {
                    continue;
                }
                let used = if b.op_type() == "Constant" {
                    used_by(gb, &cons_b, &b.output)
                } else {
                    Vec::new()
                };
                NodeChange {
                    key: key.clone(),
                    kind: Kind::Changed,
                    op: op_label(b),
                    node: None,
                    changes,
                    used_by: used,
                }
            }
        };
        items.push(((j as i64, 0, 0), ch));
    }
    let mut anchor: i64 = -1;
    for (i, a) in ga.node.iter().enumerate() {
        let key = &ka[i];
        match ib.get(key.as_str()) {
            Some(&j) => anchor = j as i64,
            None => items.push((
                (anchor, 1, i),
                NodeChange {
                    key: key.clone(),
                    kind: Kind::Removed,
                    op: op_label(a),
                    node: Some(node_summary(ma, a)?),
                    changes: Vec::new(),
                    used_by: Vec::new(),
                },
            )),
        }
    }
    items.sort_by_key(|(k, _)| *k);
    Ok(items.into_iter().map(|(_, c)| c).collect())
}

// ---------------------------------------------------------------------------------------------
// initializers

fn tensor_map<'a>(m: &Model, g: &'a GraphProto) -> Result<BTreeMap<&'a str, Content<'a>>> {
    let mut map = BTreeMap::new();
    for t in &g.initializer {
        if !map.contains_key(t.name()) {
            map.insert(t.name(), Content::dense(m, t)?);
        }
    }
    for s in &g.sparse_initializer {
        if let Some(v) = &s.values {
            if !map.contains_key(v.name()) {
                map.insert(v.name(), Content::sparse(m, s, v)?);
            }
        }
    }
    Ok(map)
}

fn diff_initializers(ma: &Model, mb: &Model) -> Result<Vec<TensorChange>> {
    let (ta, tb) = (tensor_map(ma, ma.graph())?, tensor_map(mb, mb.graph())?);
    let cons_b = consumers(mb.graph());
    let all: BTreeSet<&str> = ta.keys().chain(tb.keys()).copied().collect();
    let mut out = Vec::new();
    for name in all {
        let (a, b) = (ta.get(name), tb.get(name));
        if let (Some(x), Some(y)) = (a, b) {
            if x.same_content(y) && x.storage == y.storage {
                continue;
            }
        }
        let (old, new) = (a.map(Content::summary), b.map(Content::summary));
        let used = if a.is_some() && b.is_some() {
            used_by(mb.graph(), &cons_b, &[name.to_string()])
        } else {
            Vec::new()
        };
        out.push(TensorChange {
            name: name.to_string(),
            kind: Kind::of(&old, &new),
            old,
            new,
            used_by: used,
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// inputs, outputs, value_info, header

/// By name; in B's order then removed ones in A's order (`ordered`), or by name.
fn diff_vis(a: &[ValueInfoProto], b: &[ValueInfoProto], ordered: bool) -> Vec<IoChange> {
    let sa: HashMap<&str, Signature> = a
        .iter()
        .rev()
        .map(|v| (v.name(), Signature::of(v)))
        .collect();
    let sb: HashMap<&str, Signature> = b
        .iter()
        .rev()
        .map(|v| (v.name(), Signature::of(v)))
        .collect();
    let mut order: Vec<&str> = Vec::new();
    let mut seen = BTreeSet::new();
    for v in b.iter().chain(a) {
        if seen.insert(v.name()) {
            order.push(v.name());
        }
    }
    if !ordered {
        order.sort_unstable();
    }
    let mut out = Vec::new();
    for name in order {
        let (x, y) = (sa.get(name), sb.get(name));
        if x == y {
            continue;
        }
        out.push(IoChange {
            name: name.to_string(),
            kind: Kind::of(&x, &y),
            old: x.cloned(),
            new: y.cloned(),
        });
    }
    out
}

/// A change of relative order among the names both lists have.
fn order_change(what: &str, a: &[ValueInfoProto], b: &[ValueInfoProto]) -> Option<Change> {
    let na: BTreeSet<&str> = a.iter().map(|v| v.name()).collect();
    let nb: BTreeSet<&str> = b.iter().map(|v| v.name()).collect();
    let ca: Vec<String> = a
        .iter()
        .map(|v| v.name())
        .filter(|n| nb.contains(n))
        .map(String::from)
        .collect();
    let cb: Vec<String> = b
        .iter()
        .map(|v| v.name())
        .filter(|n| na.contains(n))
        .map(String::from)
        .collect();
    (ca != cb).then(|| Change::text(what, Some(names(&ca)), Some(names(&cb))))
}

fn diff_header(ma: &Model, mb: &Model) -> Vec<Change> {
    let (a, b) = (&ma.proto, &mb.proto);
    let mut out = Vec::new();
    let mut field = |what: &str, x: Option<String>, y: Option<String>| {
        if x != y {
            out.push(Change::text(what, x, y));
        }
    };
    field(
        "ir_version",
        a.ir_version.map(|v| v.to_string()),
        b.ir_version.map(|v| v.to_string()),
    );
    let opsets = |m: &crate::onnx::ModelProto| -> BTreeMap<String, i64> {
        m.opset_import
            .iter()
            .map(|o| (norm_domain(o.domain()).to_string(), o.version()))
            .collect()
    };
    let (oa, ob) = (opsets(a), opsets(b));
    for d in oa.keys().chain(ob.keys()).collect::<BTreeSet<_>>() {
        field(
            &format!("opset {d}"),
            oa.get(d).map(|v| v.to_string()),
            ob.get(d).map(|v| v.to_string()),
        );
    }
    let s = |x: &Option<String>| x.clone().filter(|v| !v.is_empty());
    field("producer_name", s(&a.producer_name), s(&b.producer_name));
    field(
        "producer_version",
        s(&a.producer_version),
        s(&b.producer_version),
    );
    field("domain", s(&a.domain), s(&b.domain));
    field(
        "model_version",
        a.model_version.map(|v| v.to_string()),
        b.model_version.map(|v| v.to_string()),
    );
    let gname = |m: &Model| Some(m.graph().name().to_string()).filter(|v| !v.is_empty());
    field("graph name", gname(ma), gname(mb));
    let meta = |m: &crate::onnx::ModelProto| -> BTreeMap<String, String> {
        m.metadata_props
            .iter()
            .map(|p| (p.key().to_string(), p.value().to_string()))
            .collect()
    };
    let (pa, pb) = (meta(a), meta(b));
    for k in pa.keys().chain(pb.keys()).collect::<BTreeSet<_>>() {
        field(
            &format!("metadata {k:?}"),
            pa.get(k).map(|v| format!("{v:?}")),
            pb.get(k).map(|v| format!("{v:?}")),
        );
    }
    let funcs = |m: &crate::onnx::ModelProto| -> BTreeMap<String, String> {
        m.functions
            .iter()
            .map(|f| {
                let key = format!(
                    "{}::{}{}",
                    norm_domain(f.domain()),
                    f.name(),
                    if f.overload().is_empty() {
                        String::new()
                    } else {
                        format!(":{}", f.overload())
                    }
                );
                (
                    key,
                    format!(
                        "{} nodes #{}",
                        f.node.len(),
                        short_hash(&[&f.encode_to_vec()])
                    ),
                )
            })
            .collect()
    };
    let (fa, fb) = (funcs(a), funcs(b));
    for k in fa.keys().chain(fb.keys()).collect::<BTreeSet<_>>() {
        field(
            &format!("function {k}"),
            fa.get(k).cloned(),
            fb.get(k).cloned(),
        );
    }
    let (ga, gb) = (ma.graph(), mb.graph());
    out.extend(order_change("input order", &ga.input, &gb.input));
    out.extend(order_change("output order", &ga.output, &gb.output));
    out
}

/// Everything that differs from `a` (old) to `b` (new).
pub fn diff(a: &Model, b: &Model) -> Result<GraphDiff> {
    let (ga, gb) = (a.graph(), b.graph());
    let mut d = GraphDiff {
        summary: Summary::default(),
        header: diff_header(a, b),
        inputs: diff_vis(&ga.input, &gb.input, true),
        outputs: diff_vis(&ga.output, &gb.output, true),
        nodes: diff_nodes(a, b)?,
        initializers: diff_initializers(a, b)?,
        value_info: diff_vis(&ga.value_info, &gb.value_info, false),
    };
    d.summarize();
    Ok(d)
}

// ---------------------------------------------------------------------------------------------
// rendering

fn io_line(c: &IoChange) -> String {
    let sign = c.kind.sign();
    match (&c.old, &c.new) {
        (Some(a), Some(b)) => format!("  {sign} {}: {a} -> {b}", c.name),
        (Some(a), None) => format!("  {sign} {}: {a}", c.name),
        (None, Some(b)) => format!("  {sign} {}: {b}", c.name),
        (None, None) => format!("  {sign} {}", c.name),
    }
}

fn used_by_line(out: &mut String, v: &[String]) {
    if !v.is_empty() {
        let _ = writeln!(out, "      used by: {}", v.join(", "));
    }
}

/// Stable, human-readable text: a summary line, then one section per non-empty kind of change
/// (`header`, `inputs`, `outputs`, `nodes`, `initializers`, `value_info`), with `+` added,
/// `-` removed and `~` changed items. Ends with a newline.
pub fn render(d: &GraphDiff) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", d.summary_line());
    if !d.header.is_empty() {
        out.push_str("\nheader\n");
        for c in &d.header {
            let _ = writeln!(out, "  {}", c.line());
        }
    }
    for (title, items) in [("inputs", &d.inputs), ("outputs", &d.outputs)] {
        if !items.is_empty() {
            let _ = writeln!(out, "\n{title}");
            for c in items {
                let _ = writeln!(out, "{}", io_line(c));
            }
        }
    }
    if !d.nodes.is_empty() {
        out.push_str("\nnodes\n");
        for n in &d.nodes {
            let sign = n.kind.sign();
            match &n.node {
                Some(s) => {
                    let _ = writeln!(
                        out,
                        "  {sign} {} ({}): {} -> {}",
                        n.key,
                        n.op,
                        names(&s.inputs),
                        names(&s.outputs)
                    );
                    for (k, v) in &s.attributes {
                        let _ = writeln!(out, "      {k}: {v}");
                    }
                }
                None => {
                    let _ = writeln!(out, "  {sign} {} ({})", n.key, n.op);
                    for c in &n.changes {
                        let _ = writeln!(out, "      {}", c.line());
                    }
                }
            }
            used_by_line(&mut out, &n.used_by);
        }
    }
    if !d.initializers.is_empty() {
        out.push_str("\ninitializers\n");
        for t in &d.initializers {
            let sign = t.kind.sign();
            let body = match (&t.old, &t.new) {
                (Some(a), Some(b)) => tensor_pair(a, b),
                (Some(a), None) => a.to_string(),
                (None, Some(b)) => b.to_string(),
                (None, None) => String::new(),
            };
            let _ = writeln!(out, "  {sign} {}: {body}", t.name);
            used_by_line(&mut out, &t.used_by);
        }
    }
    if !d.value_info.is_empty() {
        out.push_str("\nvalue_info\n");
        for c in &d.value_info {
            let _ = writeln!(out, "{}", io_line(c));
        }
    }
    out
}

impl std::fmt::Display for GraphDiff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&render(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{make_attr_i, make_attr_ints, make_attr_t, make_node};
    use crate::onnx::{ModelProto, OperatorSetIdProto, StringStringEntryProto};
    use crate::shape::make_vi;
    use crate::tensor::{tensor_f32, tensor_i64};

    fn model(g: GraphProto) -> Model {
        let proto = ModelProto {
            ir_version: Some(8),
            opset_import: vec![OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(13),
            }],
            producer_name: Some("test".into()),
            graph: Some(g),
            ..Default::default()
        };
        Model::from_proto(proto, "test")
    }

    /// x -> Conv(w) -> Reshape(shape const) -> y
    fn graph() -> GraphProto {
        GraphProto {
            name: Some("g".into()),
            node: vec![
                make_node(
                    "Conv",
                    "conv",
                    &["x", "w"],
                    &["c"],
                    vec![
                        make_attr_ints("kernel_shape", &[3, 3]),
                        make_attr_i("group", 1),
                    ],
                ),
                make_node(
                    "Constant",
                    "shape",
                    &[],
                    &["s"],
                    vec![make_attr_t("value", tensor_i64("", &[2], &[1, -1]))],
                ),
                make_node("Reshape", "reshape", &["c", "s"], &["y"], vec![]),
            ],
            input: vec![make_vi(
                "x",
                1,
                &[Dim::Known(1), Dim::Known(3), Dim::Known(8), Dim::Known(8)],
            )],
            output: vec![make_vi("y", 1, &[Dim::Sym("batch".into()), Dim::Known(-1)])],
            initializer: vec![tensor_f32("w", &[4, 3, 3, 3], &vec![0.5; 108])],
            ..Default::default()
        }
    }

    #[test]
    fn identical_models_have_an_empty_diff() {
        let d = diff(&model(graph()), &model(graph())).unwrap();
        assert!(d.is_empty(), "{}", render(&d));
        assert_eq!(render(&d), "no differences\n");
    }

    #[test]
    fn node_order_alone_is_not_a_change() {
        let mut g = graph();
        g.node.swap(0, 1);
        assert!(diff(&model(graph()), &model(g)).unwrap().is_empty());
    }

    #[test]
    fn changed_attribute() {
        let mut g = graph();
        g.node[0].attribute[0] = make_attr_ints("kernel_shape", &[3, 1]);
        g.node[0].attribute.pop();
        g.node[0].attribute.push(make_attr_ints("strides", &[2, 2]));
        let d = diff(&model(graph()), &model(g)).unwrap();
        assert_eq!(
            d.summary.nodes,
            Counts {
                added: 0,
                removed: 0,
                changed: 1
            }
        );
        insta::assert_snapshot!(render(&d), @r"
        nodes: 1 changed

        nodes
          ~ conv (Conv)
              - group: 1
              ~ kernel_shape: [3, 3] -> [3, 1]
              + strides: [2, 2]
        ");
    }

    #[test]
    fn constant_value_change_shows_old_and_new_values_and_readers() {
        let mut g = graph();
        g.node[1].attribute[0] = make_attr_t("value", tensor_i64("", &[2], &[1, 108]));
        let d = diff(&model(graph()), &model(g)).unwrap();
        insta::assert_snapshot!(render(&d), @r"
        nodes: 1 changed

        nodes
          ~ shape (Constant)
              ~ value: i64[2] = [1, -1] -> [1, 108]
              used by: reshape (Reshape)
        ");
        let j = serde_json::to_value(&d).unwrap();
        assert_eq!(j["nodes"][0]["changes"][0]["new"]["values"], "[1, 108]");
        assert_eq!(j["summary"]["nodes"]["changed"], 1);
    }

    #[test]
    fn same_values_in_different_storage_compare_equal_in_content() {
        let mut g = graph();
        // Typed fields instead of raw_data, for the initializer and the Constant value.
        let w = &mut g.initializer[0];
        w.raw_data = None;
        w.float_data = vec![0.5; 108];
        let t = g.node[1].attribute[0].t.as_mut().unwrap();
        t.raw_data = None;
        t.int64_data = vec![1, -1];
        let d = diff(&model(graph()), &model(g)).unwrap();
        assert_eq!(d.summary.nodes.changed, 1);
        assert_eq!(d.summary.initializers.changed, 1);
        let w = &d.initializers[0];
        assert_eq!(w.old.as_ref().unwrap().hash, w.new.as_ref().unwrap().hash);
        insta::assert_snapshot!(render(&d), @r"
        nodes: 1 changed; initializers: 1 changed

        nodes
          ~ shape (Constant)
              ~ value: i64[2] = [1, -1] (storage: raw -> typed)
              used by: reshape (Reshape)

        initializers
          ~ w: f32[4,3,3,3] #fcd715da (storage: raw -> typed)
              used by: conv (Conv)
        ");
    }

    #[test]
    fn external_storage_compares_equal_in_content() {
        use crate::onnx::tensor_proto::DataLocation;
        let a = model(graph());
        let mut b = model(graph());
        let w = &mut b.graph_mut().initializer[0];
        let raw = w.raw_data.take().unwrap();
        w.data_location = Some(DataLocation::External as i32);
        w.external_data = vec![
            StringStringEntryProto {
                key: Some("location".into()),
                value: Some("w.bin".into()),
            },
            StringStringEntryProto {
                key: Some("offset".into()),
                value: Some("4".into()),
            },
        ];
        b.external
            .insert("w.bin".into(), Bytes::from([&[0u8; 4][..], &raw].concat()));
        let d = diff(&a, &b).unwrap();
        assert_eq!(d.initializers.len(), 1);
        assert!(
            render(&d).contains("(storage: raw -> external:w.bin)"),
            "{}",
            render(&d)
        );
        assert!(
            !render(&d).contains(" -> #"),
            "content must compare equal: {}",
            render(&d)
        );
        // A real content change through external data is seen.
        let mut data = b.external["w.bin"].to_vec();
        data[4..8].copy_from_slice(&1.5f32.to_le_bytes());
        b.external.insert("w.bin".into(), Bytes::from(data));
        let r = render(&diff(&a, &b).unwrap());
        assert!(r.contains("f32[4,3,3,3] #fcd715da -> #"), "{r}");
    }

    #[test]
    fn added_removed_and_renamed_nodes_header_and_io() {
        let mut g = graph();
        g.node[2].input[1] = "s2".into();
        g.node[1] = make_node(
            "Constant",
            "shape2",
            &[],
            &["s2"],
            vec![make_attr_t("value", tensor_f32("", &[], &[0.25]))],
        );
        g.node.push(make_node("Relu", "", &["y"], &["z"], vec![]));
        g.output[0] = make_vi("z", 1, &[Dim::Sym("batch".into()), Dim::Known(256)]);
        let mut b = model(g);
        b.proto.opset_import[0].version = Some(17);
        b.proto.metadata_props.push(StringStringEntryProto {
            key: Some("author".into()),
            value: Some("me".into()),
        });
        let d = diff(&model(graph()), &b).unwrap();
        insta::assert_snapshot!(render(&d), @r#"
        header: 1 added, 1 changed; outputs: 1 added, 1 removed; nodes: 2 added, 1 removed, 1 changed

        header
          ~ opset ai.onnx: 13 -> 17
          + metadata "author": "me"

        outputs
          + z: f32[batch,256]
          - y: f32[batch,-1]

        nodes
          - shape (Constant): [] -> [s]
              value: i64[2] = [1, -1]
          + shape2 (Constant): [] -> [s2]
              value: f32[] = 0.25
          ~ reshape (Reshape)
              ~ inputs: [c, s] -> [c, s2]
          + output:z (Relu): [y] -> [z]
        "#);
    }

    #[test]
    fn large_tensors_and_lists_are_hashed_never_printed() {
        let mut g = graph();
        g.node[1].attribute[0] = make_attr_t("value", tensor_i64("", &[17], &[7; 17]));
        g.node[0].attribute[0] = make_attr_ints("kernel_shape", &[1; 17]);
        let r = render(&diff(&model(graph()), &model(g)).unwrap());
        assert!(r.contains("i64[2] = [1, -1] -> i64[17] #"), "{r}");
        assert!(r.contains("kernel_shape: [3, 3] -> ints[17] #"), "{r}");
        assert!(!r.contains("7, 7"), "{r}");
    }
}
