//! Greedy verification: accept while the draft is the target's argmax.

use crate::{Error, Result, TokenId, Verdict};

/// The most likely token; ties go to the lowest id so every backend agrees.
pub fn argmax(row: &[f32]) -> TokenId {
    let mut best = 0;
    for (i, &p) in row.iter().enumerate() {
        if p > row[best] {
            best = i;
        }
    }
    best as TokenId
}

/// Verifies `drafts` against the target's greedy choice at each of the
/// `drafts.len() + 1` positions. Needs only the argmax tokens, which is all a
/// greedy worker sends back.
pub fn verify_greedy(drafts: &[TokenId], target_choices: &[TokenId]) -> Result<Verdict> {
    if target_choices.len() != drafts.len() + 1 {
        return Err(Error::ShapeMismatch {
            what: "target choices (one per draft plus the bonus position)",
            expected: drafts.len() + 1,
            found: target_choices.len(),
        });
    }
    let accepted = drafts
        .iter()
        .zip(target_choices)
        .take_while(|(draft, target)| draft == target)
        .count();
    Ok(Verdict {
        accepted,
        next_token: target_choices[accepted],
        drafted: drafts.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_match_takes_the_bonus() {
        let v = verify_greedy(&[3, 1, 4], &[3, 1, 4, 1]).unwrap();
        assert_eq!((v.accepted, v.next_token), (3, 1));
        assert!(v.all_accepted());
        assert_eq!(v.emitted(&[3, 1, 4]), vec![3, 1, 4, 1]);
    }

    #[test]
    fn early_mismatch_takes_the_correction() {
        let v = verify_greedy(&[3, 9, 4], &[3, 1, 4, 1]).unwrap();
        assert_eq!((v.accepted, v.next_token), (1, 1));
        assert!(!v.all_accepted());
        assert_eq!(v.emitted(&[3, 9, 4]), vec![3, 1]);
    }

    #[test]
    fn no_drafts_is_a_plain_target_step() {
        let v = verify_greedy(&[], &[7]).unwrap();
        assert_eq!((v.accepted, v.next_token), (0, 7));
    }

    #[test]
    fn wrong_length_is_an_error() {
        assert!(verify_greedy(&[1, 2], &[1, 2]).is_err());
    }

    #[test]
    fn argmax_breaks_ties_low() {
        assert_eq!(argmax(&[0.1, 0.4, 0.4, 0.1]), 1);
    }
}
