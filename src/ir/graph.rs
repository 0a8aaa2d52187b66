//! The graph editing layer, in the spirit of onnx-graphsurgeon: tensors by name, producer and
//! consumer maps, constants whether initializers or `Constant` nodes, typed attribute getters,
//! unique names, node insertion/removal, dead-node cleanup and topological sort.
//!
//! Everything works on the prost `GraphProto` in place (nodes by index, never cloned wholesale), so
//! fields the layer does not know about are kept as they are.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use anyhow::{bail, Result};

use crate::onnx::{
    attribute_proto::AttributeType, AttributeProto, GraphProto, NodeProto, TensorProto,
};

/// `node `name` (Op)` — how messages name a node.
pub fn describe(n: &NodeProto) -> String {
    let name = if n.name().is_empty() {
        n.output.first().map(String::as_str).unwrap_or("?")
    } else {
        n.name()
    };
    format!("node `{}` ({})", name, n.op_type())
}

/// Names a node's subgraphs read from the enclosing scope (they count as inputs of the node).
pub fn subgraph_outer_inputs(n: &NodeProto) -> Vec<String> {
    let mut out = BTreeSet::new();
    for a in &n.attribute {
        for g in a.g.iter().chain(a.graphs.iter()) {
            collect_outer(g, &mut out);
        }
    }
    out.into_iter().collect()
}

fn collect_outer(g: &GraphProto, out: &mut BTreeSet<String>) {
    let mut local: HashSet<&str> = HashSet::new();
    for i in &g.input {
        local.insert(i.name());
    }
    for t in &g.initializer {
        local.insert(t.name());
    }
    for n in &g.node {
        for i in n.input.iter().filter(|i| !i.is_empty()) {
            if !local.contains(i.as_str()) {
                out.insert(i.clone());
            }
        }
        for sub in subgraph_outer_inputs(n) {
            if !local.contains(sub.as_str()) {
                out.insert(sub);
            }
        }
        for o in &n.output {
            local.insert(o);
        }
    }
    for o in &g.output {
        if !local.contains(o.name()) {
            out.insert(o.name().to_string());
        }
    }
}

/// All names a node reads: its inputs plus outer-scope names used by its subgraphs.
pub fn node_reads(n: &NodeProto) -> Vec<String> {
    let mut v: Vec<String> = n.input.iter().filter(|i| !i.is_empty()).cloned().collect();
    v.extend(subgraph_outer_inputs(n));
    v
}

/// Producer / consumer maps of a graph. Rebuild after edits.
#[derive(Debug, Default)]
pub struct GraphIndex {
    /// tensor name → index of the node producing it
    pub producer: HashMap<String, usize>,
    /// tensor name → indices of nodes reading it (in node order, no duplicates)
    pub consumers: HashMap<String, Vec<usize>>,
    /// initializer name → index in `graph.initializer`
    pub initializer: HashMap<String, usize>,
    /// graph input names
    pub inputs: HashSet<String>,
    /// graph output names
    pub outputs: HashSet<String>,
}

impl GraphIndex {
    pub fn build(g: &GraphProto) -> GraphIndex {
        let mut ix = GraphIndex::default();
        for (i, n) in g.node.iter().enumerate() {
            for o in n.output.iter().filter(|o| !o.is_empty()) {
                ix.producer.insert(o.clone(), i);
            }
            for r in node_reads(n) {
                let c = ix.consumers.entry(r).or_default();
                if c.last() != Some(&i) {
                    c.push(i);
                }
            }
        }
        for (i, t) in g.initializer.iter().enumerate() {
            ix.initializer.insert(t.name().to_string(), i);
        }
        ix.inputs = g.input.iter().map(|v| v.name().to_string()).collect();
        ix.outputs = g.output.iter().map(|v| v.name().to_string()).collect();
        ix
    }

    /// Consumers of a tensor (empty if none).
    pub fn consumers_of(&self, name: &str) -> &[usize] {
        self.consumers.get(name).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// Where a constant tensor comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConstSource {
    /// `graph.initializer[i]`
    Initializer(usize),
    /// the `value` attribute of `Constant` node `graph.node[i]`
    ConstantNode(usize),
}

/// A constant tensor found by name: an initializer that is not also a graph input, or the output
/// of a `Constant` node (with a `value` tensor; `value_float(s)`/`value_int(s)` are converted).
pub fn constant(g: &GraphProto, ix: &GraphIndex, name: &str) -> Option<(ConstSource, TensorProto)> {
    if let Some(&i) = ix.initializer.get(name) {
        if ix.inputs.contains(name) {
            return None; // overridable default, not a constant
        }
        return Some((ConstSource::Initializer(i), g.initializer[i].clone()));
    }
    let &p = ix.producer.get(name)?;
    let n = &g.node[p];
    if n.op_type() != "Constant" || !n.domain().is_empty() {
        return None;
    }
    constant_node_value(n).map(|t| (ConstSource::ConstantNode(p), t))
}

/// Cheap variant of [`constant`] that does not clone: the tensor proto by reference.
pub fn constant_ref<'a>(g: &'a GraphProto, ix: &GraphIndex, name: &str) -> Option<&'a TensorProto> {
    if let Some(&i) = ix.initializer.get(name) {
        if ix.inputs.contains(name) {
            return None;
        }
        return Some(&g.initializer[i]);
    }
    let &p = ix.producer.get(name)?;
    let n = &g.node[p];
    if n.op_type() != "Constant" {
        return None;
    }
    n.attribute
        .iter()
        .find(|a| a.name() == "value")
        .and_then(|a| a.t.as_ref())
}

/// The tensor a `Constant` node produces.
pub fn constant_node_value(n: &NodeProto) -> Option<TensorProto> {
    use crate::tensor::{tensor_f32, tensor_i64};
    let a = n.attribute.first()?;
    let out = n.output.first().map(String::as_str).unwrap_or("");
    match a.name() {
        "value" => a.t.clone(),
        "value_float" => Some(tensor_f32(out, &[], &[a.f()])),
        "value_floats" => Some(tensor_f32(out, &[a.floats.len() as i64], &a.floats)),
        "value_int" => Some(tensor_i64(out, &[], &[a.i()])),
        "value_ints" => Some(tensor_i64(out, &[a.ints.len() as i64], &a.ints)),
        _ => None,
    }
}

// ---- typed attribute getters ----

/// The attribute called `name`.
pub fn attr<'a>(n: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    n.attribute.iter().find(|a| a.name() == name)
}

/// An INT attribute.
pub fn attr_i(n: &NodeProto, name: &str) -> Option<i64> {
    attr(n, name).and_then(|a| a.i)
}

/// A FLOAT attribute.
pub fn attr_f(n: &NodeProto, name: &str) -> Option<f32> {
    attr(n, name).and_then(|a| a.f)
}

/// An INTS attribute.
pub fn attr_ints<'a>(n: &'a NodeProto, name: &str) -> Option<&'a [i64]> {
    attr(n, name)
        .filter(|a| a.r#type() == AttributeType::Ints || !a.ints.is_empty())
        .map(|a| a.ints.as_slice())
}

/// A STRING attribute as UTF-8 (lossy).
pub fn attr_s(n: &NodeProto, name: &str) -> Option<String> {
    attr(n, name)
        .and_then(|a| a.s.as_ref())
        .map(|s| String::from_utf8_lossy(s).into_owned())
}

/// A required INTS attribute, with an error naming node and attribute.
pub fn req_ints<'a>(n: &'a NodeProto, name: &str) -> Result<&'a [i64]> {
    match attr_ints(n, name) {
        Some(v) => Ok(v),
        None => bail!(
            "{}: missing required attribute `{name}` (ints)",
            describe(n)
        ),
    }
}

/// Set (or replace) an INTS attribute.
pub fn set_attr_ints(n: &mut NodeProto, name: &str, v: &[i64]) {
    if let Some(a) = n.attribute.iter_mut().find(|a| a.name() == name) {
        a.ints = v.to_vec();
        a.r#type = Some(AttributeType::Ints as i32);
    } else {
        n.attribute.push(AttributeProto {
            name: Some(name.into()),
            r#type: Some(AttributeType::Ints as i32),
            ints: v.to_vec(),
            ..Default::default()
        });
    }
}

/// An INT attribute proto.
pub fn make_attr_i(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}

/// An INTS attribute proto.
pub fn make_attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: v.to_vec(),
        ..Default::default()
    }
}

/// A FLOAT attribute proto.
pub fn make_attr_f(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Float as i32),
        f: Some(v),
        ..Default::default()
    }
}

/// A TENSOR attribute proto.
pub fn make_attr_t(name: &str, t: TensorProto) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Tensor as i32),
        t: Some(t),
        ..Default::default()
    }
}

/// A new node.
pub fn make_node(
    op: &str,
    name: &str,
    inputs: &[&str],
    outputs: &[&str],
    attrs: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        name: Some(name.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute: attrs,
        ..Default::default()
    }
}

// ---- names ----

/// Generates names unused by any node, tensor, input, output or initializer of the graph.
#[derive(Debug, Clone)]
pub struct NameGen {
    used: HashSet<String>,
}

impl NameGen {
    pub fn new(g: &GraphProto) -> NameGen {
        let mut used = HashSet::new();
        for n in &g.node {
            used.insert(n.name().to_string());
            used.extend(n.input.iter().cloned());
            used.extend(n.output.iter().cloned());
        }
        for t in &g.initializer {
            used.insert(t.name().to_string());
        }
        for v in g.input.iter().chain(&g.output).chain(&g.value_info) {
            used.insert(v.name().to_string());
        }
        NameGen { used }
    }
    /// `want` itself if free, else `want_1`, `want_2`, ...
    pub fn fresh(&mut self, want: &str) -> String {
        let mut name = want.to_string();
        let mut k = 1;
        while self.used.contains(&name) {
            name = format!("{want}_{k}");
            k += 1;
        }
        self.used.insert(name.clone());
        name
    }
    /// Is `name` already used?
    pub fn is_used(&self, name: &str) -> bool {
        self.used.contains(name)
    }
}

// ---- structural edits ----

/// Replace every read of tensor `old` by `new` (node inputs and graph outputs keep their names
/// unless `include_outputs`).
pub fn replace_uses(g: &mut GraphProto, old: &str, new: &str) {
    for n in g.node.iter_mut() {
        for i in n.input.iter_mut() {
            if i == old {
                *i = new.to_string();
            }
        }
    }
}

/// Remove the nodes at `indices` (any order).
pub fn remove_nodes(g: &mut GraphProto, indices: &BTreeSet<usize>) {
    let mut i = 0;
    g.node.retain(|_| {
        let keep = !indices.contains(&i);
        i += 1;
        keep
    });
}

/// What [`cleanup`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CleanupReport {
    pub nodes: Vec<String>,
    pub initializers: Vec<String>,
    pub value_info: Vec<String>,
}

/// Remove nodes that do not contribute to any graph output, then initializers and value_info
/// nobody reads. Graph inputs are kept (they are the model's interface).
pub fn cleanup(g: &mut GraphProto) -> CleanupReport {
    let ix = GraphIndex::build(g);
    let mut live_nodes: HashSet<usize> = HashSet::new();
    let mut live_tensors: HashSet<String> = HashSet::new();
    let mut stack: Vec<String> = g.output.iter().map(|o| o.name().to_string()).collect();
    while let Some(t) = stack.pop() {
        if !live_tensors.insert(t.clone()) {
            continue;
        }
        if let Some(&p) = ix.producer.get(&t) {
            if live_nodes.insert(p) {
                stack.extend(node_reads(&g.node[p]));
            }
        }
    }
    let mut rep = CleanupReport::default();
    let dead: BTreeSet<usize> = (0..g.node.len())
        .filter(|i| !live_nodes.contains(i))
        .collect();
    for &i in &dead {
        rep.nodes.push(g.node[i].name().to_string());
    }
    remove_nodes(g, &dead);
    let before: Vec<String> = g.initializer.iter().map(|t| t.name().to_string()).collect();
    let inputs: HashSet<String> = g.input.iter().map(|v| v.name().to_string()).collect();
    g.initializer
        .retain(|t| live_tensors.contains(t.name()) || inputs.contains(t.name()));
    let after: HashSet<&str> = g.initializer.iter().map(|t| t.name()).collect();
    rep.initializers = before
        .into_iter()
        .filter(|n| !after.contains(n.as_str()))
        .collect();
    let vi_before: Vec<String> = g.value_info.iter().map(|v| v.name().to_string()).collect();
    g.value_info.retain(|v| live_tensors.contains(v.name()));
    let vi_after: HashSet<&str> = g.value_info.iter().map(|v| v.name()).collect();
    rep.value_info = vi_before
        .into_iter()
        .filter(|n| !vi_after.contains(n.as_str()))
        .collect();
    rep
}

/// Sort nodes topologically, keeping the current order wherever it is already valid (stable:
/// among ready nodes the one that came first goes first). Errors on a cycle, naming its nodes.
pub fn toposort(g: &mut GraphProto) -> Result<()> {
    let order = topo_order(g)?;
    if order.iter().enumerate().all(|(i, &j)| i == j) {
        return Ok(());
    }
    let mut old: Vec<Option<NodeProto>> =
        std::mem::take(&mut g.node).into_iter().map(Some).collect();
    g.node = order
        .into_iter()
        .map(|i| old[i].take().expect("each index once"))
        .collect();
    Ok(())
}

/// The topological order of node indices (stable), or an error naming the nodes on a cycle or
/// reading a tensor nothing defines.
pub fn topo_order(g: &GraphProto) -> Result<Vec<usize>> {
    let n = g.node.len();
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, node) in g.node.iter().enumerate() {
        for o in node.output.iter().filter(|o| !o.is_empty()) {
            producer.insert(o, i);
        }
    }
    let mut indeg = vec![0usize; n];
    let mut succ: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, node) in g.node.iter().enumerate() {
        let mut preds: BTreeSet<usize> = BTreeSet::new();
        for r in node_reads(node) {
            if let Some(&p) = producer.get(r.as_str()) {
                preds.insert(p);
            }
        }
        for p in preds {
            if p == i {
                bail!(
                    "{} reads its own output: the graph has a cycle",
                    describe(node)
                );
            }
            indeg[i] += 1;
            succ[p].push(i);
        }
    }
    let mut ready: BTreeSet<usize> = (0..n).filter(|&i| indeg[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(&i) = ready.iter().next() {
        ready.remove(&i);
        order.push(i);
        for &s in &succ[i] {
            indeg[s] -= 1;
            if indeg[s] == 0 {
                ready.insert(s);
            }
        }
    }
    if order.len() != n {
        let stuck: Vec<String> = (0..n)
            .filter(|&i| indeg[i] > 0)
            .take(5)
            .map(|i| describe(&g.node[i]))
            .collect();
        bail!(
            "the graph has a cycle; nodes on or after it: {}",
            stuck.join(", ")
        );
    }
    Ok(order)
}

/// Check that every tensor read is defined (graph input, initializer, node output, or an outer
/// scope name given in `outer`); returns the first dangling reference as an error.
pub fn check_references(g: &GraphProto) -> Result<()> {
    let mut defined: HashSet<&str> = HashSet::new();
    for i in &g.input {
        defined.insert(i.name());
    }
    for t in &g.initializer {
        defined.insert(t.name());
    }
    for s in &g.sparse_initializer {
        if let Some(v) = &s.values {
            defined.insert(v.name());
        }
    }
    for n in &g.node {
        for o in &n.output {
            defined.insert(o);
        }
    }
    for n in &g.node {
        for i in n.input.iter().filter(|i| !i.is_empty()) {
            if !defined.contains(i.as_str()) {
                bail!(
                    "{} reads tensor `{i}`, which no node, input or initializer defines",
                    describe(n)
                );
            }
        }
    }
    for o in &g.output {
        if !defined.contains(o.name()) {
            bail!(
                "graph output `{}` is not produced by any node, input or initializer",
                o.name()
            );
        }
    }
    Ok(())
}

/// Op histogram, sorted by count (descending) then name.
pub fn op_histogram(g: &GraphProto) -> Vec<(String, usize)> {
    let mut h: BTreeMap<String, usize> = BTreeMap::new();
    for n in &g.node {
        let key = if n.domain().is_empty() || n.domain() == "ai.onnx" {
            n.op_type().to_string()
        } else {
            format!("{}::{}", n.domain(), n.op_type())
        };
        *h.entry(key).or_default() += 1;
    }
    let mut v: Vec<(String, usize)> = h.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain() -> GraphProto {
        GraphProto {
            node: vec![
                make_node("Relu", "b", &["x1"], &["x2"], vec![]),
                make_node("Relu", "a", &["x"], &["x1"], vec![]),
                make_node("Relu", "dead", &["x"], &["unused"], vec![]),
            ],
            input: vec![crate::onnx::ValueInfoProto {
                name: Some("x".into()),
                ..Default::default()
            }],
            output: vec![crate::onnx::ValueInfoProto {
                name: Some("x2".into()),
                ..Default::default()
            }],
            initializer: vec![crate::tensor::tensor_i64("w", &[1], &[1])],
            ..Default::default()
        }
    }

    #[test]
    fn toposort_is_stable_and_cleanup_removes_only_dead() {
        let mut g = chain();
        toposort(&mut g).unwrap();
        let names: Vec<&str> = g.node.iter().map(|n| n.name()).collect();
        assert_eq!(names, ["a", "b", "dead"]);
        let rep = cleanup(&mut g);
        assert_eq!(rep.nodes, ["dead"]);
        assert_eq!(rep.initializers, ["w"]);
        assert_eq!(g.node.len(), 2);
    }

    #[test]
    fn cycle_is_reported_with_node_names() {
        let mut g = chain();
        g.node[1].input = vec!["x2".into()];
        let e = toposort(&mut g).unwrap_err().to_string();
        assert!(e.contains("cycle"), "{e}");
        assert!(e.contains("`a`") || e.contains("`b`"), "{e}");
    }

    #[test]
    fn names_are_unique() {
        let g = chain();
        let mut ng = NameGen::new(&g);
        assert_eq!(ng.fresh("a"), "a_1");
        assert_eq!(ng.fresh("a"), "a_2");
        assert_eq!(ng.fresh("fresh"), "fresh");
    }

    #[test]
    fn constants_from_initializers_and_constant_nodes() {
        let mut g = chain();
        g.node.push(make_node(
            "Constant",
            "c",
            &[],
            &["cval"],
            vec![make_attr_t(
                "value",
                crate::tensor::tensor_i64("", &[2], &[3, 4]),
            )],
        ));
        let ix = GraphIndex::build(&g);
        assert!(matches!(
            constant(&g, &ix, "w"),
            Some((ConstSource::Initializer(0), _))
        ));
        let (src, t) = constant(&g, &ix, "cval").unwrap();
        assert_eq!(src, ConstSource::ConstantNode(3));
        assert_eq!(crate::tensor::values(&t).unwrap().as_i64(), vec![3, 4]);
        assert!(constant(&g, &ix, "x1").is_none());
    }
}
