//! Stop strings over streamed text: text is released only once no stop
//! string can begin in it, so a stop string split across tokens is still
//! caught and never sent. What is held back is only the longest tail that
//! begins some stop string, so a long stop string does not stall a stream.

/// Scans text deltas for stop strings.
#[derive(Debug, Default)]
pub struct StopScan {
    stops: Vec<String>,
    pending: String,
}

impl StopScan {
    /// A scan for `stops` (none: everything passes at once).
    pub fn new(stops: Vec<String>) -> Self {
        Self {
            stops,
            pending: String::new(),
        }
    }

    /// Bytes at the end of the pending text that are the beginning of a
    /// stop string.
    fn hold(&self) -> usize {
        self.stops
            .iter()
            .filter_map(|stop| {
                (1..stop.len())
                    .rev()
                    .filter(|&n| stop.is_char_boundary(n))
                    .find(|&n| self.pending.ends_with(&stop[..n]))
            })
            .max()
            .unwrap_or(0)
    }

    /// Adds `delta`; returns the text safe to send and whether a stop
    /// string was found (the text before it is all that is sent).
    ///
    /// The stop string that ends first wins (the longest of those ending at
    /// the same place): the one a generation fed a character at a time
    /// would meet first, so the cut does not depend on how the text was
    /// split into deltas (non-SI's one token per update, DSI's several).
    pub fn push(&mut self, delta: &str) -> (String, bool) {
        self.pending.push_str(delta);
        if let Some((_, at)) = self
            .stops
            .iter()
            .filter_map(|s| self.pending.find(s.as_str()).map(|at| (at + s.len(), at)))
            .min()
        {
            let out = self.pending[..at].to_string();
            self.pending.clear();
            return (out, true);
        }
        let keep = self.pending.len() - self.hold();
        let out = self.pending[..keep].to_string();
        self.pending.drain(..keep);
        (out, false)
    }

    /// What is held back, at the end of the generation.
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_string_split_across_deltas_is_caught_and_not_sent() {
        let mut scan = StopScan::new(vec!["\n\n".into(), "END".into()]);
        let mut sent = String::new();
        let mut stopped = false;
        for delta in ["def f():", " return 1", "\n", "\nmore"] {
            let (out, hit) = scan.push(delta);
            sent.push_str(&out);
            if hit {
                stopped = true;
                break;
            }
        }
        assert!(stopped);
        assert_eq!(sent, "def f(): return 1");
    }

    /// A fuzzer's finding: with stops "b" and "abc", text "ab" then "c"
    /// stops at "b" (it ends first); "abc" in one delta must too.
    #[test]
    fn the_stop_string_that_ends_first_wins_however_the_text_is_split() {
        let stops = || vec!["abc".to_string(), "b".to_string()];
        let mut split = StopScan::new(stops());
        assert_eq!(split.push("xa"), ("x".to_string(), false));
        assert_eq!(split.push("bc"), ("a".to_string(), true));
        let mut whole = StopScan::new(stops());
        assert_eq!(whole.push("xabc"), ("xa".to_string(), true));
    }

    #[test]
    fn without_a_match_everything_is_sent() {
        let mut scan = StopScan::new(vec!["xyz".into()]);
        let (a, _) = scan.push("héllo x");
        let b = scan.flush();
        assert_eq!(format!("{a}{b}"), "héllo x");
        let mut none = StopScan::new(Vec::new());
        assert_eq!(none.push("abc"), ("abc".to_string(), false));
    }
}
