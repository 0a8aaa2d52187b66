//! Photos in and out: decoding, each family's preprocessing (letterbox), mapping boxes back to
//! the photo, and drawing labelled boxes into a PNG.
//!
//! Resizing is bilinear with half-pixel centres and no antialiasing, like OpenCV's
//! `INTER_LINEAR`, which both official preprocessors use; results are rounded to 8 bits as
//! OpenCV does for 8-bit images.

use std::path::Path;

use anyhow::{bail, Context, Result};
use image::{Rgb, RgbImage};
use serde::Serialize;

use crate::families::AsFamily;
use crate::npy::{Npy, NpyData};
use crate::passes::input_format::InputFormat;

/// How the photo was fitted into the network input.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Letterbox {
    /// Scale factor photo → input.
    pub ratio: f64,
    /// Left/top padding in input pixels.
    pub pad_x: f64,
    pub pad_y: f64,
    /// Photo size.
    pub width: u32,
    pub height: u32,
}

impl Letterbox {
    /// Map a box from input pixels back to photo pixels (clipped to the photo).
    pub fn to_photo(&self, b: [f32; 4]) -> [f32; 4] {
        let f = |v: f32, pad: f64, max: u32| {
            (((v as f64 - pad) / self.ratio).clamp(0.0, max as f64)) as f32
        };
        [
            f(b[0], self.pad_x, self.width),
            f(b[1], self.pad_y, self.height),
            f(b[2], self.pad_x, self.width),
            f(b[3], self.pad_y, self.height),
        ]
    }
}

/// Read a photo.
pub fn load_image(path: &Path) -> Result<RgbImage> {
    let img =
        image::open(path).with_context(|| format!("cannot read image `{}`", path.display()))?;
    Ok(img.to_rgb8())
}

/// Bilinear resize (half-pixel centres, OpenCV INTER_LINEAR semantics, 8-bit rounding).
pub fn resize_bilinear(src: &RgbImage, w: u32, h: u32) -> RgbImage {
    let (sw, sh) = (src.width() as f64, src.height() as f64);
    let (fx, fy) = (sw / w as f64, sh / h as f64);
    let mut out = RgbImage::new(w, h);
    let coord = |d: u32, f: f64, max: u32| -> (u32, u32, f64) {
        let s = ((d as f64 + 0.5) * f - 0.5).max(0.0);
        let i0 = (s.floor() as u32).min(max - 1);
        let i1 = (i0 + 1).min(max - 1);
        (i0, i1, s - i0 as f64)
    };
    for y in 0..h {
        let (y0, y1, wy) = coord(y, fy, src.height());
        for x in 0..w {
            let (x0, x1, wx) = coord(x, fx, src.width());
            let p = |xx, yy| src.get_pixel(xx, yy).0;
            let (a, b, c, d) = (p(x0, y0), p(x1, y0), p(x0, y1), p(x1, y1));
            let mut px = [0u8; 3];
            for k in 0..3 {
                let top = a[k] as f64 * (1.0 - wx) + b[k] as f64 * wx;
                let bot = c[k] as f64 * (1.0 - wx) + d[k] as f64 * wx;
                px[k] = (top * (1.0 - wy) + bot * wy).round().clamp(0.0, 255.0) as u8;
            }
            out.put_pixel(x, y, Rgb(px));
        }
    }
    out
}

/// Fit a photo into an `h`×`w` network input by the family's letterbox
/// ([`crate::families::Preprocess`]: YOLOX top-left, size truncated; Gold-YOLO centred, size
/// rounded; pad 114 (grey) either way). Returns the letterboxed picture (RGB) — the frame a
/// camera pipeline would hand a model that takes uint8 frames.
pub fn letterbox(
    img: &RgbImage,
    family: impl AsFamily,
    h: u32,
    w: u32,
) -> Result<(RgbImage, Letterbox)> {
    let pp = family.as_family()?.def().preprocess();
    if img.width() == 0 || img.height() == 0 || h == 0 || w == 0 {
        bail!("empty image or input size");
    }
    let r = (h as f64 / img.height() as f64).min(w as f64 / img.width() as f64);
    let (nw, nh) = if pp.round_size {
        (
            (img.width() as f64 * r).round() as u32,
            (img.height() as f64 * r).round() as u32,
        )
    } else {
        (
            (img.width() as f64 * r) as u32,
            (img.height() as f64 * r) as u32,
        )
    };
    let (nw, nh) = (nw.clamp(1, w), nh.clamp(1, h));
    let resized = if (nw, nh) == (img.width(), img.height()) {
        img.clone()
    } else {
        resize_bilinear(img, nw, nh)
    };
    let (pad_x, pad_y) = if pp.centred {
        let dw = (w - nw) as f64 / 2.0;
        let dh = (h - nh) as f64 / 2.0;
        // yolov6 letterbox: left = round(dw - 0.1), top = round(dh - 0.1)
        ((dw - 0.1).round(), (dh - 0.1).round())
    } else {
        (0.0, 0.0)
    };
    let mut canvas = RgbImage::from_pixel(w, h, Rgb([pp.pad; 3]));
    image::imageops::replace(&mut canvas, &resized, pad_x as i64, pad_y as i64);
    let lb = Letterbox {
        ratio: r,
        pad_x,
        pad_y,
        width: img.width(),
        height: img.height(),
    };
    Ok((canvas, lb))
}

/// A letterboxed picture as a uint8 frame `[1, H, W, 3]` in BGR (`bgr`) or RGB channel order.
pub fn frame(canvas: &RgbImage, bgr: bool) -> Result<Npy> {
    let mut data = Vec::with_capacity(canvas.width() as usize * canvas.height() as usize * 3);
    for p in canvas.pixels() {
        if bgr {
            data.extend([p.0[2], p.0[1], p.0[0]]);
        } else {
            data.extend(p.0);
        }
    }
    Npy::new(
        vec![1, canvas.height() as usize, canvas.width() as usize, 3],
        NpyData::U8(data),
    )
}

/// Preprocess a photo for a family: YOLOX = BGR 0..255, top-left letterbox, pad 114;
/// Gold-YOLO = RGB / 255 (its exporter's `img /= 255`, a float32 division), centred letterbox,
/// pad 114. Returns the NCHW tensor [1,3,H,W]; it is exactly what the in-graph preprocessing of
/// `--input-format` computes from [`preprocess_frame`]'s frame.
pub fn preprocess(
    img: &RgbImage,
    family: impl AsFamily,
    h: u32,
    w: u32,
) -> Result<(Npy, Letterbox)> {
    let pp = family.as_family()?.def().preprocess();
    let (canvas, lb) = letterbox(img, family, h, w)?;
    let plane = (h * w) as usize;
    let mut data = vec![0f32; 3 * plane];
    for (x, y, p) in canvas.enumerate_pixels() {
        let i = (y * w + x) as usize;
        for c in 0..3 {
            let v = f32::from(if pp.rgb { p.0[c] } else { p.0[2 - c] }); // else BGR
            data[c * plane + i] = if pp.div255 { v / 255.0 } else { v };
        }
    }
    Ok((
        Npy::new(vec![1, 3, h as usize, w as usize], NpyData::F32(data))?,
        lb,
    ))
}

/// The input of a model that takes `fmt`: the family's letterbox, then the float NCHW tensor
/// ([`preprocess`]) or the uint8 NHWC frame in the format's channel order.
pub fn preprocess_for(
    img: &RgbImage,
    family: impl AsFamily,
    h: u32,
    w: u32,
    fmt: InputFormat,
) -> Result<(Npy, Letterbox)> {
    match fmt.frame_is_bgr() {
        None => preprocess(img, family, h, w),
        Some(bgr) => {
            let (canvas, lb) = letterbox(img, family, h, w)?;
            Ok((frame(&canvas, bgr)?, lb))
        }
    }
}

/// The uint8 frame of a photo for a model that takes `fmt` (see [`preprocess_for`]).
pub fn preprocess_frame(
    img: &RgbImage,
    family: impl AsFamily,
    h: u32,
    w: u32,
    fmt: InputFormat,
) -> Result<(Npy, Letterbox)> {
    if !fmt.is_frame() {
        bail!("{fmt} takes no frame");
    }
    preprocess_for(img, family, h, w, fmt)
}

/// A deterministic synthetic input for a family (smooth gradients plus hashed noise), [B,3,H,W].
/// Every value is a pixel value (an integer 0..=255, divided by 255 for Gold-YOLO), so a model
/// that takes uint8 frames can be fed the very same picture.
pub fn synthetic(family: impl AsFamily, b: usize, h: usize, w: usize) -> Result<Npy> {
    let div = family.as_family()?.def().preprocess().div255;
    let mut data = Vec::with_capacity(b * 3 * h * w);
    let mut state: u64 = 0x9E3779B97F4A7C15;
    for _ in 0..b {
        for c in 0..3 {
            for y in 0..h {
                for x in 0..w {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let noise = (state % 64) as f32;
                    let v = ((x * 255 / w.max(1)) as f32 * 0.5
                        + (y * 255 / h.max(1)) as f32 * 0.3
                        + c as f32 * 20.0
                        + noise)
                        .min(255.0)
                        .round();
                    data.push(if div { v / 255.0 } else { v });
                }
            }
        }
    }
    Npy::new(vec![b, 3, h, w], NpyData::F32(data))
}

/// The label font: 5x7 glyphs (rows top to bottom, `#` = ink) for A-Z, 0-9 and the punctuation
/// of labels. Lowercase letters are drawn as capitals; anything else as `?`.
const FONT: &[(char, [&str; 7])] = &[
    (
        'A',
        [
            ".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#",
        ],
    ),
    (
        'B',
        [
            "####.", "#...#", "#...#", "####.", "#...#", "#...#", "####.",
        ],
    ),
    (
        'C',
        [
            ".###.", "#...#", "#....", "#....", "#....", "#...#", ".###.",
        ],
    ),
    (
        'D',
        [
            "####.", "#...#", "#...#", "#...#", "#...#", "#...#", "####.",
        ],
    ),
    (
        'E',
        [
            "#####", "#....", "#....", "####.", "#....", "#....", "#####",
        ],
    ),
    (
        'F',
        [
            "#####", "#....", "#....", "####.", "#....", "#....", "#....",
        ],
    ),
    (
        'G',
        [
            ".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####",
        ],
    ),
    (
        'H',
        [
            "#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#",
        ],
    ),
    (
        'I',
        [
            ".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###.",
        ],
    ),
    (
        'J',
        [
            "..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##..",
        ],
    ),
    (
        'K',
        [
            "#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#",
        ],
    ),
    (
        'L',
        [
            "#....", "#....", "#....", "#....", "#....", "#....", "#####",
        ],
    ),
    (
        'M',
        [
            "#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#",
        ],
    ),
    (
        'N',
        [
            "#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#",
        ],
    ),
    (
        'O',
        [
            ".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###.",
        ],
    ),
    (
        'P',
        [
            "####.", "#...#", "#...#", "####.", "#....", "#....", "#....",
        ],
    ),
    (
        'Q',
        [
            ".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#",
        ],
    ),
    (
        'R',
        [
            "####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#",
        ],
    ),
    (
        'S',
        [
            ".####", "#....", "#....", ".###.", "....#", "....#", "####.",
        ],
    ),
    (
        'T',
        [
            "#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#..",
        ],
    ),
    (
        'U',
        [
            "#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###.",
        ],
    ),
    (
        'V',
        [
            "#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#..",
        ],
    ),
    (
        'W',
        [
            "#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#.",
        ],
    ),
    (
        'X',
        [
            "#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#",
        ],
    ),
    (
        'Y',
        [
            "#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#..",
        ],
    ),
    (
        'Z',
        [
            "#####", "....#", "...#.", "..#..", ".#...", "#....", "#####",
        ],
    ),
    (
        '0',
        [
            ".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###.",
        ],
    ),
    (
        '1',
        [
            "..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###.",
        ],
    ),
    (
        '2',
        [
            ".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####",
        ],
    ),
    (
        '3',
        [
            "#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###.",
        ],
    ),
    (
        '4',
        [
            "...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#.",
        ],
    ),
    (
        '5',
        [
            "#####", "#....", "####.", "....#", "....#", "#...#", ".###.",
        ],
    ),
    (
        '6',
        [
            "..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###.",
        ],
    ),
    (
        '7',
        [
            "#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#...",
        ],
    ),
    (
        '8',
        [
            ".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###.",
        ],
    ),
    (
        '9',
        [
            ".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##..",
        ],
    ),
    (
        '.',
        [
            ".....", ".....", ".....", ".....", ".....", ".##..", ".##..",
        ],
    ),
    (
        ':',
        [
            ".....", ".##..", ".##..", ".....", ".##..", ".##..", ".....",
        ],
    ),
    (
        '-',
        [
            ".....", ".....", ".....", "#####", ".....", ".....", ".....",
        ],
    ),
    (
        '_',
        [
            ".....", ".....", ".....", ".....", ".....", ".....", "#####",
        ],
    ),
    (
        '%',
        [
            "##...", "##..#", "...#.", "..#..", ".#...", "#..##", "...##",
        ],
    ),
    (
        '/',
        [
            "....#", "....#", "...#.", "..#..", ".#...", "#....", "#....",
        ],
    ),
    (
        '(',
        [
            "...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#.",
        ],
    ),
    (
        ')',
        [
            ".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#...",
        ],
    ),
    (
        '?',
        [
            ".###.", "#...#", "....#", "...#.", "..#..", ".....", "..#..",
        ],
    ),
    (
        ' ',
        [
            ".....", ".....", ".....", ".....", ".....", ".....", ".....",
        ],
    ),
];

/// The glyph drawn for `c`.
fn glyph(c: char) -> &'static [&'static str; 7] {
    let c = c.to_ascii_uppercase();
    FONT.iter()
        .find(|(k, _)| *k == c)
        .or_else(|| FONT.iter().find(|(k, _)| *k == '?'))
        .map(|(_, g)| g)
        .expect("the font has `?`")
}

/// Pixels per font dot (a glyph is 10x14 px, a line of text 18 px high).
pub const LABEL_SCALE: i64 = 2;
/// Padding around the text inside the label background.
const LABEL_PAD: i64 = 2;

/// Width and height of a drawn label (background included).
pub fn label_size(text: &str) -> (i64, i64) {
    let n = text.chars().count() as i64;
    (
        (n * 6 - 1).max(0) * LABEL_SCALE + 2 * LABEL_PAD,
        7 * LABEL_SCALE + 2 * LABEL_PAD,
    )
}

/// Where a label goes for a box whose top-left corner is (`x1`, `y1`) in an image of `w`×`h`:
/// above the box when it fits, else just inside its top edge; shifted left/down as needed so the
/// whole label is inside the picture (never clipped) when the picture is large enough to hold it.
pub fn label_origin(w: i64, h: i64, x1: i64, y1: i64, text: &str) -> (i64, i64) {
    let (lw, lh) = label_size(text);
    let y = if y1 - lh >= 0 { y1 - lh } else { y1.max(0) };
    let y = y.min(h - lh).max(0);
    let x = x1.min(w - lw).max(0);
    (x, y)
}

/// Smallest integer factor that brings the long side of a `w`×`h` picture to at least 640 px
/// (1 when it already is): labels of a fixed pixel size stay readable on 128x160 photos.
pub fn display_scale(w: u32, h: u32) -> u32 {
    let long = w.max(h).max(1);
    if long >= 640 {
        1
    } else {
        640u32.div_ceil(long).min(64)
    }
}

/// A distinct colour per class.
pub fn class_colour(class: usize) -> Rgb<u8> {
    const P: [[u8; 3]; 10] = [
        [230, 25, 75],
        [60, 180, 75],
        [0, 130, 200],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
        [240, 50, 230],
        [210, 245, 60],
        [250, 190, 212],
        [0, 128, 128],
    ];
    Rgb(P[class % P.len()])
}

/// Text colour readable on `bg` (black on light colours, white on dark ones).
fn text_colour(bg: Rgb<u8>) -> Rgb<u8> {
    let [r, g, b] = bg.0;
    let luma = 0.299 * r as f32 + 0.587 * g as f32 + 0.114 * b as f32;
    if luma > 150.0 {
        Rgb([0, 0, 0])
    } else {
        Rgb([255, 255, 255])
    }
}

/// Draw `text` on a `bg` background with its top-left corner at (`x`, `y`).
pub fn draw_label(img: &mut RgbImage, x: i64, y: i64, text: &str, bg: Rgb<u8>) {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let fg = text_colour(bg);
    let mut put = |px: i64, py: i64, c: Rgb<u8>| {
        if px >= 0 && py >= 0 && px < w && py < h {
            img.put_pixel(px as u32, py as u32, c);
        }
    };
    let (lw, lh) = label_size(text);
    for yy in y..y + lh {
        for xx in x..x + lw {
            put(xx, yy, bg);
        }
    }
    for (k, ch) in text.chars().enumerate() {
        for (row, bits) in glyph(ch).iter().enumerate() {
            for (col, b) in bits.bytes().enumerate() {
                if b != b'#' {
                    continue;
                }
                for dy in 0..LABEL_SCALE {
                    for dx in 0..LABEL_SCALE {
                        put(
                            x + LABEL_PAD + (k as i64 * 6 + col as i64) * LABEL_SCALE + dx,
                            y + LABEL_PAD + row as i64 * LABEL_SCALE + dy,
                            fg,
                        );
                    }
                }
            }
        }
    }
}

/// Pixel corners of a box.
fn corners(b: [f32; 4]) -> (i64, i64, i64, i64) {
    (
        b[0].floor() as i64,
        b[1].floor() as i64,
        b[2].ceil() as i64,
        b[3].ceil() as i64,
    )
}

/// Draw the rectangle rings at offsets `offsets` (0 = the box's edge, positive inwards) in `c`.
fn rings(img: &mut RgbImage, b: [f32; 4], offsets: &[i64], c: Rgb<u8>) {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let (x1, y1, x2, y2) = corners(b);
    let mut put = |x: i64, y: i64| {
        if x >= 0 && y >= 0 && x < w && y < h {
            img.put_pixel(x as u32, y as u32, c);
        }
    };
    for &t in offsets {
        for x in x1 + t..=x2 - t {
            put(x, y1 + t);
            put(x, y2 - t);
        }
        for y in y1 + t..=y2 - t {
            put(x1 + t, y);
            put(x2 - t, y);
        }
    }
}

/// The dark 1 px contour outside and inside a box's outline (keeps it visible on any background).
fn contour(img: &mut RgbImage, b: [f32; 4]) {
    rings(img, b, &[-1, 2], Rgb([20, 20, 20]));
}

/// Draw a rectangle outline (2 px, inside the box's corners) in the class colour, framed by dark
/// 1 px lines, and its label (see [`label_origin`]).
pub fn draw_box(img: &mut RgbImage, b: [f32; 4], class: usize, label: &str) {
    contour(img, b);
    rings(img, b, &[0, 1], class_colour(class));
    if !label.is_empty() {
        let (x1, y1, _, _) = corners(b);
        let (lx, ly) = label_origin(img.width() as i64, img.height() as i64, x1, y1, label);
        draw_label(img, lx, ly, label, class_colour(class));
    }
}

/// One box to draw: x1, y1, x2, y2 in photo pixels, class, label text.
pub type DrawnBox = ([f32; 4], usize, String);

/// The annotated picture: the photo scaled up by [`display_scale`] (bilinear), the boxes mapped
/// by the same factor (a photo coordinate `v` is drawn at `v * scale`): dark contours, labels,
/// then the coloured outlines on top. Returns the picture and the factor.
pub fn annotate(photo: &RgbImage, boxes: &[DrawnBox]) -> (RgbImage, u32) {
    let k = display_scale(photo.width(), photo.height());
    let mut img = if k == 1 {
        photo.clone()
    } else {
        resize_bilinear(photo, photo.width() * k, photo.height() * k)
    };
    let kf = k as f32;
    let scaled = |b: &[f32; 4]| [b[0] * kf, b[1] * kf, b[2] * kf, b[3] * kf];
    // every dark contour first, then the labels, then every coloured outline on top: each reported
    // box stays visible all round (a label's 2 px padding takes its own box's edge)
    for (b, _, _) in boxes {
        contour(&mut img, scaled(b));
    }
    let (w, h) = (img.width() as i64, img.height() as i64);
    for (b, class, label) in boxes {
        let (lx, ly) = label_origin(
            w,
            h,
            (b[0] * kf).floor() as i64,
            (b[1] * kf).floor() as i64,
            label,
        );
        draw_label(&mut img, lx, ly, label, class_colour(*class));
    }
    for (b, class, _) in boxes {
        rings(&mut img, scaled(b), &[0, 1], class_colour(*class));
    }
    (img, k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_glyph_is_5x7() {
        for (c, g) in FONT {
            assert!(g.iter().all(|r| r.len() == 5), "glyph {c:?}");
        }
        assert_eq!(glyph('c'), glyph('C'));
        assert_eq!(glyph('\u{e9}'), glyph('?'));
    }

    #[test]
    fn labels_stay_inside_the_picture() {
        let text = "triangle 0.97";
        let (lw, lh) = label_size(text);
        for (w, h) in [(640, 512), (200, 100)] {
            for (x1, y1) in [
                (0, 0),
                (10, 2),
                (w - 5, 0),
                (w - 5, h - 1),
                (-30, -30),
                (5, 300),
            ] {
                let (x, y) = label_origin(w, h, x1, y1, text);
                assert!(
                    x >= 0 && y >= 0 && x + lw <= w && y + lh <= h,
                    "box at ({x1},{y1}) in {w}x{h}: label at ({x},{y}) size {lw}x{lh}"
                );
            }
        }
        // room above: the label sits on the box's top edge, left-aligned with it
        assert_eq!(label_origin(640, 512, 100, 100, text), (100, 100 - lh));
        // at the top edge: just inside the box
        assert_eq!(label_origin(640, 512, 100, 3, text), (100, 3));
    }

    #[test]
    fn small_pictures_are_scaled_up_to_640() {
        assert_eq!(display_scale(160, 128), 4);
        assert_eq!(display_scale(640, 480), 1);
        assert_eq!(display_scale(1000, 10), 1);
        assert_eq!(display_scale(300, 200), 3);
    }
}
