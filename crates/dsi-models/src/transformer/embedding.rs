//! The token embedding: a device tensor, or (on the CPU backends, for a
//! GGUF file's block-quantized table) host weights kept as stored, of
//! which a lookup dequantizes only the rows it needs.
//!
//! A quantized table stays quantized because it is the largest tensor of
//! a small model (Qwen2.5-Coder-0.5B: 136M of its 494M weights), and an
//! f32 copy would be larger than the whole file; a tied LM head multiplies
//! by the same blocks.

use crate::checkpoint::HostTensor;
use crate::{ModelError, Result};
use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Int, Tensor, TensorData};
use dsi_core::TokenId;
use dsi_kernels::weights::Weights;
use std::sync::Arc;

/// Token embeddings, `[vocab, hidden]`.
#[derive(Module, Debug)]
pub struct Embedding<B: Backend> {
    /// The table on the device, unless it is [`Embedding::host`].
    pub table: Option<Param<Tensor<B, 2>>>,
    /// The table as host weights (a quantized GGUF table).
    #[module(skip)]
    pub host: Option<Arc<Weights>>,
}

impl<B: Backend> Embedding<B> {
    /// A table on the device.
    pub fn on_device(table: Tensor<B, 2>) -> Self {
        Self {
            table: Some(Param::from_tensor(table)),
            host: None,
        }
    }

    /// A table kept as host weights.
    pub fn on_host(weights: Arc<Weights>) -> Self {
        Self {
            table: None,
            host: Some(weights),
        }
    }

    /// The rows of `tokens` (already checked against the vocabulary).
    ///
    /// # Shapes
    /// - tokens: `n` ids -> `[n, hidden]`
    pub fn lookup(&self, tokens: &[TokenId], device: &B::Device, dtype: DType) -> Tensor<B, 2> {
        match (&self.table, &self.host) {
            (Some(table), _) => {
                let ids: Vec<i32> = tokens.iter().map(|&t| t as i32).collect();
                let ids =
                    Tensor::<B, 1, Int>::from_data(TensorData::new(ids, [tokens.len()]), device);
                table.val().select(0, ids)
            }
            (None, Some(host)) => {
                let [_, d] = host.shape();
                let matrix = host.matrix();
                let mut values = vec![0f32; tokens.len() * d];
                for (row, &t) in values.chunks_exact_mut(d.max(1)).zip(tokens) {
                    matrix.widen(t as usize, 0, row);
                }
                Tensor::from_data(TensorData::new(values, [tokens.len(), d]), (device, dtype))
            }
            (None, None) => unreachable!("an embedding has a table"),
        }
    }

    /// The table in f32 (host weights dequantized).
    pub fn stored(&self) -> Result<HostTensor> {
        match (&self.table, &self.host) {
            (Some(table), _) => HostTensor::from_tensor(table.val()),
            (None, Some(host)) => Ok(HostTensor {
                shape: host.shape().to_vec(),
                values: host.to_f32(),
            }),
            (None, None) => Err(ModelError::Device("an embedding without a table".into())),
        }
    }
}
