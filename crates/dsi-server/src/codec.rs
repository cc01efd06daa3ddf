//! Text in and out: the server's only view of a tokenizer.
//!
//! The binary implements [`TextCodec`] over the model's `tokenizer.json`;
//! the server never sees the tokenizer itself. [`IncrementalText`] turns a
//! stream of token ids into text deltas without re-decoding the whole output
//! each time, holding back bytes that do not yet form a whole character.

use dsi_core::TokenId;

/// Encodes prompts and decodes generated tokens.
pub trait TextCodec: Send + Sync {
    /// Token ids of `text` (no special tokens added).
    fn encode(&self, text: &str) -> Result<Vec<TokenId>, String>;

    /// Text of `tokens`.
    fn decode(&self, tokens: &[TokenId]) -> Result<String, String>;
}

/// Text deltas of a growing token sequence.
///
/// Decodes only a short window: the tokens since the last emitted text plus
/// the few before them (a token's text can depend on its neighbours, e.g. a
/// leading space), so streaming stays linear in the output length.
#[derive(Debug, Default)]
pub struct IncrementalText {
    tokens: Vec<TokenId>,
    /// Start of the decoding window.
    prefix: usize,
    /// End of what has been emitted.
    read: usize,
}

impl IncrementalText {
    /// Appends `new` and returns the text they complete (possibly empty,
    /// when the last bytes are an unfinished character).
    pub fn push(&mut self, codec: &dyn TextCodec, new: &[TokenId]) -> Result<String, String> {
        self.tokens.extend_from_slice(new);
        let before = codec.decode(&self.tokens[self.prefix..self.read])?;
        let after = codec.decode(&self.tokens[self.prefix..])?;
        if after.ends_with('\u{FFFD}') || after.len() <= before.len() {
            return Ok(String::new());
        }
        // Normally `before` is a prefix of `after`; if merging changed the
        // window's earlier text, what was sent stays sent and only the tail
        // past its length goes out.
        let cut = (before.len()..=after.len())
            .find(|&i| after.is_char_boundary(i))
            .unwrap_or(after.len());
        let delta = after[cut..].to_string();
        self.advance();
        Ok(delta)
    }

    /// The text of the tokens not yet sent, even an unfinished character
    /// (as U+FFFD): the end of the output.
    pub fn flush(&mut self, codec: &dyn TextCodec) -> Result<String, String> {
        let before = codec.decode(&self.tokens[self.prefix..self.read])?;
        let after = codec.decode(&self.tokens[self.prefix..])?;
        self.advance();
        let cut = (before.len()..=after.len())
            .find(|&i| after.is_char_boundary(i))
            .unwrap_or(after.len());
        Ok(after.get(cut..).unwrap_or_default().to_string())
    }

    /// All tokens pushed so far.
    pub fn tokens(&self) -> &[TokenId] {
        &self.tokens
    }

    fn advance(&mut self) {
        self.prefix = self.read;
        self.read = self.tokens.len();
    }
}

/// A codec for tests: token i is the i-th byte of a fixed UTF-8 string;
/// decoding is lossy like a byte-level BPE's.
#[cfg(test)]
pub(crate) struct Bytes(pub(crate) Vec<u8>);

#[cfg(test)]
impl TextCodec for Bytes {
    fn encode(&self, _: &str) -> Result<Vec<TokenId>, String> {
        Ok(Vec::new())
    }

    fn decode(&self, tokens: &[TokenId]) -> Result<String, String> {
        let bytes: Vec<u8> = tokens.iter().map(|&t| self.0[t as usize]).collect();
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_concatenate_to_the_whole_text_and_hold_back_partial_characters() {
        let text = "héllo → wörld";
        let codec = Bytes(text.as_bytes().to_vec());
        let mut stream = IncrementalText::default();
        let mut out = String::new();
        for i in 0..text.len() {
            let delta = stream.push(&codec, &[i as TokenId]).unwrap();
            assert!(!delta.contains('\u{FFFD}'), "no half character is sent");
            out.push_str(&delta);
        }
        assert_eq!(out, text);
        assert_eq!(stream.tokens().len(), text.len());
    }
}
