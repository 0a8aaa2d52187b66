//! Loading and saving ONNX models, exactly: decode → encode without edits is byte-identical for
//! canonical files, external-data tensors are resolved relative to the model file and written back
//! faithfully, and every write is atomic (temp file in the destination folder + rename).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use prost::Message;

use crate::onnx::{
    tensor_proto::DataLocation, GraphProto, ModelProto, StringStringEntryProto, TensorProto,
};
use crate::tensor::{self, external_entry, is_external, Values};

/// IR version of the vendored `proto/onnx.proto` (see proto/UPSTREAM.md). Fields of newer IR
/// versions would be unknown to prost and dropped, so newer models are refused.
pub const SUPPORTED_IR_VERSION: i64 = 14;

/// Protobuf messages cannot exceed 2 GiB.
pub const PROTOBUF_LIMIT: u64 = (1u64 << 31) - 1;

/// A decoded model plus what is needed to read and re-write its external data.
#[derive(Debug, Clone)]
pub struct Model {
    pub proto: ModelProto,
    /// Folder external-data `location`s are relative to (the model file's folder).
    pub base_dir: Option<PathBuf>,
    /// Contents of each external-data file referenced by the model, by `location`.
    pub external: BTreeMap<String, Bytes>,
    /// Where it was loaded from (for messages).
    pub source: String,
}

impl Model {
    /// A model held in memory only: no file, no external data (`source` names it in messages).
    pub fn from_proto(proto: ModelProto, source: impl Into<String>) -> Model {
        Model {
            proto,
            base_dir: None,
            external: BTreeMap::new(),
            source: source.into(),
        }
    }
}

/// How to save.
#[derive(Debug, Clone, Default)]
pub struct SaveOptions {
    /// Move every initializer of at least `threshold` bytes into this data file (a name relative to
    /// the output's folder). `None` keeps the model's own layout (external tensors stay external,
    /// in files of the same names next to the output).
    pub external_data: Option<String>,
    /// Minimum tensor size for `external_data` (default 1024 bytes).
    pub external_threshold: usize,
}

fn visit_graph_tensors<'a>(g: &'a GraphProto, f: &mut dyn FnMut(&'a TensorProto)) {
    for t in &g.initializer {
        f(t);
    }
    for s in &g.sparse_initializer {
        if let Some(v) = &s.values {
            f(v);
        }
        if let Some(i) = &s.indices {
            f(i);
        }
    }
    for n in &g.node {
        for a in &n.attribute {
            if let Some(t) = &a.t {
                f(t);
            }
            for t in &a.tensors {
                f(t);
            }
            if let Some(sg) = &a.g {
                visit_graph_tensors(sg, f);
            }
            for sg in &a.graphs {
                visit_graph_tensors(sg, f);
            }
        }
    }
}

/// Every tensor stored in the model (initializers, sparse initializers, `Constant` values and
/// tensor attributes, recursively in subgraphs and functions).
pub fn visit_tensors<'a>(m: &'a ModelProto, f: &mut dyn FnMut(&'a TensorProto)) {
    if let Some(g) = &m.graph {
        visit_graph_tensors(g, f);
    }
    for func in &m.functions {
        for n in &func.node {
            for a in &n.attribute {
                if let Some(t) = &a.t {
                    f(t);
                }
                if let Some(sg) = &a.g {
                    visit_graph_tensors(sg, f);
                }
            }
        }
    }
    for ti in &m.training_info {
        if let Some(g) = &ti.initialization {
            visit_graph_tensors(g, f);
        }
        if let Some(g) = &ti.algorithm {
            visit_graph_tensors(g, f);
        }
    }
}

fn validate_location(loc: &str) -> Result<()> {
    let p = Path::new(loc);
    if loc.is_empty()
        || p.is_absolute()
        || p.components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        bail!("external data location `{loc}` must be a relative path inside the model's folder");
    }
    Ok(())
}

impl Model {
    /// Decode a model from bytes (zero-copy for tensor data). External data cannot be resolved
    /// without a folder: use [`Model::load`] or [`Model::from_bytes_in`].
    pub fn from_bytes(bytes: Bytes, source: &str) -> Result<Model> {
        Self::from_bytes_in(bytes, source, None)
    }

    /// Decode a model from bytes whose external data lives in `base_dir`.
    pub fn from_bytes_in(bytes: Bytes, source: &str, base_dir: Option<&Path>) -> Result<Model> {
        if bytes.is_empty() {
            bail!("`{source}` is empty (0 bytes), not an ONNX model");
        }
        let proto = ModelProto::decode(bytes)
            .map_err(|e| anyhow!("`{source}` is not an ONNX model: invalid protobuf ({e})"))?;
        let ir = proto.ir_version.unwrap_or(0);
        if proto.graph.is_none() {
            bail!("`{source}` is a protobuf but not an ONNX model: it has no graph (ir_version {ir}, {} opset imports)", proto.opset_import.len());
        }
        if ir <= 0 {
            bail!("`{source}` is not an ONNX model: ir_version is missing or {ir}");
        }
        if ir > SUPPORTED_IR_VERSION {
            bail!("`{source}` has IR version {ir}, newer than the {SUPPORTED_IR_VERSION} this build understands; its newer fields would be lost (update proto/onnx.proto)");
        }
        let mut m = Model {
            proto,
            base_dir: base_dir.map(Path::to_path_buf),
            external: BTreeMap::new(),
            source: source.to_string(),
        };
        m.resolve_external()?;
        Ok(m)
    }

    /// Read and decode a model file; external data is read from files next to it.
    pub fn load(path: &Path) -> Result<Model> {
        let meta =
            std::fs::metadata(path).with_context(|| format!("cannot read `{}`", path.display()))?;
        if meta.is_dir() {
            bail!("`{}` is a folder, expected an .onnx file", path.display());
        }
        let data = read_model_bytes(path, meta.len())
            .with_context(|| format!("cannot read `{}`", path.display()))?;
        Self::from_bytes_in(data, &path.display().to_string(), Some(parent_dir(path)))
    }

    fn resolve_external(&mut self) -> Result<()> {
        let mut locations: Vec<(String, String)> = Vec::new();
        visit_tensors(&self.proto, &mut |t| {
            if is_external(t) {
                locations.push((
                    t.name().to_string(),
                    external_entry(t, "location").unwrap_or("").to_string(),
                ));
            }
        });
        for (tname, loc) in locations {
            if self.external.contains_key(&loc) {
                continue;
            }
            validate_location(&loc)
                .with_context(|| format!("tensor `{tname}` in `{}`", self.source))?;
            let Some(dir) = &self.base_dir else {
                bail!("tensor `{tname}` in `{}` is stored in external file `{loc}`, but the model was given as bytes with no folder", self.source);
            };
            let p = dir.join(&loc);
            let data = std::fs::metadata(&p)
                .and_then(|m| read_model_bytes(&p, m.len()))
                .with_context(|| {
                    format!("tensor `{tname}` of `{}` is stored in external data file `{}`, which cannot be read", self.source, p.display())
                })?;
            self.external.insert(loc, data);
        }
        // Check every external reference fits its file.
        let mut err = None;
        visit_tensors(&self.proto, &mut |t| {
            if err.is_none() && is_external(t) {
                if let Err(e) = self.external_slice(t) {
                    err = Some(e);
                }
            }
        });
        if let Some(e) = err {
            return Err(e);
        }
        Ok(())
    }

    /// The bytes of an external tensor (a zero-copy slice of its data file).
    pub fn external_slice(&self, t: &TensorProto) -> Result<Bytes> {
        let loc = external_entry(t, "location").unwrap_or("");
        let file = self
            .external
            .get(loc)
            .ok_or_else(|| anyhow!("tensor `{}`: external file `{loc}` not loaded", t.name()))?;
        let parse = |k: &str| -> Result<Option<usize>> {
            match external_entry(t, k) {
                None => Ok(None),
                Some(v) => v.trim().parse::<usize>().map(Some).map_err(|_| {
                    anyhow!(
                        "tensor `{}`: external data `{k}` = `{v}` is not a number",
                        t.name()
                    )
                }),
            }
        };
        let off = parse("offset")?.unwrap_or(0);
        let len = match parse("length")? {
            Some(l) => l,
            None => file.len().checked_sub(off).ok_or_else(|| {
                anyhow!(
                    "tensor `{}`: offset {off} beyond the end of `{loc}` ({} bytes)",
                    t.name(),
                    file.len()
                )
            })?,
        };
        let end = off.checked_add(len).filter(|&e| e <= file.len()).ok_or_else(|| {
            anyhow!("tensor `{}` in `{}`: external data `{loc}` has {} bytes, the tensor needs bytes {off}..{}", t.name(), self.source, file.len(), off.saturating_add(len))
        })?;
        Ok(file.slice(off..end))
    }

    /// Numeric values of a tensor wherever its data is stored.
    pub fn tensor_values(&self, t: &TensorProto) -> Result<Values> {
        if is_external(t) {
            let raw = self.external_slice(t)?;
            tensor::values_with(t, Some(&raw))
        } else {
            tensor::values(t)
        }
    }

    /// The graph (always present after loading).
    pub fn graph(&self) -> &GraphProto {
        self.proto.graph.as_ref().expect("checked at load")
    }

    /// Mutable graph.
    pub fn graph_mut(&mut self) -> &mut GraphProto {
        self.proto.graph.get_or_insert_with(Default::default)
    }

    /// Encode the model to protobuf bytes (refuses models over the protobuf limit).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let len = self.proto.encoded_len() as u64;
        if len > PROTOBUF_LIMIT {
            bail!("the model would be {len} bytes, over the 2 GiB protobuf limit; save it with external data (`--external-data FILE`)");
        }
        Ok(self.proto.encode_to_vec())
    }

    /// Save to `path` atomically, with the external data it references.
    pub fn save(&self, path: &Path, opts: &SaveOptions) -> Result<()> {
        commit_all(self.stage(path, opts)?)
    }

    /// Write the model (and its external data files) to complete, fsync'ed temp files next to
    /// their destinations without making them visible: [`commit_all`] renames them into place
    /// (model file last); dropping them deletes them. Multi-output runs stage every output first so
    /// that a failure leaves no output behind.
    pub fn stage(&self, path: &Path, opts: &SaveOptions) -> Result<Vec<Staged>> {
        let dir = parent_dir(path);
        if !dir.is_dir() {
            bail!(
                "cannot write `{}`: folder `{}` does not exist",
                path.display(),
                dir.display()
            );
        }
        if let (Some(name), Some(base)) = (&opts.external_data, &self.base_dir) {
            // never overwrite a data file the input model itself reads
            for loc in self.external.keys() {
                if same_file(&base.join(loc), &dir.join(name)) {
                    bail!("cannot write `{}`: external data file `{name}` is the input's own data file `{}`; choose another name", path.display(), base.join(loc).display());
                }
            }
        }
        let (proto, files) = match &opts.external_data {
            Some(name) => self.externalize(
                name,
                if opts.external_threshold == 0 {
                    1024
                } else {
                    opts.external_threshold
                },
            )?,
            None => (None, self.external.clone()),
        };
        let proto_ref = proto.as_ref().unwrap_or(&self.proto);
        let len = proto_ref.encoded_len() as u64;
        if len > PROTOBUF_LIMIT {
            bail!("cannot write `{}`: the model would be {len} bytes, over the 2 GiB protobuf limit; save it with external data (`--external-data FILE`)", path.display());
        }
        // Data files first: the model file appears last, and only when everything is in place.
        let mut staged = Vec::new();
        let same_dir = self
            .base_dir
            .as_deref()
            .map(|b| same_path(b, dir))
            .unwrap_or(false);
        for (loc, data) in &files {
            validate_location(loc)?;
            if same_dir && opts.external_data.is_none() {
                continue; // already there, unchanged
            }
            staged.push(stage_with(&dir.join(loc), |f| Ok(f.write_all(data)?))?);
        }
        // Encoded straight into the temp file through a small buffer: weights go from the input
        // buffer to the file without a second model-sized copy in memory (issue 7, peak RSS).
        staged.push(stage_with(path, |file| {
            let mut sink = FileSink::new(file);
            proto_ref
                .encode(&mut sink)
                .map_err(|e| anyhow!("encoding failed: {e}"))?;
            sink.finish()
        })?);
        Ok(staged)
    }

    /// A copy of the proto where initializers ≥ threshold bytes point into one data file.
    fn externalize(
        &self,
        name: &str,
        threshold: usize,
    ) -> Result<(Option<ModelProto>, BTreeMap<String, Bytes>)> {
        validate_location(name)?;
        let mut proto = self.proto.clone();
        let mut blob: Vec<u8> = Vec::new();
        let g = proto.graph.get_or_insert_with(Default::default);
        for t in g.initializer.iter_mut() {
            let was_external = is_external(t);
            let data = if was_external {
                self.external_slice(t)?
            } else {
                match &t.raw_data {
                    Some(r) => r.clone(),
                    None => continue,
                }
            };
            // tensors already external move into the new file whatever their size: the old data
            // file is not written next to the output
            if data.len() < threshold && !was_external {
                continue;
            }
            while !blob.len().is_multiple_of(4096) {
                blob.push(0);
            }
            let off = blob.len();
            blob.extend_from_slice(&data);
            t.raw_data = None;
            t.data_location = Some(DataLocation::External as i32);
            t.external_data = vec![
                kv("location", name),
                kv("offset", &off.to_string()),
                kv("length", &data.len().to_string()),
            ];
        }
        let mut files = BTreeMap::new();
        files.insert(name.to_string(), Bytes::from(blob));
        Ok((Some(proto), files))
    }
}

fn kv(k: &str, v: &str) -> StringStringEntryProto {
    StringStringEntryProto {
        key: Some(k.to_string()),
        value: Some(v.to_string()),
    }
}

fn same_path(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// True when two paths name the same existing file.
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Files at least this large are memory-mapped rather than read into a buffer.
pub const MMAP_THRESHOLD: u64 = 16 << 20;

/// The bytes of a model (or external data) file. A large regular file is memory-mapped: the weights the model borrows
/// are then the page cache's own pages, so loading costs no page zeroing and no copy, and saving
/// writes them from there (issue 7). Peak RSS is the same as reading it (mapped pages count once
/// touched); the time is not. Smaller files, and anything that is not a regular file (a pipe),
/// are read.
///
/// The mapping is read-only and private. Another program truncating the file while postmerge runs
/// would make later reads of the lost pages fault (SIGBUS), as with any mapped file (ripgrep has the
/// same trade-off); postmerge itself never writes to its input, and `--in-place` replaces it by
/// rename, which leaves the mapped old file intact.
fn read_model_bytes(path: &Path, len: u64) -> std::io::Result<Bytes> {
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    if meta.is_file() && len >= MMAP_THRESHOLD && meta.len() == len {
        // SAFETY: the map is read-only; see above for the one hazard (a concurrent truncation by
        // another process), which the documentation states.
        if let Ok(map) = unsafe { memmap2::Mmap::map(&file) } {
            #[cfg(unix)]
            let _ = map.advise(memmap2::Advice::Sequential);
            return Ok(Bytes::from_owner(map));
        }
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    std::io::Read::read_to_end(&mut &file, &mut data)?;
    Ok(Bytes::from(data))
}

/// Buffered [`bytes::BufMut`] over a file, so that prost encodes a model straight into it.
///
/// Small writes (tags, lengths, node fields) collect in a 256 KiB buffer; slices of at least that size
/// (weights) go to the file directly from where they are, without being copied. `BufMut` cannot
/// report errors, so the first I/O error is kept, later writes are dropped, and [`FileSink::finish`]
/// returns it.
struct FileSink<'a> {
    file: &'a mut std::fs::File,
    buf: Vec<u8>,
    error: Option<std::io::Error>,
}

const SINK_BUFFER: usize = 256 << 10;

impl<'a> FileSink<'a> {
    fn new(file: &'a mut std::fs::File) -> Self {
        FileSink {
            file,
            buf: Vec::with_capacity(SINK_BUFFER),
            error: None,
        }
    }

    fn write_direct(&mut self, data: &[u8]) {
        if self.error.is_none() && is_cancelled() {
            self.error = Some(interrupted());
        }
        if self.error.is_none() {
            if let Err(e) = self.file.write_all(data) {
                self.error = Some(e);
            }
        }
    }

    fn flush_buf(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        self.write_direct(&buf);
        self.buf = buf;
        self.buf.clear();
    }

    fn finish(mut self) -> Result<()> {
        self.flush_buf();
        match self.error.take() {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }
}

// SAFETY: every method delegates to `Vec<u8>`'s own `BufMut` implementation on `self.buf`;
// `chunk_mut` only flushes (clears) the buffer before handing out `Vec`'s spare capacity, and
// `advance_mut` advances the same `Vec`, so the contract holds exactly as it does for `Vec`.
unsafe impl bytes::BufMut for FileSink<'_> {
    fn remaining_mut(&self) -> usize {
        isize::MAX as usize
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller initialized `cnt` bytes of the chunk `chunk_mut` returned, which is
        // `self.buf`'s spare capacity.
        unsafe { self.buf.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut bytes::buf::UninitSlice {
        if self.buf.len() == self.buf.capacity() {
            self.flush_buf();
        }
        self.buf.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        if src.len() >= SINK_BUFFER {
            self.flush_buf();
            self.write_direct(src);
        } else {
            if self.buf.len() + src.len() > self.buf.capacity() {
                self.flush_buf();
            }
            self.buf.extend_from_slice(src);
        }
    }

    fn put<T: bytes::Buf>(&mut self, mut src: T)
    where
        Self: Sized,
    {
        while src.has_remaining() {
            let n = {
                let chunk = src.chunk();
                self.put_slice(chunk);
                chunk.len()
            };
            src.advance(n);
        }
    }
}

/// Write `data` to `path` through a temp file in the same folder, fsync, then rename: readers see
/// the old file or the complete new one, never a partial file.
pub fn atomic_write(path: &Path, data: &[u8]) -> Result<()> {
    stage_with(path, |file| Ok(file.write_all(data)?))?.commit()
}

/// A complete, fsync'ed temp file waiting to be renamed to its destination. Dropped without
/// [`Staged::commit`], it is deleted.
#[derive(Debug)]
pub struct Staged {
    tmp: tempfile::TempPath,
    dest: PathBuf,
}

impl Staged {
    /// Where the contents are now (to read them back before committing).
    pub fn temp_path(&self) -> &Path {
        &self.tmp
    }
    /// Where they will go.
    pub fn dest(&self) -> &Path {
        &self.dest
    }
    /// Rename into place (atomic on one file system).
    pub fn commit(self) -> Result<()> {
        let dest = self.dest;
        self.tmp
            .persist(&dest)
            .map_err(|e| anyhow!("cannot write `{}`: {}", dest.display(), e.error))
    }
}

/// Commit staged files in order (a model's data files before the model).
pub fn commit_all(staged: Vec<Staged>) -> Result<()> {
    staged.into_iter().try_for_each(Staged::commit)
}

static CANCELLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Ask every write of this process to stop (for a front end's SIGINT/SIGTERM handler): from now on
/// staging refuses to start or finish a temp file and the encoder stops writing, each with an
/// "interrupted" error, so the temp files are removed by their destructors as on any error.
pub fn cancel() {
    CANCELLED.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Whether [`cancel`] was called.
pub fn is_cancelled() -> bool {
    CANCELLED.load(std::sync::atomic::Ordering::SeqCst)
}

fn interrupted() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::Interrupted, "interrupted")
}

/// Prefix of this process's temp files: `.postmerge-<pid>-`, so that a signal handler can remove
/// exactly the ones this process made ([`remove_own_temp_files`]).
pub fn temp_prefix() -> String {
    format!(".postmerge-{}-", std::process::id())
}

/// Remove this process's temp files (`.postmerge-<pid>-*.tmp`) from `dir`; the number removed.
/// For an interrupted run (SIGINT/SIGTERM), whose destructors will not run.
pub fn remove_own_temp_files(dir: &Path) -> usize {
    let prefix = temp_prefix();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with(&prefix) && n.ends_with(".tmp")
        })
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .count()
}

/// The folder a file is in (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Stage `path`: `fill` writes the contents into a temp file in the same folder, which is fsync'ed
/// and given the destination's permissions (or rw-r--r--).
pub fn stage_with(
    path: &Path,
    fill: impl FnOnce(&mut std::fs::File) -> Result<()>,
) -> Result<Staged> {
    let dir = parent_dir(path);
    if is_cancelled() {
        return Err(interrupted()).with_context(|| format!("cannot write `{}`", path.display()));
    }
    let prefix = temp_prefix();
    let mut tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| {
            format!(
                "cannot write `{}`: cannot create a temporary file in `{}`",
                path.display(),
                dir.display()
            )
        })?;
    fill(tmp.as_file_mut()).with_context(|| format!("cannot write `{}`", path.display()))?;
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // tempfile creates 0600; give the result the destination's permissions, or rw-r--r--.
        let mode = std::fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0o644);
        let _ = tmp
            .as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode));
    }
    // created after a cancel: the handler may have listed the folder before this file existed
    if is_cancelled() {
        return Err(interrupted()).with_context(|| format!("cannot write `{}`", path.display()));
    }
    Ok(Staged {
        tmp: tmp.into_temp_path(),
        dest: path.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    /// A model with weights on both sides of the sink's direct-write threshold.
    fn sample() -> ModelProto {
        let mut g = GraphProto {
            name: Some("g".into()),
            ..Default::default()
        };
        for (i, n) in [
            3usize,
            SINK_BUFFER - 1,
            SINK_BUFFER,
            3 * SINK_BUFFER + 7,
            100,
        ]
        .into_iter()
        .enumerate()
        {
            g.initializer.push(TensorProto {
                name: Some(format!("w{i}")),
                dims: vec![n as i64],
                data_type: Some(2), // uint8
                raw_data: Some(Bytes::from(
                    (0..n).map(|k| (k * 31 + i) as u8).collect::<Vec<_>>(),
                )),
                ..Default::default()
            });
        }
        ModelProto {
            ir_version: Some(8),
            graph: Some(g),
            ..Default::default()
        }
    }

    #[test]
    fn streamed_encoding_equals_encode_to_vec() {
        let proto = sample();
        let mut file = tempfile::tempfile().unwrap();
        let mut sink = FileSink::new(&mut file);
        proto.encode(&mut sink).unwrap();
        sink.finish().unwrap();
        use std::io::{Read, Seek};
        file.rewind().unwrap();
        let mut got = Vec::new();
        file.read_to_end(&mut got).unwrap();
        assert_eq!(got, proto.encode_to_vec());
    }

    #[test]
    fn sink_reports_write_errors() {
        // /dev/full fails every write with ENOSPC, as a full disk would
        let Ok(mut f) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
            return;
        };
        let mut sink = FileSink::new(&mut f);
        sink.put_slice(&vec![1u8; 2 * SINK_BUFFER]);
        sink.put_slice(b"small");
        let e = sink.finish().unwrap_err();
        assert!(e.to_string().contains("No space left"), "{e}");
    }

    #[test]
    fn save_streams_and_stage_commits_or_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let m = Model::from_proto(sample(), "sample");
        let out = dir.path().join("m.onnx");
        m.save(&out, &SaveOptions::default()).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), m.proto.encode_to_vec());
        // staged but dropped: the temp file goes, the destination is never created
        let other = dir.path().join("n.onnx");
        let staged = m.stage(&other, &SaveOptions::default()).unwrap();
        assert!(staged.last().unwrap().temp_path().exists());
        drop(staged);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["m.onnx"]);
    }
}
