//! The command line's types: [`Cli`], one [`Cmd`] variant per subcommand with its arguments, and
//! the value enums of `--layout`, `--input-format`, `--thresholds` and `--family`.
//!
//! `--layout` lists `postmerge::layouts::LAYOUTS`. `--family` keeps its own enum rather than
//! listing `postmerge::families::FAMILIES`: that registry is in recognition order (gold-yolo
//! first), which would reorder `--help`'s possible values.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "postmerge",
    version,
    about = "Turn YOLOX / Gold-YOLO ONNX exports into verified, end-to-end detection models",
    long_about = "postmerge reads a freshly exported YOLOX or Gold-YOLO (YOLOv6-family) ONNX model and \
                  inspects it, diffs it, appends post-processing (decode + score threshold + NMS), \
                  re-specializes its input resolution and checks every result by running it with tract.",
    after_help = "Examples:\n  postmerge inspect yolox_nano.onnx\n  postmerge diff a.onnx b.onnx --json\n\nExit codes: 0 ok, 1 check mismatch, 2 error, 3 check not proven (a step of `check` / `merge --check`\ncompared nothing: no box selected on the input), 130 interrupted (temp files removed)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
    /// merge, resize, quant-prep and check refuse (exit 2) a model whose float weights hold NaN or
    /// ±Inf; with this flag they go on (check then fails with exit 1 on those values).
    /// Example: postmerge check --allow-nonfinite a.onnx b.onnx
    #[arg(long, global = true)]
    pub allow_nonfinite: bool,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Show IR/opsets, I/O, op histogram, parameters, the recognized detection head and the
    /// constants baked from the input resolution.
    #[command(
        after_help = "Examples:\n  postmerge inspect tests/fixtures/yolox_nano_640x640.onnx\n  postmerge inspect model.onnx --json | jq .head.family"
    )]
    Inspect(InspectArgs),
    /// Append decode + score threshold + NonMaxSuppression so the model outputs final detections.
    #[command(
        after_help = "Examples:\n  postmerge merge yolox_nano.onnx -o yolox_nano_post.onnx\n  postmerge merge gold_yolo_n.onnx -o e2e.onnx --layout trt --max-det 100\n  postmerge merge model.onnx -o m.onnx --thresholds inputs --score 0.3 --iou 0.5\n  postmerge merge yolox_nano.onnx -o cam.onnx --input-format nhwc-u8-bgr   # feed OpenCV frames\n  postmerge merge shapes_128x160.onnx -o shapes_post.onnx --names circle,triangle,square\n\n--input-format nhwc-u8-bgr|nhwc-u8-rgb: the model takes the letterboxed picture as uint8\n[B,H,W,3]; the graph casts, transposes, reorders channels for the family (YOLOX BGR, Gold-YOLO\nRGB) and scales (YOLOX none, Gold-YOLO /255). Default nchw-f32 = the export's float input.\n\nDefaults follow PINTO's published models: --max-per-class 20 --iou 0.40 --score 0.25.\nLayouts: pinto (YOLOX default) batchno_classid_score_x1y1x2y2 [N,7]; pinto-goldyolo (Gold-YOLO\ndefault) batchno_classid_x1y1x2y2_score [N,7]; trt num_dets/det_boxes/det_scores/det_classes;\nultralytics output0 [B,K,6]; decoded boxes [B,N,4] + scores [B,N,C] (no NMS)."
    )]
    Merge(MergeArgs),
    /// Re-specialize an export to other input sizes (and batch) without going back to PyTorch.
    #[command(
        after_help = "Examples:\n  postmerge resize yolox_nano_640x640.onnx -o yolox_nano_128x160.onnx --size 128x160\n  postmerge resize gold_yolo_n.onnx --size 128x160 --size 256x320 --size 480x640 -o 'out/{stem}_{h}x{w}.onnx'\n  postmerge resize model.onnx -o model_b4.onnx --size 640x640 --batch 4\n  postmerge resize gold_yolo_n.onnx -o cam_128x160.onnx --size 128x160 --input-format nhwc-u8-rgb\n\nSizes are HxW (height first) and must be multiples of the largest stride (32, or 64 for p6\nheads). With several sizes, OUTPUT is a pattern with {h} and {w} (and optionally {stem});\nsizes are processed in parallel, all or nothing: if one fails, no output is written."
    )]
    Resize(ResizeArgs),
    /// Prove a merged model by running it and the original with tract on the same input.
    #[command(
        after_help = "Examples:\n  postmerge check yolox_nano.onnx yolox_nano_post.onnx\n  postmerge check gold_yolo_n.onnx merged.onnx --image photo.jpg --json\n\nSteps: (1) original head output vs the same tensor inside MERGED (relative tolerance 1e-4);\n(2) MERGED's appended post-process vs the Rust reference on identical pre-NMS tensors\n(boxes <= 1e-3 px, scores <= 1e-5); (3) final detections vs the reference on the original's\noutput, matched by class and IoU >= 0.9 for scores clear of the threshold.\nEvery step must compare something real: a step that compares nothing (no box selected on the
input, or the original cannot run at MERGED's size) is NOT PROVEN and check exits 3.
Default input: the bundled scenes (a photo, a shapes scene), then a synthetic tensor; the first on
which the reference selects boxes. Step 3 uses --score/--iou/--max-per-class/--max-det (default:
what MERGED records); step 2 also requires MERGED's NMS constants to equal what it records.
  postmerge check model.onnx post.onnx --score 0.3 --iou 0.5   # was post.onnx merged like this?
Exit codes: 0 equal, 1 mismatch, 2 error, 3 not proven (nothing compared)."
    )]
    Check(CheckArgs),
    /// Run a model on a photo and draw the detections into a PNG.
    #[command(
        after_help = "Examples:\n  postmerge detect yolox_nano_post.onnx dog.jpg -o dog_dets.png\n  postmerge detect gold_yolo_n.onnx image1.jpg -o out.png --json\n  postmerge detect shapes_post.onnx sample_1.png -o out.png --names circle,triangle,square\n  postmerge detect model.onnx photo.jpg -o out.png --names-file coco.names\n\nMerged models use their own NMS; raw exports are post-processed in Rust with --score/--iou/--max-per-class.\nLabels read `NAME SCORE` (class numbers when no names are given or stored); pictures under 640 px\non the long side are scaled up before drawing (the JSON boxes stay in photo pixels).\nModels that take uint8 frames (--input-format) get the letterboxed picture as such a frame."
    )]
    Detect(DetectArgs),
    /// Prepare a model for INT8 quantization: decode with boxes normalized to [0,1] and scores as
    /// separate outputs, constants and BatchNorm folded, Identity/Dropout removed, static shapes in
    /// value_info, and the float post-process listed for `quantize_static(nodes_to_exclude=…)`.
    #[command(
        after_help = "Examples:\n  postmerge quant-prep yolox_nano.onnx -o yolox_nano_qprep.onnx\n  postmerge quant-prep yolox_nano.onnx -o prep.onnx --layout pinto\n  postmerge quant-prep yolox_nano.onnx -o prep_u8.onnx --input-format nhwc-u8-bgr\n  python -c \"import json; from onnxruntime.quantization import quantize_static; ...\n    quantize_static('prep.onnx', 'int8.onnx', reader, nodes_to_exclude=json.load(open('prep.nodes_to_exclude.json')))\"\n\nThe default layout `decoded` gives the backbone+head only (boxes [B,N,4] in [0,1], scores [B,N,C]),\nready to quantize and pair with NMS on the host. The sidecar OUTPUT minus .onnx plus\n.nodes_to_exclude.json is a JSON list accepted as is by onnxruntime's quantize_static."
    )]
    QuantPrep(QuantPrepArgs),
    /// Retune the NMS parameters of an already merged model (ours, PINTO's, YOLOv6 --end2end --ort).
    #[command(
        after_help = "Examples:\n  postmerge set merged.onnx -o retuned.onnx --score 0.3 --iou 0.5 --max-per-class 50\n  postmerge set merged.onnx -o merged.onnx --in-place --score 0.35"
    )]
    Set(SetArgs),
    /// Re-encode a model (a lossless round trip), optionally moving large weights into an external
    /// data file — the way to write models over the 2 GiB protobuf limit.
    #[command(
        after_help = "Examples:\n  postmerge convert model.onnx -o copy.onnx\n  postmerge convert big.onnx -o out/big.onnx --external-data big.onnx.data"
    )]
    Convert(ConvertArgs),
    /// Semantic diff of two models: opsets, I/O, nodes, attributes, initializers (by content hash).
    #[command(
        after_help = "Examples:\n  postmerge diff model_640x640.onnx model_128x160.onnx\n  postmerge diff original.onnx merged.onnx --json > review.json\n\nExit code is 0 whether or not the models differ."
    )]
    Diff(DiffArgs),
}

// The arguments of `Inspect` (no doc comment here: the help text is the variant's).
#[derive(clap::Args)]
pub struct InspectArgs {
    /// Model to inspect (.onnx; external data is read from its folder)
    pub model: PathBuf,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

// The arguments of `Merge` (no doc comment here: the help text is the variant's).
#[derive(clap::Args)]
pub struct MergeArgs {
    /// Exported model (YOLOX raw or decoded head, Gold-YOLO / YOLOv6)
    pub input: PathBuf,
    /// Output path (written atomically), or a pattern with {h}, {w}, {stem} with several --size
    #[arg(short, long)]
    pub output: String,
    #[command(flatten)]
    pub nms: NmsArgs,
    /// Output layout (default: pinto for YOLOX, pinto-goldyolo for Gold-YOLO)
    #[arg(long, value_enum)]
    pub layout: Option<LayoutArg>,
    /// One NMS pass over all classes (best class per box) instead of per class
    #[arg(long)]
    pub agnostic: bool,
    /// Store NMS parameters as constants or as graph inputs with defaults
    #[arg(long, value_enum, default_value_t = ThresholdsArg::Const)]
    pub thresholds: ThresholdsArg,
    /// Opset of the result (default: the model's, raised to 11 if below 10)
    #[arg(long)]
    pub opset: Option<i64>,
    /// Override the recognized family
    #[arg(long, value_enum)]
    pub family: Option<FamilyArg>,
    /// Print what was done as JSON
    #[arg(long)]
    pub json: bool,
    /// Allow OUTPUT to be the input file itself
    #[arg(long)]
    pub in_place: bool,
    /// Re-specialize to this size (HxW) before appending (repeatable; OUTPUT is then a pattern
    /// with {h} and {w}; all sizes are written, or none if one fails)
    #[arg(long = "size", value_name = "HxW")]
    pub sizes: Vec<String>,
    /// Batch of the result: a number, or `dynamic`
    #[arg(long)]
    pub batch: Option<String>,
    /// Also prepare for INT8 quantization: boxes normalized to [0,1], graph folded, post-process
    /// listed in OUTPUT.nodes_to_exclude.json (see `quant-prep`)
    #[arg(long)]
    pub quant_prep: bool,
    /// Make the model take uint8 NHWC frames [B,H,W,3] (the letterboxed picture, BGR or RGB):
    /// Cast, Transpose, the channel order and the family's scale are prepended in the graph
    #[arg(long, value_enum, default_value_t = InputFormatArg::NchwF32, value_name = "FORMAT")]
    pub input_format: InputFormatArg,
    /// Before writing, check the result with tract against the Rust reference and the requested
    /// --score/--iou/--max-per-class/--max-det/--agnostic (exit 1 on mismatch, 3 if nothing was
    /// compared; no output is written then)
    #[arg(long)]
    pub check: bool,
    /// Photo for --check (default: the bundled scenes, then a synthetic tensor; the first on
    /// which the reference selects boxes)
    #[arg(long, requires = "check")]
    pub image: Option<PathBuf>,
    /// Class names to store in the model's metadata (class 0 first), used by `detect`
    #[arg(long, value_name = "A,B,C", conflicts_with = "names_file")]
    pub names: Option<String>,
    /// Class names to store, one per line (class 0 first)
    #[arg(long, value_name = "FILE")]
    pub names_file: Option<PathBuf>,
}

// The arguments of `Resize` (no doc comment here: the help text is the variant's).
#[derive(clap::Args)]
pub struct ResizeArgs {
    /// Exported model (un-merged)
    pub input: PathBuf,
    /// Output path, or a pattern with {h}, {w}, {stem} for several sizes
    #[arg(short, long)]
    pub output: String,
    /// Target size HxW (repeatable; all sizes are written, or none if one fails)
    #[arg(long = "size", value_name = "HxW", required = true)]
    pub sizes: Vec<String>,
    /// Batch of the result: a number, or `dynamic` for a symbolic batch
    #[arg(long)]
    pub batch: Option<String>,
    /// Print what was rewritten as JSON
    #[arg(long)]
    pub json: bool,
    /// Make the model take uint8 NHWC frames [B,H,W,3] (the letterboxed picture, BGR or RGB):
    /// Cast, Transpose, the channel order and the family's scale are prepended in the graph
    #[arg(long, value_enum, default_value_t = InputFormatArg::NchwF32, value_name = "FORMAT")]
    pub input_format: InputFormatArg,
}

// The arguments of `Check` (no doc comment here: the help text is the variant's).
#[derive(clap::Args)]
pub struct CheckArgs {
    /// The un-merged export
    pub original: PathBuf,
    /// The merged model (possibly re-specialized to another size)
    pub merged: PathBuf,
    /// A photo, preprocessed by the family's convention
    #[arg(long, conflicts_with = "input")]
    pub image: Option<PathBuf>,
    /// A .npy input tensor [B,3,H,W]
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Score threshold MERGED should have (default: the one it records)
    #[arg(long)]
    pub score: Option<f32>,
    /// IoU threshold MERGED should have (default: the one it records)
    #[arg(long)]
    pub iou: Option<f32>,
    /// Detections per class MERGED should keep (default: what it records)
    #[arg(long)]
    pub max_per_class: Option<usize>,
    /// K of the trt / ultralytics layouts MERGED should have (default: its outputs' K)
    #[arg(long)]
    pub max_det: Option<usize>,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

// The arguments of `Detect` (no doc comment here: the help text is the variant's).
#[derive(clap::Args)]
pub struct DetectArgs {
    /// Merged model or raw export
    pub model: PathBuf,
    /// Photo (jpeg or png)
    pub image: PathBuf,
    /// Annotated PNG to write
    #[arg(short, long)]
    pub output: PathBuf,
    /// Print the detections as JSON
    #[arg(long)]
    pub json: bool,
    /// Score threshold (raw models)
    #[arg(long, default_value_t = 0.25)]
    pub score: f32,
    /// IoU threshold (raw models)
    #[arg(long, default_value_t = 0.40)]
    pub iou: f32,
    /// Max detections per class (raw models)
    #[arg(long, default_value_t = 20)]
    pub max_per_class: usize,
    /// Preprocessing convention override
    #[arg(long, value_enum)]
    pub family: Option<FamilyArg>,
    /// Class names for the labels, class 0 first (default: the names `merge --names` stored)
    #[arg(long, value_name = "A,B,C", conflicts_with = "names_file")]
    pub names: Option<String>,
    /// Class names, one per line (class 0 first)
    #[arg(long, value_name = "FILE")]
    pub names_file: Option<PathBuf>,
}

// The arguments of `QuantPrep` (no doc comment here: the help text is the variant's).
#[derive(clap::Args)]
pub struct QuantPrepArgs {
    /// Exported (or already merged) model
    pub input: PathBuf,
    /// Output path
    #[arg(short, long)]
    pub output: String,
    /// Output layout (default decoded: no NMS)
    #[arg(long, value_enum)]
    pub layout: Option<LayoutArg>,
    #[command(flatten)]
    pub nms: NmsArgs,
    /// Print what was done as JSON
    #[arg(long)]
    pub json: bool,
    /// Allow OUTPUT to be the input file itself
    #[arg(long)]
    pub in_place: bool,
    /// Make the model take uint8 NHWC frames [B,H,W,3] (the letterboxed picture, BGR or RGB):
    /// Cast, Transpose, the channel order and the family's scale are prepended in the graph
    #[arg(long, value_enum, default_value_t = InputFormatArg::NchwF32, value_name = "FORMAT")]
    pub input_format: InputFormatArg,
}

// The arguments of `Set` (no doc comment here: the help text is the variant's).
#[derive(clap::Args)]
pub struct SetArgs {
    /// Merged model
    pub input: PathBuf,
    /// Output path (written atomically)
    #[arg(short, long)]
    pub output: PathBuf,
    /// New score threshold
    #[arg(long)]
    pub score: Option<f32>,
    /// New IoU threshold
    #[arg(long)]
    pub iou: Option<f32>,
    /// New max detections per class
    #[arg(long)]
    pub max_per_class: Option<i64>,
    /// Print the changes as JSON
    #[arg(long)]
    pub json: bool,
    /// Allow OUTPUT to be the input file itself
    #[arg(long)]
    pub in_place: bool,
}

// The arguments of `Convert` (no doc comment here: the help text is the variant's).
#[derive(clap::Args)]
pub struct ConvertArgs {
    /// Input model
    pub input: PathBuf,
    /// Output path (written atomically; never the input unless --in-place)
    #[arg(short, long)]
    pub output: PathBuf,
    /// Store initializers of at least 1 KiB in this file (relative to the output's folder)
    #[arg(long, value_name = "FILE")]
    pub external_data: Option<String>,
    /// Allow OUTPUT to be the input file itself
    #[arg(long)]
    pub in_place: bool,
}

// The arguments of `Diff` (no doc comment here: the help text is the variant's).
#[derive(clap::Args)]
pub struct DiffArgs {
    /// First (old) model
    pub a: PathBuf,
    /// Second (new) model
    pub b: PathBuf,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

/// NMS parameters shared by `merge` and `quant-prep`.
#[derive(clap::Args, Clone, Copy)]
pub struct NmsArgs {
    /// Score threshold (NMS keeps scores strictly above it)
    #[arg(long, default_value_t = 0.25)]
    pub score: f32,
    /// IoU threshold (NMS suppresses overlaps strictly above it)
    #[arg(long, default_value_t = 0.40)]
    pub iou: f32,
    /// Detections kept per class and image
    #[arg(long, default_value_t = 20)]
    pub max_per_class: i64,
    /// K of the fixed-size layouts (trt, ultralytics)
    #[arg(long, default_value_t = 100)]
    pub max_det: usize,
}

/// A `--layout` value: one of [`postmerge::layouts::LAYOUTS`], by its name, in registry order.
#[derive(Clone, Copy)]
pub struct LayoutArg(pub &'static dyn postmerge::layouts::OutputLayout);

impl LayoutArg {
    /// `decoded` (quant-prep's default).
    pub const DECODED: LayoutArg = LayoutArg(&postmerge::layouts::decoded::DECODED);
}

impl clap::ValueEnum for LayoutArg {
    fn value_variants<'a>() -> &'a [Self] {
        static ALL: std::sync::OnceLock<Vec<LayoutArg>> = std::sync::OnceLock::new();
        ALL.get_or_init(|| {
            postmerge::layouts::LAYOUTS
                .iter()
                .map(|&l| LayoutArg(l))
                .collect()
        })
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.0.name()))
    }
}

#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
pub enum InputFormatArg {
    /// float32 [B,3,H,W] in the family's convention (the export as it is)
    NchwF32,
    /// uint8 [B,H,W,3], B,G,R (OpenCV imread, most camera APIs)
    NhwcU8Bgr,
    /// uint8 [B,H,W,3], R,G,B (PIL, picamera2 RGB arrays)
    NhwcU8Rgb,
}

impl From<InputFormatArg> for postmerge::passes::input_format::InputFormat {
    fn from(f: InputFormatArg) -> Self {
        use postmerge::passes::input_format::InputFormat;
        match f {
            InputFormatArg::NchwF32 => InputFormat::NchwF32,
            InputFormatArg::NhwcU8Bgr => InputFormat::NhwcU8Bgr,
            InputFormatArg::NhwcU8Rgb => InputFormat::NhwcU8Rgb,
        }
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ThresholdsArg {
    Const,
    Inputs,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum FamilyArg {
    YoloxRaw,
    YoloxDecoded,
    GoldYolo,
}

impl From<FamilyArg> for postmerge::families::Family {
    fn from(f: FamilyArg) -> Self {
        use postmerge::families::{gold_yolo, yolox, DetectorFamily};
        match f {
            FamilyArg::YoloxRaw => yolox::RAW.family(),
            FamilyArg::YoloxDecoded => yolox::DECODED.family(),
            FamilyArg::GoldYolo => gold_yolo::GOLD_YOLO.family(),
        }
    }
}
