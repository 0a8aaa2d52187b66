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

use crate::head::Family;
use crate::npy::{Npy, NpyData};

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

/// Preprocess a photo for a family: YOLOX = BGR 0..255, top-left letterbox, pad 114;
/// Gold-YOLO = RGB /255, centred letterbox, pad 114. Returns the NCHW tensor [1,3,H,W].
pub fn preprocess(img: &RgbImage, family: Family, h: u32, w: u32) -> Result<(Npy, Letterbox)> {
    if img.width() == 0 || img.height() == 0 || h == 0 || w == 0 {
        bail!("empty image or input size");
    }
    let r = (h as f64 / img.height() as f64).min(w as f64 / img.width() as f64);
    let (nw, nh) = match family {
        Family::GoldYolo => (
            (img.width() as f64 * r).round() as u32,
            (img.height() as f64 * r).round() as u32,
        ),
        _ => (
            (img.width() as f64 * r) as u32,
            (img.height() as f64 * r) as u32,
        ),
    };
    let (nw, nh) = (nw.clamp(1, w), nh.clamp(1, h));
    let resized = if (nw, nh) == (img.width(), img.height()) {
        img.clone()
    } else {
        resize_bilinear(img, nw, nh)
    };
    let (pad_x, pad_y) = match family {
        Family::GoldYolo => {
            let dw = (w - nw) as f64 / 2.0;
            let dh = (h - nh) as f64 / 2.0;
            // yolov6 letterbox: left = round(dw - 0.1), top = round(dh - 0.1)
            ((dw - 0.1).round(), (dh - 0.1).round())
        }
        _ => (0.0, 0.0),
    };
    let mut canvas = RgbImage::from_pixel(w, h, Rgb([114, 114, 114]));
    image::imageops::replace(&mut canvas, &resized, pad_x as i64, pad_y as i64);
    let plane = (h * w) as usize;
    let mut data = vec![0f32; 3 * plane];
    for (x, y, p) in canvas.enumerate_pixels() {
        let i = (y * w + x) as usize;
        for c in 0..3 {
            let (src_c, scale) = match family {
                Family::GoldYolo => (c, 1.0 / 255.0),
                _ => (2 - c, 1.0), // BGR
            };
            data[c * plane + i] = p.0[src_c] as f32 * scale;
        }
    }
    let lb = Letterbox {
        ratio: r,
        pad_x,
        pad_y,
        width: img.width(),
        height: img.height(),
    };
    Ok((
        Npy::new(vec![1, 3, h as usize, w as usize], NpyData::F32(data))?,
        lb,
    ))
}

/// A deterministic synthetic input for a family (smooth gradients plus hashed noise), [B,3,H,W].
pub fn synthetic(family: Family, b: usize, h: usize, w: usize) -> Result<Npy> {
    let scale = if family == Family::GoldYolo {
        1.0 / 255.0
    } else {
        1.0
    };
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
                        .min(255.0);
                    data.push(v * scale);
                }
            }
        }
    }
    Npy::new(vec![b, 3, h, w], NpyData::F32(data))
}

const FONT: [(char, [u8; 5]); 12] = [
    ('0', [0b111, 0b101, 0b101, 0b101, 0b111]),
    ('1', [0b010, 0b110, 0b010, 0b010, 0b111]),
    ('2', [0b111, 0b001, 0b111, 0b100, 0b111]),
    ('3', [0b111, 0b001, 0b111, 0b001, 0b111]),
    ('4', [0b101, 0b101, 0b111, 0b001, 0b001]),
    ('5', [0b111, 0b100, 0b111, 0b001, 0b111]),
    ('6', [0b111, 0b100, 0b111, 0b101, 0b111]),
    ('7', [0b111, 0b001, 0b010, 0b010, 0b010]),
    ('8', [0b111, 0b101, 0b111, 0b101, 0b111]),
    ('9', [0b111, 0b101, 0b111, 0b001, 0b111]),
    ('.', [0b000, 0b000, 0b000, 0b000, 0b010]),
    (':', [0b000, 0b010, 0b000, 0b010, 0b000]),
];

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

/// Draw a rectangle outline (2 px) and a label "class:score" in a small bitmap font.
pub fn draw_box(img: &mut RgbImage, b: [f32; 4], class: usize, score: f32) {
    let col = class_colour(class);
    let (w, h) = (img.width() as i64, img.height() as i64);
    let (x1, y1, x2, y2) = (
        b[0].floor() as i64,
        b[1].floor() as i64,
        b[2].ceil() as i64,
        b[3].ceil() as i64,
    );
    let mut put = |x: i64, y: i64, c: Rgb<u8>| {
        if x >= 0 && y >= 0 && x < w && y < h {
            img.put_pixel(x as u32, y as u32, c);
        }
    };
    for t in 0..2 {
        for x in x1..=x2 {
            put(x, y1 + t, col);
            put(x, y2 - t, col);
        }
        for y in y1..=y2 {
            put(x1 + t, y, col);
            put(x2 - t, y, col);
        }
    }
    let label = format!("{class}:{:.2}", score);
    let scale = 2;
    let (lx, ly) = (x1, (y1 - 6 * scale - 2).max(0));
    // label background
    for yy in ly..ly + 6 * scale + 1 {
        for xx in lx..lx + (label.len() as i64) * 4 * scale + 1 {
            put(xx, yy, col);
        }
    }
    for (k, ch) in label.chars().enumerate() {
        let Some((_, g)) = FONT.iter().find(|(c, _)| *c == ch) else {
            continue;
        };
        for (row, bits) in g.iter().enumerate() {
            for colm in 0..3 {
                if bits & (1 << (2 - colm)) != 0 {
                    for dy in 0..scale {
                        for dx in 0..scale {
                            put(
                                lx + 1 + (k as i64 * 4 + colm) * scale + dx,
                                ly + 1 + row as i64 * scale + dy,
                                Rgb([255, 255, 255]),
                            );
                        }
                    }
                }
            }
        }
    }
}
