//! `detect MODEL IMAGE -o out.png`: run a merged model (or a raw export, post-processed in Rust)
//! with tract on a photo, map the boxes back to the photo and draw them.

use std::path::Path;

use anyhow::{bail, Result};
use serde::Serialize;

use crate::check::merged_info;
use crate::head::{recognize, Family};
use crate::imageio::{draw_box, load_image, preprocess, Letterbox};
use crate::model::Model;
use crate::postprocess::{
    decode, detections, detections_from_outputs, nms, HeadKind, HeadSpec, Layout, NmsParams,
    OutputTensor,
};
use crate::run::run_once;
use crate::shape::Dim;

/// One detection on the photo.
#[derive(Debug, Clone, Serialize)]
pub struct PhotoDetection {
    pub class: usize,
    pub score: f32,
    /// x1, y1, x2, y2 in photo pixels.
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    /// The same box in network-input pixels.
    pub box_input: [f32; 4],
}

/// Result of `detect`.
#[derive(Debug, Clone, Serialize)]
pub struct DetectReport {
    pub model: String,
    pub image: String,
    pub family: Family,
    /// How the detections were made: "merged (<layout>)" or "raw + Rust post-process".
    pub how: String,
    pub letterbox: Letterbox,
    pub detections: Vec<PhotoDetection>,
}

/// The family a merged model was made from: our metadata, else the layout's convention.
fn merged_family(m: &Model, layout: &Layout) -> Family {
    let meta = m
        .proto
        .metadata_props
        .iter()
        .find(|e| e.key() == "postmerge.merge")
        .map(|e| e.value().to_string())
        .unwrap_or_default();
    if meta.contains("family=gold-yolo") {
        Family::GoldYolo
    } else if meta.contains("family=yolox-decoded") {
        Family::YoloxDecoded
    } else if meta.contains("family=yolox-raw") {
        Family::YoloxRaw
    } else if *layout == Layout::PintoGoldYolo {
        Family::GoldYolo
    } else {
        Family::YoloxRaw
    }
}

/// Run detection on a photo. `family` overrides the preprocessing convention; `params` are used
/// for raw models only (a merged model carries its own).
pub fn detect(
    m: &Model,
    image: &Path,
    family: Option<Family>,
    params: &NmsParams,
) -> Result<(DetectReport, image::RgbImage)> {
    let head = recognize(m, None)?;
    let (Some(h), Some(w)) = (head.height, head.width) else {
        bail!("the model's input has no static size")
    };
    if head.batch.known().map(|b| b != 1).unwrap_or(false) {
        bail!("detect runs one photo; the model has batch {}", head.batch);
    }
    let mut photo = load_image(image)?;
    let (dets, fam, how, lb) = if head.family == Family::Merged {
        let (layout, _) = merged_info(m)?;
        let fam = family.unwrap_or_else(|| merged_family(m, &layout));
        let (x, lb) = preprocess(&photo, fam, h as u32, w as u32)?;
        let outs = run_once(m, &[&x], &[])?;
        let outs: Vec<OutputTensor> = outs
            .into_iter()
            .map(|(name, tensor)| OutputTensor { name, tensor })
            .collect();
        if layout == Layout::Decoded {
            bail!("a `decoded` model has no NMS; run detect on the raw export instead");
        }
        (
            detections_from_outputs(&layout, &outs)?,
            fam,
            format!("merged ({})", layout.name()),
            lb,
        )
    } else if head.family == Family::TrtPlugin {
        bail!("TensorRT plugin graphs cannot run outside TensorRT");
    } else {
        let fam = family.unwrap_or(head.family);
        let (x, lb) = preprocess(&photo, fam, h as u32, w as u32)?;
        let outs = run_once(m, &[&x], &[])?;
        let out_name = head.output.clone().unwrap_or_default();
        let Some((_, raw)) = outs.into_iter().find(|(n, _)| *n == out_name) else {
            bail!("no output `{out_name}`")
        };
        let kind = match head.family {
            Family::YoloxRaw => HeadKind::YoloxRaw,
            Family::YoloxDecoded => HeadKind::YoloxDecoded,
            _ => HeadKind::GoldYolo,
        };
        let spec = HeadSpec {
            kind,
            num_classes: head.num_classes.unwrap_or(0),
            strides: head.strides.iter().map(|&s| s as u32).collect(),
            input_h: h as usize,
            input_w: w as usize,
        };
        let dec = decode(&raw.to_f32(), raw.shape[0], raw.shape[1], &spec)?;
        let sel = nms(&dec, params)?;
        (
            detections(&dec, &sel)?,
            fam,
            "raw + Rust post-process".to_string(),
            lb,
        )
    };
    let _ = Dim::Known(0);
    let mut out = Vec::new();
    for d in &dets {
        let bi = [d.x1, d.y1, d.x2, d.y2];
        let bp = lb.to_photo(bi);
        draw_box(&mut photo, bp, d.class, d.score);
        out.push(PhotoDetection {
            class: d.class,
            score: d.score,
            bbox: bp,
            box_input: bi,
        });
    }
    Ok((
        DetectReport {
            model: m.source.clone(),
            image: image.display().to_string(),
            family: fam,
            how,
            letterbox: lb,
            detections: out,
        },
        photo,
    ))
}

/// Encode the annotated photo as PNG and write it atomically.
pub fn save_png(img: &image::RgbImage, path: &Path) -> Result<()> {
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, image::ImageFormat::Png)?;
    crate::model::atomic_write(path, buf.get_ref())
}
