//! # aither-gguf: a GGUF header reader that trusts nothing in the file
//!
//! It reads the metadata and the tensor table of a GGUF file (versions 2 and 3) to size a
//! model exactly: the architecture numbers (layers, heads, embedding length, context) and
//! every tensor's type, shape and byte size. Every count and length the file declares is
//! checked against the bytes that are really left in the file *before* anything is
//! allocated or skipped, so a truncated or hostile file gives a [`GgufError`] naming what is
//! wrong, never a panic or a huge allocation. Array values (the tokenizer's vocabulary) are
//! skipped, not kept; only their lengths are.

//!
//! [`write`] is its counterpart for tests and fixtures: a minimal but complete GGUF v3 file.
//!
//! ## Limitations
//!
//! - Headers only: tensor data is sized and bounds-checked, never read.
//! - Array values are skipped, so the tokenizer's vocabulary is counted but not kept.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 4] = b"GGUF";
/// ggml's limit on tensor dimensions.
const MAX_DIMS: u32 = 4;
/// Longest key or string value kept (longer strings are validated and skipped).
const MAX_KEPT_STRING: u64 = 64 * 1024;
/// Default tensor data alignment when `general.alignment` is absent.
const DEFAULT_ALIGNMENT: u64 = 32;

#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: not a GGUF file (magic {found:?}, expected \"GGUF\")")]
    BadMagic { path: PathBuf, found: [u8; 4] },
    #[error("{path}: unsupported GGUF version {version} (2 and 3 are supported)")]
    Version { path: PathBuf, version: u32 },
    #[error("{path}: truncated: {what} at byte {offset} needs {needed} bytes, the file has {available} left")]
    Truncated { path: PathBuf, what: String, offset: u64, needed: u64, available: u64 },
    #[error("{path}: {what}")]
    Invalid { path: PathBuf, what: String },
}

/// A metadata value kept by the reader.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U64(u64),
    I64(i64),
    F64(f64),
    Bool(bool),
    Str(String),
    /// An array: its element type id and length (values are not kept).
    Array {
        elem_type: u32,
        len: u64,
    },
}

impl Value {
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::U64(v) => Some(*v),
            Value::I64(v) => u64::try_from(*v).ok(),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub ggml_type: u32,
    /// Offset of the data from the start of the data section.
    pub offset: u64,
    pub bytes: u64,
}

/// What the header says.
#[derive(Debug, Clone, PartialEq)]
pub struct Gguf {
    pub version: u32,
    pub metadata: BTreeMap<String, Value>,
    pub tensors: Vec<TensorInfo>,
    /// Absolute offset of the tensor data section.
    pub data_offset: u64,
    pub file_len: u64,
}

/// Block size (elements) and bytes per block of a ggml tensor type.
pub fn type_layout(ggml_type: u32) -> Option<(u64, u64)> {
    Some(match ggml_type {
        0 => (1, 4),      // F32
        1 => (1, 2),      // F16
        2 => (32, 18),    // Q4_0
        3 => (32, 20),    // Q4_1
        6 => (32, 22),    // Q5_0
        7 => (32, 24),    // Q5_1
        8 => (32, 34),    // Q8_0
        9 => (32, 36),    // Q8_1
        10 => (256, 84),  // Q2_K
        11 => (256, 110), // Q3_K
        12 => (256, 144), // Q4_K
        13 => (256, 176), // Q5_K
        14 => (256, 210), // Q6_K
        15 => (256, 292), // Q8_K
        16 => (256, 66),  // IQ2_XXS
        17 => (256, 74),  // IQ2_XS
        18 => (256, 98),  // IQ3_XXS
        19 => (256, 50),  // IQ1_S
        20 => (32, 18),   // IQ4_NL
        21 => (256, 110), // IQ3_S
        22 => (256, 82),  // IQ2_S
        23 => (256, 136), // IQ4_XS
        24 => (1, 1),     // I8
        25 => (1, 2),     // I16
        26 => (1, 4),     // I32
        27 => (1, 8),     // I64
        28 => (1, 8),     // F64
        29 => (256, 56),  // IQ1_M
        30 => (1, 2),     // BF16
        34 => (256, 54),  // TQ1_0
        35 => (256, 66),  // TQ2_0
        39 => (32, 17),   // MXFP4
        _ => return None,
    })
}

/// Smallest encoded size of a metadata value of `value_type`, for bounding array lengths.
fn min_value_size(value_type: u32) -> Option<u64> {
    Some(match value_type {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 => 8,  // string: its u64 length
        9 => 12, // array: element type + length
        10..=12 => 8,
        _ => return None,
    })
}

struct Cursor<'a> {
    path: &'a Path,
    reader: BufReader<File>,
    pos: u64,
    len: u64,
}

impl Cursor<'_> {
    fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    fn need(&self, n: u64, what: &dyn Fn() -> String) -> Result<(), GgufError> {
        if n > self.remaining() {
            return Err(GgufError::Truncated {
                path: self.path.into(),
                what: what(),
                offset: self.pos,
                needed: n,
                available: self.remaining(),
            });
        }
        Ok(())
    }

    fn bytes<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N], GgufError> {
        self.need(N as u64, what)?;
        let mut b = [0u8; N];
        self.reader.read_exact(&mut b).map_err(|source| GgufError::Io { path: self.path.into(), source })?;
        self.pos += N as u64;
        Ok(b)
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.bytes::<4>(what)?))
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.bytes::<8>(what)?))
    }

    fn skip(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<(), GgufError> {
        self.need(n, what)?;
        let delta = i64::try_from(n).map_err(|_| self.invalid(format!("{} is too large", what())))?;
        self.reader.seek_relative(delta).map_err(|source| GgufError::Io { path: self.path.into(), source })?;
        self.pos += n;
        Ok(())
    }

    /// A string; kept when short, validated and skipped when long (returns `None`).
    fn string(&mut self, what: &dyn Fn() -> String) -> Result<Option<String>, GgufError> {
        let n = self.u64(what)?;
        self.need(n, what)?;
        if n > MAX_KEPT_STRING {
            self.skip(n, what)?;
            return Ok(None);
        }
        let mut buf = vec![0u8; usize::try_from(n).map_err(|_| self.invalid(format!("{} length overflows", what())))?];
        self.reader.read_exact(&mut buf).map_err(|source| GgufError::Io { path: self.path.into(), source })?;
        self.pos += n;
        Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
    }

    fn invalid(&self, what: String) -> GgufError {
        GgufError::Invalid { path: self.path.into(), what }
    }

    fn value(&mut self, value_type: u32, key: &str, depth: u32) -> Result<Value, GgufError> {
        let what = || format!("value of {key:?}");
        Ok(match value_type {
            0 => Value::U64(u64::from(self.bytes::<1>(&what)?[0])),
            1 => Value::I64(i64::from(i8::from_le_bytes(self.bytes::<1>(&what)?))),
            2 => Value::U64(u64::from(u16::from_le_bytes(self.bytes::<2>(&what)?))),
            3 => Value::I64(i64::from(i16::from_le_bytes(self.bytes::<2>(&what)?))),
            4 => Value::U64(u64::from(self.u32(&what)?)),
            5 => Value::I64(i64::from(i32::from_le_bytes(self.bytes::<4>(&what)?))),
            6 => Value::F64(f64::from(f32::from_le_bytes(self.bytes::<4>(&what)?))),
            7 => Value::Bool(self.bytes::<1>(&what)?[0] != 0),
            8 => Value::Str(self.string(&what)?.unwrap_or_default()),
            9 => {
                if depth > 2 {
                    return Err(self.invalid(format!("{key:?}: arrays nested too deep")));
                }
                let elem_type = self.u32(&what)?;
                let len = self.u64(&what)?;
                let min = min_value_size(elem_type)
                    .ok_or_else(|| self.invalid(format!("{key:?}: unknown array element type {elem_type}")))?;
                // Bound the declared length by what the file can hold before walking it.
                self.need(len.saturating_mul(min), &|| format!("array {key:?} of {len} elements"))?;
                match elem_type {
                    8 | 9 => {
                        for _ in 0..len {
                            self.value(elem_type, key, depth + 1)?;
                        }
                    }
                    _ => self.skip(len * min, &what)?,
                }
                Value::Array { elem_type, len }
            }
            10 => Value::U64(self.u64(&what)?),
            11 => Value::I64(i64::from_le_bytes(self.bytes::<8>(&what)?)),
            12 => Value::F64(f64::from_le_bytes(self.bytes::<8>(&what)?)),
            other => return Err(self.invalid(format!("{key:?}: unknown value type {other}"))),
        })
    }
}

/// Read and check the header of the GGUF file at `path`.
pub fn read(path: &Path) -> Result<Gguf, GgufError> {
    let io_err = |source| GgufError::Io { path: path.to_path_buf(), source };
    let file = File::open(path).map_err(io_err)?;
    let len = file.metadata().map_err(io_err)?.len();
    let mut c = Cursor { path, reader: BufReader::with_capacity(256 * 1024, file), pos: 0, len };

    let magic = c.bytes::<4>(&|| "magic".into())?;
    if &magic != MAGIC {
        return Err(GgufError::BadMagic { path: path.to_path_buf(), found: magic });
    }
    let version = c.u32(&|| "version".into())?;
    if !(2..=3).contains(&version) {
        return Err(GgufError::Version { path: path.to_path_buf(), version });
    }
    let tensor_count = c.u64(&|| "tensor count".into())?;
    let kv_count = c.u64(&|| "metadata count".into())?;
    // A key-value pair takes at least 8 (key length) + 4 (type) + 1 bytes; a tensor entry at
    // least 8 (name length) + 4 (dims) + 4 (type) + 8 (offset).
    c.need(kv_count.saturating_mul(13), &|| format!("{kv_count} metadata entries"))?;
    c.need(tensor_count.saturating_mul(24), &|| format!("{tensor_count} tensor entries"))?;

    let mut metadata = BTreeMap::new();
    for i in 0..kv_count {
        let key = c
            .string(&|| format!("metadata key {i}"))?
            .ok_or_else(|| c.invalid(format!("metadata key {i} is too long")))?;
        let value_type = c.u32(&|| format!("type of {key:?}"))?;
        let value = c.value(value_type, &key, 0)?;
        metadata.insert(key, value);
    }

    let mut tensors = Vec::with_capacity(usize::try_from(tensor_count).unwrap_or(0).min(65_536));
    for i in 0..tensor_count {
        let name = c
            .string(&|| format!("tensor {i} name"))?
            .ok_or_else(|| c.invalid(format!("tensor {i} name is too long")))?;
        let n_dims = c.u32(&|| format!("dimensions of tensor {name:?}"))?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(c.invalid(format!("tensor {name:?} has {n_dims} dimensions (1 to {MAX_DIMS} allowed)")));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for d in 0..n_dims {
            dims.push(c.u64(&|| format!("dimension {d} of tensor {name:?}"))?);
        }
        let ggml_type = c.u32(&|| format!("type of tensor {name:?}"))?;
        let offset = c.u64(&|| format!("offset of tensor {name:?}"))?;
        let (block, type_size) = type_layout(ggml_type)
            .ok_or_else(|| c.invalid(format!("tensor {name:?} has unknown ggml type {ggml_type}")))?;
        let elements = dims
            .iter()
            .try_fold(1u64, |acc, d| acc.checked_mul(*d))
            .ok_or_else(|| c.invalid(format!("tensor {name:?}: element count overflows")))?;
        if dims[0] % block != 0 {
            return Err(c.invalid(format!(
                "tensor {name:?}: first dimension {} is not a multiple of the block size {block}",
                dims[0]
            )));
        }
        let bytes = (elements / block)
            .checked_mul(type_size)
            .ok_or_else(|| c.invalid(format!("tensor {name:?}: size overflows")))?;
        tensors.push(TensorInfo { name, dims, ggml_type, offset, bytes });
    }

    let alignment = metadata.get("general.alignment").and_then(Value::as_u64).unwrap_or(DEFAULT_ALIGNMENT);
    if alignment == 0 || !alignment.is_power_of_two() {
        return Err(c.invalid(format!("general.alignment {alignment} is not a power of two")));
    }
    let data_offset = c.pos.div_ceil(alignment) * alignment;
    let data_len = len.saturating_sub(data_offset);
    for t in &tensors {
        let end = t.offset.checked_add(t.bytes);
        if end.is_none_or(|e| e > data_len) {
            return Err(GgufError::Truncated {
                path: path.to_path_buf(),
                what: format!("data of tensor {:?} ({} bytes at data offset {})", t.name, t.bytes, t.offset),
                offset: data_offset.saturating_add(t.offset),
                needed: t.bytes,
                available: data_len.saturating_sub(t.offset),
            });
        }
    }
    Ok(Gguf { version, metadata, tensors, data_offset, file_len: len })
}

impl Gguf {
    pub fn architecture(&self) -> Option<&str> {
        self.metadata.get("general.architecture").and_then(Value::as_str)
    }

    /// `<arch>.<key>` as a number.
    pub fn arch_u64(&self, key: &str) -> Option<u64> {
        let arch = self.architecture()?;
        self.metadata.get(&format!("{arch}.{key}")).and_then(Value::as_u64)
    }

    pub fn tensor_bytes(&self) -> u64 {
        self.tensors.iter().map(|t| t.bytes).sum()
    }

    pub fn vocab_size(&self) -> Option<u64> {
        match self.metadata.get("tokenizer.ggml.tokens") {
            Some(Value::Array { len, .. }) => Some(*len),
            _ => self.arch_u64("vocab_size"),
        }
    }
}

/// Writing GGUF files, for tests and fixtures.
pub mod write {
    /// A minimal but complete GGUF v3 file: `metadata` as (key, GGUF value type, the value's
    /// bytes), `tensors` as (name, dimensions, ggml type), zeroed and aligned data.
    #[allow(clippy::cast_possible_truncation)] // small test sizes
    pub fn file(metadata: &[(&str, u32, Vec<u8>)], tensors: &[(&str, &[u64], u32)]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(crate::MAGIC);
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
        let string = |out: &mut Vec<u8>, s: &str| {
            out.extend_from_slice(&(s.len() as u64).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        };
        for (k, t, v) in metadata {
            string(&mut out, k);
            out.extend_from_slice(&t.to_le_bytes());
            out.extend_from_slice(v);
        }
        let mut offset = 0u64;
        let mut sizes = Vec::new();
        for (name, dims, ty) in tensors {
            string(&mut out, name);
            out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for d in *dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&ty.to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            let (block, size) = crate::type_layout(*ty).expect("a ggml type this reader knows");
            let bytes = dims.iter().product::<u64>() / block * size;
            sizes.push(bytes);
            offset += bytes.div_ceil(32) * 32;
        }
        while out.len() % 32 != 0 {
            out.push(0);
        }
        for s in sizes {
            out.extend(std::iter::repeat_n(0u8, (s.div_ceil(32) * 32) as usize));
        }
        out
    }

    pub fn string(s: &str) -> Vec<u8> {
        let mut v = (s.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(s.as_bytes());
        v
    }
}

#[cfg(test)]
mod tests {
    use super::write::{file as build, string as str_value};
    use super::*;
    use std::io::Write;

    fn write(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("tempfile");
        f.write_all(bytes).expect("write");
        f
    }

    fn sample() -> Vec<u8> {
        build(
            &[
                ("general.architecture", 8, str_value("llama")),
                ("llama.block_count", 4, 2u32.to_le_bytes().to_vec()),
                ("llama.embedding_length", 4, 64u32.to_le_bytes().to_vec()),
                ("tokenizer.ggml.tokens", 9, {
                    let mut v = 8u32.to_le_bytes().to_vec();
                    v.extend_from_slice(&3u64.to_le_bytes());
                    for t in ["a", "b", "c"] {
                        v.extend_from_slice(&str_value(t));
                    }
                    v
                }),
            ],
            &[
                ("token_embd.weight", &[64, 3], 1),
                ("blk.0.attn_q.weight", &[64, 64], 8),
                ("blk.1.attn_q.weight", &[64, 64], 8),
            ],
        )
    }

    #[test]
    fn a_valid_file_gives_its_architecture_and_tensor_sizes() {
        let f = write(&sample());
        let g = read(f.path()).expect("valid");
        assert_eq!(g.architecture(), Some("llama"));
        assert_eq!(g.arch_u64("block_count"), Some(2));
        assert_eq!(g.vocab_size(), Some(3));
        assert_eq!(g.tensors.len(), 3);
        assert_eq!(g.tensors[0].bytes, 64 * 3 * 2);
        assert_eq!(g.tensors[1].bytes, 64 * 64 / 32 * 34);
    }

    #[test]
    fn wrong_magic_is_named() {
        let mut bytes = sample();
        bytes[0..4].copy_from_slice(b"GGML");
        let f = write(&bytes);
        assert!(matches!(read(f.path()), Err(GgufError::BadMagic { found, .. }) if &found == b"GGML"));
    }

    #[test]
    fn every_truncation_is_an_error_never_a_panic() {
        let bytes = sample();
        for cut in 0..bytes.len() {
            let f = write(&bytes[..cut]);
            assert!(read(f.path()).is_err(), "a file cut at {cut} of {} bytes was accepted", bytes.len());
        }
    }

    #[test]
    fn counts_beyond_the_file_are_refused_before_allocating() {
        let mut bytes = sample();
        // tensor count: u64 at offset 8
        bytes[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        let f = write(&bytes);
        assert!(matches!(read(f.path()), Err(GgufError::Truncated { .. })));

        let mut bytes = sample();
        // metadata count at offset 16
        bytes[16..24].copy_from_slice(&(1u64 << 40).to_le_bytes());
        let f = write(&bytes);
        assert!(matches!(read(f.path()), Err(GgufError::Truncated { .. })));

        // A string length of 2^62 in the first key.
        let mut bytes = sample();
        bytes[24..32].copy_from_slice(&(1u64 << 62).to_le_bytes());
        let f = write(&bytes);
        assert!(matches!(read(f.path()), Err(GgufError::Truncated { .. })));
    }

    #[test]
    fn tensor_data_past_the_end_is_truncation() {
        let bytes = sample();
        let f = write(&bytes[..bytes.len() - 64]);
        let err = read(f.path()).expect_err("data cut short");
        assert!(matches!(err, GgufError::Truncated { ref what, .. } if what.contains("blk.1")), "{err}");
    }
}
