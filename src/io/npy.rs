//! A panic-free reader and writer for NumPy `.npy` files, with a dtype-erased array type.
//!
//! The header dictionary is parsed and written by the `ndarray-npy` crate (`npy::header::Header`,
//! a Python-literal parser from `py_literal`), so this module only frames it: it checks the magic,
//! the version and the announced lengths against the bytes present (before anything is allocated
//! from them), maps the `descr` to one of the dtypes of [`NpyData`] (`f4`, `f8`, `i8`, `i4`, `u1`,
//! `b1`, either byte order) and decodes the payload, C or Fortran order, into C order. Anything
//! else (other dtypes, a malformed header, truncated or trailing data) is a clear error, never a
//! panic, whatever the input bytes are. (`ndarray-npy`'s own array readers are not used for the
//! payload: they take `|u1` only, not `<u1`, and reject `|b1` bytes other than 0/1, which earlier
//! releases of this module accepted.)
//!
//! The reference data of the project (`shared/ref/*/raw.npy`, `input.npy`, …) is stored in this
//! format; the writer lets tests and the CLI dump tensors that NumPy can load back.

use std::fmt;
use std::path::Path;

use anyhow::{anyhow, bail, ensure, Context, Result};
use ndarray::{ArrayD, IxDyn, ShapeBuilder};
use ndarray_npy::npy::header::{Header, Layout};
use py_literal::Value as PyValue;

/// The magic string every `.npy` file starts with.
const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// A dense N-dimensional array read from (or to be written to) a `.npy` file, in C order.
#[derive(Debug, Clone, PartialEq)]
pub struct Npy {
    /// Dimensions; empty for a 0-d (scalar) array.
    pub shape: Vec<usize>,
    /// The elements in C (row-major) order; `data.len() == shape.iter().product()`.
    pub data: NpyData,
}

/// The element storage of an [`Npy`] array, one variant per supported dtype.
#[derive(Debug, Clone, PartialEq)]
pub enum NpyData {
    /// `<f4`
    F32(Vec<f32>),
    /// `<f8`
    F64(Vec<f64>),
    /// `<i8`
    I64(Vec<i64>),
    /// `<i4`
    I32(Vec<i32>),
    /// `|u1`
    U8(Vec<u8>),
    /// `|b1` (any non-zero byte reads as `true`)
    Bool(Vec<bool>),
}

/// The element types supported by this module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    /// 32-bit float (`<f4`)
    F32,
    /// 64-bit float (`<f8`)
    F64,
    /// 64-bit signed integer (`<i8`)
    I64,
    /// 32-bit signed integer (`<i4`)
    I32,
    /// 8-bit unsigned integer (`|u1`)
    U8,
    /// boolean, one byte per element (`|b1`)
    Bool,
}

impl DType {
    /// Size of one element in bytes.
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F64 | DType::I64 => 8,
            DType::U8 | DType::Bool => 1,
        }
    }

    /// The NumPy `descr` string written for this dtype.
    pub fn descr(self) -> &'static str {
        match self {
            DType::F32 => "<f4",
            DType::F64 => "<f8",
            DType::I64 => "<i8",
            DType::I32 => "<i4",
            DType::U8 => "|u1",
            DType::Bool => "|b1",
        }
    }

    /// Parses a NumPy `descr` string. Byte order `<` or `>` (and `|` for one-byte types); `=`
    /// (native) and other types are refused.
    pub fn from_descr(descr: &str) -> Result<DType> {
        let (order, kind) = match descr.char_indices().nth(1) {
            Some((i, _)) => descr.split_at(i),
            None => bail!("unsupported dtype `{descr}`"),
        };
        let dtype = match kind {
            "f4" => DType::F32,
            "f8" => DType::F64,
            "i8" => DType::I64,
            "i4" => DType::I32,
            "u1" => DType::U8,
            "b1" => DType::Bool,
            _ => bail!("unsupported dtype `{descr}` (supported: <f4, <f8, <i8, <i4, |u1, |b1)"),
        };
        match order {
            "<" => Ok(dtype),
            "|" if dtype.size() == 1 => Ok(dtype),
            ">" => Ok(dtype),
            _ => bail!("unsupported byte order in dtype `{descr}` (expected `<`, `>` or `|`)"),
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.descr())
    }
}

impl NpyData {
    /// The dtype of the elements.
    pub fn dtype(&self) -> DType {
        match self {
            NpyData::F32(_) => DType::F32,
            NpyData::F64(_) => DType::F64,
            NpyData::I64(_) => DType::I64,
            NpyData::I32(_) => DType::I32,
            NpyData::U8(_) => DType::U8,
            NpyData::Bool(_) => DType::Bool,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            NpyData::F32(v) => v.len(),
            NpyData::F64(v) => v.len(),
            NpyData::I64(v) => v.len(),
            NpyData::I32(v) => v.len(),
            NpyData::U8(v) => v.len(),
            NpyData::Bool(v) => v.len(),
        }
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Npy {
    /// Builds an array, checking that the number of elements matches the shape.
    pub fn new(shape: Vec<usize>, data: NpyData) -> Result<Npy> {
        let expected = element_count(&shape)?;
        ensure!(
            expected == data.len(),
            "shape {:?} needs {} elements, got {}",
            shape,
            expected,
            data.len()
        );
        Ok(Npy { shape, data })
    }

    /// The dtype of the elements.
    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The elements converted to `f32` (integers and `f64` are rounded to the nearest `f32`,
    /// booleans become 0.0 / 1.0).
    pub fn to_f32(&self) -> Vec<f32> {
        match &self.data {
            NpyData::F32(v) => v.clone(),
            NpyData::F64(v) => v.iter().map(|&x| x as f32).collect(),
            NpyData::I64(v) => v.iter().map(|&x| x as f32).collect(),
            NpyData::I32(v) => v.iter().map(|&x| x as f32).collect(),
            NpyData::U8(v) => v.iter().map(|&x| f32::from(x)).collect(),
            NpyData::Bool(v) => v.iter().map(|&x| if x { 1.0 } else { 0.0 }).collect(),
        }
    }

    /// The elements converted to `i64` if the dtype is an integer or boolean type; `None` for floats.
    pub fn to_i64(&self) -> Option<Vec<i64>> {
        match &self.data {
            NpyData::F32(_) | NpyData::F64(_) => None,
            NpyData::I64(v) => Some(v.clone()),
            NpyData::I32(v) => Some(v.iter().map(|&x| i64::from(x)).collect()),
            NpyData::U8(v) => Some(v.iter().map(|&x| i64::from(x)).collect()),
            NpyData::Bool(v) => Some(v.iter().map(|&x| i64::from(x)).collect()),
        }
    }

    /// Borrows the elements if the dtype is `f32`.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            NpyData::F32(v) => Some(v),
            _ => None,
        }
    }

    /// Serializes the array as a `.npy` file (version 1.0, or 2.0 if the header needs it).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let expected = element_count(&self.shape)?;
        ensure!(
            expected == self.data.len(),
            "shape {:?} needs {} elements, got {}",
            self.shape,
            expected,
            self.data.len()
        );
        let payload_len = expected
            .checked_mul(self.dtype().size())
            .ok_or_else(|| anyhow!("array too large"))?;
        let header = Header {
            type_descriptor: PyValue::String(self.dtype().descr().to_string()),
            layout: Layout::Standard,
            shape: self.shape.clone(),
        };
        let mut out = header
            .to_bytes()
            .map_err(|e| anyhow!("cannot write the .npy header: {e}"))?;
        out.reserve(payload_len);
        match &self.data {
            NpyData::F32(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            NpyData::F64(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            NpyData::I64(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            NpyData::I32(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            NpyData::U8(v) => out.extend_from_slice(v),
            NpyData::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
        }
        Ok(out)
    }
}

/// Product of the dimensions, with overflow reported as an error.
fn element_count(shape: &[usize]) -> Result<usize> {
    shape.iter().try_fold(1usize, |acc, &d| {
        acc.checked_mul(d)
            .ok_or_else(|| anyhow!("shape {shape:?} has too many elements"))
    })
}

/// Reads a `.npy` file from memory.
///
/// The header dictionary and the element data are decoded by `ndarray-npy` (its `Header` parser
/// over `py_literal`, its element readers: either byte order, C or Fortran order). Before handing
/// the bytes over, the announced header length and the element count are checked against the
/// bytes actually present, so a hostile header never makes it allocate more than the file holds.
pub fn read_npy(bytes: &[u8]) -> Result<Npy> {
    ensure!(
        bytes.len() >= MAGIC.len() + 2,
        "not a .npy file: only {} bytes",
        bytes.len()
    );
    let (magic, rest) = bytes.split_at(MAGIC.len());
    ensure!(magic == MAGIC, "not a .npy file: bad magic string");
    let (version, rest) = rest.split_at(2);
    let (major, minor) = (version[0], version[1]);
    let (header_len, rest) = match (major, minor) {
        (1, 0) => {
            ensure!(rest.len() >= 2, "truncated .npy header length");
            let (len, rest) = rest.split_at(2);
            (usize::from(u16::from_le_bytes([len[0], len[1]])), rest)
        }
        (2 | 3, 0) => {
            ensure!(rest.len() >= 4, "truncated .npy header length");
            let (len, rest) = rest.split_at(4);
            let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]);
            let len = usize::try_from(len).map_err(|_| anyhow!("header too large"))?;
            (len, rest)
        }
        _ => bail!("unsupported .npy format version {major}.{minor} (supported: 1.0, 2.0, 3.0)"),
    };
    ensure!(
        rest.len() >= header_len,
        "truncated .npy header: {} bytes announced, {} present",
        header_len,
        rest.len()
    );
    let payload = &rest[header_len..];
    let header =
        Header::from_reader(&mut &bytes[..]).map_err(|e| anyhow!("malformed .npy header: {e}"))?;
    let descr = match &header.type_descriptor {
        PyValue::String(d) => d.as_str(),
        other => bail!("unsupported dtype `{other}` (supported: <f4, <f8, <i8, <i4, |u1, |b1, either byte order)"),
    };
    let dtype = DType::from_descr(descr)?;
    let count = element_count(&header.shape)?;
    let need = count
        .checked_mul(dtype.size())
        .ok_or_else(|| anyhow!("shape {:?} is too large", header.shape))?;
    ensure!(
        payload.len() >= need,
        "truncated .npy data: shape {:?} of {} needs {} bytes, {} present",
        header.shape,
        descr,
        need,
        payload.len()
    );
    ensure!(
        payload.len() == need,
        "unexpected {} trailing bytes after .npy data (shape {:?} of {})",
        payload.len() - need,
        header.shape,
        descr
    );
    let big = descr.starts_with('>');
    let data = decode_payload(dtype, big, payload);
    let data = match header.layout {
        Layout::Standard => data,
        Layout::Fortran => data.fortran_to_c(&header.shape)?,
    };
    Ok(Npy {
        shape: header.shape,
        data,
    })
}

/// Converts the (length-checked) payload into typed elements, in file order.
fn decode_payload(dtype: DType, big_endian: bool, payload: &[u8]) -> NpyData {
    fn chunks<const N: usize, T>(
        payload: &[u8],
        big: bool,
        le: fn([u8; N]) -> T,
        be: fn([u8; N]) -> T,
    ) -> Vec<T> {
        let f = if big { be } else { le };
        payload
            .chunks_exact(N)
            .map(|c| {
                let mut a = [0u8; N];
                a.copy_from_slice(c);
                f(a)
            })
            .collect()
    }
    let b = big_endian;
    match dtype {
        DType::F32 => NpyData::F32(chunks(payload, b, f32::from_le_bytes, f32::from_be_bytes)),
        DType::F64 => NpyData::F64(chunks(payload, b, f64::from_le_bytes, f64::from_be_bytes)),
        DType::I64 => NpyData::I64(chunks(payload, b, i64::from_le_bytes, i64::from_be_bytes)),
        DType::I32 => NpyData::I32(chunks(payload, b, i32::from_le_bytes, i32::from_be_bytes)),
        DType::U8 => NpyData::U8(payload.to_vec()),
        DType::Bool => NpyData::Bool(payload.iter().map(|&b| b != 0).collect()),
    }
}

impl NpyData {
    /// Reorders elements stored in Fortran (column-major) order into C order.
    fn fortran_to_c(self, shape: &[usize]) -> Result<NpyData> {
        fn reorder<T: Clone>(v: Vec<T>, shape: &[usize]) -> Result<Vec<T>> {
            let a = ArrayD::from_shape_vec(IxDyn(shape).f(), v)
                .map_err(|e| anyhow!("Fortran-order data does not fit shape {shape:?}: {e}"))?;
            Ok(a.iter().cloned().collect())
        }
        Ok(match self {
            NpyData::F32(v) => NpyData::F32(reorder(v, shape)?),
            NpyData::F64(v) => NpyData::F64(reorder(v, shape)?),
            NpyData::I64(v) => NpyData::I64(reorder(v, shape)?),
            NpyData::I32(v) => NpyData::I32(reorder(v, shape)?),
            NpyData::U8(v) => NpyData::U8(reorder(v, shape)?),
            NpyData::Bool(v) => NpyData::Bool(reorder(v, shape)?),
        })
    }
}

/// Reads a `.npy` file from disk; errors name the file.
pub fn read_npy_file(path: impl AsRef<Path>) -> Result<Npy> {
    let path = path.as_ref();
    let bytes =
        std::fs::read(path).with_context(|| format!("failed to read `{}`", path.display()))?;
    read_npy(&bytes).with_context(|| format!("failed to parse `{}`", path.display()))
}

/// Writes an array to disk as a `.npy` file; errors name the file.
pub fn write_npy_file(path: impl AsRef<Path>, npy: &Npy) -> Result<()> {
    let path = path.as_ref();
    let bytes = npy
        .to_bytes()
        .with_context(|| format!("failed to serialize `{}`", path.display()))?;
    std::fs::write(path, bytes).with_context(|| format!("failed to write `{}`", path.display()))
}

/// Serializes `f32` data of the given shape as a `.npy` file.
/// Errors if `data.len()` is not the product of `shape`.
pub fn write_npy_f32(shape: &[usize], data: &[f32]) -> Result<Vec<u8>> {
    Npy::new(shape.to_vec(), NpyData::F32(data.to_vec()))?.to_bytes()
}

/// Serializes `i64` data of the given shape as a `.npy` file.
/// Errors if `data.len()` is not the product of `shape`.
pub fn write_npy_i64(shape: &[usize], data: &[i64]) -> Result<Vec<u8>> {
    Npy::new(shape.to_vec(), NpyData::I64(data.to_vec()))?.to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The project's own references (written by numpy in tests/fixtures/make_fixtures.py). The
    /// shared corpus's int64 outputs are read in tests/shared_corpus.rs (behind POSTMERGE_SHARED).
    const REF: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ref");

    /// A header with `dict` as its text, terminated by the newline the format requires.
    fn raw_header(version: u8, dict: &str) -> Vec<u8> {
        raw_header_text(version, &format!("{dict}\n"))
    }

    fn raw_header_text(version: u8, dict: &str) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.push(version);
        out.push(0);
        if version == 1 {
            out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        } else {
            out.extend_from_slice(&(dict.len() as u32).to_le_bytes());
        }
        out.extend_from_slice(dict.as_bytes());
        out
    }

    #[test]
    fn roundtrip_f32_and_i64() {
        let bytes = write_npy_f32(&[2, 3], &[1.0, -2.5, 3.0, 0.0, f32::MAX, 1e-30]).unwrap();
        assert_eq!(
            bytes.len() % 64,
            24,
            "header padded to 64 bytes, then 24 data bytes"
        );
        let npy = read_npy(&bytes).unwrap();
        assert_eq!(npy.shape, vec![2, 3]);
        assert_eq!(
            npy.data,
            NpyData::F32(vec![1.0, -2.5, 3.0, 0.0, f32::MAX, 1e-30])
        );

        let bytes = write_npy_i64(&[3], &[-1, 0, i64::MAX]).unwrap();
        let npy = read_npy(&bytes).unwrap();
        assert_eq!(npy.shape, vec![3]);
        assert_eq!(npy.data, NpyData::I64(vec![-1, 0, i64::MAX]));
        assert_eq!(npy.to_f32(), vec![-1.0, 0.0, i64::MAX as f32]);
    }

    #[test]
    fn roundtrip_all_dtypes_and_scalar() {
        let cases = vec![
            Npy::new(vec![], NpyData::F64(vec![2.5])).unwrap(),
            Npy::new(vec![2, 0, 3], NpyData::I32(vec![])).unwrap(),
            Npy::new(vec![4], NpyData::U8(vec![0, 1, 254, 255])).unwrap(),
            Npy::new(vec![1, 2], NpyData::Bool(vec![true, false])).unwrap(),
            Npy::new(vec![1, 1, 1, 2], NpyData::I32(vec![-7, 7])).unwrap(),
        ];
        for npy in cases {
            let back = read_npy(&npy.to_bytes().unwrap()).unwrap();
            assert_eq!(back, npy);
        }
    }

    #[test]
    fn writer_rejects_length_mismatch() {
        let err = write_npy_f32(&[2, 2], &[1.0]).unwrap_err();
        assert!(err.to_string().contains("needs 4 elements, got 1"), "{err}");
    }

    #[test]
    fn reads_versions_2_and_3_and_header_variants() {
        let mut v2 = raw_header(
            2,
            "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }",
        );
        v2.extend_from_slice(&5i32.to_le_bytes());
        v2.extend_from_slice(&(-6i32).to_le_bytes());
        let npy = read_npy(&v2).unwrap();
        assert_eq!(npy.data, NpyData::I32(vec![5, -6]));

        let mut v3 = raw_header(
            3,
            "{\"shape\":(1,1),\"fortran_order\":False,\"descr\":\"|b1\"}",
        );
        v3.push(3);
        let npy = read_npy(&v3).unwrap();
        assert_eq!(npy.shape, vec![1, 1]);
        assert_eq!(npy.data, NpyData::Bool(vec![true]));
    }

    /// NumPy writes `np.asfortranarray(a)` with `fortran_order: True` and `a.astype('>f4')`
    /// big-endian; both read back as the same C-order values.
    #[test]
    fn reads_fortran_order_and_big_endian() {
        // [[1, 2, 3], [4, 5, 6]] stored column by column
        let mut f = raw_header(
            1,
            "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }",
        );
        for v in [1.0f32, 4.0, 2.0, 5.0, 3.0, 6.0] {
            f.extend_from_slice(&v.to_le_bytes());
        }
        let npy = read_npy(&f).unwrap();
        assert_eq!(npy.shape, vec![2, 3]);
        assert_eq!(npy.data, NpyData::F32(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));

        let mut be = raw_header(
            1,
            "{'descr': '>i4', 'fortran_order': False, 'shape': (2,), }",
        );
        be.extend_from_slice(&(-2i32).to_be_bytes());
        be.extend_from_slice(&70000i32.to_be_bytes());
        assert_eq!(read_npy(&be).unwrap().data, NpyData::I32(vec![-2, 70000]));

        // a Fortran-order 3-d u8 array: element (i, j, k) at i + 2j + 4k
        let mut u = raw_header(
            1,
            "{'descr': '|u1', 'fortran_order': True, 'shape': (2, 2, 2), }",
        );
        u.extend_from_slice(&[0, 4, 2, 6, 1, 5, 3, 7]);
        assert_eq!(
            read_npy(&u).unwrap().data,
            NpyData::U8(vec![0, 1, 2, 3, 4, 5, 6, 7])
        );
    }

    /// The writer's header is a format-1.0 header NumPy reads: magic, version 1.0, the length,
    /// the dict (ndarray-npy writes NumPy's text without its trailing `, `), spaces and a newline
    /// up to a multiple of 64 bytes.
    #[test]
    fn writer_header_is_npy_1_0() {
        let bytes = write_npy_f32(&[1, 3], &[0.0; 3]).unwrap();
        let text = std::str::from_utf8(&bytes[10..bytes.len() - 12]).unwrap();
        assert_eq!(
            text.trim_end(),
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3)}"
        );
        assert!(text.ends_with('\n'));
        assert_eq!(&bytes[..10], b"\x93NUMPY\x01\x00\x76\x00");
        assert_eq!((bytes.len() - 12) % 64, 0);
    }

    #[test]
    fn reads_real_raw_head_output() {
        // onnxruntime output of the YOLOX-nano fixture (3 classes), saved by numpy
        let npy = read_npy_file(format!("{REF}/yolox_nano_640x640/raw.npy")).unwrap();
        assert_eq!(npy.shape, vec![1, 8400, 8]);
        assert_eq!(npy.dtype(), DType::F32);
        let data = npy.as_f32().unwrap();
        assert_eq!(data.len(), 8400 * 8);
        assert!(data.iter().all(|x| x.is_finite()));
        // Columns 4.. are sigmoid outputs.
        assert!(data
            .chunks_exact(8)
            .all(|row| row[4..].iter().all(|&p| (0.0..=1.0).contains(&p))));
        // and the input numpy wrote next to it: NCHW, YOLOX's 0..255 pixel range
        let x = read_npy_file(format!("{REF}/yolox_nano_640x640/input.npy")).unwrap();
        assert_eq!(x.shape, vec![1, 3, 640, 640]);
        let px = x.as_f32().unwrap();
        assert!(px.iter().all(|&v| (0.0..=255.0).contains(&v)));
        assert!(
            px.iter().any(|&v| v > 200.0),
            "a real photo, not a blank tensor"
        );
    }

    #[test]
    fn file_errors_name_the_file() {
        let err = read_npy_file("/nonexistent/dir/x.npy").unwrap_err();
        assert!(
            format!("{err:#}").contains("/nonexistent/dir/x.npy"),
            "{err:#}"
        );
    }

    fn err_of(bytes: &[u8]) -> String {
        format!("{:#}", read_npy(bytes).unwrap_err())
    }

    #[test]
    fn malformed_inputs_are_clear_errors() {
        assert!(err_of(b"").contains("not a .npy file"));
        assert!(err_of(b"PK\x03\x04zipfile").contains("bad magic"));
        assert!(err_of(b"\x93NUMPY\x04\x00\x10\x00").contains("version 4.0"));
        assert!(err_of(b"\x93NUMPY\x01\x00\x10").contains("truncated .npy header length"));
        assert!(err_of(b"\x93NUMPY\x01\x00\x10\x00{'descr'").contains("truncated .npy header"));

        let no_newline = raw_header_text(
            1,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }",
        );
        let e = err_of(&[no_newline, vec![0; 4]].concat());
        assert!(
            e.contains("malformed .npy header") && e.contains("newline"),
            "{e}"
        );

        let f16 = raw_header(
            1,
            "{'descr': '<f2', 'fortran_order': False, 'shape': (1,), }",
        );
        assert!(err_of(&[f16, vec![0; 2]].concat()).contains("unsupported dtype `<f2`"));

        let ok = raw_header(
            1,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
        );
        let truncated = [ok.clone(), vec![0; 23]].concat();
        assert!(
            err_of(&truncated).contains("truncated .npy data"),
            "{}",
            err_of(&truncated)
        );
        let trailing = [ok, vec![0; 25]].concat();
        assert!(err_of(&trailing).contains("trailing"));

        let huge = raw_header(
            1,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 99999999999), }",
        );
        assert!(
            err_of(&huge).contains("too many elements"),
            "{}",
            err_of(&huge)
        );

        let overflow = raw_header(
            1,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (999999999999999999999999,), }",
        );
        let e = err_of(&overflow);
        assert!(
            e.contains("malformed .npy header") && e.contains("shape"),
            "{e}"
        );

        let descr_not_str = raw_header(1, "{'descr': 4, 'fortran_order': False, 'shape': (1,), }");
        let e = err_of(&[descr_not_str, vec![0; 4]].concat());
        assert!(e.contains("unsupported dtype `4`"), "{e}");

        for bad in [
            "{'descr': '<f4', 'shape': (1,), }",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'extra': 1}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }",
            "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (1,), }",
            "{'descr': '<f4 'fortran_order': False, 'shape': (1,), }",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1,",
            "not a dict",
            "",
        ] {
            let bytes = [raw_header(1, bad), vec![0; 4]].concat();
            assert!(
                err_of(&bytes).contains("malformed .npy header"),
                "{bad}: {}",
                err_of(&bytes)
            );
        }
    }

    /// Every prefix and many single-byte corruptions of a valid file give an error or a value,
    /// never a panic.
    #[test]
    fn no_panic_on_corrupted_bytes() {
        let good = write_npy_f32(&[2, 2], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        for n in 0..good.len() {
            let _ = read_npy(&good[..n]);
        }
        for pos in 0..good.len() {
            for value in [0u8, 1, b'(', b')', b',', b'\'', b'9', 0x93, 0xff] {
                let mut bad = good.clone();
                bad[pos] = value;
                let _ = read_npy(&bad);
            }
        }
        // A simple deterministic pseudo-random fuzz.
        let mut state = 0x1234_5678_9abc_def0u64;
        for _ in 0..2000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 200) as usize;
            let mut bytes: Vec<u8> = (0..len)
                .map(|i| (state.rotate_left(i as u32 % 64) & 0xff) as u8)
                .collect();
            if state.is_multiple_of(3) && bytes.len() >= 8 {
                bytes[..6].copy_from_slice(MAGIC);
                bytes[6] = (state % 4) as u8;
            }
            let _ = read_npy(&bytes);
        }
    }
}
