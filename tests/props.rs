//! Property tests (proptest) of the reference NMS (src/postprocess.rs) against a brute-force O(n²)
//! reimplementation of ONNX NonMaxSuppression, and of the graph layer (src/ir/graph.rs): toposort,
//! cleanup, unique names; plus "shape inference never panics" on random nodes.

// `!(iou > thr)` on purpose: the ONNX rule is "suppress when IoU > thr", NaN included
#![allow(clippy::neg_cmp_op_on_partial_ord)]

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use postmerge::graph::{
    cleanup, make_attr_i, make_attr_ints, make_node, topo_order, toposort, NameGen,
};
use postmerge::onnx::{GraphProto, NodeProto, ValueInfoProto};
use postmerge::postprocess::{iou, nms, Decoded, IouConvention, NmsParams, Selection};
use proptest::prelude::*;

/// Failing seeds are kept with the fuzz regressions (commit them: proptest replays them first).
fn persistence() -> Option<Box<dyn proptest::test_runner::FailurePersistence>> {
    Some(Box::new(
        proptest::test_runner::FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/corpus/regressions/props.proptest-regressions"
        )),
    ))
}

// ---------------------------------------------------------------------------------------------
// NMS
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct NmsCase {
    batch: usize,
    n: usize,
    c: usize,
    boxes: Vec<f32>,
    scores: Vec<f32>,
    params: NmsParams,
}

/// Boxes on a coarse grid (many exact ties and touching edges) or free floats; some with their
/// corners swapped (ONNX orders each axis with min/max). Scores from a small set (ties) or free.
fn nms_case() -> impl Strategy<Value = NmsCase> {
    (
        1usize..=2,
        0usize..=24,
        1usize..=3,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_flat_map(|(batch, n, c, grid, agnostic)| {
            let coord = if grid {
                (0u8..=16).prop_map(|v| v as f32 * 4.0).boxed()
            } else {
                (0.0f32..64.0).boxed()
            };
            let score = prop_oneof![
                3 => prop::sample::select(vec![0.0f32, 0.1, 0.25, 0.3, 0.5, 0.5, 0.7, 0.9, 1.0]),
                2 => 0.0f32..=1.0,
            ];
            (
                prop::collection::vec(coord, batch * n * 4),
                prop::collection::vec(score, batch * n * c),
                prop::sample::select(vec![0.0f32, 0.1, 0.25, 0.5, 0.9]),
                prop::sample::select(vec![0.0f32, 0.3, 0.4, 0.5, 0.7, 1.0]),
                prop_oneof![Just(usize::MAX), 0usize..=4, Just(20usize)],
            )
                .prop_map(move |(boxes, scores, st, it, cap)| NmsCase {
                    batch,
                    n,
                    c,
                    boxes,
                    scores,
                    params: NmsParams {
                        score_threshold: st,
                        iou_threshold: it,
                        max_per_class: cap,
                        agnostic,
                    },
                })
        })
}

fn decoded(k: &NmsCase) -> Decoded {
    Decoded::from_boxes_scores(k.batch, k.n, k.c, k.boxes.clone(), k.scores.clone()).unwrap()
}

fn bx(k: &NmsCase, b: usize, i: usize) -> [f32; 4] {
    let o = (b * k.n + i) * 4;
    [k.boxes[o], k.boxes[o + 1], k.boxes[o + 2], k.boxes[o + 3]]
}

fn score(k: &NmsCase, b: usize, i: usize, c: usize) -> f32 {
    k.scores[(b * k.n + i) * k.c + c]
}

/// ONNX IoU written independently of postprocess.rs (each axis ordered, no "+1", 0 when apart).
fn brute_iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let (ax0, ax1) = (a[0].min(a[2]), a[0].max(a[2]));
    let (ay0, ay1) = (a[1].min(a[3]), a[1].max(a[3]));
    let (bx0, bx1) = (b[0].min(b[2]), b[0].max(b[2]));
    let (by0, by1) = (b[1].min(b[3]), b[1].max(b[3]));
    let iw = ax1.min(bx1) - ax0.max(bx0);
    let ih = ay1.min(by1) - ay0.max(by0);
    if iw <= 0.0 || ih <= 0.0 {
        return 0.0;
    }
    let inter = ih * iw;
    let (area_a, area_b) = ((ax1 - ax0) * (ay1 - ay0), (bx1 - bx0) * (by1 - by0));
    inter / (area_a + area_b - inter)
}

/// ONNX NonMaxSuppression by its definition: per image and class (or, agnostic, per image over
/// each box's best class), candidates with score > threshold in descending score (ties: lower
/// index first), each kept unless a kept box overlaps it with IoU > threshold, at most `cap`.
fn brute_nms(k: &NmsCase) -> Vec<Selection> {
    let mut out = Vec::new();
    if k.params.max_per_class == 0 {
        return out;
    }
    for b in 0..k.batch {
        let passes: Vec<Vec<(usize, f32, usize)>> = if k.params.agnostic {
            vec![(0..k.n)
                .map(|i| {
                    let mut bc = 0;
                    for c in 1..k.c {
                        if score(k, b, i, c) > score(k, b, i, bc) {
                            bc = c;
                        }
                    }
                    (i, score(k, b, i, bc), bc)
                })
                .collect()]
        } else {
            (0..k.c)
                .map(|c| (0..k.n).map(|i| (i, score(k, b, i, c), c)).collect())
                .collect()
        };
        for cands in passes {
            let mut c: Vec<(usize, f32, usize)> = cands
                .into_iter()
                .filter(|x| x.1 > k.params.score_threshold)
                .collect();
            // O(n²) selection sort: highest score first, the earliest index among equals
            let mut ordered = Vec::new();
            while !c.is_empty() {
                let mut best = 0;
                for j in 1..c.len() {
                    if c[j].1 > c[best].1 {
                        best = j;
                    }
                }
                ordered.push(c.remove(best));
            }
            let mut kept: Vec<(usize, usize)> = Vec::new();
            for (i, _, cls) in ordered {
                if kept.len() >= k.params.max_per_class {
                    break;
                }
                if kept.iter().all(|&(j, _)| {
                    !(brute_iou(&bx(k, b, j), &bx(k, b, i)) > k.params.iou_threshold)
                }) {
                    kept.push((i, cls));
                }
            }
            out.extend(kept.into_iter().map(|(i, cls)| Selection {
                batch: b,
                class: cls,
                box_index: i,
            }));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: persistence(), ..ProptestConfig::default() })]

    #[test]
    fn nms_agrees_with_brute_force(k in nms_case()) {
        let got = nms(&decoded(&k), &k.params).unwrap();
        prop_assert_eq!(&got, &brute_nms(&k));
    }

    #[test]
    fn nms_invariants(k in nms_case()) {
        let d = decoded(&k);
        let got = nms(&d, &k.params).unwrap();
        // deterministic
        prop_assert_eq!(&got, &nms(&d, &k.params).unwrap());
        let mut per: BTreeMap<(usize, usize), Vec<Selection>> = BTreeMap::new();
        let mut seen = HashSet::new();
        for s in &got {
            // a subset of the candidates, above the threshold
            prop_assert!(s.batch < k.batch && s.box_index < k.n && s.class < k.c);
            let sc = score(&k, s.batch, s.box_index, s.class);
            prop_assert!(sc > k.params.score_threshold, "selected score {} not above {}", sc, k.params.score_threshold);
            prop_assert!(seen.insert(*s), "duplicate selection {:?}", s);
            per.entry((s.batch, if k.params.agnostic { usize::MAX } else { s.class })).or_default().push(*s);
            if k.params.agnostic {
                // the reported class is the box's best (first maximum)
                let best = (0..k.c).fold(0, |b, c| if score(&k, s.batch, s.box_index, c) > score(&k, s.batch, s.box_index, b) { c } else { b });
                prop_assert_eq!(s.class, best);
            }
        }
        for ((b, _), sels) in &per {
            // cap respected
            prop_assert!(sels.len() <= k.params.max_per_class);
            for (x, si) in sels.iter().enumerate() {
                // no two kept boxes of one pass overlap above the threshold
                for sj in &sels[x + 1..] {
                    let v = iou(IouConvention::Onnx, &bx(&k, *b, si.box_index), &bx(&k, *b, sj.box_index));
                    prop_assert!(!(v > k.params.iou_threshold), "boxes {} and {} kept with IoU {} > {}", si.box_index, sj.box_index, v, k.params.iou_threshold);
                }
                // selection order: non-increasing score within a pass
                if x > 0 {
                    let prev = &sels[x - 1];
                    prop_assert!(score(&k, *b, prev.box_index, prev.class) >= score(&k, *b, si.box_index, si.class));
                }
            }
        }
        // image-major, then class order (onnxruntime's)
        let keys: Vec<(usize, usize)> = got.iter().map(|s| (s.batch, if k.params.agnostic { 0 } else { s.class })).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        prop_assert_eq!(keys, sorted);
    }

    #[test]
    fn nms_iou_is_symmetric_and_bounded(a in prop::array::uniform4(-50.0f32..50.0), b in prop::array::uniform4(-50.0f32..50.0)) {
        let x = iou(IouConvention::Onnx, &a, &b);
        let y = iou(IouConvention::Onnx, &b, &a);
        prop_assert_eq!(x.to_bits(), y.to_bits());
        prop_assert!((0.0..=1.0 + 1e-6).contains(&x), "iou {}", x);
        prop_assert_eq!(x.to_bits(), brute_iou(&a, &b).to_bits());
    }

    #[test]
    fn nms_never_panics_on_non_finite_input(n in 0usize..12, c in 1usize..3, raw in prop::collection::vec(prop_oneof![Just(f32::NAN), Just(f32::INFINITY), Just(f32::NEG_INFINITY), -1e30f32..1e30], 0..200), st in prop_oneof![Just(f32::NAN), -1.0f32..2.0], it in -0.5f32..1.5) {
        let boxes: Vec<f32> = (0..n * 4).map(|i| raw.get(i).copied().unwrap_or(1.0)).collect();
        let scores: Vec<f32> = (0..n * c).map(|i| raw.get(n * 4 + i).copied().unwrap_or(0.5)).collect();
        let d = Decoded::from_boxes_scores(1, n, c, boxes, scores).unwrap();
        for agnostic in [false, true] {
            let r = nms(&d, &NmsParams { score_threshold: st, iou_threshold: it, max_per_class: 5, agnostic });
            // an IoU threshold outside [0, 1] is an error, never a panic
            prop_assert_eq!(r.is_ok(), (0.0..=1.0).contains(&it));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// graph layer
// ---------------------------------------------------------------------------------------------

fn vi(name: &str) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        ..Default::default()
    }
}

/// A random DAG in a valid order: node k reads the graph input or outputs of nodes < k (up to 3
/// inputs, some with 2 outputs), and some of the outputs are graph outputs.
fn dag() -> impl Strategy<Value = GraphProto> {
    (1usize..40).prop_flat_map(|n| {
        (
            prop::collection::vec(
                prop::collection::vec(any::<prop::sample::Index>(), 1..=3),
                n,
            ),
            prop::collection::vec(any::<bool>(), n),
            prop::collection::vec(any::<prop::sample::Index>(), 1..4),
        )
            .prop_map(move |(ins, two_out, outs)| {
                let mut nodes = Vec::new();
                let mut avail: Vec<String> = vec!["x".into()];
                for k in 0..n {
                    let inputs: Vec<String> = ins[k]
                        .iter()
                        .map(|ix| avail[ix.index(avail.len())].clone())
                        .collect();
                    let outputs: Vec<String> = if two_out[k] {
                        vec![format!("t{k}a"), format!("t{k}b")]
                    } else {
                        vec![format!("t{k}")]
                    };
                    let i: Vec<&str> = inputs.iter().map(String::as_str).collect();
                    let o: Vec<&str> = outputs.iter().map(String::as_str).collect();
                    nodes.push(make_node("Add", &format!("n{k}"), &i, &o, vec![]));
                    avail.extend(outputs);
                }
                let produced: Vec<String> = avail[1..].to_vec();
                let mut out: Vec<String> = outs
                    .iter()
                    .map(|ix| produced[ix.index(produced.len())].clone())
                    .collect();
                out.sort();
                out.dedup();
                GraphProto {
                    node: nodes,
                    input: vec![vi("x")],
                    output: out.iter().map(|o| vi(o)).collect(),
                    ..Default::default()
                }
            })
    })
}

fn is_valid_order(g: &GraphProto) -> bool {
    let mut defined: HashSet<&str> = g.input.iter().map(|i| i.name()).collect();
    for n in &g.node {
        if !n.input.iter().all(|i| defined.contains(i.as_str())) {
            return false;
        }
        defined.extend(n.output.iter().map(String::as_str));
    }
    true
}

/// Names of the nodes from which some graph output is reachable (brute force, by fixpoint).
fn reaching_outputs(g: &GraphProto) -> BTreeSet<String> {
    let mut live: HashSet<String> = g.output.iter().map(|o| o.name().to_string()).collect();
    let mut nodes = BTreeSet::new();
    loop {
        let before = nodes.len();
        for n in &g.node {
            if n.output.iter().any(|o| live.contains(o)) && nodes.insert(n.name().to_string()) {
                live.extend(n.input.iter().cloned());
            }
        }
        if nodes.len() == before {
            return nodes;
        }
    }
}

fn names(g: &GraphProto) -> Vec<String> {
    g.node.iter().map(|n| n.name().to_string()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: persistence(), ..ProptestConfig::default() })]

    #[test]
    fn toposort_keeps_sorted_graphs_unchanged(g in dag()) {
        let mut h = g.clone();
        toposort(&mut h).unwrap();
        prop_assert_eq!(&h, &g);
        prop_assert_eq!(topo_order(&g).unwrap(), (0..g.node.len()).collect::<Vec<_>>());
    }

    #[test]
    fn toposort_of_a_shuffled_dag_is_a_valid_order(g in dag(), perm in any::<u64>()) {
        let mut h = g.clone();
        // shuffle (seeded Fisher-Yates)
        let mut s = perm | 1;
        for i in (1..h.node.len()).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            let j = (s % (i as u64 + 1)) as usize;
            h.node.swap(i, j);
        }
        toposort(&mut h).unwrap();
        prop_assert!(is_valid_order(&h));
        let mut a = names(&g);
        let mut b = names(&h);
        a.sort();
        b.sort();
        prop_assert_eq!(a, b, "toposort lost or duplicated nodes");
        // idempotent
        let mut again = h.clone();
        toposort(&mut again).unwrap();
        prop_assert_eq!(again, h);
    }

    #[test]
    fn a_back_edge_is_reported_as_a_cycle(g in dag(), pick in any::<prop::sample::Index>()) {
        // node k reads the output of a node that (transitively) reads node k: a cycle
        prop_assume!(g.node.len() >= 2);
        let k = pick.index(g.node.len() - 1);
        let mut h = g.clone();
        // the last node depends on k only if it reads it transitively; add that edge explicitly
        let last = h.node.len() - 1;
        let ko = h.node[k].output[0].clone();
        h.node[last].input.push(ko);
        let lo = h.node[last].output[0].clone();
        h.node[k].input.push(lo);
        let e = topo_order(&h).unwrap_err().to_string();
        prop_assert!(e.contains("cycle"), "{}", e);
    }

    #[test]
    fn cleanup_keeps_exactly_the_nodes_that_reach_an_output(g in dag()) {
        let want = reaching_outputs(&g);
        let mut h = g.clone();
        let rep = cleanup(&mut h);
        let kept: BTreeSet<String> = names(&h).into_iter().collect();
        prop_assert_eq!(&kept, &want);
        prop_assert_eq!(rep.nodes.len(), g.node.len() - kept.len());
        prop_assert!(is_valid_order(&h), "cleanup broke the order");
        postmerge::graph::check_references(&h).unwrap();
        // a second cleanup removes nothing
        prop_assert!(cleanup(&mut h).nodes.is_empty());
    }

    #[test]
    fn fresh_names_are_unique(g in dag(), wants in prop::collection::vec(prop::sample::select(vec!["n1", "t1", "t1_1", "x", "fresh", "n3_1", "t2a"]), 1..30)) {
        let mut used: HashSet<String> = HashSet::new();
        for n in &g.node {
            used.insert(n.name().to_string());
            used.extend(n.input.iter().cloned());
            used.extend(n.output.iter().cloned());
        }
        used.insert("x".into());
        let mut ng = NameGen::new(&g);
        let mut given = HashSet::new();
        for w in wants {
            let f = ng.fresh(w);
            prop_assert!(!used.contains(&f), "fresh name {} was already used by the graph", f);
            prop_assert!(given.insert(f.clone()), "fresh name {} given twice", f);
            prop_assert!(ng.is_used(&f));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// shape inference on hostile nodes
// ---------------------------------------------------------------------------------------------

const INTERESTING: &[i64] = &[
    0,
    1,
    -1,
    2,
    3,
    8,
    85,
    420,
    i32::MAX as i64,
    1 << 31,
    1 << 40,
    1_000_000_000_000,
    1 << 62,
    i64::MAX,
    i64::MIN,
    -1_000_000_000_000,
];

fn interesting() -> impl Strategy<Value = i64> {
    prop_oneof![4 => prop::sample::select(INTERESTING.to_vec()), 1 => any::<i64>(), 3 => -3i64..10]
}

fn info() -> impl Strategy<Value = postmerge::shape::Info> {
    use postmerge::shape::{Dim, Info};
    use postmerge::tensor::Values;
    (
        prop::option::of(prop::collection::vec(
            prop_oneof![4 => interesting().prop_map(Dim::Known), 1 => Just(Dim::Sym("N".into()))],
            0..5,
        )),
        prop::option::of(prop_oneof![
            prop::collection::vec(interesting(), 0..6).prop_map(Values::I64),
            prop::collection::vec(prop_oneof![Just(f32::NAN), -1e20f32..1e20], 0..6)
                .prop_map(Values::F32),
        ]),
        prop::sample::select(vec![1i32, 6, 7, 9]),
    )
        .prop_map(|(shape, value, dt)| Info {
            dtype: Some(dt),
            shape,
            value,
            dims_value: None,
        })
}

const OPS: &[&str] = &[
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Equal",
    "Where",
    "Concat",
    "Reshape",
    "Transpose",
    "Slice",
    "Gather",
    "Unsqueeze",
    "Squeeze",
    "Split",
    "Range",
    "ConstantOfShape",
    "Expand",
    "Tile",
    "Conv",
    "MaxPool",
    "AveragePool",
    "Resize",
    "Shape",
    "Cast",
    "Flatten",
    "MatMul",
    "Gemm",
    "TopK",
    "ReduceSum",
    "ArgMax",
    "NonMaxSuppression",
    "GlobalAveragePool",
    "NonZero",
    "Neg",
    "Identity",
    "Constant",
    "Softmax",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, failure_persistence: persistence(), ..ProptestConfig::default() })]

    /// Whatever the operands and attributes, `infer_node` returns Ok or Err, never panics (the
    /// panics fixed in the shape inference (then src/shape.rs, now src/infer/) were overflows, empty operands and missing outputs).
    #[test]
    fn infer_node_never_panics(
        op in prop::sample::select(OPS.to_vec()),
        infos in prop::collection::vec(info(), 0..5),
        n_out in 0usize..3,
        ints in prop::collection::vec(interesting(), 0..5),
        attr_names in prop::collection::vec(prop::sample::select(vec!["axis", "axes", "perm", "kernel_shape", "strides", "pads", "dilations", "split", "starts", "ends", "to", "keepdims", "start", "end", "allowzero"]), 0..4),
        single in interesting(),
    ) {
        let mut s = postmerge::shape::Shapes::default();
        let mut inputs = Vec::new();
        for (k, i) in infos.into_iter().enumerate() {
            let name = format!("in{k}");
            s.map.insert(name.clone(), i);
            inputs.push(name);
        }
        let outputs: Vec<String> = (0..n_out).map(|k| format!("out{k}")).collect();
        let mut attrs = Vec::new();
        for a in &attr_names {
            attrs.push(if *a == "axis" || *a == "to" || *a == "keepdims" || *a == "start" || *a == "end" || *a == "allowzero" { make_attr_i(a, single) } else { make_attr_ints(a, &ints) });
        }
        let i: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let o: Vec<&str> = outputs.iter().map(String::as_str).collect();
        let node: NodeProto = make_node(op, "hostile", &i, &o, attrs);
        let r = std::panic::catch_unwind(|| postmerge::shape::infer_node(&node, &s));
        prop_assert!(r.is_ok(), "infer_node panicked on {:?} with inputs {:?}", node, s.map);
    }
}

#[test]
fn brute_force_nms_matches_a_known_case() {
    // two overlapping boxes of one class, one apart; the lower-scored overlapping one is dropped
    let k = NmsCase {
        batch: 1,
        n: 3,
        c: 1,
        boxes: vec![
            0.0, 0.0, 10.0, 10.0, 1.0, 1.0, 11.0, 11.0, 50.0, 50.0, 60.0, 60.0,
        ],
        scores: vec![0.9, 0.8, 0.7],
        params: NmsParams {
            score_threshold: 0.25,
            iou_threshold: 0.4,
            max_per_class: 20,
            agnostic: false,
        },
    };
    let want = vec![
        Selection {
            batch: 0,
            class: 0,
            box_index: 0,
        },
        Selection {
            batch: 0,
            class: 0,
            box_index: 2,
        },
    ];
    assert_eq!(brute_nms(&k), want);
    assert_eq!(nms(&decoded(&k), &k.params).unwrap(), want);
    let _ = HashMap::<u8, u8>::new();
}
