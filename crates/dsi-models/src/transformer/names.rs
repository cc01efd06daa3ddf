//! Each family's Hugging Face tensor names and shapes: the one list the
//! loader reads and the checkpoint writer writes.
//!
//! Layers that read the same input are stacked along their outputs into
//! one projection (one product instead of several). Phi-3 and StarCoder
//! store q/k/v (and Phi-3 gate/up) fused already, in the order the engine
//! stacks them; the other families store them apart.

use crate::config::{Family, ModelConfig, NormKind};

/// One projection: `nn.Linear` layers (`(prefix, d_out)`) stacked along
/// their outputs, all reading `d_in` values.
#[derive(Debug, Clone, PartialEq)]
pub struct Stacked {
    /// Each layer's name prefix and output width, in stacking order.
    pub parts: Vec<(String, usize)>,
    /// Input width.
    pub d_in: usize,
    /// Each layer has a `.bias`.
    pub bias: bool,
}

/// A norm's tensors: `{prefix}.weight` and, for LayerNorm, `{prefix}.bias`.
#[derive(Debug, Clone, PartialEq)]
pub struct NormNames {
    /// Name prefix.
    pub prefix: String,
    /// Width.
    pub width: usize,
    /// LayerNorm (weight and bias) or RMSNorm (weight).
    pub kind: NormKind,
}

/// The tensors of one decoder layer.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerNames {
    /// Norm before attention.
    pub input_norm: NormNames,
    /// Queries, keys and values.
    pub qkv: Stacked,
    /// Per-head query and key norms (Qwen3).
    pub qk_norm: Option<[NormNames; 2]>,
    /// Attention output.
    pub o: Stacked,
    /// Norm before the MLP.
    pub post_norm: NormNames,
    /// The MLP's input side: gate and up stacked, or the GELU MLP's `c_fc`.
    pub up: Stacked,
    /// The MLP's output side.
    pub down: Stacked,
}

/// Every tensor of a checkpoint of one configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelNames {
    /// Token embeddings, `[vocab, hidden]`.
    pub embed: String,
    /// Learned position embeddings, `[max_context, hidden]` (StarCoder).
    pub positions: Option<String>,
    /// The decoder layers.
    pub layers: Vec<LayerNames>,
    /// The LM head, `None` when tied to the embeddings.
    pub lm_head: Option<Stacked>,
    /// The final norm.
    pub final_norm: NormNames,
}

impl ModelNames {
    /// The names of a checkpoint of `config`.
    pub fn of(config: &ModelConfig) -> Self {
        let c = config;
        let d = c.hidden_size;
        let norm = |prefix: String| NormNames {
            prefix,
            width: d,
            kind: c.family.norm(),
        };
        let (embed, positions, final_norm, layer_prefix) = match c.family {
            Family::GptBigCode => (
                "transformer.wte.weight",
                Some("transformer.wpe.weight".to_string()),
                "transformer.ln_f",
                "transformer.h",
            ),
            _ => (
                "model.embed_tokens.weight",
                None,
                "model.norm",
                "model.layers",
            ),
        };
        let layers = (0..c.num_layers)
            .map(|i| layer(c, &format!("{layer_prefix}.{i}"), norm))
            .collect();
        Self {
            embed: embed.to_string(),
            positions,
            layers,
            lm_head: (!c.tie_word_embeddings).then(|| Stacked {
                parts: vec![("lm_head".to_string(), c.vocab_size)],
                d_in: d,
                bias: false,
            }),
            final_norm: norm(final_norm.to_string()),
        }
    }

    /// Every tensor's name and shape, in the order the loader reads them.
    pub fn tensors(&self, config: &ModelConfig) -> Vec<(String, Vec<usize>)> {
        let d = config.hidden_size;
        let mut out = vec![(self.embed.clone(), vec![config.vocab_size, d])];
        if let Some(positions) = &self.positions {
            out.push((positions.clone(), vec![config.max_context, d]));
        }
        for layer in &self.layers {
            layer.input_norm.push(&mut out);
            layer.qkv.push(&mut out);
            for norm in layer.qk_norm.iter().flatten() {
                norm.push(&mut out);
            }
            layer.o.push(&mut out);
            layer.post_norm.push(&mut out);
            layer.up.push(&mut out);
            layer.down.push(&mut out);
        }
        if let Some(head) = &self.lm_head {
            head.push(&mut out);
        }
        self.final_norm.push(&mut out);
        out
    }
}

/// A layer's name within its block and its output width.
type Part<'a> = (&'a str, usize);

fn layer(c: &ModelConfig, p: &str, norm: impl Fn(String) -> NormNames) -> LayerNames {
    let (d, f) = (c.hidden_size, c.intermediate_size);
    let (q, kv) = (c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim);
    let stacked = |parts: &[Part], d_in: usize, bias: bool| Stacked {
        parts: parts
            .iter()
            .map(|(name, rows)| (format!("{p}.{name}"), *rows))
            .collect(),
        d_in,
        bias,
    };
    if c.family == Family::GptBigCode {
        return LayerNames {
            input_norm: norm(format!("{p}.ln_1")),
            qkv: stacked(&[("attn.c_attn", q + 2 * kv)], d, c.qkv_bias),
            qk_norm: None,
            o: stacked(&[("attn.c_proj", d)], q, c.o_bias),
            post_norm: norm(format!("{p}.ln_2")),
            up: stacked(&[("mlp.c_fc", f)], d, c.mlp_bias),
            down: stacked(&[("mlp.c_proj", d)], f, c.mlp_bias),
        };
    }
    let (qkv, up): (&[Part], &[Part]) = match c.family {
        Family::Phi3 => (
            &[("self_attn.qkv_proj", q + 2 * kv)],
            &[("mlp.gate_up_proj", 2 * f)],
        ),
        _ => (
            &[
                ("self_attn.q_proj", q),
                ("self_attn.k_proj", kv),
                ("self_attn.v_proj", kv),
            ],
            &[("mlp.gate_proj", f), ("mlp.up_proj", f)],
        ),
    };
    let head_norm = |name: &str| NormNames {
        prefix: format!("{p}.{name}"),
        width: c.head_dim,
        kind: NormKind::Rms,
    };
    LayerNames {
        input_norm: norm(format!("{p}.input_layernorm")),
        qkv: stacked(qkv, d, c.qkv_bias),
        qk_norm: c
            .family
            .qk_norm()
            .then(|| [head_norm("self_attn.q_norm"), head_norm("self_attn.k_norm")]),
        o: stacked(&[("self_attn.o_proj", d)], q, c.o_bias),
        post_norm: norm(format!("{p}.post_attention_layernorm")),
        up: stacked(up, d, c.mlp_bias),
        down: stacked(&[("mlp.down_proj", d)], f, c.mlp_bias),
    }
}

impl Stacked {
    fn push(&self, out: &mut Vec<(String, Vec<usize>)>) {
        for (prefix, rows) in &self.parts {
            out.push((format!("{prefix}.weight"), vec![*rows, self.d_in]));
            if self.bias {
                out.push((format!("{prefix}.bias"), vec![*rows]));
            }
        }
    }
}

impl NormNames {
    fn push(&self, out: &mut Vec<(String, Vec<usize>)>) {
        out.push((format!("{}.weight", self.prefix), vec![self.width]));
        if self.kind == NormKind::Layer {
            out.push((format!("{}.bias", self.prefix), vec![self.width]));
        }
    }
}
