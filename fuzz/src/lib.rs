//! Shared parts of the postmerge fuzz targets: what each target runs on one input, and a
//! structure-aware mutator for ONNX models.
//!
//! Byte-level mutations of a 3 MB model almost always land in weight data (which no pass reads)
//! or break the protobuf at once, so half of the mutations decode the model, edit the graph the
//! way a broken exporter or a hand edit would (attributes, int constants, dims, node wiring, op
//! types, shapes of the I/O) and re-encode it; the other half are libFuzzer's own byte mutations.

use bytes::Bytes;
use postmerge::model::Model;
use postmerge::onnx::{attribute_proto::AttributeType, tensor_proto::DataType, ModelProto, TensorProto};
use prost::Message;

/// Decode like the CLI does for a file: bytes with no folder (external data is refused).
pub fn decode(data: &[u8]) -> Option<Model> {
    Model::from_bytes(Bytes::copy_from_slice(data), "fuzz.onnx").ok()
}

/// Target (a): decode + inspect (+ its renderings and a self-diff).
pub fn run_inspect(data: &[u8]) {
    let Some(m) = decode(data) else { return };
    if let Ok(r) = postmerge::inspect::inspect(&m) {
        let _ = postmerge::inspect::render(&r);
        let _ = serde_json::to_string(&r);
    }
    if let Ok(d) = postmerge::diff::diff(&m, &m) {
        let _ = postmerge::diff::render(&d);
    }
}

/// Target (b): merge (default options and a fixed-size layout, then `set` on the merge),
/// quant-prep, and resize to 128x160 and 96x96, then merge the resized models; every result is
/// encoded and decoded again.
pub fn run_passes(data: &[u8]) {
    let Some(m) = decode(data) else { return };
    let _ = postmerge::shape::infer(&m, &Default::default());
    let mut merged = m.clone();
    if postmerge::passes::merge::merge(&mut merged, &Default::default()).is_ok() {
        roundtrip(&merged);
        let mut set = merged.clone();
        let _ = postmerge::passes::set::set(&mut set, &postmerge::passes::set::SetOptions { score_threshold: Some(0.3), iou_threshold: Some(0.5), max_per_class: Some(7) });
    }
    let mut trt = m.clone();
    let opts = postmerge::passes::merge::MergeOptions {
        layout: Some(postmerge::postprocess::Layout::Trt { max_det: 10 }),
        agnostic: true,
        thresholds: postmerge::passes::merge::Thresholds::Inputs,
        max_det: 10,
        ..Default::default()
    };
    if postmerge::passes::merge::merge(&mut trt, &opts).is_ok() {
        roundtrip(&trt);
    }
    // quant-prep: the decoded layout with [0,1] boxes, then the graph preparation
    let mut q = m.clone();
    let qopts = postmerge::passes::merge::MergeOptions {
        layout: Some(postmerge::postprocess::Layout::Decoded),
        normalize_boxes: true,
        ..Default::default()
    };
    if postmerge::passes::merge::merge(&mut q, &qopts).is_ok()
        && postmerge::passes::quant_prep::quant_prep(&mut q, &Default::default()).is_ok()
    {
        roundtrip(&q);
    }
    for (h, w) in [(128, 160), (96, 96)] {
        let mut r = m.clone();
        let o = postmerge::passes::resize::ResizeOptions { height: h, width: w, batch: None };
        if postmerge::passes::resize::resize(&mut r, &o).is_ok() {
            roundtrip(&r);
            let _ = postmerge::passes::merge::merge(&mut r, &Default::default());
        }
    }
}

fn roundtrip(m: &Model) {
    if let Ok(b) = m.to_bytes() {
        let _ = decode(&b);
    }
}

// ---------------------------------------------------------------------------------------------
// structure-aware mutation
// ---------------------------------------------------------------------------------------------

/// xorshift64*: small, seeded, deterministic.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// Integers that break shape arithmetic.
pub const INTERESTING: &[i64] = &[
    0, 1, -1, 2, -2, 3, 4, 5, 6, 7, 8, 16, 32, 64, 85, 127, 255, 256, 1024, 8400, 65535,
    i32::MAX as i64, i32::MIN as i64, 1 << 31, 1 << 32, 1_000_000_000_000, 1 << 62, i64::MAX, i64::MIN,
    i64::MIN + 1, -1_000_000_000_000,
];

const OPS: &[&str] = &[
    "Add", "Mul", "Div", "Sub", "Concat", "Reshape", "Transpose", "Slice", "Gather", "Unsqueeze", "Squeeze",
    "Split", "Range", "ConstantOfShape", "Expand", "Tile", "Conv", "MaxPool", "AveragePool", "Resize",
    "Shape", "Cast", "Sigmoid", "Exp", "Flatten", "MatMul", "Gemm", "TopK", "ReduceSum", "ArgMax",
    "NonMaxSuppression", "Where", "Identity", "Constant", "GlobalAveragePool", "ScatterND", "NonZero",
    "EfficientNMS_TRT", "If", "Softmax",
];

fn interesting(r: &mut Rng) -> i64 {
    if r.chance(4) {
        (r.next() as i64) >> r.below(63)
    } else {
        INTERESTING[r.below(INTERESTING.len())]
    }
}

fn mutate_tensor(r: &mut Rng, t: &mut TensorProto) {
    let numel = postmerge::tensor::numel(&t.dims).unwrap_or(usize::MAX);
    match r.below(6) {
        0 if !t.dims.is_empty() => {
            let i = r.below(t.dims.len());
            t.dims[i] = interesting(r);
        }
        1 => {
            if r.chance(2) || t.dims.is_empty() {
                t.dims.push(interesting(r).clamp(-2, 1 << 40));
            } else {
                t.dims.pop();
            }
        }
        2 => {
            let dts = [DataType::Float, DataType::Int64, DataType::Int32, DataType::Bool, DataType::Double, DataType::String, DataType::Uint8, DataType::Float16];
            t.data_type = Some(dts[r.below(dts.len())] as i32);
        }
        _ if numel <= 64 => {
            // rewrite one element in place (any storage)
            if let Ok(v) = postmerge::tensor::values(t) {
                let mut vals = v.as_i64();
                if !vals.is_empty() {
                    let i = r.below(vals.len());
                    vals[i] = interesting(r);
                } else {
                    vals.push(interesting(r));
                }
                let nv = if v.is_float() {
                    postmerge::tensor::Values::F32(vals.iter().map(|&x| if r.chance(8) { f32::NAN } else { x as f32 }).collect())
                } else {
                    postmerge::tensor::Values::I64(vals)
                };
                let dims = if nv.len() == numel { t.dims.clone() } else { vec![nv.len() as i64] };
                let name = t.name.clone();
                *t = postmerge::tensor::tensor_from_values("", &dims, &nv);
                t.name = name;
            }
        }
        _ => {
            // truncate or drop the data
            if let Some(raw) = &t.raw_data {
                let k = r.below(raw.len() + 1);
                t.raw_data = Some(raw.slice(..k));
            } else {
                t.float_data.clear();
                t.int64_data.clear();
            }
        }
    }
}

/// One structural edit of a decoded model. Returns false when nothing was changed.
pub fn mutate_model(r: &mut Rng, m: &mut ModelProto) -> bool {
    let Some(g) = m.graph.as_mut() else { return false };
    let nn = g.node.len();
    // names to rewire to
    let mut names: Vec<String> = g.node.iter().flat_map(|n| n.output.iter().cloned()).collect();
    names.extend(g.input.iter().map(|i| i.name().to_string()));
    names.extend(g.initializer.iter().map(|t| t.name().to_string()));
    match r.below(12) {
        // attributes
        0..=2 if nn > 0 => {
            let n = &mut g.node[r.below(nn)];
            if n.attribute.is_empty() {
                let names = ["axis", "axes", "perm", "kernel_shape", "strides", "pads", "split", "to", "keepdims", "starts", "ends"];
                n.attribute.push(postmerge::graph::make_attr_ints(names[r.below(names.len())], &[interesting(r)]));
                return true;
            }
            let k = r.below(n.attribute.len());
            let a = &mut n.attribute[k];
            match r.below(6) {
                0 => {
                    n.attribute.remove(k);
                }
                1 if !a.ints.is_empty() => {
                    let i = r.below(a.ints.len());
                    a.ints[i] = interesting(r);
                }
                2 if !a.ints.is_empty() => {
                    if r.chance(2) {
                        a.ints.pop();
                    } else {
                        a.ints.push(interesting(r));
                    }
                }
                3 => {
                    a.i = Some(interesting(r));
                    a.r#type = Some(AttributeType::Int as i32);
                }
                4 => {
                    if let Some(t) = a.t.as_mut() {
                        mutate_tensor(r, t);
                    } else {
                        a.f = Some(if r.chance(2) { f32::NAN } else { interesting(r) as f32 });
                    }
                }
                _ => {
                    a.r#type = Some(r.below(15) as i32);
                }
            }
            true
        }
        // small constants (shapes, thresholds, grids)
        3..=5 => {
            let small: Vec<usize> = (0..g.initializer.len()).filter(|&i| postmerge::tensor::numel(&g.initializer[i].dims).map(|c| c <= 64).unwrap_or(true)).collect();
            if small.is_empty() {
                return false;
            }
            let i = small[r.below(small.len())];
            mutate_tensor(r, &mut g.initializer[i]);
            true
        }
        // wiring
        6 if nn > 0 => {
            let n = &mut g.node[r.below(nn)];
            match r.below(5) {
                0 if !n.input.is_empty() => {
                    let i = r.below(n.input.len());
                    n.input[i] = names[r.below(names.len())].clone(); // may create a cycle
                }
                1 if !n.input.is_empty() => {
                    let i = r.below(n.input.len());
                    n.input.remove(i);
                }
                2 => n.input.push(if r.chance(2) { "dangling".into() } else { String::new() }),
                3 if !n.output.is_empty() => {
                    if r.chance(2) {
                        n.output.clear();
                    } else {
                        n.output.push(names[r.below(names.len())].clone()); // duplicate producer
                    }
                }
                _ if !n.input.is_empty() => {
                    let i = r.below(n.input.len());
                    n.input[i] = "dangling".into();
                }
                _ => return false,
            }
            true
        }
        // op type / domain
        7 if nn > 0 => {
            let n = &mut g.node[r.below(nn)];
            n.op_type = Some(OPS[r.below(OPS.len())].to_string());
            if r.chance(8) {
                n.domain = Some(if r.chance(2) { "TRT".into() } else { "com.microsoft".into() });
            }
            true
        }
        8 if nn > 0 => {
            let i = r.below(nn);
            if r.chance(2) {
                g.node.remove(i);
            } else {
                let n = g.node[i].clone();
                g.node.push(n);
            }
            true
        }
        // declared I/O shapes
        9 | 10 => {
            use postmerge::onnx::tensor_shape_proto::dimension::Value as DV;
            let vis: Vec<&mut postmerge::onnx::ValueInfoProto> = g.input.iter_mut().chain(g.output.iter_mut()).collect();
            if vis.is_empty() {
                return false;
            }
            let k = r.below(vis.len());
            let v = vis.into_iter().nth(k).unwrap();
            let Some(postmerge::onnx::type_proto::Value::TensorType(tt)) = v.r#type.as_mut().and_then(|t| t.value.as_mut()) else { return false };
            if r.chance(6) {
                tt.elem_type = Some(r.below(17) as i32);
                return true;
            }
            let Some(sh) = tt.shape.as_mut() else {
                tt.shape = Some(Default::default());
                return true;
            };
            if sh.dim.is_empty() || r.chance(6) {
                sh.dim.push(Default::default());
                return true;
            }
            let i = r.below(sh.dim.len());
            sh.dim[i].value = Some(match r.below(4) {
                0 => DV::DimParam("N".into()),
                1 => DV::DimValue(interesting(r)),
                _ => DV::DimValue(interesting(r).clamp(-1, 4096)),
            });
            true
        }
        _ => {
            if r.chance(3) && !g.output.is_empty() {
                let i = r.below(g.output.len());
                g.output.remove(i);
            } else if !g.output.is_empty() && !names.is_empty() {
                let i = r.below(g.output.len());
                g.output[i].name = Some(names[r.below(names.len())].clone());
            } else {
                return false;
            }
            true
        }
    }
}

/// The mutator given to libFuzzer: structural edits (1-3 of them) when the input decodes as a
/// model and the re-encoded result fits `max_size`, libFuzzer's byte mutations otherwise.
pub fn mutate(data: &mut [u8], size: usize, max_size: usize, seed: u32, byte_mutate: impl Fn(&mut [u8], usize, usize) -> usize) -> usize {
    let mut r = Rng::new(seed as u64 ^ 0x5eed);
    if !r.chance(3) {
        if let Ok(mut m) = ModelProto::decode(&data[..size]) {
            let k = 1 + r.below(3);
            let mut changed = false;
            for _ in 0..k {
                changed |= mutate_model(&mut r, &mut m);
            }
            if changed {
                let out = m.encode_to_vec();
                if out.len() <= max_size {
                    data[..out.len()].copy_from_slice(&out);
                    return out.len();
                }
            }
        }
    }
    byte_mutate(data, size, max_size)
}
