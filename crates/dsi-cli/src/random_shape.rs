//! Shapes of released checkpoints, filled with random weights, so a
//! real-size model needs no download (`dsi bench decode --random`,
//! `dsi random-checkpoint`).

use clap::ValueEnum;
use dsi_models::checkpoint::RandomWeights;
use dsi_models::config::ModelConfig;

/// The random values every command uses, so their models agree.
pub(crate) const RANDOM_WEIGHTS: RandomWeights = RandomWeights { seed: 7, std: 0.02 };

/// A known checkpoint shape.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum RandomShape {
    /// SmolLM-135M: hidden 576, 30 layers, 9 heads, 3 KV heads, vocabulary 49152.
    #[value(name = "smollm-135m")]
    Smollm135m,
    /// Llama-3.2-1B: hidden 2048, 16 layers, 32 heads, 8 KV heads, vocabulary 128256.
    #[value(name = "llama-3.2-1b")]
    Llama32_1b,
    /// The paper's StarCoder drafter (tiny_starcoder, gpt_bigcode): hidden
    /// 768, 20 layers, 12 heads, multi-query, vocabulary 49152.
    #[value(name = "starcoder-168m")]
    Starcoder168m,
    /// Qwen3-0.6B: hidden 1024, 28 layers, 16 heads of 128, 8 KV heads,
    /// query/key norms, vocabulary 151936.
    #[value(name = "qwen3-0.6b")]
    Qwen3_0_6b,
}

impl RandomShape {
    pub(crate) fn config(self) -> ModelConfig {
        match self {
            RandomShape::Smollm135m => ModelConfig::smollm_135m(),
            RandomShape::Llama32_1b => ModelConfig::llama_3_2_1b(),
            RandomShape::Starcoder168m => ModelConfig::starcoder_168m(),
            RandomShape::Qwen3_0_6b => ModelConfig::qwen3_0_6b(),
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            RandomShape::Smollm135m => "random smollm-135m shape",
            RandomShape::Llama32_1b => "random llama-3.2-1b shape",
            RandomShape::Starcoder168m => "random starcoder-168m shape",
            RandomShape::Qwen3_0_6b => "random qwen3-0.6b shape",
        }
    }
}
