//! Shapes of released checkpoints, for benchmarks with random weights.

use super::{Family, ModelConfig, RopeScaling};

impl ModelConfig {
    /// The shape of SmolLM-135M (hidden 576, 30 layers, 9 heads, 3 KV heads,
    /// intermediate 1536, vocabulary 49152, tied embeddings).
    pub fn smollm_135m() -> Self {
        Self {
            family: Family::Llama,
            vocab_size: 49_152,
            hidden_size: 576,
            intermediate_size: 1536,
            num_layers: 30,
            num_heads: 9,
            num_kv_heads: 3,
            head_dim: 64,
            norm_eps: 1e-5,
            rope_theta: 10_000.0,
            rope_scaling: RopeScaling::None,
            max_context: 2048,
            sliding_window: None,
            tie_word_embeddings: true,
            qkv_bias: false,
            o_bias: false,
            mlp_bias: false,
            eos_token_ids: vec![0],
            bos_token_id: Some(0),
        }
    }

    /// The shape of Llama-3.2-1B (hidden 2048, 16 layers, 32 heads, 8 KV
    /// heads, intermediate 8192, vocabulary 128256, tied embeddings, llama3
    /// RoPE scaling, a 128k context), for benchmarks at real sizes.
    pub fn llama_3_2_1b() -> Self {
        Self {
            family: Family::Llama,
            vocab_size: 128_256,
            hidden_size: 2048,
            intermediate_size: 8192,
            num_layers: 16,
            num_heads: 32,
            num_kv_heads: 8,
            head_dim: 64,
            norm_eps: 1e-5,
            rope_theta: 500_000.0,
            rope_scaling: RopeScaling::Llama3 {
                factor: 32.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192.0,
            },
            max_context: 131_072,
            sliding_window: None,
            tie_word_embeddings: true,
            qkv_bias: false,
            o_bias: false,
            mlp_bias: false,
            eos_token_ids: vec![128_001],
            bos_token_id: Some(128_000),
        }
    }

    /// The shape of the paper's StarCoder drafter, tiny_starcoder (164M:
    /// hidden 768, 20 layers, 12 heads, multi-query, intermediate 3072,
    /// vocabulary 49152, 8192 learned positions, tied embeddings).
    pub fn starcoder_168m() -> Self {
        Self {
            family: Family::GptBigCode,
            vocab_size: 49_152,
            hidden_size: 768,
            intermediate_size: 3072,
            num_layers: 20,
            num_heads: 12,
            num_kv_heads: 1,
            head_dim: 64,
            norm_eps: 1e-5,
            rope_theta: 10_000.0,
            rope_scaling: RopeScaling::None,
            max_context: 8192,
            sliding_window: None,
            tie_word_embeddings: true,
            qkv_bias: true,
            o_bias: true,
            mlp_bias: true,
            eos_token_ids: vec![0],
            bos_token_id: Some(0),
        }
    }

    /// The shape of Qwen3-0.6B (hidden 1024, 28 layers, 16 heads of 128,
    /// 8 KV heads, intermediate 3072, vocabulary 151936, query/key norms,
    /// tied embeddings).
    pub fn qwen3_0_6b() -> Self {
        Self {
            family: Family::Qwen3,
            vocab_size: 151_936,
            hidden_size: 1024,
            intermediate_size: 3072,
            num_layers: 28,
            num_heads: 16,
            num_kv_heads: 8,
            head_dim: 128,
            norm_eps: 1e-6,
            rope_theta: 1_000_000.0,
            rope_scaling: RopeScaling::None,
            max_context: 40_960,
            sliding_window: None,
            tie_word_embeddings: true,
            qkv_bias: false,
            o_bias: false,
            mlp_bias: false,
            eos_token_ids: vec![151_645],
            bos_token_id: Some(151_643),
        }
    }
}
