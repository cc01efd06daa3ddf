//! Tensors of one checkpoint: a single `model.safetensors`, or the shards
//! named by `model.safetensors.index.json`; memory-mapped on native, or
//! given as bytes (the browser).

use super::file_bytes::{FileBytes, FloatBytes};
use crate::{ModelError, Result};
use safetensors::SafeTensors;
use safetensors::tensor::{Dtype, Metadata};
use std::collections::HashMap;
#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;

/// One parsed safetensors file.
struct File {
    name: String,
    bytes: FileBytes,
    header_len: usize,
    metadata: Metadata,
}

/// A tensor converted to f32 on the host, with its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub values: Vec<f32>,
}

impl HostTensor {
    /// Reads `tensor` back from its device, converted to f32.
    pub fn from_tensor<B: burn::tensor::backend::Backend, const D: usize>(
        tensor: burn::tensor::Tensor<B, D>,
    ) -> Result<Self> {
        let shape = tensor.dims().to_vec();
        let values = tensor
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .map_err(|e| ModelError::Readback(format!("{e:?}")))?;
        Ok(Self { shape, values })
    }

    /// [`HostTensor::from_tensor`], awaited: the only readback WebGPU
    /// allows in a browser.
    pub async fn from_tensor_async<B: burn::tensor::backend::Backend, const D: usize>(
        tensor: burn::tensor::Tensor<B, D>,
    ) -> Result<Self> {
        let shape = tensor.dims().to_vec();
        let values = tensor
            .into_data_async()
            .await
            .map_err(|e| ModelError::Readback(format!("{e:?}")))?
            .convert::<f32>()
            .into_vec::<f32>()
            .map_err(|e| ModelError::Readback(format!("{e:?}")))?;
        Ok(Self { shape, values })
    }
}

/// Every tensor of a checkpoint, by name.
pub struct SafetensorsFiles {
    files: Vec<File>,
    /// Tensor name -> index into `files`.
    index: HashMap<String, usize>,
}

impl SafetensorsFiles {
    /// Opens `model.safetensors` or the shards of
    /// `model.safetensors.index.json` in `dir`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open_dir(dir: &Path) -> Result<Self> {
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        let names: Vec<String> = if single.exists() {
            vec!["model.safetensors".into()]
        } else if index.exists() {
            shard_names(&index)?
        } else {
            return Err(ModelError::MissingFile {
                path: single,
                what: "the weights (model.safetensors, or model.safetensors.index.json with its shards)",
            });
        };
        let mut files = Vec::with_capacity(names.len());
        for name in names {
            let bytes = FileBytes::map(&dir.join(&name))?;
            files.push((name, bytes));
        }
        Self::from_parts(files)
    }

    /// Tensors from in-memory files, `(file name, bytes)`.
    pub fn from_bytes(files: Vec<(String, Vec<u8>)>) -> Result<Self> {
        Self::from_parts(
            files
                .into_iter()
                .map(|(name, bytes)| (name, FileBytes::Owned(bytes)))
                .collect(),
        )
    }

    fn from_parts(parts: Vec<(String, FileBytes)>) -> Result<Self> {
        let mut files = Vec::with_capacity(parts.len());
        let mut index = HashMap::new();
        for (i, (name, bytes)) in parts.into_iter().enumerate() {
            let (header_len, metadata) =
                SafeTensors::read_metadata(&bytes).map_err(|e| ModelError::Safetensors {
                    file: name.clone(),
                    reason: describe(&e),
                })?;
            for tensor in metadata.tensors().keys() {
                index.insert(tensor.clone(), i);
            }
            files.push(File {
                name,
                bytes,
                header_len,
                metadata,
            });
        }
        Ok(Self { files, index })
    }

    /// Names of every tensor.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }

    /// True when the checkpoint has `tensor`.
    pub fn contains(&self, tensor: &str) -> bool {
        self.index.contains_key(tensor)
    }

    /// Names of the files, for error messages.
    pub fn file_names(&self) -> String {
        self.files
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Reads `tensor` as f32, checking its shape against `expected`.
    pub fn read(&self, tensor: &str, expected: &[usize]) -> Result<HostTensor> {
        let file = self
            .index
            .get(tensor)
            .map(|&i| &self.files[i])
            .ok_or_else(|| ModelError::MissingTensor {
                file: self.file_names(),
                tensor: tensor.to_string(),
            })?;
        let info = file
            .metadata
            .info(tensor)
            .ok_or_else(|| ModelError::MissingTensor {
                file: file.name.clone(),
                tensor: tensor.to_string(),
            })?;
        if info.shape != expected {
            return Err(ModelError::ShapeMismatch {
                file: file.name.clone(),
                tensor: tensor.to_string(),
                expected: expected.to_vec(),
                found: info.shape.clone(),
            });
        }
        let start = 8 + file.header_len;
        let (begin, end) = info.data_offsets;
        let raw = &file.bytes[start + begin..start + end];
        let values = to_f32(raw, info.dtype).ok_or_else(|| ModelError::UnsupportedDtype {
            file: file.name.clone(),
            tensor: tensor.to_string(),
            dtype: format!("{:?}", info.dtype),
        })?;
        Ok(HostTensor {
            shape: info.shape.clone(),
            values,
        })
    }
}

/// Little-endian F32, F16 or BF16 bytes as f32; `None` for other dtypes.
fn to_f32(raw: &[u8], dtype: Dtype) -> Option<Vec<f32>> {
    let kind = match dtype {
        Dtype::F32 => FloatBytes::F32,
        Dtype::F16 => FloatBytes::F16,
        Dtype::BF16 => FloatBytes::Bf16,
        _ => return None,
    };
    Some(kind.to_f32(raw))
}

fn describe(err: &safetensors::SafeTensorError) -> String {
    use safetensors::SafeTensorError as E;
    match err {
        E::MetadataIncompleteBuffer | E::InvalidHeaderLength | E::HeaderTooSmall => {
            format!(
                "{err:?}: the file is truncated or its header is corrupt; download or convert it again"
            )
        }
        other => format!("{other:?}"),
    }
}

/// The shard files named in `model.safetensors.index.json`, in first-seen order.
#[cfg(not(target_arch = "wasm32"))]
fn shard_names(index: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(index).map_err(|source| ModelError::Io {
        path: index.to_path_buf(),
        source,
    })?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| ModelError::Json {
        path: index.to_path_buf(),
        what: "safetensors shard index",
        reason: e.to_string(),
    })?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| ModelError::Json {
            path: index.to_path_buf(),
            what: "safetensors shard index",
            reason: "no \"weight_map\" object".into(),
        })?;
    let mut names: Vec<String> = Vec::new();
    for file in map.values().filter_map(|v| v.as_str()) {
        if !names.iter().any(|n| n == file) {
            names.push(file.to_string());
        }
    }
    names.sort();
    Ok(names)
}
