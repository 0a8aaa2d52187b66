//! `detect MODEL IMAGE -o out.png`: run a merged model (or a raw export, post-processed in Rust)
//! with tract on a photo, map the boxes back to the photo and draw them, labelled with class
//! names (`--names`, `--names-file`, or the names `merge --names` stored in the model).
//!
//! Photos whose long side is under 640 px are scaled up (by an integer factor) before drawing,
//! so labels of a readable size fit on a 128x160 picture; boxes are mapped by the same factor.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::check::merged_info;
use crate::families::{Family, Recognized};
use crate::head::recognize;
use crate::imageio::{annotate, load_image, preprocess_for, Letterbox};
use crate::passes::input_format::{input_format, InputFormat};

use crate::model::Model;
use crate::postprocess::{
    decode, detections, detections_from_outputs, nms, HeadSpec, Layout, NmsParams, OutputTensor,
};
use crate::run::run_once;

/// Metadata key holding the class names (a JSON list of strings) stored by `merge --names`.
pub const NAMES_KEY: &str = "postmerge.names";

/// Class names and where they came from (`--names`, `--names-file PATH`, `metadata`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClassNames {
    pub names: Vec<String>,
    pub source: String,
}

fn check_names(names: Vec<String>, what: &str) -> Result<Vec<String>> {
    if names.is_empty() {
        bail!("{what}: no class names");
    }
    if let Some(i) = names.iter().position(|n| n.is_empty()) {
        bail!("{what}: name {} (class {i}) is empty", i + 1);
    }
    Ok(names)
}

/// `a,b,c` → names (trimmed; an empty name is an error).
pub fn parse_names(list: &str) -> Result<ClassNames> {
    let names = list.split(',').map(|n| n.trim().to_string()).collect();
    Ok(ClassNames {
        names: check_names(names, &format!("--names `{list}`"))?,
        source: "--names".into(),
    })
}

/// A names file: one name per line (class 0 first), trailing blank lines ignored.
pub fn read_names_file(path: &Path) -> Result<ClassNames> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read names file `{}`", path.display()))?;
    let mut names: Vec<String> = text.lines().map(|l| l.trim().to_string()).collect();
    while names.last().is_some_and(|n| n.is_empty()) {
        names.pop();
    }
    Ok(ClassNames {
        names: check_names(names, &format!("names file `{}`", path.display()))?,
        source: format!("--names-file {}", path.display()),
    })
}

/// The class names stored in the model's metadata ([`NAMES_KEY`]), if any.
pub fn model_names(m: &Model) -> Result<Option<ClassNames>> {
    let Some(e) = m.proto.metadata_props.iter().find(|e| e.key() == NAMES_KEY) else {
        return Ok(None);
    };
    let names: Vec<String> = serde_json::from_str(e.value()).with_context(|| {
        format!(
            "metadata `{NAMES_KEY}` of `{}` is not a JSON list of names: `{}`",
            m.source,
            e.value()
        )
    })?;
    Ok(Some(ClassNames {
        names: check_names(names, &format!("metadata `{NAMES_KEY}`"))?,
        source: "metadata".into(),
    }))
}

/// Store class names in the model's metadata (before `merge`: the number of names must be the
/// head's number of classes when the head is recognized).
pub fn store_names(m: &mut Model, names: &ClassNames) -> Result<()> {
    if let Ok(h) = recognize(m, None) {
        if let Some(c) = h.num_classes {
            if c != names.names.len() {
                bail!(
                    "{} gives {} class names, the model has {c} classes",
                    names.source,
                    names.names.len()
                );
            }
        }
    }
    crate::passes::set_metadata(
        &mut m.proto,
        NAMES_KEY,
        &serde_json::to_string(&names.names)?,
    );
    Ok(())
}

/// One detection on the photo.
#[derive(Debug, Clone, Serialize)]
pub struct PhotoDetection {
    pub class: usize,
    /// The class name, when names are known.
    pub name: Option<String>,
    /// The text drawn on the picture.
    pub label: String,
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
    /// Where the class names came from (`None`: labels show class numbers).
    pub names_from: Option<String>,
    /// The annotated PNG is the photo scaled by this factor (boxes in `box` are photo pixels;
    /// they are drawn at `box * drawn_scale`).
    pub drawn_scale: u32,
    /// What the model was fed: `nchw-f32`, or the uint8 frame format it takes.
    pub input_format: InputFormat,
    pub detections: Vec<PhotoDetection>,
}

/// The family a merged model was made from: our metadata, else the layout's convention.
fn merged_family(m: &Model, layout: &Layout) -> Family {
    crate::record::MergeRecord::of(m)
        .and_then(|r| r.family)
        .and_then(|id| crate::families::by_id(&id))
        .unwrap_or_else(|| crate::families::for_layout(layout))
}

/// Run detection on a photo. `family` overrides the preprocessing convention; `params` are used
/// for raw models only (a merged model carries its own). Labels use the names stored in the
/// model, if any.
pub fn detect(
    m: &Model,
    image: &Path,
    family: Option<Family>,
    params: &NmsParams,
) -> Result<(DetectReport, image::RgbImage)> {
    detect_with_names(m, image, family, params, None)
}

/// [`detect`] with class names for the labels (`None`: the model's stored names, if any).
pub fn detect_with_names(
    m: &Model,
    image: &Path,
    family: Option<Family>,
    params: &NmsParams,
    names: Option<ClassNames>,
) -> Result<(DetectReport, image::RgbImage)> {
    let names = match names {
        Some(n) => Some(n),
        None => model_names(m)?,
    };
    let head = recognize(m, None)?;
    let (Some(h), Some(w)) = (head.height, head.width) else {
        bail!("the model's input has no static size")
    };
    if head.batch.known().map(|b| b != 1).unwrap_or(false) {
        bail!("detect runs one photo; the model has batch {}", head.batch);
    }
    let fmt = input_format(m)?;
    let photo = load_image(image)?;
    let (dets, fam, how, lb) = if head.family == Recognized::Merged {
        let (layout, _) = merged_info(m)?;
        let fam = family.unwrap_or_else(|| merged_family(m, &layout));
        let (x, lb) = preprocess_for(&photo, fam, h as u32, w as u32, fmt)?;
        let outs = run_once(m, &[&x], &[])?;
        let outs: Vec<OutputTensor> = outs
            .into_iter()
            .map(|(name, tensor)| OutputTensor { name, tensor })
            .collect();
        if !layout.has_nms() {
            bail!("a `decoded` model has no NMS; run detect on the raw export instead");
        }
        (
            detections_from_outputs(&layout, &outs)?,
            fam,
            format!("merged ({})", layout.name()),
            lb,
        )
    } else if head.family == Recognized::TrtPlugin {
        bail!("TensorRT plugin graphs cannot run outside TensorRT");
    } else {
        let kind = head
            .family
            .family()
            .context("internal: no raw head to decode")?;
        let fam = family.unwrap_or(kind);
        let (x, lb) = preprocess_for(&photo, fam, h as u32, w as u32, fmt)?;
        let outs = run_once(m, &[&x], &[])?;
        let out_name = head.output.clone().unwrap_or_default();
        let Some((_, raw)) = outs.into_iter().find(|(n, _)| *n == out_name) else {
            bail!("no output `{out_name}`")
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
    let mut out = Vec::new();
    let mut drawn = Vec::new();
    for d in &dets {
        let bi = [d.x1, d.y1, d.x2, d.y2];
        let bp = lb.to_photo(bi);
        let name = names.as_ref().and_then(|n| n.names.get(d.class)).cloned();
        let label = format!(
            "{} {:.2}",
            name.clone().unwrap_or_else(|| d.class.to_string()),
            d.score
        );
        drawn.push((bp, d.class, label.clone()));
        out.push(PhotoDetection {
            class: d.class,
            name,
            label,
            score: d.score,
            bbox: bp,
            box_input: bi,
        });
    }
    let (picture, scale) = annotate(&photo, &drawn);
    Ok((
        DetectReport {
            model: m.source.clone(),
            image: image.display().to_string(),
            family: fam,
            how,
            letterbox: lb,
            names_from: names.map(|n| n.source),
            drawn_scale: scale,
            input_format: fmt,
            detections: out,
        },
        picture,
    ))
}

/// Encode the annotated photo as PNG and write it atomically.
pub fn save_png(img: &image::RgbImage, path: &Path) -> Result<()> {
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, image::ImageFormat::Png)?;
    crate::model::atomic_write(path, buf.get_ref())
}
