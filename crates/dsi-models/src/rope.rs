//! Rotary position embeddings (Su et al. 2021) in the Hugging Face layout:
//! the head is split in two halves, `x * cos + rotate_half(x) * sin`.
//!
//! Frequencies follow transformers' `rope_init_fn`s for `default`, `linear`,
//! `llama3` and `longrope`. The cos/sin rows for the positions of one
//! forward are computed on the host and uploaded, so no table caps the
//! context.
//!
//! # LongRoPE
//!
//! transformers switches Phi-3's frequencies from the short to the long
//! factors for a whole forward once any of its positions reaches the
//! pretrained context, and the keys already cached keep the frequencies
//! they were rotated with: the result depends on how the sequence was cut
//! into forwards. Here the choice is made per position (below the
//! pretrained context: short; from it on: long), so a row's rotation never
//! depends on its chunk, as every row of the engine must not. Within the
//! pretrained context (4k for Phi-3 128k) both agree exactly.

use crate::config::{ModelConfig, RopeScaling};
use std::f64::consts::PI;

/// Inverse frequencies of one head, `head_dim / 2` of them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RopeFrequencies {
    inv_freq: Vec<f64>,
    /// LongRoPE: the frequencies from `long_from` on, and the scale of
    /// every cos and sin.
    long: Option<LongFrequencies>,
}

#[derive(Debug, Clone, PartialEq)]
struct LongFrequencies {
    inv_freq: Vec<f64>,
    long_from: usize,
    scale: f64,
}

impl RopeFrequencies {
    pub(crate) fn new(config: &ModelConfig) -> Self {
        let dim = config.head_dim;
        let base: Vec<f64> = (0..dim / 2)
            .map(|i| 1.0 / config.rope_theta.powf((2 * i) as f64 / dim as f64))
            .collect();
        let per_frequency = |factors: &[f64]| -> Vec<f64> {
            base.iter()
                .zip(factors)
                .map(|(f, factor)| f / factor)
                .collect()
        };
        let mut long = None;
        let inv_freq = match &config.rope_scaling {
            RopeScaling::None => base.clone(),
            RopeScaling::Linear { factor } => base.iter().map(|f| f / factor).collect(),
            RopeScaling::LongRope {
                short_factor,
                long_factor,
                original_max_position_embeddings,
                attention_factor,
            } => {
                long = Some(LongFrequencies {
                    inv_freq: per_frequency(long_factor),
                    long_from: *original_max_position_embeddings,
                    scale: *attention_factor,
                });
                per_frequency(short_factor)
            }
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings: old_len,
            } => {
                let (factor, low_freq_factor, high_freq_factor, old_len) =
                    (*factor, *low_freq_factor, *high_freq_factor, *old_len);
                let low_freq_wavelen = old_len / low_freq_factor;
                let high_freq_wavelen = old_len / high_freq_factor;
                base.iter()
                    .map(|&f| {
                        let wavelen = 2.0 * PI / f;
                        if wavelen < high_freq_wavelen {
                            f
                        } else if wavelen > low_freq_wavelen {
                            f / factor
                        } else {
                            let smooth = (old_len / wavelen - low_freq_factor)
                                / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    })
                    .collect()
            }
        };
        Self { inv_freq, long }
    }

    /// `(cos, sin)`, each `n * head_dim` values row-major, for positions
    /// `start..start + n`; both halves of a row repeat the same angles.
    pub(crate) fn tables(&self, start: usize, n: usize) -> (Vec<f32>, Vec<f32>) {
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(n * half * 2);
        let mut sin = Vec::with_capacity(n * half * 2);
        for pos in start..start + n {
            let (inv_freq, scale) = match &self.long {
                Some(long) if pos >= long.long_from => (&long.inv_freq, long.scale as f32),
                Some(long) => (&self.inv_freq, long.scale as f32),
                None => (&self.inv_freq, 1.0),
            };
            for _ in 0..2 {
                for &f in inv_freq {
                    // transformers computes the angle in f32, and scales
                    // cos and sin after.
                    let angle = (pos as f32) * (f as f32);
                    cos.push(angle.cos() * scale);
                    sin.push(angle.sin() * scale);
                }
            }
        }
        (cos, sin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(scaling: RopeScaling) -> ModelConfig {
        ModelConfig {
            family: crate::config::Family::Llama,
            vocab_size: 10,
            hidden_size: 8,
            intermediate_size: 8,
            num_layers: 1,
            num_heads: 1,
            num_kv_heads: 1,
            head_dim: 8,
            norm_eps: 1e-6,
            rope_theta: 10_000.0,
            rope_scaling: scaling,
            max_context: 64,
            sliding_window: None,
            tie_word_embeddings: false,
            qkv_bias: false,
            o_bias: false,
            mlp_bias: false,
            eos_token_ids: vec![],
            bos_token_id: None,
        }
    }

    #[test]
    fn default_frequencies_and_tables() {
        let f = RopeFrequencies::new(&config(RopeScaling::None));
        assert_eq!(f.inv_freq.len(), 4);
        assert_eq!(f.inv_freq[0], 1.0);
        assert!((f.inv_freq[1] - 0.1).abs() < 1e-12);
        let (cos, sin) = f.tables(0, 2);
        assert_eq!(cos.len(), 16);
        assert_eq!(&cos[..8], &[1.0; 8]);
        assert_eq!(sin[8], 1f32.sin());
        assert_eq!(sin[12], 1f32.sin(), "second half repeats the first");
    }

    #[test]
    fn linear_scaling_divides_every_frequency() {
        let f = RopeFrequencies::new(&config(RopeScaling::Linear { factor: 4.0 }));
        assert_eq!(f.inv_freq[0], 0.25);
    }

    #[test]
    fn llama3_keeps_high_and_scales_low_frequencies() {
        let f = RopeFrequencies::new(&config(RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 64.0,
        }));
        let plain = RopeFrequencies::new(&config(RopeScaling::None));
        // wavelength 2 pi < 16: kept.
        assert_eq!(f.inv_freq[0], plain.inv_freq[0]);
        // 1 / 10000^(6/8) = 0.001, wavelength 6283 > 64: divided by 8.
        assert!((f.inv_freq[3] - plain.inv_freq[3] / 8.0).abs() < 1e-15);
    }

    #[test]
    fn longrope_divides_per_frequency_switches_at_the_pretrained_context_and_scales() {
        let f = RopeFrequencies::new(&config(RopeScaling::LongRope {
            short_factor: vec![1.0, 2.0, 4.0, 8.0],
            long_factor: vec![2.0, 4.0, 8.0, 16.0],
            original_max_position_embeddings: 3,
            attention_factor: 1.5,
        }));
        let plain = RopeFrequencies::new(&config(RopeScaling::None));
        assert_eq!(f.inv_freq[2], plain.inv_freq[2] / 4.0);
        let (cos, sin) = f.tables(2, 2);
        let angle = |pos: f32, inv: f64| pos * inv as f32;
        // Position 2 (short factors), then 3 (long), both scaled by 1.5.
        assert_eq!(sin[1], angle(2.0, plain.inv_freq[1] / 2.0).sin() * 1.5);
        assert_eq!(sin[8 + 1], angle(3.0, plain.inv_freq[1] / 4.0).sin() * 1.5);
        assert_eq!(cos[0], 2f32.cos() * 1.5);
    }
}
