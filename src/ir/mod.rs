//! ONNX IR core: knows no detector. So far only what shape inference split off
//! ([`value_info`], [`validate`]); the other IR files move here later (architecture.md §4).
pub mod validate;
pub mod value_info;
