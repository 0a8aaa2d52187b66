//! Reading and building `TensorProto` values: dtype names, element access whether the data sits in
//! `raw_data`, the typed repeated fields, or an external file.

use anyhow::{bail, Result};
use bytes::Bytes;

use crate::onnx::{tensor_proto::DataType, TensorProto};

/// ONNX data type code → short lowercase name used in reports (`f32`, `i64`, ...).
pub fn dtype_name(code: i32) -> String {
    match DataType::try_from(code) {
        Ok(DataType::Float) => "f32".into(),
        Ok(DataType::Uint8) => "u8".into(),
        Ok(DataType::Int8) => "i8".into(),
        Ok(DataType::Uint16) => "u16".into(),
        Ok(DataType::Int16) => "i16".into(),
        Ok(DataType::Int32) => "i32".into(),
        Ok(DataType::Int64) => "i64".into(),
        Ok(DataType::String) => "string".into(),
        Ok(DataType::Bool) => "bool".into(),
        Ok(DataType::Float16) => "f16".into(),
        Ok(DataType::Double) => "f64".into(),
        Ok(DataType::Uint32) => "u32".into(),
        Ok(DataType::Uint64) => "u64".into(),
        Ok(DataType::Bfloat16) => "bf16".into(),
        Ok(other) => format!("{other:?}").to_lowercase(),
        Err(_) => format!("dtype#{code}"),
    }
}

/// Size in bytes of one element, for fixed-size numeric types.
pub fn dtype_size(code: i32) -> Option<usize> {
    Some(match DataType::try_from(code).ok()? {
        DataType::Float | DataType::Int32 | DataType::Uint32 => 4,
        DataType::Uint8 | DataType::Int8 | DataType::Bool => 1,
        DataType::Uint16 | DataType::Int16 | DataType::Float16 | DataType::Bfloat16 => 2,
        DataType::Int64 | DataType::Double | DataType::Uint64 => 8,
        _ => return None,
    })
}

/// Number of elements described by `dims` (1 for a scalar), `None` on negative dims or overflow.
pub fn numel(dims: &[i64]) -> Option<usize> {
    dims.iter().try_fold(1usize, |acc, &d| {
        if d < 0 {
            None
        } else {
            acc.checked_mul(d as usize)
        }
    })
}

/// True when the tensor's data lives in an external file.
pub fn is_external(t: &TensorProto) -> bool {
    t.data_location == Some(crate::onnx::tensor_proto::DataLocation::External as i32)
}

/// The `key` entry of a tensor's `external_data` list.
pub fn external_entry<'a>(t: &'a TensorProto, key: &str) -> Option<&'a str> {
    t.external_data
        .iter()
        .find(|e| e.key() == key)
        .map(|e| e.value())
}

/// A decoded numeric tensor (small constants: shapes, thresholds, grids).
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I64(Vec<i64>),
    I32(Vec<i32>),
    U8(Vec<u8>),
    I8(Vec<i8>),
    Bool(Vec<bool>),
}

impl Values {
    pub fn len(&self) -> usize {
        match self {
            Values::F32(v) => v.len(),
            Values::F64(v) => v.len(),
            Values::I64(v) => v.len(),
            Values::I32(v) => v.len(),
            Values::U8(v) => v.len(),
            Values::I8(v) => v.len(),
            Values::Bool(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Integer view (floats truncated toward zero, as Cast does).
    pub fn as_i64(&self) -> Vec<i64> {
        match self {
            Values::F32(v) => v.iter().map(|&x| x as i64).collect(),
            Values::F64(v) => v.iter().map(|&x| x as i64).collect(),
            Values::I64(v) => v.clone(),
            Values::I32(v) => v.iter().map(|&x| x as i64).collect(),
            Values::U8(v) => v.iter().map(|&x| x as i64).collect(),
            Values::I8(v) => v.iter().map(|&x| x as i64).collect(),
            Values::Bool(v) => v.iter().map(|&x| x as i64).collect(),
        }
    }
    /// Float view.
    pub fn as_f64(&self) -> Vec<f64> {
        match self {
            Values::F32(v) => v.iter().map(|&x| x as f64).collect(),
            Values::F64(v) => v.clone(),
            Values::I64(v) => v.iter().map(|&x| x as f64).collect(),
            Values::I32(v) => v.iter().map(|&x| x as f64).collect(),
            Values::U8(v) => v.iter().map(|&x| x as f64).collect(),
            Values::I8(v) => v.iter().map(|&x| x as f64).collect(),
            Values::Bool(v) => v.iter().map(|&x| if x { 1.0 } else { 0.0 }).collect(),
        }
    }
    pub fn is_float(&self) -> bool {
        matches!(self, Values::F32(_) | Values::F64(_))
    }
}

fn chunks<const N: usize>(raw: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
    raw.chunks_exact(N).map(|c| {
        let mut a = [0u8; N];
        a.copy_from_slice(c);
        a
    })
}

/// Decode the elements of `t`. `raw` overrides `t.raw_data` (used for external data already read).
/// Errors on unsupported dtypes or data whose length does not match the dims.
pub fn values_with(t: &TensorProto, raw: Option<&Bytes>) -> Result<Values> {
    let dt = t.data_type();
    let n = numel(&t.dims).ok_or_else(|| anyhow::anyhow!("invalid dims {:?}", t.dims))?;
    let raw = raw.or(t.raw_data.as_ref());
    let v = match DataType::try_from(dt) {
        Ok(DataType::Float) => Values::F32(match raw {
            Some(r) => chunks::<4>(r).map(f32::from_le_bytes).collect(),
            None => t.float_data.clone(),
        }),
        Ok(DataType::Double) => Values::F64(match raw {
            Some(r) => chunks::<8>(r).map(f64::from_le_bytes).collect(),
            None => t.double_data.clone(),
        }),
        Ok(DataType::Int64) => Values::I64(match raw {
            Some(r) => chunks::<8>(r).map(i64::from_le_bytes).collect(),
            None => t.int64_data.clone(),
        }),
        Ok(DataType::Int32) => Values::I32(match raw {
            Some(r) => chunks::<4>(r).map(i32::from_le_bytes).collect(),
            None => t.int32_data.clone(),
        }),
        Ok(DataType::Uint8) => Values::U8(match raw {
            Some(r) => r.to_vec(),
            None => t.int32_data.iter().map(|&x| x as u8).collect(),
        }),
        Ok(DataType::Int8) => Values::I8(match raw {
            Some(r) => r.iter().map(|&x| x as i8).collect(),
            None => t.int32_data.iter().map(|&x| x as i8).collect(),
        }),
        Ok(DataType::Bool) => Values::Bool(match raw {
            Some(r) => r.iter().map(|&x| x != 0).collect(),
            None => t.int32_data.iter().map(|&x| x != 0).collect(),
        }),
        _ => bail!("unsupported tensor dtype {}", dtype_name(dt)),
    };
    if v.len() != n {
        bail!(
            "tensor `{}` ({}{:?}) holds {} elements, its dims say {}",
            t.name(),
            dtype_name(dt),
            t.dims,
            v.len(),
            n
        );
    }
    Ok(v)
}

/// Decode the elements of an in-memory tensor (errors for external data: use `Model::tensor_values`).
pub fn values(t: &TensorProto) -> Result<Values> {
    if is_external(t) {
        bail!("tensor `{}` is stored in external data", t.name());
    }
    values_with(t, None)
}

/// Build an int64 tensor with raw data.
pub fn tensor_i64(name: &str, dims: &[i64], data: &[i64]) -> TensorProto {
    let raw: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
    TensorProto {
        name: Some(name.to_string()),
        dims: dims.to_vec(),
        data_type: Some(DataType::Int64 as i32),
        raw_data: Some(Bytes::from(raw)),
        ..Default::default()
    }
}

/// Build a float32 tensor with raw data.
pub fn tensor_f32(name: &str, dims: &[i64], data: &[f32]) -> TensorProto {
    let raw: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
    TensorProto {
        name: Some(name.to_string()),
        dims: dims.to_vec(),
        data_type: Some(DataType::Float as i32),
        raw_data: Some(Bytes::from(raw)),
        ..Default::default()
    }
}

/// Build a tensor of the given dtype from values (used by constant folding and resize).
pub fn tensor_from_values(name: &str, dims: &[i64], v: &Values) -> TensorProto {
    let (dt, raw): (DataType, Vec<u8>) = match v {
        Values::F32(x) => (
            DataType::Float,
            x.iter().flat_map(|e| e.to_le_bytes()).collect(),
        ),
        Values::F64(x) => (
            DataType::Double,
            x.iter().flat_map(|e| e.to_le_bytes()).collect(),
        ),
        Values::I64(x) => (
            DataType::Int64,
            x.iter().flat_map(|e| e.to_le_bytes()).collect(),
        ),
        Values::I32(x) => (
            DataType::Int32,
            x.iter().flat_map(|e| e.to_le_bytes()).collect(),
        ),
        Values::U8(x) => (DataType::Uint8, x.clone()),
        Values::I8(x) => (DataType::Int8, x.iter().map(|&e| e as u8).collect()),
        Values::Bool(x) => (DataType::Bool, x.iter().map(|&e| e as u8).collect()),
    };
    TensorProto {
        name: Some(name.to_string()),
        dims: dims.to_vec(),
        data_type: Some(dt as i32),
        raw_data: Some(Bytes::from(raw)),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_and_typed_fields_decode_the_same() {
        let a = tensor_i64("a", &[3], &[1, -2, 3]);
        let b = TensorProto {
            dims: vec![3],
            data_type: Some(DataType::Int64 as i32),
            int64_data: vec![1, -2, 3],
            ..Default::default()
        };
        assert_eq!(values(&a).unwrap(), values(&b).unwrap());
    }

    #[test]
    fn length_mismatch_is_an_error_not_a_panic() {
        let mut a = tensor_f32("a", &[4], &[1.0, 2.0]);
        a.dims = vec![4];
        let e = values(&a).unwrap_err().to_string();
        assert!(e.contains("holds 2 elements, its dims say 4"), "{e}");
        a.dims = vec![-1];
        assert!(values(&a).is_err());
    }
}
