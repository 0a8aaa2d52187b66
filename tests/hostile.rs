//! Hostile inputs: every subcommand must refuse malformed models with exit 2 and one `error: `
//! message naming the file (and the node / op / attribute for graph problems), never panic, never
//! leave an output or a `.postmerge-*.tmp` file behind, and never modify its input.
//!
//! The corpus is GENERATED here, at test time, into a temp dir (nothing generated is committed):
//! truncations, seeded bit flips and random bytes of a real model, and bad models built with the
//! prost types from `../shared/models/yolox_nano_80c_128x160_op11.onnx` (the shared corpus:
//! POSTMERGE_SHARED, see tests/common) and the fixtures in tests/fixtures. Set `POSTMERGE_CORPUS_OUT=DIR` to also keep a
//! copy of the generated corpus in DIR (e.g. tests/corpus/generated, which .gitignore excludes).
//!
//! Inputs found by fuzzing (FUZZING.md) are committed under tests/corpus/regressions/ and replayed
//! by `fuzz_regressions_replay` through the library and the binary.
//!
//! Expectations are explicit per (case, subcommand): refused (exit 2, a message with the given
//! words, nothing written), accepted (exit 0, a loadable output) or either (bit flips that may land
//! in weights). The known holes this suite found (merge/check/set accepting broken models, set and
//! check aborting on absurd declared sizes, detect overwriting its inputs, partial multi-size
//! outputs) are fixed, and each is asserted here as the refusal it now is.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use postmerge::graph::{cleanup, make_attr_i, make_attr_ints, make_attr_t, make_node};
use postmerge::onnx::{
    tensor_proto::DataType, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
};
use postmerge::shape::{make_vi, Dim};
use postmerge::tensor::{tensor_f32, tensor_i64};
use prost::Message;

// ---------------------------------------------------------------------------------------------
// corpus generation
// ---------------------------------------------------------------------------------------------

/// The base model every structural case is derived from (../shared, CI has it).
fn base_path() -> PathBuf {
    common::shared().join("models/yolox_nano_80c_128x160_op11.onnx")
}

fn base_bytes() -> Vec<u8> {
    std::fs::read(base_path())
        .expect("../shared/models/yolox_nano_80c_128x160_op11.onnx (CI has ../shared)")
}

fn base() -> ModelProto {
    ModelProto::decode(&base_bytes()[..]).unwrap()
}

fn goldlike() -> ModelProto {
    ModelProto::decode(
        &std::fs::read(common::fixtures().join("goldlike_128x160.onnx")).unwrap()[..],
    )
    .unwrap()
}

/// A merged base model, made by the binary itself.
fn merged_bytes() -> Vec<u8> {
    static CELL: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    CELL.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("merged.onnx");
        let (code, _, err) = common::run(&[
            "merge",
            base_path().to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{err}");
        std::fs::read(out).unwrap()
    })
    .clone()
}

fn enc(m: &ModelProto) -> Vec<u8> {
    m.encode_to_vec()
}

/// xorshift64* (seeded: the corpus is the same on every run).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn node_index(m: &ModelProto, op: &str, k: usize) -> usize {
    m.graph
        .as_ref()
        .unwrap()
        .node
        .iter()
        .enumerate()
        .filter(|(_, n)| n.op_type() == op)
        .nth(k)
        .map(|(i, _)| i)
        .unwrap()
}

fn node_named<'a>(m: &'a mut ModelProto, name: &str) -> &'a mut NodeProto {
    m.graph
        .as_mut()
        .unwrap()
        .node
        .iter_mut()
        .find(|n| n.name() == name)
        .unwrap_or_else(|| panic!("no node {name}"))
}

/// Append a node that no output depends on: shape inference still visits it (resize, inspect).
fn with_dead(mut m: ModelProto, inits: Vec<TensorProto>, nodes: Vec<NodeProto>) -> Vec<u8> {
    let g = m.graph.as_mut().unwrap();
    g.initializer.extend(inits);
    g.node.extend(nodes);
    enc(&m)
}

/// What a subcommand is run as. `{in}` is the case's model, outputs go to a fresh folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Cmd {
    Convert,
    Merge,
    Set,
    Resize,
    QuantPrep,
    Inspect,
    /// `diff CASE BASE`
    DiffA,
    /// `diff BASE CASE`
    DiffB,
    /// `check CASE MERGED_BASE`
    CheckOrig,
    /// `check BASE CASE`
    CheckMerged,
    Detect,
    /// `convert IN -o OUT --external-data NAME`
    ConvertExternal(&'static str),
    /// `resize IN -o OUTDIR/r_{h}x{w}.onnx --size A --size B`
    ResizeMulti(&'static str, &'static str),
}

const WRITING: [Cmd; 6] = [
    Cmd::Convert,
    Cmd::Merge,
    Cmd::Set,
    Cmd::Resize,
    Cmd::QuantPrep,
    Cmd::Detect,
];
const ALL: [Cmd; 11] = [
    Cmd::Convert,
    Cmd::Merge,
    Cmd::Set,
    Cmd::Resize,
    Cmd::QuantPrep,
    Cmd::Inspect,
    Cmd::DiffA,
    Cmd::DiffB,
    Cmd::CheckOrig,
    Cmd::CheckMerged,
    Cmd::Detect,
];

#[derive(Debug, Clone)]
enum Expect {
    /// exit 2, stderr starts with `error: ` and contains each needle (the file name is always
    /// required on top, unless `anon`).
    Refuse(Vec<String>),
    /// exit 0; a written output is a complete, loadable model.
    Accept,
    /// exit 0 or 2 (1 for check), never a panic (bit flips may land in weights).
    Either,
}

fn refuse(needles: &[&str]) -> Expect {
    Expect::Refuse(needles.iter().map(|s| s.to_string()).collect())
}

struct Case {
    name: String,
    /// files of the case folder; the first is the model
    files: Vec<(String, Vec<u8>)>,
    expect: Vec<(Cmd, Expect)>,
    /// the messages must name the input file (false for output-path cases: they name the output)
    names_input: bool,
    /// extra argument override for the output (output-path cases): a function of (case dir, out dir)
    output: Option<fn(&Path, &Path) -> PathBuf>,
}

fn case(name: &str, bytes: Vec<u8>, expect: Vec<(Cmd, Expect)>) -> Case {
    Case {
        name: name.to_string(),
        files: vec![(format!("{name}.onnx"), bytes)],
        expect,
        names_input: true,
        output: None,
    }
}

fn every(cmds: &[Cmd], e: Expect) -> Vec<(Cmd, Expect)> {
    cmds.iter().map(|&c| (c, e.clone())).collect()
}

/// Byte-level junk: must be refused by every subcommand as "not an ONNX model".
fn file_level_cases() -> Vec<Case> {
    let good = base_bytes();
    let not_model = refuse(&["not an ONNX model"]);
    let mut v = vec![case(
        "empty",
        vec![],
        every(&ALL, refuse(&["is empty (0 bytes)"])),
    )];
    // 50 truncation offsets across the file, plus the very first bytes
    let mut offsets: Vec<usize> = vec![1, 2, 3, 5, 8, 13, 21];
    offsets.extend((1..=43).map(|k| k * (good.len() - 1) / 44));
    let mut skipped = 0;
    for off in offsets {
        let cut = good[..off].to_vec();
        // a cut exactly on a field boundary can be a valid (smaller) protobuf; such prefixes are
        // still refused (no graph, or an incomplete one), checked by the decode below
        if postmerge::model::Model::from_bytes(bytes::Bytes::from(cut.clone()), "x").is_ok() {
            skipped += 1;
            continue;
        }
        v.push(case(
            &format!("truncated_{off:07}"),
            cut,
            every(&ALL, not_model.clone()),
        ));
    }
    assert!(skipped <= 2, "{skipped} truncations decode as models");
    // random bytes of several lengths (seeded)
    let mut r = Rng(0x00C0_FFEE_D00D_F00D);
    for (k, len) in [1usize, 2, 7, 64, 1000, 4096, 65536, 300_000]
        .into_iter()
        .enumerate()
    {
        let bytes: Vec<u8> = (0..len).map(|_| r.next() as u8).collect();
        v.push(case(
            &format!("random_{k}_{len}"),
            bytes,
            every(&ALL, not_model.clone()),
        ));
    }
    // a valid protobuf that is not a model: an encoded TensorProto, and a bare GraphProto
    v.push(case(
        "tensorproto",
        tensor_i64("t", &[2, 3], &[1, 2, 3, 4, 5, 6]).encode_to_vec(),
        every(&ALL, not_model.clone()),
    ));
    v.push(case(
        "graphproto",
        base().graph.unwrap().encode_to_vec(),
        every(&ALL, not_model.clone()),
    ));
    // a model of a newer IR version than the vendored schema
    let mut m = base();
    m.ir_version = Some(99);
    v.push(case(
        "ir_version_99",
        enc(&m),
        every(&ALL, refuse(&["IR version 99"])),
    ));
    v
}

/// Seeded bit flips, in the node section (the first bytes after the header), in the I/O section
/// (the tail) and anywhere (mostly weights). Any outcome but a panic is acceptable; written
/// outputs must load.
fn bitflip_cases() -> Vec<Case> {
    let good = base_bytes();
    let m = base();
    let g = m.graph.as_ref().unwrap();
    let nodes_len: usize = g.node.iter().map(|n| n.encoded_len() + 4).sum::<usize>() + 64;
    let io_len: usize = g
        .input
        .iter()
        .chain(&g.output)
        .chain(&g.value_info)
        .map(|v| v.encoded_len() + 4)
        .sum::<usize>()
        + 64;
    let mut r = Rng(0x0B17_F11E_5EED_0001);
    let mut v = Vec::new();
    for k in 0..30 {
        let mut b = good.clone();
        let flips = 1 + r.below(8);
        for _ in 0..flips {
            let pos = match k % 3 {
                0 => r.below(nodes_len.min(b.len())),
                1 => b.len() - 1 - r.below(io_len.min(b.len())),
                _ => r.below(b.len()),
            };
            b[pos] ^= 1 << r.below(8);
        }
        v.push(case(
            &format!("bitflip_{k:02}"),
            b,
            every(&ALL, Expect::Either),
        ));
    }
    v
}

/// Graph-level problems, built with the prost types.
fn graph_cases() -> Vec<Case> {
    use Cmd::*;
    let mut v = Vec::new();
    let readers = |e: Expect| {
        vec![
            (Convert, Expect::Accept),
            (Inspect, Expect::Accept),
            (DiffA, Expect::Accept),
            (DiffB, Expect::Accept),
            (Merge, e.clone()),
            (Resize, e),
        ]
    };

    // a node reading a tensor nothing defines
    let mut m = base();
    let i = node_index(&m, "Conv", 3);
    let name = m.graph.as_ref().unwrap().node[i].name().to_string();
    m.graph.as_mut().unwrap().node[i].input[0] = "does_not_exist".into();
    let mut e = readers(refuse(&["does_not_exist", &name, "(Conv)"]));
    // check validates ORIGINAL's graph too, not only its head
    e.push((CheckOrig, refuse(&["does_not_exist", "ORIGINAL"])));
    v.push(case("dangling_input", enc(&m), e));

    // a cycle: an early Conv reads the output of a later one
    let mut m = base();
    let (a, b) = (node_index(&m, "Conv", 3), node_index(&m, "Conv", 6));
    let name = m.graph.as_ref().unwrap().node[a].name().to_string();
    let later = m.graph.as_ref().unwrap().node[b].output[0].clone();
    m.graph.as_mut().unwrap().node[a].input[0] = later;
    let mut e = readers(refuse(&["cycle", &name]));
    e.push((CheckOrig, refuse(&["cycle", "ORIGINAL"])));
    v.push(case("cycle", enc(&m), e));

    // a node reading its own output
    let mut m = base();
    let i = node_index(&m, "Sigmoid", 2);
    let g = m.graph.as_mut().unwrap();
    let name = g.node[i].name().to_string();
    g.node[i].input[0] = g.node[i].output[0].clone();
    v.push(case(
        "self_loop",
        enc(&m),
        readers(refuse(&["cycle", &name])),
    ));

    // AveragePool without kernel_shape (Gold-YOLO-like fixture)
    let mut m = goldlike();
    let n = node_named(&mut m, "/neck/low_FAM/AveragePool");
    n.attribute.retain(|a| a.name() != "kernel_shape");
    let e = readers(refuse(&[
        "/neck/low_FAM/AveragePool",
        "AveragePool",
        "kernel_shape",
    ]));
    v.push(case("avgpool_no_kernel_shape", enc(&m), e));

    // Transpose perm of the wrong length
    let mut m = base();
    let n = node_named(&mut m, "/head/Transpose");
    n.attribute = vec![make_attr_ints("perm", &[0, 2])];
    let e = readers(refuse(&["/head/Transpose", "Transpose", "perm"]));
    v.push(case("transpose_perm_wrong_length", enc(&m), e));

    // a float Reshape shape
    let mut m = base();
    let g = m.graph.as_mut().unwrap();
    g.initializer
        .push(tensor_f32("float_shape", &[3], &[1.0, 85.0, -1.0]));
    g.node
        .iter_mut()
        .find(|n| n.name() == "/head/Reshape")
        .unwrap()
        .input[1] = "float_shape".into();
    let e = readers(refuse(&[
        "/head/Reshape",
        "Reshape",
        "float_shape",
        "expected i64",
    ]));
    v.push(case("reshape_float_shape", enc(&m), e));

    // a Reshape shape whose element count overflows (1e12 x 1e12)
    let mut m = base();
    let g = m.graph.as_mut().unwrap();
    g.initializer.push(tensor_i64(
        "huge_shape",
        &[4],
        &[1, 85, 1_000_000_000_000, 1_000_000_000_000],
    ));
    g.node
        .iter_mut()
        .find(|n| n.name() == "/head/Reshape")
        .unwrap()
        .input[1] = "huge_shape".into();
    let e = readers(refuse(&["/head/Reshape", "Reshape", "overflows"]));
    v.push(case("reshape_huge_shape", enc(&m), e));

    // huge declared input dims (1e12): no head can match, no arithmetic may overflow
    let mut m = base();
    let g = m.graph.as_mut().unwrap();
    g.input[0] = make_vi(
        "images",
        DataType::Float as i32,
        &[
            Dim::Known(1),
            Dim::Known(3),
            Dim::Known(1_000_000_000_000),
            Dim::Known(1_000_000_000_000),
        ],
    );
    let mut e = readers(refuse(&["images", "1000000000000"]));
    e[5] = (Resize, refuse(&["images", "1000000000000"]));
    e.push((CheckOrig, refuse(&["images", "1000000000000"])));
    e.push((Detect, refuse(&["images", "1000000000000"])));
    v.push(case("huge_input_dims", enc(&m), e));

    // 65536x65536 with the matching N declared: a head, but its grids would be gigabytes
    let mut m = base();
    let g = m.graph.as_mut().unwrap();
    let side = 65536i64;
    let n: i64 = [8, 16, 32].iter().map(|s| (side / s) * (side / s)).sum();
    g.input[0] = make_vi(
        "images",
        DataType::Float as i32,
        &[
            Dim::Known(1),
            Dim::Known(3),
            Dim::Known(side),
            Dim::Known(side),
        ],
    );
    g.output[0] = make_vi(
        "output",
        DataType::Float as i32,
        &[Dim::Known(1), Dim::Known(n), Dim::Known(85)],
    );
    let mut e = readers(refuse(&["images", "65536"]));
    e[5] = (Resize, refuse(&["images", "65536"]));
    e.push((CheckOrig, refuse(&["images", "65536"])));
    e.push((Detect, refuse(&["images", "65536"])));
    v.push(case("huge_declared_head", enc(&m), e));

    // an initializer whose dims say 2^31 x 2^31 floats (16 EiB) with 4 bytes of data
    let mut m = base();
    m.graph.as_mut().unwrap().initializer.push(TensorProto {
        name: Some("huge_init".into()),
        dims: vec![1 << 31, 1 << 31],
        data_type: Some(DataType::Float as i32),
        raw_data: Some(bytes::Bytes::from_static(&[0, 0, 0, 0])),
        ..Default::default()
    });
    v.push(case(
        "huge_initializer_dims",
        enc(&m),
        vec![
            (Convert, Expect::Accept),
            (Inspect, Expect::Accept),
            (DiffA, Expect::Accept),
            (Merge, Expect::Accept),
            (Resize, Expect::Accept),
        ],
    ));

    // shape-computing nodes with hostile operands (dead: only shape inference sees them — resize
    // must name them, inspect must survive them)
    let dead = |inits: Vec<TensorProto>, nodes: Vec<NodeProto>| with_dead(base(), inits, nodes);
    let i64s = |name: &str, v: &[i64]| tensor_i64(name, &[v.len() as i64], v);
    let dead_cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "range_2pow62",
            dead(
                vec![
                    tensor_i64("r0", &[], &[0]),
                    tensor_i64("r1", &[], &[1 << 62]),
                    tensor_i64("rd", &[], &[1]),
                ],
                vec![make_node(
                    "Range",
                    "bad_range",
                    &["r0", "r1", "rd"],
                    &["range_out"],
                    vec![],
                )],
            ),
            "bad_range",
        ),
        (
            "range_empty_operand",
            dead(
                vec![
                    tensor_i64("e0", &[0], &[]),
                    tensor_i64("r1", &[], &[5]),
                    tensor_i64("rd", &[], &[1]),
                ],
                vec![make_node(
                    "Range",
                    "bad_range",
                    &["e0", "r1", "rd"],
                    &["range_out"],
                    vec![],
                )],
            ),
            "bad_range",
        ),
        (
            "constantofshape_1e12_squared",
            dead(
                vec![i64s("cs", &[1_000_000_000_000, 1_000_000_000_000])],
                vec![
                    make_node(
                        "ConstantOfShape",
                        "bad_cos",
                        &["cs"],
                        &["cos_out"],
                        vec![make_attr_t("value", tensor_f32("", &[1], &[1.0]))],
                    ),
                    make_node(
                        "Shape",
                        "bad_cos_shape",
                        &["cos_out"],
                        &["cos_shape"],
                        vec![],
                    ),
                ],
            ),
            "bad_cos",
        ),
        (
            "split_without_outputs",
            dead(
                vec![],
                vec![make_node(
                    "Split",
                    "bad_split",
                    &["images"],
                    &[],
                    vec![make_attr_i("axis", 1)],
                )],
            ),
            "bad_split",
        ),
        (
            "concat_without_inputs",
            dead(
                vec![],
                vec![make_node(
                    "Concat",
                    "bad_concat",
                    &[],
                    &["concat_out"],
                    vec![make_attr_i("axis", 0)],
                )],
            ),
            "bad_concat",
        ),
        (
            "conv_rank1_weight",
            dead(
                vec![tensor_f32("w1", &[3], &[1.0, 2.0, 3.0])],
                vec![make_node(
                    "Conv",
                    "bad_conv",
                    &["images", "w1"],
                    &["conv_out"],
                    vec![],
                )],
            ),
            "bad_conv",
        ),
        (
            "nms_without_outputs",
            dead(
                vec![],
                vec![make_node(
                    "NonMaxSuppression",
                    "bad_nms",
                    &["images", "images"],
                    &[],
                    vec![],
                )],
            ),
            "bad_nms",
        ),
        (
            "reshape_without_outputs",
            dead(
                vec![i64s("rs", &[1, -1])],
                vec![make_node(
                    "Reshape",
                    "bad_reshape",
                    &["images", "rs"],
                    &[],
                    vec![],
                )],
            ),
            "bad_reshape",
        ),
        (
            "div_i64_min_by_minus_one",
            dead(
                vec![i64s("dmin", &[i64::MIN]), i64s("dm1", &[-1])],
                vec![make_node(
                    "Div",
                    "bad_div",
                    &["dmin", "dm1"],
                    &["div_out"],
                    vec![],
                )],
            ),
            "bad_div",
        ),
        (
            "mul_overflow",
            dead(
                vec![i64s("m0", &[1 << 62]), i64s("m1", &[8])],
                vec![make_node(
                    "Mul",
                    "bad_mul",
                    &["m0", "m1"],
                    &["mul_out"],
                    vec![],
                )],
            ),
            "bad_mul",
        ),
        (
            "slice_step_i64_min",
            dead(
                vec![
                    i64s("sd", &[1, 2, 3, 4, 5]),
                    i64s("s0", &[-1]),
                    i64s("s1", &[i64::MIN]),
                    i64s("sa", &[0]),
                    i64s("ss", &[i64::MIN]),
                ],
                vec![make_node(
                    "Slice",
                    "bad_slice",
                    &["sd", "s0", "s1", "sa", "ss"],
                    &["slice_out"],
                    vec![],
                )],
            ),
            "bad_slice",
        ),
        (
            "slice_starts_i64_min",
            dead(
                vec![
                    i64s("sd", &[1, 2, 3, 4, 5]),
                    i64s("s0", &[i64::MIN]),
                    i64s("s1", &[i64::MAX]),
                    i64s("sa", &[0]),
                    i64s("ss", &[i64::MAX]),
                ],
                vec![make_node(
                    "Slice",
                    "bad_slice",
                    &["sd", "s0", "s1", "sa", "ss"],
                    &["slice_out"],
                    vec![],
                )],
            ),
            "bad_slice",
        ),
        (
            "tile_overflow",
            dead(
                vec![
                    TensorProto {
                        name: Some("tx".into()),
                        dims: vec![1 << 40],
                        data_type: Some(DataType::Float as i32),
                        ..Default::default()
                    },
                    i64s("tr", &[1 << 40]),
                ],
                vec![make_node(
                    "Tile",
                    "bad_tile",
                    &["tx", "tr"],
                    &["tile_out"],
                    vec![],
                )],
            ),
            "bad_tile",
        ),
        (
            "maxpool_kernel_i64_max",
            dead(
                vec![],
                vec![make_node(
                    "MaxPool",
                    "bad_pool",
                    &["images"],
                    &["pool_out"],
                    vec![
                        make_attr_ints("kernel_shape", &[i64::MAX, i64::MAX]),
                        make_attr_ints("strides", &[1, 1]),
                    ],
                )],
            ),
            "bad_pool",
        ),
        (
            "maxpool_pads_i64_max",
            dead(
                vec![],
                vec![make_node(
                    "MaxPool",
                    "bad_pool",
                    &["images"],
                    &["pool_out"],
                    vec![
                        make_attr_ints("kernel_shape", &[3, 3]),
                        make_attr_ints("pads", &[i64::MAX, i64::MAX, i64::MAX, i64::MAX]),
                    ],
                )],
            ),
            "bad_pool",
        ),
        (
            "conv_auto_pad_stride_i64_max",
            dead(
                vec![],
                vec![make_node(
                    "Conv",
                    "bad_conv",
                    &["images", "images"],
                    &["conv_out"],
                    vec![
                        make_attr_ints("strides", &[i64::MAX, i64::MAX]),
                        postmerge::onnx::AttributeProto {
                            name: Some("auto_pad".into()),
                            s: Some(bytes::Bytes::from_static(b"SAME_UPPER")),
                            r#type: Some(3),
                            ..Default::default()
                        },
                    ],
                )],
            ),
            "bad_conv",
        ),
        (
            "concat_dims_overflow",
            dead(
                vec![TensorProto {
                    name: Some("c0".into()),
                    dims: vec![i64::MAX],
                    data_type: Some(DataType::Float as i32),
                    ..Default::default()
                }],
                vec![make_node(
                    "Concat",
                    "bad_concat",
                    &["c0", "c0"],
                    &["concat_out"],
                    vec![make_attr_i("axis", 0)],
                )],
            ),
            "bad_concat",
        ),
        (
            "expand_huge",
            dead(
                vec![i64s("ex", &[1]), i64s("es", &[1 << 40, 1 << 40])],
                vec![make_node(
                    "Expand",
                    "bad_expand",
                    &["ex", "es"],
                    &["expand_out"],
                    vec![],
                )],
            ),
            "bad_expand",
        ),
        (
            "unsqueeze_axis_i64_min",
            dead(
                vec![],
                vec![make_node(
                    "Unsqueeze",
                    "bad_unsqueeze",
                    &["images"],
                    &["unsq_out"],
                    vec![make_attr_ints("axes", &[i64::MIN])],
                )],
            ),
            "bad_unsqueeze",
        ),
        (
            "flatten_axis_i64_min",
            dead(
                vec![],
                vec![make_node(
                    "Flatten",
                    "bad_flatten",
                    &["images"],
                    &["flat_out"],
                    vec![make_attr_i("axis", i64::MIN)],
                )],
            ),
            "bad_flatten",
        ),
        (
            "gather_index_i64_min",
            dead(
                vec![i64s("gd", &[1, 2, 3]), i64s("gi", &[i64::MIN])],
                vec![make_node(
                    "Gather",
                    "bad_gather",
                    &["gd", "gi"],
                    &["gather_out"],
                    vec![],
                )],
            ),
            "bad_gather",
        ),
    ];
    // dead nodes whose shape rule fails on the model itself (see the messages in each case)
    const MALFORMED_DEAD: &[&str] = &[
        "concat_dims_overflow",
        "concat_without_inputs",
        "conv_rank1_weight",
        "maxpool_kernel_i64_max",
        "range_2pow62",
        "range_empty_operand",
        "reshape_without_outputs",
        "split_without_outputs",
        "tile_overflow",
        "unsqueeze_axis_i64_min",
    ];
    for (name, bytes, node) in dead_cases {
        // merge and resize validate every node, dead ones included: a malformed node is refused,
        // named (a well-defined op passes through); inspect must report and survive
        let mut e = vec![
            (Inspect, Expect::Accept),
            (Convert, Expect::Accept),
            (Merge, Expect::Accept),
            (Resize, Expect::Either),
            (DiffB, Expect::Accept),
        ];
        match name {
            // any NonMaxSuppression node makes the model "merged"
            "nms_without_outputs" => {
                e[2] = (Merge, refuse(&["already merged", node]));
                e[3] = (Resize, refuse(&["un-merged", node]));
            }
            _ => {}
        }
        if MALFORMED_DEAD.contains(&name) {
            e[2] = (Merge, refuse(&[node]));
        }
        v.push(case(name, bytes, e));
    }

    // a classifier: no detection head
    let mut m = base();
    let g = m.graph.as_mut().unwrap();
    let conv = g
        .node
        .iter()
        .filter(|n| n.op_type() == "Conv")
        .nth(40)
        .unwrap()
        .clone();
    let ch = g
        .initializer
        .iter()
        .find(|t| t.name() == conv.input[1])
        .unwrap()
        .dims[0];
    g.node.push(make_node(
        "GlobalAveragePool",
        "cls/gap",
        &[&conv.output[0]],
        &["cls/pooled"],
        vec![],
    ));
    g.node.push(make_node(
        "Flatten",
        "cls/flatten",
        &["cls/pooled"],
        &["logits"],
        vec![make_attr_i("axis", 1)],
    ));
    g.output = vec![make_vi(
        "logits",
        DataType::Float as i32,
        &[Dim::Known(1), Dim::Known(ch)],
    )];
    cleanup(g);
    v.push(case(
        "classifier",
        enc(&m),
        vec![
            (Convert, Expect::Accept),
            (Inspect, Expect::Accept),
            (DiffA, Expect::Accept),
            (Merge, refuse(&["no detection head", "logits"])),
            (Resize, refuse(&["no detection head", "logits"])),
            (Set, refuse(&["no NonMaxSuppression"])),
            (CheckOrig, refuse(&["no detection head"])),
            (Detect, refuse(&["no detection head"])),
        ],
    ));

    // Declared output shapes that lie (issue 13): the graph computes [1, 420, 85]; a declaration
    // of [1, 419, 85] or of a YOLOv8-style [1, 85, 420] decides nothing, the inferred shape does,
    // and the result is a valid model whose check agrees (CheckOrig compares it with the merged
    // base model).
    for (name, dims) in [
        ("head_declares_wrong_n", [1, 419, 85]),
        ("head_declares_v8_shape", [1, 85, 420]),
    ] {
        let mut m = base();
        m.graph.as_mut().unwrap().output[0] =
            make_vi("output", DataType::Float as i32, &dims.map(Dim::Known));
        v.push(case(
            name,
            enc(&m),
            vec![
                (Inspect, Expect::Accept),
                (Merge, Expect::Accept),
                (Resize, Expect::Accept),
                (CheckOrig, Expect::Accept),
                (Detect, Expect::Accept),
            ],
        ));
    }

    // the graph itself computes a head whose N does not match the strides (a Slice drops a row)
    let mut m = base();
    {
        let g = m.graph.as_mut().unwrap();
        let last = g
            .node
            .iter_mut()
            .find(|n| n.output.iter().any(|o| o == "output"))
            .unwrap();
        for o in last.output.iter_mut().filter(|o| *o == "output") {
            *o = "output_all".into();
        }
        g.initializer.push(tensor_i64("cut_starts", &[1], &[0]));
        g.initializer.push(tensor_i64("cut_ends", &[1], &[419]));
        g.initializer.push(tensor_i64("cut_axes", &[1], &[1]));
        g.node.push(make_node(
            "Slice",
            "cut_one_box",
            &["output_all", "cut_starts", "cut_ends", "cut_axes"],
            &["output"],
            vec![],
        ));
        g.output[0] = make_vi(
            "output",
            DataType::Float as i32,
            &[Dim::Known(1), Dim::Known(419), Dim::Known(85)],
        );
    }
    v.push(case(
        "head_n_mismatch",
        enc(&m),
        vec![
            (Inspect, Expect::Accept),
            (Merge, refuse(&["no detection head", "420", "[1,419,85]"])),
            (Resize, refuse(&["no detection head", "419"])),
            (CheckOrig, refuse(&["no detection head"])),
            (Detect, refuse(&["no detection head"])),
        ],
    ));

    // a YOLOv8-style [B, 4+C, N] head computed by the graph (a Transpose at the end), declared
    // as the exporter would not: with a symbolic, exporter-named shape
    let mut m = base();
    {
        let g = m.graph.as_mut().unwrap();
        let last = g
            .node
            .iter_mut()
            .find(|n| n.output.iter().any(|o| o == "output"))
            .unwrap();
        for o in last.output.iter_mut().filter(|o| *o == "output") {
            *o = "output_nc".into();
        }
        g.node.push(make_node(
            "Transpose",
            "to_channels_first",
            &["output_nc"],
            &["output"],
            vec![make_attr_ints("perm", &[0, 2, 1])],
        ));
        g.output[0] = make_vi(
            "output",
            DataType::Float as i32,
            &[
                Dim::Known(1),
                Dim::Sym("Transposeoutput_dim_1".into()),
                Dim::Sym("Transposeoutput_dim_2".into()),
            ],
        );
    }
    v.push(case(
        "head_transposed_v8_style",
        enc(&m),
        vec![
            (Inspect, Expect::Accept),
            (Merge, refuse(&["YOLOv8", "output", "[1,85,420]"])),
            (Resize, refuse(&["YOLOv8"])),
        ],
    ));

    // flips in weights (issue 13): a Conv weight holding NaN or -Inf is refused by merge,
    // resize, quant-prep and check with the tensor and the count; inspect reports it
    for (name, bits, word) in [
        ("weight_nan", f32::NAN.to_le_bytes(), "3 NaN"),
        ("weight_neg_inf", f32::NEG_INFINITY.to_le_bytes(), "3 -Inf"),
    ] {
        let mut m = base();
        let g = m.graph.as_mut().unwrap();
        let conv = g
            .node
            .iter()
            .filter(|n| n.op_type() == "Conv")
            .nth(20)
            .unwrap()
            .clone();
        let w = g
            .initializer
            .iter_mut()
            .find(|t| t.name() == conv.input[1])
            .unwrap();
        let raw = w.raw_data.as_mut().expect("raw weights");
        let mut bytes = raw.to_vec();
        for k in [0usize, 7, 11] {
            bytes[4 * k..4 * k + 4].copy_from_slice(&bits);
        }
        *raw = bytes.into();
        let tensor = format!("`{}`: {word} of", conv.input[1]);
        v.push(case(
            name,
            enc(&m),
            vec![
                (Inspect, Expect::Accept),
                (Merge, refuse(&[&tensor, "--allow-nonfinite"])),
                (Resize, refuse(&[&tensor])),
                (QuantPrep, refuse(&[&tensor])),
                (CheckOrig, refuse(&[&tensor])),
                (CheckMerged, refuse(&[&tensor])),
            ],
        ));
    }

    // already merged
    let merged = merged_bytes();
    v.push(case(
        "already_merged",
        merged.clone(),
        vec![
            (Convert, Expect::Accept),
            (Inspect, Expect::Accept),
            (DiffB, Expect::Accept),
            (Set, Expect::Accept),
            (CheckMerged, Expect::Accept),
            (
                Merge,
                refuse(&["already merged", "main01_nonmaxsuppression11"]),
            ),
            (Resize, refuse(&["un-merged"])),
            (CheckOrig, refuse(&["un-merged"])),
        ],
    ));

    // an int64 score threshold in a merged model (ONNX NMS takes float)
    let mut m = ModelProto::decode(&merged[..]).unwrap();
    let g = m.graph.as_mut().unwrap();
    let t = g
        .initializer
        .iter_mut()
        .find(|t| t.name() == "main01_score_threshold")
        .unwrap();
    *t = tensor_i64("main01_score_threshold", &[1], &[0]);
    v.push(case(
        "int_score_threshold",
        enc(&m),
        vec![
            (Inspect, Expect::Accept),
            (Merge, refuse(&["already merged"])),
            (
                Set,
                refuse(&["main01_score_threshold", "is i64, expected f32"]),
            ),
            (CheckMerged, refuse(&["main01_nonmaxsuppression11"])),
        ],
    ));

    // a TensorRT plugin graph
    let mut m = base();
    m.opset_import.push(OperatorSetIdProto {
        domain: Some("TRT".into()),
        version: Some(1),
    });
    let g = m.graph.as_mut().unwrap();
    let mut trt = make_node(
        "EfficientNMS_TRT",
        "trt_nms",
        &["output", "output"],
        &["num_dets", "det_boxes", "det_scores", "det_classes"],
        vec![make_attr_i("max_output_boxes", 100)],
    );
    trt.domain = Some("TRT".into());
    g.node.push(trt);
    g.output = vec![
        make_vi(
            "num_dets",
            DataType::Int32 as i32,
            &[Dim::Known(1), Dim::Known(1)],
        ),
        make_vi(
            "det_boxes",
            DataType::Float as i32,
            &[Dim::Known(1), Dim::Known(100), Dim::Known(4)],
        ),
        make_vi(
            "det_scores",
            DataType::Float as i32,
            &[Dim::Known(1), Dim::Known(100)],
        ),
        make_vi(
            "det_classes",
            DataType::Int32 as i32,
            &[Dim::Known(1), Dim::Known(100)],
        ),
    ];
    v.push(case(
        "tensorrt_plugin",
        enc(&m),
        vec![
            (Convert, Expect::Accept),
            (Inspect, Expect::Accept),
            (DiffA, Expect::Accept),
            (Merge, refuse(&["EfficientNMS_TRT", "TensorRT"])),
            (Resize, refuse(&["TensorRT"])),
            (Set, refuse(&["EfficientNMS_TRT"])),
            (CheckOrig, refuse(&["TensorRT"])),
            (CheckMerged, refuse(&["no NonMaxSuppression"])),
            (Detect, refuse(&["TensorRT"])),
        ],
    ));
    v
}

/// External data: missing, short, escaping the model's folder (rich fixture).
fn external_cases() -> Vec<Case> {
    let model = std::fs::read(common::fixtures().join("rich_640x640.onnx")).unwrap();
    let data = std::fs::read(common::fixtures().join("rich_640x640.onnx.data")).unwrap();
    let m = ModelProto::decode(&model[..]).unwrap();
    let mut locs = Vec::new();
    postmerge::model::visit_tensors(&m, &mut |t| {
        if let Some(l) = postmerge::tensor::external_entry(t, "location") {
            locs.push(l.to_string());
        }
    });
    let loc = locs
        .first()
        .expect("rich fixture has external data")
        .clone();
    let mut v = Vec::new();
    let mut c = case(
        "missing_external_data",
        model.clone(),
        every(&ALL, refuse(&[&loc, "cannot be read"])),
    );
    c.files[0].0 = "missing_external_data.onnx".into();
    v.push(c);
    let mut c = case(
        "short_external_data",
        model.clone(),
        every(&ALL, refuse(&[&loc, "needs bytes"])),
    );
    c.files.push((loc.clone(), data[..data.len() / 2].to_vec()));
    v.push(c);
    let mut m2 = m.clone();
    for t in m2.graph.as_mut().unwrap().initializer.iter_mut() {
        for e in t.external_data.iter_mut().filter(|e| e.key() == "location") {
            e.value = Some(format!("../{loc}"));
        }
    }
    v.push(case(
        "external_data_escapes_folder",
        enc(&m2),
        every(
            &ALL,
            refuse(&["must be a relative path inside the model's folder"]),
        ),
    ));
    v
}

// ---------------------------------------------------------------------------------------------
// running
// ---------------------------------------------------------------------------------------------

fn has_subcommand(name: &str) -> bool {
    static HELP: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HELP.get_or_init(|| common::run(&["--help"]).1)
        .lines()
        .any(|l| l.trim_start().starts_with(&format!("{name} ")))
}

/// sha256 of every file under `dir` (to prove inputs are never touched).
fn hash_dir(dir: &Path) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        m.insert(
            e.file_name().to_string_lossy().into_owned(),
            common::file_hash(&e.path()),
        );
    }
    m
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

struct Paths {
    base: PathBuf,
    merged: PathBuf,
    image: PathBuf,
}

fn fixed_paths(root: &Path) -> Paths {
    let d = root.join("fixed");
    std::fs::create_dir_all(&d).unwrap();
    let base = d.join("base.onnx");
    std::fs::write(&base, base_bytes()).unwrap();
    let merged = d.join("merged.onnx");
    std::fs::write(&merged, merged_bytes()).unwrap();
    Paths {
        base,
        merged,
        image: common::shared().join("images/dog.jpg"),
    }
}

fn args_for(cmd: Cmd, input: &Path, out: &Path, p: &Paths) -> Vec<String> {
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let i = s(input);
    let o = s(out);
    let v: Vec<&str> = match cmd {
        Cmd::Convert => vec!["convert", &i, "-o", &o],
        Cmd::ConvertExternal(name) => vec!["convert", &i, "-o", &o, "--external-data", name],
        Cmd::ResizeMulti(a, b) => {
            return vec![
                "resize".into(),
                i,
                "-o".into(),
                s(&out.with_file_name("r_{h}x{w}.onnx")),
                "--size".into(),
                a.into(),
                "--size".into(),
                b.into(),
            ]
        }
        Cmd::Merge => vec!["merge", &i, "-o", &o],
        Cmd::Set => vec!["set", &i, "-o", &o, "--score", "0.3"],
        Cmd::Resize => vec!["resize", &i, "-o", &o, "--size", "96x96"],
        Cmd::QuantPrep => vec!["quant-prep", &i, "-o", &o],
        Cmd::Inspect => vec!["inspect", &i],
        Cmd::DiffA => return vec!["diff".into(), i, s(&p.base)],
        Cmd::DiffB => return vec!["diff".into(), s(&p.base), i],
        Cmd::CheckOrig => return vec!["check".into(), i, s(&p.merged)],
        Cmd::CheckMerged => return vec!["check".into(), s(&p.base), i],
        Cmd::Detect => {
            // a case may bring its own photo (never write near the shared one)
            let own = input.parent().unwrap().join("photo.jpg");
            let image = if own.exists() { own } else { p.image.clone() };
            let o = if out.file_name().map(|f| f == "out.onnx").unwrap_or(false) {
                out.with_extension("png")
            } else {
                out.to_path_buf()
            };
            return vec!["detect".into(), i, s(&image), "-o".into(), s(&o)];
        }
    };
    v.into_iter().map(String::from).collect()
}

#[derive(Default)]
struct Outcome {
    failures: Vec<String>,
    table: Vec<String>,
}

/// Run one (case, command) and check every promise.
fn run_one(
    c: &Case,
    cmd: Cmd,
    expect: &Expect,
    case_dir: &Path,
    out_dir: &Path,
    p: &Paths,
    o: &mut Outcome,
) {
    if cmd == Cmd::QuantPrep && !has_subcommand("quant-prep") {
        return;
    }
    let input = case_dir.join(&c.files[0].0);
    let out = match c.output {
        Some(f) => f(case_dir, out_dir),
        None => out_dir.join("out.onnx"),
    };
    let args = args_for(cmd, &input, &out, p);
    let before = hash_dir(case_dir);
    let fixed_before = hash_dir(p.base.parent().unwrap());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let t0 = std::time::Instant::now();
    let (code, _stdout, err) = common::run(&argv);
    if std::env::var_os("HOSTILE_TIMES").is_some() {
        eprintln!("{:>8.2}s {} {cmd:?}", t0.elapsed().as_secs_f64(), c.name);
    }
    let first = err.lines().next().unwrap_or("").to_string();
    o.table.push(format!(
        "{:<34} {:<12} exit {code}  {}",
        c.name,
        format!("{cmd:?}"),
        first.chars().take(150).collect::<String>()
    ));
    let tag = format!("[{} / {cmd:?}] `postmerge {}`", c.name, args.join(" "));
    let mut fail = |m: String| o.failures.push(format!("{tag}: {m}\n--- stderr:\n{err}"));
    // promises that hold whatever the outcome
    for bad in [
        "panicked",
        "internal error",
        "RUST_BACKTRACE",
        "stack backtrace",
    ] {
        if err.contains(bad) {
            fail(format!("stderr contains `{bad}`"));
        }
    }
    if hash_dir(case_dir) != before {
        fail("the input folder changed".into());
    }
    if hash_dir(p.base.parent().unwrap()) != fixed_before {
        fail("a fixed input (base / merged model) changed".into());
    }
    let files = listing(out_dir);
    if files
        .iter()
        .any(|f| f.starts_with(".postmerge-") || f.ends_with(".tmp"))
    {
        fail(format!("temp files left in the output folder: {files:?}"));
    }
    if listing(case_dir)
        .iter()
        .any(|f| f.starts_with(".postmerge-"))
    {
        fail("temp files left in the input folder".into());
    }
    let check_written = |fail: &mut dyn FnMut(String)| {
        if (WRITING.contains(&cmd) || matches!(cmd, Cmd::ConvertExternal(_)))
            && cmd != Cmd::Detect
            && out.exists()
        {
            if let Err(e) = postmerge::model::Model::load(&out) {
                fail(format!("exit 0 but the output does not load: {e:#}"));
            }
        }
    };
    match expect {
        Expect::Refuse(needles) => {
            if code != 2 {
                fail(format!("exit {code}, expected 2"));
            }
            if !err.starts_with("error: ") {
                fail("stderr does not start with `error: `".into());
            }
            let file = c.files[0].0.as_str();
            if c.names_input && !err.contains(file) {
                fail(format!("the message does not name the file `{file}`"));
            }
            for n in needles {
                if !err.contains(n.as_str()) {
                    fail(format!("the message does not say `{n}`"));
                }
            }
            if !files.is_empty() {
                fail(format!(
                    "output folder not empty after a refusal: {files:?}"
                ));
            }
        }
        Expect::Accept => {
            if code != 0 {
                fail(format!("exit {code}, expected 0"));
            }
            check_written(&mut fail);
        }
        Expect::Either => {
            let ok_codes: &[i32] = if matches!(cmd, Cmd::CheckOrig | Cmd::CheckMerged) {
                &[0, 1, 2]
            } else {
                &[0, 2]
            };
            if !ok_codes.contains(&code) {
                fail(format!("exit {code}"));
            }
            if code == 2 {
                if !err.starts_with("error: ") {
                    fail("stderr does not start with `error: `".into());
                }
                if !files.is_empty() {
                    fail(format!("output folder not empty after exit 2: {files:?}"));
                }
            } else {
                check_written(&mut fail);
            }
        }
    }
    for f in listing(out_dir) {
        let _ = std::fs::remove_file(out_dir.join(f));
    }
}

fn run_cases(cases: Vec<Case>) -> Outcome {
    let root = tempfile::tempdir().unwrap();
    let p = fixed_paths(root.path());
    let keep = std::env::var_os("POSTMERGE_CORPUS_OUT").map(PathBuf::from);
    let only = std::env::var("HOSTILE_ONLY").ok();
    let mut o = Outcome::default();
    for c in &cases {
        if only
            .as_deref()
            .map(|f| !c.name.contains(f))
            .unwrap_or(false)
        {
            continue; // HOSTILE_ONLY=substring runs a subset (debugging)
        }
        let case_dir = root.path().join("corpus/generated").join(&c.name);
        let out_dir = root.path().join("out").join(&c.name);
        std::fs::create_dir_all(&case_dir).unwrap();
        std::fs::create_dir_all(&out_dir).unwrap();
        for (name, bytes) in &c.files {
            std::fs::write(case_dir.join(name), bytes).unwrap();
            if let Some(k) = &keep {
                std::fs::create_dir_all(k.join(&c.name)).unwrap();
                std::fs::write(k.join(&c.name).join(name), bytes).unwrap();
            }
        }
        for (cmd, e) in &c.expect {
            run_one(c, *cmd, e, &case_dir, &out_dir, &p, &mut o);
        }
    }
    o
}

fn report(name: &str, o: Outcome) {
    println!("== {name}: {} runs", o.table.len());
    for l in &o.table {
        println!("{l}");
    }
    assert!(
        o.failures.is_empty(),
        "{} failures:\n\n{}",
        o.failures.len(),
        o.failures.join("\n\n")
    );
}

#[test]
fn hostile_file_level_corpus() {
    let Some(_) = common::shared_or_skip(
        "hostile file-level corpus (built from the shared YOLOX-nano 80c export)",
    ) else {
        return;
    };
    report("file level", run_cases(file_level_cases()));
}

#[test]
fn hostile_bit_flips() {
    let Some(_) = common::shared_or_skip(
        "hostile bit-flip corpus (built from the shared YOLOX-nano 80c export)",
    ) else {
        return;
    };
    report("bit flips", run_cases(bitflip_cases()));
}

#[test]
fn hostile_graph_corpus() {
    let Some(_) = common::shared_or_skip(
        "hostile graph-level corpus (built from the shared YOLOX-nano 80c export)",
    ) else {
        return;
    };
    report("graph level", run_cases(graph_cases()));
}

#[test]
fn hostile_external_data() {
    let Some(_) = common::shared_or_skip(
        "hostile external-data corpus (built from the shared YOLOX-nano 80c export)",
    ) else {
        return;
    };
    report("external data", run_cases(external_cases()));
}

// ---------------------------------------------------------------------------------------------
// output paths
// ---------------------------------------------------------------------------------------------

fn output_path_cases() -> Vec<Case> {
    use Cmd::*;
    let writers = [Convert, Merge, Resize, QuantPrep, Detect];
    let mut v = Vec::new();
    let mk =
        |name: &str, bytes: Vec<u8>, cmds: &[Cmd], e: Expect, out: fn(&Path, &Path) -> PathBuf| {
            Case {
                name: name.into(),
                files: vec![
                    (format!("{name}.onnx"), bytes),
                    ("afile".into(), b"a regular file".to_vec()),
                ],
                expect: every(cmds, e),
                names_input: false,
                output: Some(out),
            }
        };
    // parent of the output is a regular file (root ignores chmod, so a read-only folder would not
    // stop this test's writes; a file in the way does)
    v.push(mk(
        "out_parent_is_a_file",
        base_bytes(),
        &writers,
        refuse(&["afile"]),
        |d, _| d.join("afile").join("out.onnx"),
    ));
    v.push(mk(
        "out_parent_is_a_file_set",
        merged_bytes(),
        &[Set],
        refuse(&["afile"]),
        |d, _| d.join("afile").join("out.onnx"),
    ));
    v.push(mk(
        "out_folder_missing",
        base_bytes(),
        &writers,
        refuse(&["no_such_folder"]),
        |_, o| o.join("no_such_folder/deeper/out.onnx"),
    ));
    v.push(mk(
        "out_folder_missing_set",
        merged_bytes(),
        &[Set],
        refuse(&["no_such_folder"]),
        |_, o| o.join("no_such_folder/deeper/out.onnx"),
    ));
    // output = input without --in-place: same spelling, another spelling, through a symlink
    let same = refuse(&["is the input file", "--in-place"]);
    v.push(mk(
        "out_is_input",
        base_bytes(),
        &[Convert, Merge, Resize, QuantPrep],
        same.clone(),
        |d, _| d.join("out_is_input.onnx"),
    ));
    v.push(mk(
        "out_is_input_set",
        merged_bytes(),
        &[Set],
        same.clone(),
        |d, _| d.join("out_is_input_set.onnx"),
    ));
    v.push(mk(
        "out_is_input_dotdot",
        base_bytes(),
        &[Convert, Merge, Resize],
        same.clone(),
        |d, _| d.join("../out_is_input_dotdot/out_is_input_dotdot.onnx"),
    ));
    v.push(mk(
        "out_is_input_symlink",
        base_bytes(),
        &[Convert, Merge, Resize],
        same.clone(),
        |d, _| {
            let l = d.join("link.onnx");
            let _ = std::os::unix::fs::symlink(d.join("out_is_input_symlink.onnx"), &l);
            l
        },
    ));
    // detect writes a PNG: onto its model or its photo it would destroy an input
    v.push(mk(
        "detect_out_is_model",
        base_bytes(),
        &[Detect],
        refuse(&["is the input file"]),
        |d, _| d.join("detect_out_is_model.onnx"),
    ));
    let mut c = mk(
        "detect_out_is_photo",
        base_bytes(),
        &[Detect],
        refuse(&["is the input file"]),
        |d, _| d.join("photo.jpg"),
    );
    c.files.push((
        "photo.jpg".into(),
        std::fs::read(common::shared().join("images/dog.jpg")).unwrap(),
    ));
    v.push(c);
    // convert --external-data of a model whose small tensors are already external: they all move
    // into the new data file (a loadable output) — and a new data file with the old one's name in
    // the input's folder is refused rather than clobbering the input
    let rich = std::fs::read(common::fixtures().join("rich_640x640.onnx")).unwrap();
    let rich_data = std::fs::read(common::fixtures().join("rich_640x640.onnx.data")).unwrap();
    let mut c = mk(
        "external_data_relayout",
        rich.clone(),
        &[ConvertExternal("new.onnx.data")],
        Expect::Accept,
        |_, o| o.join("out.onnx"),
    );
    c.files
        .push(("rich_640x640.onnx.data".into(), rich_data.clone()));
    v.push(c);
    let mut c = mk(
        "external_data_same_name",
        rich,
        &[ConvertExternal("rich_640x640.onnx.data")],
        refuse(&["rich_640x640.onnx.data", "the input's own data file"]),
        |d, _| d.join("copy.onnx"),
    );
    c.files.push(("rich_640x640.onnx.data".into(), rich_data));
    v.push(c);
    // several sizes, one invalid: exit 2, but the valid sizes are written (not all-or-nothing)
    v.push(mk(
        "resize_one_size_invalid",
        base_bytes(),
        &[ResizeMulti("96x96", "100x100")],
        refuse(&["100x100", "multiples", "no output written"]),
        |_, o| o.join("out.onnx"),
    ));
    v.push(mk(
        "resize_both_sizes_valid",
        base_bytes(),
        &[ResizeMulti("96x96", "256x320")],
        Expect::Accept,
        |_, o| o.join("out.onnx"),
    ));
    v
}

#[test]
fn hostile_output_paths() {
    let Some(_) = common::shared_or_skip(
        "hostile output-path corpus (built from the shared YOLOX-nano 80c export and dog.jpg)",
    ) else {
        return;
    };
    report("output paths", run_cases(output_path_cases()));
}

// ---------------------------------------------------------------------------------------------
// inputs found by fuzzing (tests/corpus/regressions, see its README.md and FUZZING.md)
// ---------------------------------------------------------------------------------------------

fn regressions_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/regressions")
}

/// Every committed regression input, with what each subcommand must do with it today.
fn regression_cases() -> Vec<Case> {
    use Cmd::*;
    let read =
        |f: &str| std::fs::read(regressions_dir().join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    let mut v = Vec::new();
    for (f, batch) in [
        ("fuzz-passes-merge-batch-2pow62", "4611686018427387904"),
        ("fuzz-passes-merge-batch-3425826962", "3425826962"),
    ] {
        // merge used to allocate `batch` ids (capacity overflow / OOM in passes/merge.rs append_topk)
        v.push(case(
            f,
            read(&format!("{f}.onnx")),
            vec![
                (Inspect, Expect::Accept),
                (Convert, Expect::Accept),
                // merge now checks the graph's references first: these fuzz inputs also read a tensor
                // nothing defines, which it names (the batch bound still guards resize and check)
                (
                    Merge,
                    refuse(&["which no node, input or initializer defines"]),
                ),
                // resize and check recognize the head (the batch bound) before they validate
                // the nodes; this input's huge batch also breaks a Sigmoid, leaving a dangling read
                (Resize, refuse(&[dangling_or_batch(f, batch)])),
                (CheckOrig, refuse(&[dangling_or_batch(f, batch)])),
            ],
        ));
    }
    let f = "fuzz-inspect-param-bytes-overflow";
    v.push(case(
        f,
        read(&format!("{f}.onnx")),
        vec![
            (Inspect, Expect::Accept),
            (Convert, Expect::Accept),
            (DiffB, Expect::Accept),
        ],
    ));
    // found by hand while building the corpus; they used to abort (an allocation failure is not a
    // panic: no catch_unwind, SIGABRT), now both sizes are checked before anything is allocated
    let f = "open-set-threshold-dims-1e12";
    v.push(case(
        f,
        read(&format!("{f}.onnx")),
        vec![
            (Inspect, Expect::Accept),
            (Merge, refuse(&["already merged"])),
            (
                Set,
                refuse(&["main01_score_threshold", "expected one value"]),
            ),
        ],
    ));
    let f = "open-check-merged-input-100000x100000";
    v.push(case(
        f,
        read(&format!("{f}.onnx")),
        vec![
            (Inspect, Expect::Accept),
            (Merge, refuse(&["100000"])),
            (CheckMerged, refuse(&["100000", "GiB"])),
        ],
    ));
    v
}

/// What resize/check name first for a fuzz input with a huge batch: the batch, or (for the one
/// whose mutation also cut a node's output) the tensor nothing defines.
fn dangling_or_batch<'a>(f: &str, batch: &'a str) -> &'a str {
    if f.ends_with("2pow62") {
        "which no node, input or initializer defines"
    } else {
        batch
    }
}

#[test]
fn fuzz_regressions_replay() {
    // 1. through the library, as the fuzz targets call it: no panic
    let mut n = 0;
    for e in std::fs::read_dir(regressions_dir()).unwrap().flatten() {
        let p = e.path();
        if p.extension().map(|x| x != "onnx").unwrap_or(true) {
            continue;
        }
        n += 1;
        let data = std::fs::read(&p).unwrap();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let r = std::panic::catch_unwind(|| {
            let Ok(m) = postmerge::model::Model::from_bytes(bytes::Bytes::from(data), &name) else {
                return;
            };
            let _ = postmerge::inspect::inspect(&m);
            if let Ok(h) = postmerge::head::recognize(&m, None) {
                let _ = postmerge::resdep::find_resolution_constants(&m, &h);
            }
            let _ = postmerge::shape::infer(&m, &Default::default());
            let _ = postmerge::passes::merge::merge(&mut m.clone(), &Default::default());
            for (h, w) in [(128, 160), (96, 96)] {
                let _ = postmerge::passes::resize::resize(
                    &mut m.clone(),
                    &postmerge::passes::resize::ResizeOptions {
                        height: h,
                        width: w,
                        batch: None,
                    },
                );
            }
        });
        assert!(r.is_ok(), "{name}: the library panicked");
    }
    assert!(
        n >= 3,
        "regression inputs missing from {}",
        regressions_dir().display()
    );
    // 2. through the binary, with the per-command expectations
    let Some(_) = common::shared_or_skip(
        "fuzz regressions through the binary (next to the shared YOLOX-nano 80c export)",
    ) else {
        return;
    };
    report("fuzz regressions", run_cases(regression_cases()));
}
