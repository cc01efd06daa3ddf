//! Incremental detokenization with random splits: the server's output
//! stream (`Output`) fed token ids in random chunks sends, in all, the
//! text of the whole sequence (when it is valid UTF-8) and counts every
//! token once, whatever the chunks.

use super::common::{Codec, token_ids, tokenizer};
use dsi_server::TextCodec;
use dsi_server::output::Output;

pub fn run(data: &[u8]) {
    let Some((&cuts, rest)) = data.split_first() else {
        return;
    };
    let vocab = tokenizer().vocab_size();
    let ids: Vec<_> = token_ids(rest, vocab)
        .into_iter()
        .filter(|&t| (t as usize) < vocab)
        .collect();
    let mut output = Output::new(Vec::new());
    let mut sent = String::new();
    let mut at = 0;
    let mut step = usize::from(cuts % 7) + 1;
    while at < ids.len() {
        let end = (at + step).min(ids.len());
        let released = output
            .push(&Codec, &ids[at..end], None)
            .expect("bundled ids decode");
        sent.push_str(&released.text);
        at = end;
        step = (step * 5 + usize::from(cuts)) % 9 + 1;
    }
    sent.push_str(&output.finish(&Codec).expect("the end decodes").text);
    assert_eq!(
        output.completion_tokens(),
        ids.len(),
        "every token counted once"
    );
    let whole = Codec.decode(&ids).expect("bundled ids decode");
    if !whole.contains('\u{FFFD}') {
        assert_eq!(sent, whole, "the stream's text is the sequence's text");
    }
}
