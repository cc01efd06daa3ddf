//! The bundled tokenizer on any text and any ids: text round-trips
//! through encode and decode; any ids decode or fail cleanly.

use super::common::{token_ids, tokenizer};

pub fn run(data: &[u8]) {
    let tokenizer = tokenizer();
    if let Ok(text) = std::str::from_utf8(data) {
        let ids = tokenizer.encode(text).expect("any text encodes");
        let back = tokenizer.decode(&ids).expect("its ids decode");
        assert_eq!(back, text, "byte-level BPE round-trips");
    }
    let _ = tokenizer.decode(&token_ids(data, tokenizer.vocab_size()));
}
