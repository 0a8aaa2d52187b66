//! Bytes and files without ONNX.
pub mod npy;
