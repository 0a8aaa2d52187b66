//! Generates the ONNX protobuf types from the vendored `proto/onnx.proto` with protox (pure Rust,
//! no system `protoc`) and prost-build. Every `bytes` field becomes `bytes::Bytes` so tensor data is
//! never copied when a model is decoded from a `Bytes` buffer.
fn main() {
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    let fds = protox::compile(["proto/onnx.proto"], ["proto"]).expect("compile proto/onnx.proto");
    let mut config = prost_build::Config::new();
    config.bytes(["."]);
    config
        .compile_fds(fds)
        .expect("generate rust for onnx.proto");
}
