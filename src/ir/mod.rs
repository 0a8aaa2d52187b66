//! ONNX IR core: knows no detector. Exact load/save with external data ([`model`]), tensor values
//! ([`tensor`]), graph editing ([`graph`], [`builder`]), value infos and structure checks.
pub mod builder;
pub mod graph;
pub mod model;
pub mod tensor;
pub mod validate;
pub mod value_info;
