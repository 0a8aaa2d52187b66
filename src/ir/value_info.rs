//! Dimensions and declared value_info: reading and writing the tensor type of a `ValueInfoProto`.

use serde::Serialize;

use crate::onnx::{type_proto, GraphProto, TensorShapeProto, ValueInfoProto};

/// One dimension: a number or a symbol (e.g. `batch`, or `N` for data-dependent sizes).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(untagged)]
pub enum Dim {
    Known(i64),
    Sym(String),
}

impl Dim {
    pub fn known(&self) -> Option<i64> {
        match self {
            Dim::Known(v) => Some(*v),
            Dim::Sym(_) => None,
        }
    }
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Known(v) => write!(f, "{v}"),
            Dim::Sym(s) => write!(f, "{s}"),
        }
    }
}

/// Render a shape as `[1,3,640,640]`.
pub fn fmt_shape(s: &[Dim]) -> String {
    format!(
        "[{}]",
        s.iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(",")
    )
}

/// Shape of a declared value_info (`None` when it carries no tensor shape).
pub fn vi_shape(v: &ValueInfoProto) -> Option<Vec<Dim>> {
    let tt = match v.r#type.as_ref()?.value.as_ref()? {
        type_proto::Value::TensorType(t) => t,
        _ => return None,
    };
    let shape = tt.shape.as_ref()?;
    Some(
        shape
            .dim
            .iter()
            .enumerate()
            .map(|(i, d)| match &d.value {
                Some(crate::onnx::tensor_shape_proto::dimension::Value::DimValue(x)) => {
                    Dim::Known(*x)
                }
                Some(crate::onnx::tensor_shape_proto::dimension::Value::DimParam(p)) => {
                    Dim::Sym(p.clone())
                }
                None => Dim::Sym(format!("{}_dim{i}", v.name())),
            })
            .collect(),
    )
}

/// Element type of a declared value_info.
pub fn vi_dtype(v: &ValueInfoProto) -> Option<i32> {
    match v.r#type.as_ref()?.value.as_ref()? {
        type_proto::Value::TensorType(t) => t.elem_type,
        _ => None,
    }
}

/// Set the tensor shape of a value_info (keeps everything else).
pub fn set_vi_shape(v: &mut ValueInfoProto, shape: &[Dim]) {
    use crate::onnx::tensor_shape_proto::{dimension::Value as DV, Dimension};
    let t = v.r#type.get_or_insert_with(Default::default);
    if !matches!(t.value, Some(type_proto::Value::TensorType(_))) {
        t.value = Some(type_proto::Value::TensorType(Default::default()));
    }
    if let Some(type_proto::Value::TensorType(tt)) = &mut t.value {
        let old = tt.shape.take().unwrap_or_default();
        let dims = shape
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let mut nd: Dimension = old.dim.get(i).cloned().unwrap_or_default();
                nd.value = Some(match d {
                    Dim::Known(x) => DV::DimValue(*x),
                    Dim::Sym(s) => DV::DimParam(s.clone()),
                });
                nd
            })
            .collect();
        tt.shape = Some(TensorShapeProto { dim: dims });
    }
}

/// A value_info with dtype and shape.
pub fn make_vi(name: &str, dtype: i32, shape: &[Dim]) -> ValueInfoProto {
    let mut v = ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(crate::onnx::TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(dtype),
                shape: None,
            })),
            ..Default::default()
        }),
        ..Default::default()
    };
    set_vi_shape(&mut v, shape);
    v
}

/// Declared shape of graph input `name`.
pub fn declared_input(g: &GraphProto, name: &str) -> Option<Vec<Dim>> {
    g.input.iter().find(|i| i.name() == name).and_then(vi_shape)
}
