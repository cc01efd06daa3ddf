//! The model's tokenizer as the server's text codec (owned by `dsi serve`,
//! borrowed by `dsi generate`'s streaming printer).

use dsi_core::TokenId;
use dsi_models::checkpoint::TextTokenizer;
use dsi_server::TextCodec;
use std::borrow::Borrow;

/// A [`TextTokenizer`], owned or borrowed, as a [`TextCodec`].
pub(crate) struct Codec<T>(pub(crate) T);

impl<T: Borrow<TextTokenizer> + Send + Sync> TextCodec for Codec<T> {
    fn encode(&self, text: &str) -> Result<Vec<TokenId>, String> {
        self.0.borrow().encode(text).map_err(|e| e.to_string())
    }

    fn decode(&self, tokens: &[TokenId]) -> Result<String, String> {
        self.0.borrow().decode(tokens).map_err(|e| e.to_string())
    }
}
