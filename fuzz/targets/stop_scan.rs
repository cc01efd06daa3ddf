//! Stop strings over random deltas: what is sent is exactly the text
//! before the stop string that ends first (the longest of those ending
//! there; all the text when none occurs), however the text is split.
//!
//! Input: up to four stop strings separated by 0xFF, then 0xFE, then the
//! text with 0xFD marking the splits between deltas.

use dsi_server::stop::StopScan;

pub fn run(data: &[u8]) {
    let (head, body) = match data.iter().position(|&b| b == 0xFE) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&[][..], data),
    };
    let stops: Vec<String> = head
        .split(|&b| b == 0xFF)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .filter(|s| !s.is_empty())
        .take(4)
        .collect();
    let deltas: Vec<String> = body
        .split(|&b| b == 0xFD)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    let text: String = deltas.concat();
    let first = stops
        .iter()
        .filter_map(|s| text.find(s.as_str()).map(|at| (at + s.len(), at)))
        .min()
        .map(|(_, at)| at);
    let mut scan = StopScan::new(stops);
    let mut sent = String::new();
    let mut hit = false;
    for delta in &deltas {
        let (out, found) = scan.push(delta);
        sent.push_str(&out);
        if found {
            hit = true;
            break;
        }
    }
    if !hit {
        sent.push_str(&scan.flush());
    }
    assert_eq!(
        hit,
        first.is_some(),
        "a stop string is found exactly when the text has one"
    );
    assert_eq!(
        sent,
        text[..first.unwrap_or(text.len())],
        "the text before the first stop string"
    );
}
