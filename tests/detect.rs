//! `detect` for a person: class names on the labels (flag, file, or stored by `merge --names`),
//! labels inside the picture, small pictures scaled up before drawing. Runs on the project's own
//! trained shapes model (tests/fixtures/shapes_128x160.onnx; class order in shapes/gt.json:
//! 0 rectangle, 1 circle, 2 triangle).

mod common;

use std::path::{Path, PathBuf};

use postmerge::imageio::{annotate, class_colour, label_origin, label_size};

const NAMES: [&str; 3] = ["square", "circle", "triangle"];

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn ok(args: &[&str]) -> String {
    let (code, out, err) = common::run(args);
    assert_eq!(code, 0, "postmerge {args:?}: {err}");
    out
}

fn sample() -> PathBuf {
    common::fixtures().join("shapes/sample_1.png")
}

fn merge(dir: &Path, extra: &[&str]) -> PathBuf {
    let out = dir.join("m.onnx");
    let src = common::fixtures().join("shapes_128x160.onnx");
    let mut args = vec!["merge", s(&src), "-o", s(&out)];
    args.extend_from_slice(extra);
    ok(&args);
    out
}

fn detect(model: &Path, png: &Path, extra: &[&str]) -> serde_json::Value {
    let photo = sample();
    let mut args = vec!["detect", s(model), s(&photo), "-o", s(png), "--json"];
    args.extend_from_slice(extra);
    serde_json::from_str(&ok(&args)).unwrap()
}

/// The ground truth of sample_1.png: (class, box).
fn truth() -> Vec<(usize, [f64; 4])> {
    let gt: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::fixtures().join("shapes/gt.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        gt["classes"],
        serde_json::json!(["rectangle", "circle", "triangle"])
    );
    gt["samples"]["sample_1.png"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let b: Vec<f64> = o["box"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            (
                o["class_id"].as_u64().unwrap() as usize,
                [b[0], b[1], b[2], b[3]],
            )
        })
        .collect()
}

fn assert_named(v: &serde_json::Value, source: &str) {
    assert_eq!(v["names_from"].as_str().unwrap(), source, "{v}");
    let dets = v["detections"].as_array().unwrap();
    assert!(!dets.is_empty());
    for d in dets {
        let class = d["class"].as_u64().unwrap() as usize;
        let name = d["name"].as_str().unwrap();
        assert_eq!(name, NAMES[class]);
        let label = d["label"].as_str().unwrap();
        assert_eq!(label, format!("{name} {:.2}", d["score"].as_f64().unwrap()));
    }
    // the photo's objects, by name: every ground-truth object is found with its class
    for (class, b) in truth() {
        assert!(
            dets.iter()
                .any(|d| d["class"].as_u64() == Some(class as u64) && {
                    let g: Vec<f64> = d["box"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_f64().unwrap())
                        .collect();
                    (g[0] - b[0]).abs() < 8.0 && (g[1] - b[1]).abs() < 8.0
                }),
            "{} at {b:?} not found: {v}",
            NAMES[class]
        );
    }
}

#[test]
fn names_come_from_the_flag_the_file_and_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("d.png");
    let plain = merge(dir.path(), &[]);
    // without names: class numbers
    let v = detect(&plain, &png, &[]);
    assert!(v["names_from"].is_null());
    for d in v["detections"].as_array().unwrap() {
        assert!(d["name"].is_null());
        assert!(d["label"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{} ", d["class"])));
    }
    assert_named(
        &detect(&plain, &png, &["--names", "square,circle,triangle"]),
        "--names",
    );
    let file = dir.path().join("names.txt");
    std::fs::write(&file, "square\ncircle\ntriangle\n\n").unwrap();
    assert_named(
        &detect(&plain, &png, &["--names-file", s(&file)]),
        &format!("--names-file {}", file.display()),
    );
    // stored by merge --names, used when no flag is given; a flag wins
    let named = merge(dir.path(), &["--names", "square, circle ,triangle"]);
    let text = ok(&["inspect", s(&named)]);
    assert!(
        text.contains(r#"metadata:   postmerge.names = ["square","circle","triangle"]"#),
        "{text}"
    );
    assert_named(&detect(&named, &png, &[]), "metadata");
    let v = detect(&named, &png, &["--names", "a,b,c"]);
    assert_eq!(v["names_from"], "--names");
    // the text output names them too
    let out = ok(&["detect", s(&named), s(&sample()), "-o", s(&png)]);
    assert!(out.contains(" circle  score "), "{out}");
}

#[test]
fn bad_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let src = common::fixtures().join("shapes_128x160.onnx");
    let out = dir.path().join("m.onnx");
    let (code, _, err) = common::run(&[
        "merge",
        s(&src),
        "-o",
        s(&out),
        "--names",
        "circle,triangle",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--names gives 2 class names, the model has 3 classes"),
        "{err}"
    );
    assert!(!out.exists());
    let (code, _, err) = common::run(&["merge", s(&src), "-o", s(&out), "--names", "a,,c"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("name 2 (class 1) is empty"), "{err}");
    let (code, _, err) = common::run(&[
        "detect",
        s(&src),
        s(&sample()),
        "-o",
        s(&dir.path().join("x.png")),
        "--names-file",
        "/nonexistent/names.txt",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("cannot read names file `/nonexistent/names.txt`"),
        "{err}"
    );
}

#[test]
fn small_photos_are_drawn_scaled_up_with_the_boxes_where_they_map() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("d.png");
    let m = merge(dir.path(), &["--names", "square,circle,triangle"]);
    let v = detect(&m, &png, &[]);
    assert_eq!(v["drawn_scale"], 4);
    let drawn = image::open(&png).unwrap().to_rgb8();
    assert_eq!(drawn.dimensions(), (640, 512)); // 160x128 x 4
    let photo = image::open(sample()).unwrap().to_rgb8();
    assert_eq!(photo.dimensions(), (160, 128));
    for d in v["detections"].as_array().unwrap() {
        let b: Vec<f64> = d["box"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let col = class_colour(d["class"].as_u64().unwrap() as usize).0;
        // the outline is drawn at box * 4: left and right edges at mid-height, bottom at mid-width
        let (x1, x2) = ((b[0] * 4.0).floor() as u32, (b[2] * 4.0).ceil() as u32);
        let (ym, y2) = (((b[1] + b[3]) * 2.0) as u32, (b[3] * 4.0).ceil() as u32);
        let xm = ((b[0] + b[2]) * 2.0) as u32;
        for (x, y, what) in [
            (x1, ym, "left"),
            (x2.min(639), ym, "right"),
            (xm, y2.min(511), "bottom"),
        ] {
            assert_eq!(
                drawn.get_pixel(x, y).0,
                col,
                "{what} edge of {d} at ({x},{y})"
            );
        }
        // and not at the unscaled position (the box really was mapped)
        let (ux, uy) = ((b[0]).floor() as u32, ((b[1] + b[3]) / 2.0) as u32);
        assert_ne!(
            drawn.get_pixel(ux, uy).0,
            col,
            "{d}: an outline at the unscaled position"
        );
    }
}

#[test]
fn a_box_at_the_top_edge_has_its_label_inside_the_picture() {
    // a 160x128 grey photo with boxes touching the top edge, the top-right corner and the left
    let photo = image::RgbImage::from_pixel(160, 128, image::Rgb([114, 114, 114]));
    let boxes = vec![
        ([10.0, 0.0, 60.0, 40.0], 1, "circle 0.97".to_string()),
        ([150.0, 0.5, 160.0, 20.0], 2, "triangle 0.51".to_string()),
    ];
    let (img, k) = annotate(&photo, &boxes);
    assert_eq!((k, img.width(), img.height()), (4, 640, 512));
    for (b, class, label) in &boxes {
        let (lw, lh) = label_size(label);
        let (x, y) = label_origin(640, 512, (b[0] * 4.0) as i64, (b[1] * 4.0) as i64, label);
        assert!(
            x >= 0 && y >= 0 && x + lw <= 640 && y + lh <= 512,
            "{label} at ({x},{y})"
        );
        // the label is really there: its background in the class colour and text pixels in it
        let (mut bg, mut ink) = (0, 0);
        for yy in y..y + lh {
            for xx in x..x + lw {
                let p = img.get_pixel(xx as u32, yy as u32).0;
                // background, or a box outline drawn over the label
                if p == class_colour(*class).0
                    || boxes.iter().any(|(_, c, _)| p == class_colour(*c).0)
                {
                    bg += 1;
                } else if p == [0, 0, 0] || p == [255, 255, 255] {
                    ink += 1;
                }
            }
        }
        assert_eq!(
            bg + ink,
            lw * lh,
            "{label}: the label area holds other pixels"
        );
        assert!(ink > 10 * label.len() as i64, "{label}: {ink} text pixels");
    }
    // labels are big enough to read: 14 px high letters on the 640 px picture
    assert_eq!(label_size("circle 0.97").1, 18);
}
