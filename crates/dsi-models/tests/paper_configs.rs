//! The `config.json` of the DSI paper's model pairs (Phi-3 medium/mini,
//! StarCoder with tiny_starcoder, Vicuna 13B/7B on Llama-2) and of Qwen3,
//! as their checkpoints carry them (the LongRoPE factor lists shortened to
//! a ramp of the right length): each parses into its family with the
//! shapes and the parameter count of the released model. No weights are
//! needed; the fixtures test the math.

use dsi_models::config::{Family, ModelConfig, RopeScaling};

fn llama2(hidden: usize, intermediate: usize, layers: usize, heads: usize) -> String {
    format!(
        r#"{{"architectures":["LlamaForCausalLM"],"model_type":"llama","hidden_size":{hidden},
        "intermediate_size":{intermediate},"num_hidden_layers":{layers},"num_attention_heads":{heads},
        "num_key_value_heads":{heads},"max_position_embeddings":4096,"rms_norm_eps":1e-5,
        "vocab_size":32000,"bos_token_id":1,"eos_token_id":2,"tie_word_embeddings":false,
        "hidden_act":"silu","rope_scaling":null}}"#
    )
}

fn phi3(
    hidden: usize,
    intermediate: usize,
    layers: usize,
    (heads, kv_heads): (usize, usize),
    long: bool,
) -> String {
    let half = hidden / heads / 2;
    let ramp = |from: f64| {
        (0..half)
            .map(|i| format!("{:.3}", from + i as f64 / half as f64))
            .collect::<Vec<_>>()
            .join(",")
    };
    let (max_positions, rope) = if long {
        (
            131_072,
            format!(
                r#"{{"type":"longrope","short_factor":[{}],"long_factor":[{}]}}"#,
                ramp(1.0),
                ramp(1.5)
            ),
        )
    } else {
        (4096, "null".to_string())
    };
    format!(
        r#"{{"architectures":["Phi3ForCausalLM"],"model_type":"phi3","hidden_size":{hidden},
        "intermediate_size":{intermediate},"num_hidden_layers":{layers},"num_attention_heads":{heads},
        "num_key_value_heads":{kv_heads},"max_position_embeddings":{max_positions},
        "original_max_position_embeddings":4096,"rope_scaling":{rope},"rope_theta":10000.0,
        "rms_norm_eps":1e-5,"sliding_window":{},"vocab_size":32064,"bos_token_id":1,
        "eos_token_id":32000,"tie_word_embeddings":false,"hidden_act":"silu"}}"#,
        if long { 262_144 } else { 2047 }
    )
}

fn starcoder(embd: usize, layers: usize, heads: usize) -> String {
    format!(
        r#"{{"architectures":["GPTBigCodeForCausalLM"],"model_type":"gpt_bigcode","n_embd":{embd},
        "n_inner":{},"n_layer":{layers},"n_head":{heads},"n_positions":8192,"multi_query":true,
        "activation_function":"gelu_pytorch_tanh","layer_norm_epsilon":1e-5,"vocab_size":49152,
        "bos_token_id":0,"eos_token_id":0,"scale_attn_weights":true}}"#,
        4 * embd
    )
}

const QWEN3_0_6B: &str = r#"{"architectures":["Qwen3ForCausalLM"],"model_type":"qwen3",
    "hidden_size":1024,"intermediate_size":3072,"num_hidden_layers":28,"num_attention_heads":16,
    "num_key_value_heads":8,"head_dim":128,"max_position_embeddings":40960,"rms_norm_eps":1e-6,
    "rope_theta":1000000,"rope_scaling":null,"sliding_window":null,"use_sliding_window":false,
    "tie_word_embeddings":true,"attention_bias":false,"vocab_size":151936,"bos_token_id":151643,
    "eos_token_id":151645,"hidden_act":"silu"}"#;

#[test]
fn the_papers_pairs_parse_with_their_released_parameter_counts() {
    // (name, config, family, parameters, exact)
    let cases: [(&str, String, Family, usize, bool); 8] = [
        (
            "Vicuna-7B (Llama-2-7B)",
            llama2(4096, 11008, 32, 32),
            Family::Llama,
            6_738_415_616,
            true,
        ),
        (
            "Vicuna-13B (Llama-2-13B)",
            llama2(5120, 13824, 40, 40),
            Family::Llama,
            13_015_864_320,
            true,
        ),
        (
            "Phi-3-mini-4k",
            phi3(3072, 8192, 32, (32, 32), false),
            Family::Phi3,
            3_821_079_552,
            true,
        ),
        (
            "Phi-3-mini-128k",
            phi3(3072, 8192, 32, (32, 32), true),
            Family::Phi3,
            3_821_079_552,
            true,
        ),
        (
            "Phi-3-medium-128k",
            phi3(5120, 17920, 40, (40, 10), true),
            Family::Phi3,
            13_960_238_080,
            true,
        ),
        (
            "StarCoder",
            starcoder(6144, 40, 48),
            Family::GptBigCode,
            15_500_000_000,
            false,
        ),
        (
            "tiny_starcoder",
            starcoder(768, 20, 12),
            Family::GptBigCode,
            164_000_000,
            false,
        ),
        (
            "Qwen3-0.6B",
            QWEN3_0_6B.to_string(),
            Family::Qwen3,
            596_049_920,
            true,
        ),
    ];
    for (name, text, family, parameters, exact) in cases {
        let config = ModelConfig::from_json(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(config.family, family, "{name}");
        let counted = config.num_parameters();
        if exact {
            assert_eq!(counted, parameters, "{name}");
        } else {
            let off = counted.abs_diff(parameters) as f64 / parameters as f64;
            assert!(
                off < 0.01,
                "{name}: {counted} parameters, about {parameters} expected"
            );
        }
    }
}

#[test]
fn phi3_windows_and_longrope_are_read_as_released() {
    let short = ModelConfig::from_json(&phi3(3072, 8192, 32, (32, 32), false)).expect("mini-4k");
    assert_eq!(
        (short.max_context, short.sliding_window),
        (4096, Some(2047))
    );
    assert_eq!(short.rope_scaling, RopeScaling::None);
    let long = ModelConfig::from_json(&phi3(5120, 17920, 40, (40, 10), true)).expect("medium-128k");
    assert_eq!((long.max_context, long.sliding_window), (131_072, None));
    let RopeScaling::LongRope {
        short_factor,
        original_max_position_embeddings,
        attention_factor,
        ..
    } = long.rope_scaling
    else {
        panic!("longrope");
    };
    assert_eq!(
        (short_factor.len(), original_max_position_embeddings),
        (64, 4096)
    );
    // sqrt(1 + ln(131072 / 4096) / ln(4096)), as transformers computes it.
    assert!(
        (attention_factor - 1.190_238_45).abs() < 1e-6,
        "{attention_factor}"
    );
}
