//! A GGUF file's tensors under the Hugging Face names the loader asks for
//! (`model.layers.0.self_attn.q_proj.weight` is `blk.0.attn_q.weight`),
//! with the query and key rows of `llama`-architecture files put back in
//! Hugging Face's order.
//!
//! # The rotary layout of `llama` files
//!
//! llama.cpp's converter permutes the rows of every `llama` model's query
//! and key projections, head by head, so that its interleaved rotary
//! kernel (pairs `2j, 2j + 1`) computes what transformers' half-split one
//! (pairs `j, j + d/2`) does: Hugging Face row `j` of a head becomes row
//! `2j` and row `d/2 + j` becomes `2j + 1`. The engine rotates the
//! transformers way, so it undoes that permutation at load; `qwen2` files
//! are written unpermuted (llama.cpp rotates them the NeoX way).

use super::parse::{TensorInfo, TensorType};
use crate::checkpoint::HostTensor;
use crate::checkpoint::file_bytes::{FileBytes, FloatBytes};
use crate::{ModelError, Result};
use dsi_kernels::weights::{BlockBytes, Weights};
use std::sync::Arc;

/// How the rows of a tensor are reordered at load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rows {
    /// As stored.
    AsStored,
    /// Undo llama.cpp's rotary permutation over this many heads.
    Unpermute { heads: usize },
}

/// The GGUF name of a Hugging Face tensor name, and whether its rows are
/// permuted in a `llama` file (`q_heads`, `kv_heads`).
pub(super) fn gguf_name(hf: &str, permuted: Option<(usize, usize)>) -> Option<(String, Rows)> {
    let plain = |name: &str| Some((name.to_string(), Rows::AsStored));
    match hf {
        "model.embed_tokens.weight" => return plain("token_embd.weight"),
        "model.norm.weight" => return plain("output_norm.weight"),
        "lm_head.weight" => return plain("output.weight"),
        _ => {}
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let (module, kind) = rest.rsplit_once('.')?;
    let gguf = match module {
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" => "ffn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        _ => return None,
    };
    let rows = match (gguf, permuted) {
        ("attn_q", Some((heads, _))) => Rows::Unpermute { heads },
        ("attn_k", Some((_, kv_heads))) => Rows::Unpermute { heads: kv_heads },
        _ => Rows::AsStored,
    };
    Some((format!("blk.{layer}.{gguf}.{kind}"), rows))
}

/// The stored row that holds Hugging Face row `row` of a tensor with
/// `rows` rows over `heads` heads permuted by llama.cpp.
fn stored_row(row: usize, rows: usize, heads: usize) -> usize {
    let width = rows / heads;
    let (head, j) = (row / width, row % width);
    let half = width / 2;
    head * width + if j < half { 2 * j } else { 2 * (j - half) + 1 }
}

/// `bytes` (rows of `row_bytes`) in Hugging Face row order.
fn reorder(bytes: &[u8], row_bytes: usize, order: Rows) -> Vec<u8> {
    match order {
        Rows::AsStored => bytes.to_vec(),
        Rows::Unpermute { heads } => {
            let rows = bytes.len() / row_bytes.max(1);
            let mut out = Vec::with_capacity(bytes.len());
            for row in 0..rows {
                let from = stored_row(row, rows, heads) * row_bytes;
                out.extend_from_slice(&bytes[from..from + row_bytes]);
            }
            out
        }
    }
}

/// One tensor of the file, found and checked.
pub(super) struct Found<'a> {
    pub(super) name: String,
    pub(super) info: &'a TensorInfo,
    /// The whole file.
    pub(super) file: &'a Arc<FileBytes>,
    pub(super) rows: Rows,
}

impl Found<'_> {
    /// The tensor's bytes.
    fn bytes(&self) -> &[u8] {
        &self.file[self.info.start..self.info.start + self.info.len]
    }

    /// Bytes of one row: of the innermost dimension, or of one element of
    /// a vector (a bias, permuted like the rows it adds to).
    fn row_bytes(&self) -> usize {
        let rows: usize = match self.info.shape[..] {
            [n] => n,
            ref shape => shape[..shape.len() - 1].iter().product(),
        };
        self.info.len / rows.max(1)
    }

    /// Checks the permutation can apply (whole heads of even width).
    pub(super) fn check_rows(&self, file: &str) -> Result<()> {
        if let Rows::Unpermute { heads } = self.rows {
            let rows = self.info.shape[0];
            let vector_of_blocks =
                self.info.shape.len() == 1 && matches!(self.info.dtype, TensorType::Blocks(_));
            if heads == 0
                || !rows.is_multiple_of(heads)
                || !(rows / heads).is_multiple_of(2)
                || vector_of_blocks
            {
                return Err(ModelError::Gguf {
                    file: file.to_string(),
                    reason: format!(
                        "tensor {} has {rows} rows, not {heads} heads of an even width",
                        self.name
                    ),
                });
            }
        }
        Ok(())
    }

    /// Every element in f32, rows in Hugging Face order.
    pub(super) fn to_f32(&self) -> HostTensor {
        let bytes = reorder(self.bytes(), self.row_bytes(), self.rows);
        let values = match self.info.dtype {
            TensorType::F32 => FloatBytes::F32.to_f32(&bytes),
            TensorType::F16 => FloatBytes::F16.to_f32(&bytes),
            TensorType::Bf16 => FloatBytes::Bf16.to_f32(&bytes),
            TensorType::Blocks(format) => {
                let per = format.weights_per_block();
                let mut values = vec![0f32; bytes.len() / format.block_bytes() * per];
                format.dequantize_row(&bytes, &mut values);
                values
            }
        };
        HostTensor {
            shape: self.info.shape.clone(),
            values,
        }
    }

    /// A 2-D block-quantized tensor as kernel weights, its blocks as
    /// stored (rows in Hugging Face order); `None` for float tensors. The
    /// weights borrow the file's bytes (its mapped pages are the one copy
    /// in memory) unless their rows had to be reordered.
    pub(super) fn to_blocks(&self, file: &str) -> Result<Option<Weights>> {
        let TensorType::Blocks(format) = self.info.dtype else {
            return Ok(None);
        };
        let [out, k] = self.info.shape[..] else {
            return Ok(None);
        };
        let bytes = match self.rows {
            Rows::AsStored => BlockBytes::Shared {
                buffer: Arc::clone(self.file) as Arc<dyn AsRef<[u8]> + Send + Sync>,
                range: self.info.start..self.info.start + self.info.len,
            },
            Rows::Unpermute { .. } => {
                BlockBytes::Owned(reorder(self.bytes(), self.row_bytes(), self.rows))
            }
        };
        Weights::from_blocks(format, bytes, out, k)
            .map(Some)
            .map_err(|reason| ModelError::Gguf {
                file: file.to_string(),
                reason: format!("tensor {}: {reason}", self.name),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hugging_face_names_map_to_gguf_names() {
        let q = gguf_name("model.layers.3.self_attn.q_proj.weight", Some((4, 2)));
        assert_eq!(
            q,
            Some(("blk.3.attn_q.weight".into(), Rows::Unpermute { heads: 4 }))
        );
        let k = gguf_name("model.layers.3.self_attn.k_proj.bias", Some((4, 2)));
        assert_eq!(
            k,
            Some(("blk.3.attn_k.bias".into(), Rows::Unpermute { heads: 2 }))
        );
        let k = gguf_name("model.layers.0.self_attn.k_proj.weight", None);
        assert_eq!(k, Some(("blk.0.attn_k.weight".into(), Rows::AsStored)));
        let down = gguf_name("model.layers.11.mlp.down_proj.weight", Some((4, 2)));
        assert_eq!(
            down,
            Some(("blk.11.ffn_down.weight".into(), Rows::AsStored))
        );
        assert_eq!(gguf_name("model.layers.1.mlp.c_fc.weight", None), None);
    }

    /// llama.cpp's permutation (`reshape(heads, 2, d/2, ..).swapaxes(1, 2)`)
    /// followed by ours is the identity.
    #[test]
    fn unpermuting_inverts_llama_cpps_permutation() {
        let (heads, width) = (3, 8);
        let rows = heads * width;
        // llama.cpp: stored row h*w + 2j + s holds HF row h*w + s*w/2 + j.
        let mut stored = vec![0u8; rows];
        for h in 0..heads {
            for s in 0..2 {
                for j in 0..width / 2 {
                    stored[h * width + 2 * j + s] = (h * width + s * width / 2 + j) as u8;
                }
            }
        }
        let back = reorder(&stored, 1, Rows::Unpermute { heads });
        assert_eq!(back, (0..rows as u8).collect::<Vec<_>>());
    }
}
