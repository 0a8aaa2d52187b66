//! `--input-format`: preprocessing in the graph, for camera frames (issue 12 item 3).
//!
//! A float NCHW export takes `[B, 3, H, W]` in its family's convention (YOLOX: BGR 0..255;
//! Gold-YOLO / YOLOv6: RGB / 255). With `nhwc-u8-bgr` or `nhwc-u8-rgb` the graph input keeps its
//! name but becomes a uint8 frame `[B, H, W, 3]` (the letterboxed picture as a camera or OpenCV
//! gives it), and the pass prepends, in this order:
//!
//! 1. `Cast(to = float)`;
//! 2. `Transpose(perm = [0, 3, 1, 2])` (NHWC → NCHW);
//! 3. `Gather(axis = 1, indices = [2, 1, 0])` when the frame's channel order is not the family's
//!    (BGR frame into Gold-YOLO, RGB frame into YOLOX), nothing otherwise;
//! 4. `Div(255)` for Gold-YOLO (its exporter's `img /= 255`), nothing for YOLOX.
//!
//! The result of the last step is exactly the tensor the float model reads (the original readers
//! now read it), so a frame `u` gives the same head output as the float tensor
//! [`frame_to_nchw`]`(u)`. Batch and size dims are carried over as they were (symbolic stays
//! symbolic). The letterbox itself stays outside the model (it depends on the photo's size).
//!
//! The format is recorded in the metadata key [`METADATA_KEY`] (value: the format name, then a
//! description), which `check`, `detect` and `inspect` read. `nchw-f32` is the default and
//! changes nothing.

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::builder::Builder;
use crate::families::{AsFamily, Family};
use crate::graph::{describe, make_attr_i, make_attr_ints, subgraph_outer_inputs};
use crate::head::recognize;
use crate::model::Model;
use crate::npy::{Npy, NpyData};
use crate::onnx::tensor_proto::DataType;
use crate::onnx::type_proto;
use crate::passes::{default_opset, set_metadata};
use crate::shape::{fmt_shape, make_vi, vi_dtype, vi_shape, Dim};

/// Metadata key holding the input format of a model made by this pass.
pub const METADATA_KEY: &str = "postmerge.input_format";

/// Prefix of the prepended nodes and initializers.
pub const PREFIX: &str = "postmerge/input_";

/// What the model's image input takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum InputFormat {
    /// Float `[B, 3, H, W]` in the family's own convention (the export as it is).
    #[default]
    NchwF32,
    /// uint8 `[B, H, W, 3]`, channels B, G, R (OpenCV's `imread` / most camera APIs).
    NhwcU8Bgr,
    /// uint8 `[B, H, W, 3]`, channels R, G, B (PIL, picamera2 `RGB888` arrays).
    NhwcU8Rgb,
}

impl InputFormat {
    pub const ALL: [InputFormat; 3] = [
        InputFormat::NchwF32,
        InputFormat::NhwcU8Bgr,
        InputFormat::NhwcU8Rgb,
    ];

    pub fn name(self) -> &'static str {
        match self {
            InputFormat::NchwF32 => "nchw-f32",
            InputFormat::NhwcU8Bgr => "nhwc-u8-bgr",
            InputFormat::NhwcU8Rgb => "nhwc-u8-rgb",
        }
    }

    /// Parse a format name (`nchw-f32`, `nhwc-u8-bgr`, `nhwc-u8-rgb`).
    pub fn parse(s: &str) -> Result<InputFormat> {
        InputFormat::ALL
            .into_iter()
            .find(|f| f.name() == s.trim())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "input format `{s}` is not one of {}",
                    InputFormat::ALL.map(|f| f.name()).join(", ")
                )
            })
    }

    /// Does the model take uint8 NHWC frames?
    pub fn is_frame(self) -> bool {
        self != InputFormat::NchwF32
    }

    /// Channel order of the frame (`None` for float NCHW).
    pub fn frame_is_bgr(self) -> Option<bool> {
        match self {
            InputFormat::NchwF32 => None,
            InputFormat::NhwcU8Bgr => Some(true),
            InputFormat::NhwcU8Rgb => Some(false),
        }
    }
}

impl std::fmt::Display for InputFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The float convention of a family: (channels are BGR, divided by 255).
pub fn family_convention(f: impl AsFamily) -> Result<(bool, bool)> {
    let pp = f.as_family()?.def().preprocess();
    Ok((!pp.rgb, pp.div255))
}

/// What the pass did.
#[derive(Debug, Clone, Serialize)]
pub struct InputFormatReport {
    pub format: InputFormat,
    /// The family whose convention the prepended ops reproduce.
    pub family: Family,
    pub input: String,
    /// The input shape before (float NCHW) and after (uint8 NHWC).
    pub from_shape: String,
    pub to_shape: String,
    /// Prepended nodes, in order (`Name (Op)` with their parameters).
    pub prepended: Vec<String>,
    /// The channels were reordered in the graph.
    pub channel_swap: bool,
    /// The divisor applied in the graph (255 for Gold-YOLO), none for YOLOX.
    pub divisor: Option<f32>,
}

/// The input format a model declares ([`METADATA_KEY`]); `nchw-f32` when it declares none.
/// A declaration that does not match the graph input is an error.
pub fn input_format(m: &Model) -> Result<InputFormat> {
    let Some(e) = m
        .proto
        .metadata_props
        .iter()
        .find(|e| e.key() == METADATA_KEY)
    else {
        return Ok(InputFormat::NchwF32);
    };
    let word = e.value().split_whitespace().next().unwrap_or("");
    let fmt = InputFormat::parse(word)
        .with_context(|| format!("metadata `{METADATA_KEY}` = `{}`", e.value()))?;
    if fmt.is_frame() {
        let (name, shape, dt) = image_input(m, true)?;
        if dt != DataType::Uint8 as i32 || shape.get(3).and_then(Dim::known) != Some(3) {
            bail!(
                "metadata `{METADATA_KEY}` says {fmt} but input `{name}` is {} {}",
                crate::tensor::dtype_name(dt),
                fmt_shape(&shape)
            );
        }
    }
    Ok(fmt)
}

/// Does the model take uint8 NHWC frames (declared in metadata and matching the input)?
/// Never fails: a bad declaration counts as "no".
pub fn takes_frames(m: &Model) -> bool {
    input_format(m).map(|f| f.is_frame()).unwrap_or(false)
}

/// The image input: the first non-initializer graph input of rank 4 (as head recognition picks
/// it); `frame` = whether an NHWC uint8 input is expected (only used for the message).
fn image_input(m: &Model, frame: bool) -> Result<(String, Vec<Dim>, i32)> {
    let g = m.graph();
    let inits: std::collections::HashSet<&str> = g.initializer.iter().map(|t| t.name()).collect();
    for i in g.input.iter().filter(|i| !inits.contains(i.name())) {
        if let Some(s) = vi_shape(i) {
            if s.len() == 4 {
                return Ok((i.name().to_string(), s, vi_dtype(i).unwrap_or(0)));
            }
        }
    }
    bail!(
        "no image input: expected a graph input of shape {}",
        if frame {
            "[B, H, W, 3]"
        } else {
            "[B, 3, H, W]"
        }
    )
}

/// The family whose preprocessing a model expects: `family` if given, else what `merge` recorded
/// (`postmerge.merge` family=...), else the recognized head.
pub fn preprocessing_family(m: &Model, family: Option<Family>) -> Result<Family> {
    if let Some(f) = family {
        return Ok(f);
    }
    if let Some(family) = crate::record::MergeRecord::of(m)
        .and_then(|r| r.family)
        .and_then(|id| crate::families::by_id(&id))
    {
        return Ok(family);
    }
    let head = recognize(m, None)
        .context("cannot tell which preprocessing the model expects (pass --family)")?;
    match head.family.family() {
        Some(f) => Ok(f),
        None => bail!(
            "cannot tell which preprocessing the model expects: it is {} without postmerge's metadata (pass --family)",
            head.family.label()
        ),
    }
}

/// `[B, H, W, 3]` → the model's `(B, H, W)` for a frame model, `[B, 3, H, W]` → `(B, H, W)`
/// otherwise.
pub fn batch_hw(shape: &[Dim], fmt: InputFormat) -> Option<(Dim, Dim, Dim)> {
    if shape.len() != 4 {
        return None;
    }
    Some(if fmt.is_frame() {
        (shape[0].clone(), shape[1].clone(), shape[2].clone())
    } else {
        (shape[0].clone(), shape[2].clone(), shape[3].clone())
    })
}

/// The input shape in NCHW order (`[B, H, W, 3]` → `[B, 3, H, W]` for frame models).
pub fn nchw_view(shape: &[Dim], fmt: InputFormat) -> Vec<Dim> {
    match batch_hw(shape, fmt) {
        Some((b, h, w)) if fmt.is_frame() => vec![b, Dim::Known(3), h, w],
        _ => shape.to_vec(),
    }
}

/// Refuse a model that already takes frames (merge, resize and quant-prep work on float NCHW
/// exports; the input format is applied last).
pub fn ensure_float_input(m: &Model) -> Result<()> {
    let fmt = input_format(m)?;
    if fmt.is_frame() {
        bail!(
            "`{}` already takes uint8 NHWC frames ({METADATA_KEY} = {fmt}); merge, resize and quant-prep work on the float NCHW export: run them on that file and pass --input-format {fmt}",
            m.source
        );
    }
    Ok(())
}

/// Make `m` take `fmt` (see the module doc). `family` overrides the family whose convention is
/// reproduced. Returns `None` (model untouched) for `nchw-f32`.
pub fn apply(
    m: &mut Model,
    fmt: InputFormat,
    family: Option<Family>,
) -> Result<Option<InputFormatReport>> {
    let current = input_format(m)?;
    if current.is_frame() {
        bail!(
            "input already takes uint8 NHWC frames ({METADATA_KEY} = {current}); apply --input-format to the float model"
        );
    }
    if !fmt.is_frame() {
        return Ok(None);
    }
    let family = preprocessing_family(m, family)?;
    let (input, shape, dt) = image_input(m, false)?;
    if dt != DataType::Float as i32 {
        bail!(
            "input `{input}` is {}, expected float32 [B, 3, H, W] (the exporter's float input)",
            crate::tensor::dtype_name(dt)
        );
    }
    if shape[1].known() != Some(3) {
        bail!(
            "input `{input}` has shape {}: expected [B, 3, H, W] (NCHW, 3 channels)",
            fmt_shape(&shape)
        );
    }
    let opset = default_opset(&m.proto);
    if opset < 6 {
        bail!("opset {opset}: the prepended Cast needs opset 6 or later");
    }
    let g = m.graph();
    if g.output.iter().any(|o| o.name() == input) {
        bail!("input `{input}` is also a graph output; refusing to change its type");
    }
    if let Some(n) = g
        .node
        .iter()
        .find(|n| subgraph_outer_inputs(n).iter().any(|s| *s == input))
    {
        bail!(
            "{} reads input `{input}` inside a subgraph; the input format cannot be changed there",
            describe(n)
        );
    }
    let (bgr, div) = family_convention(family)?;
    let swap = fmt.frame_is_bgr() != Some(bgr);
    let n0 = m.graph().node.len();
    let g = m.graph_mut();
    let mut b = Builder::new(g, PREFIX, opset);
    let mut prepended = Vec::new();
    let x = b.op(
        "Cast",
        &[&input],
        vec![make_attr_i("to", DataType::Float as i64)],
    );
    prepended.push("Cast(to float)".to_string());
    let mut y = b.op(
        "Transpose",
        &[&x],
        vec![make_attr_ints("perm", &[0, 3, 1, 2])],
    );
    prepended.push("Transpose(perm 0,3,1,2)".to_string());
    let mut vis = vec![
        make_vi(
            &x,
            DataType::Float as i32,
            &[
                shape[0].clone(),
                shape[2].clone(),
                shape[3].clone(),
                Dim::Known(3),
            ],
        ),
        make_vi(&y, DataType::Float as i32, &shape),
    ];
    if swap {
        let idx = b.const_i64("channel_order", &[3], &[2, 1, 0]);
        y = b.op("Gather", &[&y, &idx], vec![make_attr_i("axis", 1)]);
        prepended.push(format!(
            "Gather(axis 1, [2,1,0]: {} frame to {})",
            if bgr { "RGB" } else { "BGR" },
            if bgr { "BGR" } else { "RGB" }
        ));
        vis.push(make_vi(&y, DataType::Float as i32, &shape));
    }
    if div {
        let c = b.const_f32("scale", &[], &[255.0]);
        y = b.op("Div", &[&y, &c], vec![]);
        prepended.push("Div(255)".to_string());
        vis.push(make_vi(&y, DataType::Float as i32, &shape));
    }
    let names: Vec<String> = g.node[n0..].iter().map(|n| n.name().to_string()).collect();
    // the original readers of the float input now read the preprocessed tensor
    for n in g.node[..n0].iter_mut() {
        for i in n.input.iter_mut() {
            if *i == input {
                *i = y.clone();
            }
        }
    }
    let k = g.node.len() - n0;
    g.node.rotate_right(k);
    g.value_info.retain(|v| v.name() != input);
    g.value_info.extend(vis);
    // the graph input: same name and dims, now uint8 [B, H, W, 3]
    let vi = g
        .input
        .iter_mut()
        .find(|i| i.name() == input)
        .expect("image input exists");
    if let Some(type_proto::Value::TensorType(tt)) =
        vi.r#type.as_mut().and_then(|t| t.value.as_mut())
    {
        tt.elem_type = Some(DataType::Uint8 as i32);
        if let Some(s) = tt.shape.as_mut() {
            let d = std::mem::take(&mut s.dim);
            s.dim = vec![d[0].clone(), d[2].clone(), d[3].clone(), d[1].clone()];
        }
    }
    let to_shape = vi_shape(vi).unwrap_or_default();
    let desc = format!(
        "{fmt} (uint8 frame {} {}; in graph: {}; = the {} float input [B,3,H,W] {})",
        fmt_shape(&to_shape),
        if fmt.frame_is_bgr() == Some(true) {
            "BGR"
        } else {
            "RGB"
        },
        prepended.join(", "),
        serde_json::to_value(family)?.as_str().unwrap_or("?"),
        if bgr { "BGR 0..255" } else { "RGB /255" }
    );
    set_metadata(&mut m.proto, METADATA_KEY, &desc);
    Ok(Some(InputFormatReport {
        format: fmt,
        family,
        input,
        from_shape: fmt_shape(&shape),
        to_shape: fmt_shape(&to_shape),
        prepended: names
            .iter()
            .zip(&prepended)
            .map(|(n, p)| format!("{n}: {p}"))
            .collect(),
        channel_swap: swap,
        divisor: div.then_some(255.0),
    }))
}

/// The float NCHW tensor a frame model computes from a uint8 frame `[B, H, W, 3]` — the same
/// arithmetic as the prepended ops (cast, reorder, `/ 255` in f32 for Gold-YOLO).
pub fn frame_to_nchw(frame: &Npy, fmt: InputFormat, family: impl AsFamily) -> Result<Npy> {
    let NpyData::U8(v) = &frame.data else {
        bail!("a frame is uint8; got {:?}", frame.dtype());
    };
    let Some(frame_bgr) = fmt.frame_is_bgr() else {
        bail!("nchw-f32 takes no frame");
    };
    if frame.shape.len() != 4 || frame.shape[3] != 3 {
        bail!("a frame is [B, H, W, 3]; got {:?}", frame.shape);
    }
    let (b, h, w) = (frame.shape[0], frame.shape[1], frame.shape[2]);
    let (bgr, div) = family_convention(family)?;
    let plane = h * w;
    let mut out = vec![0f32; b * 3 * plane];
    for bi in 0..b {
        for p in 0..plane {
            for c in 0..3 {
                // channel c of the model's convention comes from frame channel src
                let src = if frame_bgr == bgr { c } else { 2 - c };
                let u = v[(bi * plane + p) * 3 + src] as f32;
                out[(bi * 3 + c) * plane + p] = if div { u / 255.0 } else { u };
            }
        }
    }
    Npy::new(vec![b, 3, h, w], NpyData::F32(out))
}

/// The uint8 frame `[B, H, W, 3]` whose preprocessing ([`frame_to_nchw`]) is exactly the float
/// tensor `t` `[B, 3, H, W]`; an error names the first value no frame gives.
pub fn nchw_to_frame(t: &Npy, fmt: InputFormat, family: impl AsFamily) -> Result<Npy> {
    let Some(frame_bgr) = fmt.frame_is_bgr() else {
        bail!("nchw-f32 takes no frame");
    };
    if t.shape.len() != 4 || t.shape[1] != 3 {
        bail!("expected a [B, 3, H, W] tensor, got {:?}", t.shape);
    }
    let v = t.to_f32();
    let (b, h, w) = (t.shape[0], t.shape[2], t.shape[3]);
    let (bgr, div) = family_convention(family)?;
    let plane = h * w;
    let mut out = vec![0u8; v.len()];
    for bi in 0..b {
        for c in 0..3 {
            let dst = if frame_bgr == bgr { c } else { 2 - c };
            for p in 0..plane {
                let x = v[(bi * 3 + c) * plane + p];
                let u = if div { x * 255.0 } else { x }.round();
                let ok = (0.0..=255.0).contains(&u) && {
                    let back = if div { u / 255.0 } else { u };
                    back.to_bits() == x.to_bits()
                };
                if !ok {
                    bail!(
                        "the input tensor is not a uint8 frame: value {x} at [{bi},{c},{},{}] is not {} (the model takes uint8 {fmt} frames)",
                        p / w,
                        p % w,
                        if div { "k/255 for an integer k in 0..=255" } else { "an integer in 0..=255" }
                    );
                }
                out[(bi * plane + p) * 3 + dst] = u as u8;
            }
        }
    }
    Npy::new(vec![b, h, w, 3], NpyData::U8(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bad_names_are_refused() {
        for f in InputFormat::ALL {
            assert_eq!(InputFormat::parse(f.name()).unwrap(), f);
        }
        let e = InputFormat::parse("nhwc-u8").unwrap_err().to_string();
        assert!(
            e.contains("`nhwc-u8`") && e.contains("nchw-f32, nhwc-u8-bgr, nhwc-u8-rgb"),
            "{e}"
        );
    }

    #[test]
    fn frame_conversion_is_exact_both_ways() {
        // a 1x2x2 frame, BGR; YOLOX takes BGR (no swap, no scale), Gold-YOLO RGB / 255
        let frame = Npy::new(
            vec![1, 2, 2, 3],
            NpyData::U8(vec![1, 2, 3, 10, 20, 30, 0, 128, 255, 7, 8, 9]),
        )
        .unwrap();
        use crate::families::DetectorFamily as _;
        let (yolox, gold) = (
            crate::families::yolox::RAW.family(),
            crate::families::gold_yolo::GOLD_YOLO.family(),
        );
        let y = frame_to_nchw(&frame, InputFormat::NhwcU8Bgr, yolox).unwrap();
        assert_eq!(y.shape, vec![1, 3, 2, 2]);
        assert_eq!(
            y.to_f32(),
            vec![1., 10., 0., 7., 2., 20., 128., 8., 3., 30., 255., 9.]
        );
        let g = frame_to_nchw(&frame, InputFormat::NhwcU8Bgr, gold).unwrap();
        assert_eq!(g.to_f32()[0], 3.0 / 255.0); // R = frame channel 2
        assert_eq!(g.to_f32()[8], 1.0 / 255.0); // B = frame channel 0
        for (fmt, fam) in [
            (InputFormat::NhwcU8Bgr, yolox),
            (InputFormat::NhwcU8Rgb, yolox),
            (InputFormat::NhwcU8Bgr, gold),
            (InputFormat::NhwcU8Rgb, gold),
        ] {
            let t = frame_to_nchw(&frame, fmt, fam).unwrap();
            let back = nchw_to_frame(&t, fmt, fam).unwrap();
            assert_eq!(back.shape, frame.shape);
            assert_eq!(back.to_f32(), frame.to_f32(), "{fmt} {fam:?}");
        }
        // 0.5 is no pixel value of YOLOX, 0.5/255 none of Gold-YOLO
        let bad = Npy::new(vec![1, 3, 1, 1], NpyData::F32(vec![0.5, 1.0, 2.0])).unwrap();
        let e = nchw_to_frame(&bad, InputFormat::NhwcU8Bgr, yolox)
            .unwrap_err()
            .to_string();
        assert!(e.contains("value 0.5 at [0,0,0,0]"), "{e}");
        assert!(nchw_to_frame(&bad, InputFormat::NhwcU8Bgr, gold).is_err());
    }
}
