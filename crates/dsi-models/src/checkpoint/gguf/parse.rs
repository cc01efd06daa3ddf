//! The GGUF container (versions 2 and 3), read and checked: the header,
//! the metadata key/value pairs and the tensor table, with every length,
//! offset and size checked against the file before anything is trusted.
//!
//! Layout (little-endian): `"GGUF"`, version `u32`, tensor count `u64`,
//! metadata count `u64`; each metadata pair is a string key, a `u32` type
//! and the value; each tensor a string name, `u32` dimension count, `u64`
//! dimensions innermost first, `u32` type and a `u64` offset into the data
//! section, which starts at the next multiple of `general.alignment`
//! (default 32) after the table. Strings are a `u64` length and UTF-8.
//!
//! Written here rather than taken from a crate: the format is a few dozen
//! lines, the readers on crates.io either pull a tensor library (candle)
//! or stop at parsing, and the errors must name the key or tensor at fault
//! and say what to do, which only a reader that knows the engine can.

use super::metadata::Value;
use dsi_kernels::blocks::BlockFormat;
use std::collections::HashMap;

/// What one tensor's elements are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TensorType {
    /// 32-bit float.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    Bf16,
    /// One of llama.cpp's block formats.
    Blocks(BlockFormat),
}

impl TensorType {
    /// The type of ggml's id, or its name when the engine cannot read it.
    fn from_id(id: u32) -> Result<Self, String> {
        Ok(match id {
            0 => TensorType::F32,
            1 => TensorType::F16,
            30 => TensorType::Bf16,
            2 => TensorType::Blocks(BlockFormat::Q4_0),
            3 => TensorType::Blocks(BlockFormat::Q4_1),
            6 => TensorType::Blocks(BlockFormat::Q5_0),
            7 => TensorType::Blocks(BlockFormat::Q5_1),
            8 => TensorType::Blocks(BlockFormat::Q8_0),
            12 => TensorType::Blocks(BlockFormat::Q4K),
            13 => TensorType::Blocks(BlockFormat::Q5K),
            14 => TensorType::Blocks(BlockFormat::Q6K),
            other => return Err(unsupported_type_name(other)),
        })
    }

    /// Elements per block and bytes per block.
    fn block(self) -> (usize, usize) {
        match self {
            TensorType::F32 => (1, 4),
            TensorType::F16 | TensorType::Bf16 => (1, 2),
            TensorType::Blocks(b) => (b.weights_per_block(), b.block_bytes()),
        }
    }

    /// GGUF's name of the type.
    pub(super) fn name(self) -> &'static str {
        match self {
            TensorType::F32 => "F32",
            TensorType::F16 => "F16",
            TensorType::Bf16 => "BF16",
            TensorType::Blocks(b) => b.name(),
        }
    }
}

/// The types the engine reads, for messages.
pub(crate) const SUPPORTED_TYPES: &str =
    "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K";

fn unsupported_type_name(id: u32) -> String {
    let name = match id {
        9 => "Q8_1",
        10 => "Q2_K",
        11 => "Q3_K",
        15 => "Q8_K",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        34 => "TQ1_0",
        35 => "TQ2_0",
        39 => "MXFP4",
        _ => return format!("an unknown type (ggml type id {id})"),
    };
    format!("{name} (ggml type id {id})")
}

/// One entry of the tensor table.
#[derive(Debug, Clone)]
pub(super) struct TensorInfo {
    /// Dimensions as Hugging Face orders them: outermost first (GGUF's
    /// list reversed).
    pub(super) shape: Vec<usize>,
    /// The element type.
    pub(super) dtype: TensorType,
    /// Where its bytes are, from the start of the file.
    pub(super) start: usize,
    /// How many bytes.
    pub(super) len: usize,
}

/// A parsed GGUF file, without its tensor data.
#[derive(Debug)]
pub(super) struct Parsed {
    /// The metadata.
    pub(super) metadata: HashMap<String, Value>,
    /// The tensor table, by name.
    pub(super) tensors: HashMap<String, TensorInfo>,
}

/// Reads the container of `bytes`, or says what is wrong and where.
pub(super) fn parse(bytes: &[u8]) -> Result<Parsed, String> {
    let mut r = Reader { bytes, at: 0 };
    if r.take(4, "the magic number")? != b"GGUF" {
        return Err(
            "it does not start with \"GGUF\"; is it a GGUF file (llama.cpp's format)?".into(),
        );
    }
    let version = r.u32("the version")?;
    if !(2..=3).contains(&version) {
        return Err(format!(
            "GGUF version {version}; the engine reads versions 2 and 3 (convert it again with a current llama.cpp)"
        ));
    }
    let tensor_count = r.u64("the tensor count")?;
    let kv_count = r.u64("the metadata count")?;
    let mut metadata = HashMap::new();
    for i in 0..kv_count {
        let key = r.string(&format!("metadata key {i}"))?;
        let value = r.value(&key)?;
        metadata.insert(key, value);
    }
    let alignment = match metadata.get("general.alignment") {
        None => 32,
        Some(Value::U32(a)) if *a > 0 && a.is_power_of_two() => *a as usize,
        Some(other) => {
            return Err(format!(
                "general.alignment is {other:?}; it must be a power of two"
            ));
        }
    };
    let mut table = Vec::new();
    for i in 0..tensor_count {
        let name = r.string(&format!("the name of tensor {i}"))?;
        let dims = r.u32(&format!("the dimension count of {name}"))?;
        if dims == 0 || dims > 4 {
            return Err(format!(
                "tensor {name} has {dims} dimensions; GGUF allows 1 to 4"
            ));
        }
        let mut ne = Vec::with_capacity(dims as usize);
        for _ in 0..dims {
            ne.push(r.u64(&format!("the dimensions of {name}"))?);
        }
        let type_id = r.u32(&format!("the type of {name}"))?;
        let dtype = TensorType::from_id(type_id)
            .map_err(|t| format!("tensor {name} is stored as {t}; supported: {SUPPORTED_TYPES}"))?;
        let offset = r.u64(&format!("the offset of {name}"))?;
        table.push((name, ne, dtype, offset));
    }
    let data_start = r.at.next_multiple_of(alignment);
    let mut tensors = HashMap::with_capacity(table.len());
    for (name, ne, dtype, offset) in table {
        let info = tensor_info(
            &name,
            &ne,
            dtype,
            offset,
            data_start,
            alignment,
            bytes.len(),
        )?;
        if tensors.insert(name.clone(), info).is_some() {
            return Err(format!("tensor {name} appears twice in the tensor table"));
        }
    }
    Ok(Parsed { metadata, tensors })
}

/// Checks one table entry against the file: whole blocks, an aligned
/// offset, and bytes that are really there.
fn tensor_info(
    name: &str,
    ne: &[u64],
    dtype: TensorType,
    offset: u64,
    data_start: usize,
    alignment: usize,
    file_len: usize,
) -> Result<TensorInfo, String> {
    let shape: Vec<usize> = ne.iter().rev().map(|&d| d as usize).collect();
    let elements = ne
        .iter()
        .try_fold(1u64, |n, &d| n.checked_mul(d))
        .filter(|&n| n <= 1 << 40)
        .ok_or_else(|| format!("tensor {name} has impossible dimensions {ne:?}"))?;
    let (per_block, block_bytes) = dtype.block();
    if !ne[0].is_multiple_of(per_block as u64) {
        return Err(format!(
            "tensor {name} rows of {} are not whole {} blocks of {per_block}",
            ne[0],
            dtype.name()
        ));
    }
    let len = elements as usize / per_block * block_bytes;
    let offset = usize::try_from(offset)
        .map_err(|_| format!("tensor {name} offset {offset} is past any file"))?;
    if !offset.is_multiple_of(alignment) {
        return Err(format!(
            "tensor {name} starts at offset {offset}, not a multiple of the alignment {alignment}"
        ));
    }
    let start = data_start.saturating_add(offset);
    if start.saturating_add(len) > file_len {
        return Err(format!(
            "tensor {name} ({:?} {}) needs bytes {start}..{} but the file has {file_len}: \
             the file is truncated; download it again",
            shape,
            dtype.name(),
            start.saturating_add(len)
        ));
    }
    Ok(TensorInfo {
        shape,
        dtype,
        start,
        len,
    })
}

/// A cursor over the header, every read checked.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(format!(
                "the file ends at byte {} while reading {what}: it is truncated; download it again",
                self.bytes.len()
            ));
        };
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A length that must fit in what is left of the file, `min_item`
    /// bytes per item at least.
    fn len(&mut self, min_item: usize, what: &str) -> Result<usize, String> {
        let n = self.u64(what)?;
        let left = (self.bytes.len() - self.at) as u64;
        if n.saturating_mul(min_item as u64) > left {
            return Err(format!(
                "{what} claims {n} items but only {left} bytes follow: the file is truncated or corrupt"
            ));
        }
        Ok(n as usize)
    }

    fn string(&mut self, what: &str) -> Result<String, String> {
        let n = self.len(1, what)?;
        let raw = self.take(n, what)?;
        String::from_utf8(raw.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
    }

    /// A metadata value of the type that comes next.
    fn value(&mut self, key: &str) -> Result<Value, String> {
        let kind = self.u32(&format!("the type of {key}"))?;
        self.value_of(kind, key, 0)
    }

    fn value_of(&mut self, kind: u32, key: &str, depth: usize) -> Result<Value, String> {
        Ok(match kind {
            0 => Value::U32(u32::from(self.array::<1>(key)?[0])),
            1 => Value::I32(i32::from(self.array::<1>(key)?[0] as i8)),
            2 => Value::U32(u32::from(u16::from_le_bytes(self.array(key)?))),
            3 => Value::I32(i32::from(i16::from_le_bytes(self.array(key)?))),
            4 => Value::U32(self.u32(key)?),
            5 => Value::I32(i32::from_le_bytes(self.array(key)?)),
            6 => Value::F32(f32::from_le_bytes(self.array(key)?)),
            7 => Value::Bool(self.array::<1>(key)?[0] != 0),
            8 => Value::String(self.string(key)?),
            9 if depth == 0 => {
                let item = self.u32(key)?;
                let n = self.len(1, key)?;
                if item == 8 {
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.string(key)?);
                    }
                    Value::Strings(items)
                } else {
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.value_of(item, key, depth + 1)?);
                    }
                    Value::Array(items)
                }
            }
            10 => Value::U64(self.u64(key)?),
            11 => Value::I64(i64::from_le_bytes(self.array(key)?)),
            12 => Value::F64(f64::from_le_bytes(self.array(key)?)),
            other => {
                return Err(format!(
                    "metadata {key} has type {other}, which GGUF does not define (or an array of arrays): the file is corrupt"
                ));
            }
        })
    }
}
