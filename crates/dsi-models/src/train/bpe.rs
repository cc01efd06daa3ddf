//! Training a byte-level BPE tokenizer (GPT-2 style: every byte is a base
//! symbol, so any text encodes) with the `tokenizers` crate's trainer.

use crate::{ModelError, Result};
use std::collections::HashSet;
use std::path::PathBuf;
use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

/// The one special token: separates documents, ends generation (id 0).
pub const END_OF_TEXT: &str = "<|endoftext|>";

/// Trains a byte-level BPE tokenizer of `vocab_size` entries on `texts` and
/// returns its `tokenizer.json`.
pub fn train_tokenizer(texts: &[String], vocab_size: usize) -> Result<String> {
    let fail = |reason: String| ModelError::Tokenizer {
        path: PathBuf::from("tokenizer.json"),
        reason,
    };
    let alphabet: HashSet<char> = ByteLevel::alphabet().into_iter().collect();
    if vocab_size <= alphabet.len() + 1 {
        return Err(fail(format!(
            "a vocabulary of {vocab_size} cannot hold the {} byte symbols plus {END_OF_TEXT}; use more",
            alphabet.len()
        )));
    }
    let trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(vec![AddedToken::from(END_OF_TEXT, true)])
        .initial_alphabet(alphabet)
        .build();
    let mut tokenizer = Tokenizer::new(BPE::default());
    let byte_level = ByteLevel::new(false, true, true);
    tokenizer.with_pre_tokenizer(Some(byte_level));
    tokenizer.with_decoder(Some(byte_level));
    let mut trainer = TrainerWrapper::BpeTrainer(trainer);
    tokenizer
        .train(&mut trainer, texts.iter())
        .map_err(|e| fail(format!("training failed: {e}")))?;
    tokenizer
        .to_string(true)
        .map_err(|e| fail(format!("cannot serialize: {e}")))
}
