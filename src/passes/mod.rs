//! Graph edits, one per file. Each pass edits the model through the graph layer and leaves the
//! graph topologically sorted; unknown ops pass through untouched.

pub mod input_format;
pub mod merge;
pub mod quant_prep;
pub mod resize;
pub mod set;

/// The default-domain opset of a model (0 when absent).
pub fn default_opset(m: &crate::onnx::ModelProto) -> i64 {
    m.opset_import
        .iter()
        .find(|o| o.domain().is_empty() || o.domain() == "ai.onnx")
        .map(|o| o.version())
        .unwrap_or(0)
}

/// Set the default-domain opset.
pub fn set_default_opset(m: &mut crate::onnx::ModelProto, v: i64) {
    if let Some(o) = m
        .opset_import
        .iter_mut()
        .find(|o| o.domain().is_empty() || o.domain() == "ai.onnx")
    {
        o.version = Some(v);
    } else {
        m.opset_import.push(crate::onnx::OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(v),
        });
    }
}

/// Set or replace a model-level metadata entry.
pub fn set_metadata(m: &mut crate::onnx::ModelProto, key: &str, value: &str) {
    if let Some(e) = m.metadata_props.iter_mut().find(|e| e.key() == key) {
        e.value = Some(value.to_string());
    } else {
        m.metadata_props.push(crate::onnx::StringStringEntryProto {
            key: Some(key.into()),
            value: Some(value.into()),
        });
    }
}
