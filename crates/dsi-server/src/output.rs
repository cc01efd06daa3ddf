//! From verified tokens to what a client receives: text deltas, each with
//! the tokens whose text it completes (and their log probabilities), stop
//! strings cutting text and tokens at the same place.
//!
//! Tokens are decoded one at a time, so each has a span of the output text
//! (empty while its bytes are an unfinished character, which the next
//! token completes). A token is released with the delta that releases the
//! end of its span; a stop string at byte `S` keeps exactly the tokens
//! whose text starts before `S`, which is what `completion_tokens` counts.

use crate::codec::{IncrementalText, TextCodec};
use crate::stop::StopScan;
use dsi_core::TokenId;
use dsi_core::sampling::TokenLogprobs;
use std::collections::VecDeque;

/// One released token.
#[derive(Debug, Clone, PartialEq)]
pub struct OutToken {
    /// Its id.
    pub id: TokenId,
    /// Characters of output text before its own.
    pub text_offset: usize,
    /// Its log probability and alternatives, when asked for.
    pub logprobs: Option<TokenLogprobs>,
}

/// Text safe to send and the tokens it completes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Released {
    /// New text.
    pub text: String,
    /// The tokens whose text is now all sent.
    pub tokens: Vec<OutToken>,
}

impl Released {
    /// True when there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty() && self.tokens.is_empty()
    }
}

#[derive(Debug)]
struct Span {
    token: OutToken,
    /// Byte range of its text in the decoded output.
    start: usize,
    end: usize,
}

/// The output of one generation as it streams.
#[derive(Debug, Default)]
pub struct Output {
    text: IncrementalText,
    scan: StopScan,
    pending: VecDeque<Span>,
    /// Bytes and characters decoded so far.
    decoded: usize,
    decoded_chars: usize,
    /// Bytes released so far.
    released: usize,
    kept: usize,
    stopped: bool,
}

impl Output {
    /// An output cut at the first of `stops`.
    pub fn new(stops: Vec<String>) -> Self {
        Self {
            scan: StopScan::new(stops),
            ..Self::default()
        }
    }

    /// Adds verified tokens (with their log probabilities when the request
    /// asked for them); returns what may be sent now. Nothing more is taken
    /// once a stop string was found.
    pub fn push(
        &mut self,
        codec: &dyn TextCodec,
        tokens: &[TokenId],
        logprobs: Option<&[TokenLogprobs]>,
    ) -> Result<Released, String> {
        if self.stopped {
            return Ok(Released::default());
        }
        let mut delta = String::new();
        for (i, &id) in tokens.iter().enumerate() {
            let piece = self.text.push(codec, &[id])?;
            self.add_span(id, logprobs.and_then(|l| l.get(i)).cloned(), &piece);
            delta.push_str(&piece);
        }
        Ok(self.scan_delta(&delta))
    }

    /// The end of the generation: an unfinished trailing character is sent
    /// as U+FFFD, held-back text and every remaining token go out.
    pub fn finish(&mut self, codec: &dyn TextCodec) -> Result<Released, String> {
        if self.stopped {
            return Ok(Released::default());
        }
        let tail = self.text.flush(codec)?;
        if let Some(last) = self.pending.back_mut() {
            last.end += tail.len();
        }
        self.decoded += tail.len();
        let mut released = self.scan_delta(&tail);
        if !self.stopped {
            let rest = self.scan.flush();
            self.released += rest.len();
            released.text.push_str(&rest);
            let all = self.pending.len();
            released.tokens.extend(self.take_tokens(all));
        }
        Ok(released)
    }

    /// True once a stop string ended the output.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Tokens released so far: after a stop string, those before it.
    pub fn completion_tokens(&self) -> usize {
        self.kept
    }

    /// Tokens pushed so far (including any past a stop string).
    pub fn generated_tokens(&self) -> usize {
        self.text.tokens().len()
    }

    fn add_span(&mut self, id: TokenId, logprobs: Option<TokenLogprobs>, text: &str) {
        let start = self.decoded;
        self.pending.push_back(Span {
            token: OutToken {
                id,
                text_offset: self.decoded_chars,
                logprobs,
            },
            start,
            end: start + text.len(),
        });
        self.decoded += text.len();
        self.decoded_chars += text.chars().count();
    }

    fn scan_delta(&mut self, delta: &str) -> Released {
        let (text, hit) = self.scan.push(delta);
        self.released += text.len();
        let count = if hit {
            self.stopped = true;
            let stop_at = self.released;
            self.pending.iter().filter(|s| s.start < stop_at).count()
        } else {
            let released = self.released;
            self.pending
                .iter()
                .take_while(|s| s.end <= released && (s.start < s.end || s.start < released))
                .count()
        };
        let tokens = self.take_tokens(count);
        if hit {
            self.pending.clear();
        }
        Released { text, tokens }
    }

    fn take_tokens(&mut self, count: usize) -> Vec<OutToken> {
        self.kept += count;
        self.pending.drain(..count).map(|s| s.token).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Bytes;

    fn ids(range: std::ops::Range<usize>) -> Vec<TokenId> {
        range.map(|i| i as TokenId).collect()
    }

    #[test]
    fn a_stop_string_cuts_text_and_tokens_at_the_same_place() {
        let codec = Bytes(b"ab\n\ncd".to_vec());
        let mut out = Output::new(vec!["\n\n".into()]);
        let first = out.push(&codec, &ids(0..3), None).unwrap();
        assert_eq!(first.text, "ab");
        assert_eq!(
            first.tokens.len(),
            2,
            "the newline may start the stop string"
        );
        let second = out.push(&codec, &ids(3..6), None).unwrap();
        assert_eq!(second.text, "");
        assert!(second.tokens.is_empty());
        assert!(out.stopped());
        assert_eq!(out.completion_tokens(), 2, "tokens up to the stop string");
        assert_eq!(out.generated_tokens(), 6);
    }

    #[test]
    fn a_trailing_partial_character_is_flushed_at_the_end() {
        let codec = Bytes("aé".as_bytes()[..2].to_vec());
        let mut out = Output::new(Vec::new());
        let sent = out.push(&codec, &ids(0..2), None).unwrap();
        assert_eq!(sent.text, "a");
        let end = out.finish(&codec).unwrap();
        assert_eq!(end.text, "\u{FFFD}");
        assert_eq!(out.completion_tokens(), 2);
    }

    #[test]
    fn tokens_carry_offsets_and_log_probabilities() {
        let codec = Bytes("hé!".as_bytes().to_vec());
        let lp = |t| TokenLogprobs {
            token: t,
            logprob: -1.0,
            top: Vec::new(),
        };
        let mut out = Output::new(Vec::new());
        let logprobs: Vec<_> = (0..4).map(lp).collect();
        let sent = out.push(&codec, &ids(0..4), Some(&logprobs)).unwrap();
        assert_eq!(sent.text, "hé!");
        let offsets: Vec<usize> = sent.tokens.iter().map(|t| t.text_offset).collect();
        assert_eq!(offsets, vec![0, 1, 1, 2], "é's two bytes share its offset");
        assert!(sent.tokens.iter().all(|t| t.logprobs.is_some()));
    }

    #[test]
    fn a_long_stop_string_holds_back_only_what_could_start_it() {
        let codec = Bytes(b"hello world, and more".to_vec());
        let long = "x".repeat(200);
        let mut out = Output::new(vec![long, "wor!".into()]);
        let sent = out.push(&codec, &ids(0..8), None).unwrap();
        assert_eq!(sent.text, "hello ", "'wo' could start a stop string");
        let sent = out.push(&codec, &ids(8..21), None).unwrap();
        assert_eq!(sent.text, "world, and more");
        assert_eq!(out.completion_tokens(), 21);
    }
}
