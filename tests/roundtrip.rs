//! Decode → encode without edits loses nothing. Uses the project's fixtures and, with
//! POSTMERGE_SHARED (tests/common), the shared models postmerge handles.

mod common;

use bytes::Bytes;
use postmerge::model::{Model, SaveOptions};
use prost::Message;

#[test]
fn every_model_round_trips_byte_identical_and_field_by_field() {
    for p in common::all_models() {
        let bytes = std::fs::read(&p).unwrap();
        let m = Model::load(&p).unwrap_or_else(|e| panic!("{}: {e:#}", p.display()));
        let again = m.to_bytes().unwrap();
        // field by field: the re-encoded message decodes to an equal message
        let back = postmerge::onnx::ModelProto::decode(Bytes::from(again.clone())).unwrap();
        assert_eq!(
            back,
            m.proto,
            "{}: fields changed in the round trip",
            p.display()
        );
        // and for canonical writers (onnx/protobuf) the bytes are identical
        assert!(
            again == bytes,
            "{}: re-encoded bytes differ ({} vs {} bytes)",
            p.display(),
            again.len(),
            bytes.len()
        );
    }
}

#[test]
fn saving_through_a_temp_file_gives_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let src = common::fixtures().join("yolox_nano_128x160.onnx");
    let m = Model::load(&src).unwrap();
    let out = dir.path().join("copy.onnx");
    m.save(&out, &SaveOptions::default()).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&src).unwrap());
    // no temp files left behind
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["copy.onnx"]);
}

#[test]
fn external_data_is_written_resolved_and_copied_faithfully() {
    let dir = tempfile::tempdir().unwrap();
    let src = common::fixtures().join("yolox_nano_128x160.onnx");
    let m = Model::load(&src).unwrap();
    let ext = dir.path().join("ext.onnx");
    m.save(
        &ext,
        &SaveOptions {
            external_data: Some("ext.onnx.data".into()),
            external_threshold: 1024,
        },
    )
    .unwrap();
    assert!(dir.path().join("ext.onnx.data").exists());
    let e = Model::load(&ext).unwrap();
    let g0 = m.graph();
    let g1 = e.graph();
    let mut moved = 0;
    for (a, b) in g0.initializer.iter().zip(&g1.initializer) {
        assert_eq!(a.name(), b.name());
        assert_eq!(
            m.tensor_values(a).unwrap(),
            e.tensor_values(b).unwrap(),
            "tensor {}",
            a.name()
        );
        moved += postmerge::tensor::is_external(b) as usize;
    }
    assert!(moved > 50, "only {moved} tensors went external");
    // the external model copied elsewhere brings its data file, byte for byte
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    e.save(&sub.join("ext.onnx"), &SaveOptions::default())
        .unwrap();
    assert_eq!(
        std::fs::read(sub.join("ext.onnx.data")).unwrap(),
        std::fs::read(dir.path().join("ext.onnx.data")).unwrap()
    );
    assert_eq!(
        std::fs::read(sub.join("ext.onnx")).unwrap(),
        std::fs::read(&ext).unwrap()
    );
    // loading from another working directory resolves relative to the model file
    let e2 = Model::load(&sub.join("ext.onnx")).unwrap();
    assert_eq!(e2.proto, e.proto);
}

#[test]
fn external_data_outside_the_model_folder_is_refused() {
    let src = common::fixtures().join("yolox_nano_128x160.onnx");
    let mut m = Model::load(&src).unwrap();
    let t = &mut m.graph_mut().initializer[0];
    t.data_location = Some(postmerge::onnx::tensor_proto::DataLocation::External as i32);
    t.external_data = vec![postmerge::onnx::StringStringEntryProto {
        key: Some("location".into()),
        value: Some("../../etc/passwd".into()),
    }];
    let bytes = m.to_bytes().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let e = Model::from_bytes_in(Bytes::from(bytes), "evil.onnx", Some(dir.path())).unwrap_err();
    assert!(
        format!("{e:#}").contains("must be a relative path inside the model's folder"),
        "{e:#}"
    );
}

#[test]
fn models_over_the_protobuf_limit_are_refused_with_a_clear_message() {
    let src = common::fixtures().join("yolox_nano_128x160.onnx");
    let mut m = Model::load(&src).unwrap();
    // 2 GiB of zeros: allocated lazily by the OS, never touched by encoded_len
    let big = Bytes::from(vec![0u8; 1usize << 31]);
    m.graph_mut().initializer[0].raw_data = Some(big);
    let e = m.to_bytes().unwrap_err().to_string();
    assert!(
        e.contains("over the 2 GiB protobuf limit") && e.contains("external data"),
        "{e}"
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("big.onnx");
    let e = m
        .save(&out, &SaveOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("2 GiB"), "{e}");
    assert!(!out.exists(), "no partial output");
}

#[test]
fn rich_fixture_keeps_every_field_and_its_external_data_elsewhere() {
    // tests/fixtures/rich_640x640.onnx carries metadata_props (model, graph, node, function),
    // doc strings, value_info, a model-local function, sparse initializers, every attribute kind
    // and two tensors in rich_640x640.onnx.data (see tests/fixtures/README.md)
    let src = common::fixtures().join("rich_640x640.onnx");
    let m = Model::load(&src).unwrap();
    assert!(!m.proto.metadata_props.is_empty() && !m.proto.functions.is_empty());
    assert!(!m.graph().value_info.is_empty() && !m.graph().sparse_initializer.is_empty());
    assert_eq!(m.external.len(), 1, "one external data file");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rich_640x640.onnx");
    m.save(&out, &SaveOptions::default()).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&src).unwrap());
    assert_eq!(
        std::fs::read(dir.path().join("rich_640x640.onnx.data")).unwrap(),
        std::fs::read(common::fixtures().join("rich_640x640.onnx.data")).unwrap()
    );
    let back = Model::load(&out).unwrap();
    assert_eq!(back.proto, m.proto);
    assert_eq!(back.external, m.external);
}
