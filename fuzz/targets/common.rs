//! What several targets share: the bundled tokenizer, and a server state
//! over a synthetic pool (no model) whose requests are only checked.

use dsi_core::TokenId;
use dsi_models::checkpoint::TextTokenizer;
use dsi_sched::synthetic::{SyntheticDrafter, SyntheticTarget, SyntheticWorld};
use dsi_sched::{Pool, Role, WorkerHandle};
use dsi_server::{ServerConfig, State, TextCodec};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The bundled target's tokenizer (byte-level BPE).
pub fn tokenizer() -> &'static TextTokenizer {
    static TOKENIZER: OnceLock<TextTokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        TextTokenizer::from_bytes(include_bytes!("../../models/pystd/target/tokenizer.json"))
            .expect("the bundled tokenizer loads")
    })
}

/// The bundled tokenizer as the server's codec.
pub struct Codec;

impl TextCodec for Codec {
    fn encode(&self, text: &str) -> Result<Vec<TokenId>, String> {
        tokenizer().encode(text).map_err(|e| e.to_string())
    }

    fn decode(&self, tokens: &[TokenId]) -> Result<String, String> {
        tokenizer().decode(tokens).map_err(|e| e.to_string())
    }
}

/// A server state with the bundled tokenizer, a chat template, small
/// limits and synthetic workers (nothing runs: requests are only checked).
pub fn state() -> &'static State {
    static STATE: OnceLock<State> = OnceLock::new();
    STATE.get_or_init(|| {
        let target = SyntheticTarget {
            world: SyntheticWorld { a: 0.5, seed: 1 },
            forward: Duration::from_millis(1),
        };
        let drafter = SyntheticDrafter {
            step: Duration::from_millis(1),
        };
        let drafter = WorkerHandle::spawn("drafter", Role::Drafter(Box::new(drafter)))
            .expect("a drafter thread");
        let targets = vec![
            WorkerHandle::spawn("target", Role::Target(Box::new(target))).expect("a target thread"),
        ];
        let pool = Pool::new(Some(drafter), targets).expect("a pool");
        let mut config = ServerConfig::new("pystd", 512);
        config.vocab = Some(tokenizer().vocab_size());
        config.max_tokens = 128;
        config.max_prompt_tokens = 256;
        config.eos = vec![0];
        config.chat = dsi_server::ChatTemplate {
            source: Some(CHATML.to_string()),
            bos_token: "<s>".into(),
            eos_token: "</s>".into(),
        };
        State::new(Arc::new(pool), Arc::new(Codec), config)
    })
}

/// A ChatML template as Hugging Face models ship them.
pub const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// Token ids from pairs of bytes, within `vocab + 8` (a few past the end).
pub fn token_ids(data: &[u8], vocab: usize) -> Vec<TokenId> {
    data.chunks_exact(2)
        .map(|pair| (u16::from_le_bytes([pair[0], pair[1]]) as usize % (vocab + 8)) as TokenId)
        .collect()
}
