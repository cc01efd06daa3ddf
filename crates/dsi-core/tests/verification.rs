//! The verification rules on toy language models whose answers are known:
//! speculative sampling reproduces the target's distribution, coupled
//! sampling reproduces seeded non-SI sampling token for token, and a
//! deliberately wrong rule fails the same checks (so the checks have power).

use dsi_core::rng::{keyed_open01, keyed_u64};
use dsi_core::verify::{ProbTable, VerifyRule, coupled_sample, sample_inverse_cdf};
use dsi_core::{DraftChain, TokenId, Verdict};

const VOCAB: usize = 8;

/// A toy language model: a random next-token distribution per context, with
/// some zero entries. `mix` blends in a second model, so a drafter can be a
/// noisy copy of the target.
#[derive(Clone, Copy)]
struct ToyLm {
    seed: u64,
    noise_seed: u64,
    mix: f32,
}

impl ToyLm {
    fn target(seed: u64) -> Self {
        Self {
            seed,
            noise_seed: seed,
            mix: 0.0,
        }
    }

    fn drafter_of(target: ToyLm, noise_seed: u64, mix: f32) -> Self {
        Self {
            seed: target.seed,
            noise_seed,
            mix,
        }
    }

    fn probs(&self, context: &[TokenId]) -> Vec<f32> {
        let base = random_dist(self.seed, context);
        if self.mix == 0.0 {
            return base;
        }
        let noise = random_dist(self.noise_seed ^ 0xABCD, context);
        base.iter()
            .zip(&noise)
            .map(|(b, n)| (1.0 - self.mix) * b + self.mix * n)
            .collect()
    }
}

fn random_dist(seed: u64, context: &[TokenId]) -> Vec<f32> {
    let key = context
        .iter()
        .fold(seed, |h, &t| keyed_u64(h, t as u64, 17));
    let mut w: Vec<f32> = (0..VOCAB)
        .map(|i| {
            let u = keyed_open01(key, i as u64, 3);
            if u < 0.2 { 0.0 } else { (u * u) as f32 }
        })
        .collect();
    if w.iter().all(|&x| x == 0.0) {
        w[0] = 1.0;
    }
    let total: f32 = w.iter().sum();
    w.iter().map(|x| x / total).collect()
}

type Verifier = fn(&VerifyRule, &DraftChain, &ProbTable, &ProbTable) -> Verdict;

fn real_verifier(
    rule: &VerifyRule,
    drafts: &DraftChain,
    target: &ProbTable,
    q: &ProbTable,
) -> Verdict {
    rule.verify(drafts, target, Some(q))
        .expect("well-formed verification input")
}

/// Speculative decoding loop (SI): draft `k`, verify, append, until `len`
/// tokens follow the prompt. Returns the tokens and the drafts accepted.
fn speculative_decode(
    rule: VerifyRule,
    verifier: Verifier,
    target: ToyLm,
    drafter: ToyLm,
    prompt: &[TokenId],
    k: usize,
    len: usize,
) -> (Vec<TokenId>, usize) {
    let mut seq = prompt.to_vec();
    let mut accepted = 0;
    while seq.len() < prompt.len() + len {
        let start = seq.len();
        let mut ctx = seq.clone();
        let mut q_rows = Vec::new();
        for i in 0..k {
            let q = drafter.probs(&ctx);
            ctx.push(rule.draft_token(start + i, &q));
            q_rows.push(q);
        }
        let drafts = DraftChain::new(start, ctx[start..].to_vec());
        let p_rows: Vec<Vec<f32>> = (0..=k).map(|i| target.probs(&ctx[..start + i])).collect();
        let verdict = verifier(
            &rule,
            &drafts,
            &ProbTable::from_rows(&p_rows).expect("target rows are distributions"),
            &ProbTable::from_rows(&q_rows).expect("drafter rows are distributions"),
        );
        accepted += verdict.accepted;
        seq.extend(verdict.emitted(drafts.tokens()));
    }
    seq.truncate(prompt.len() + len);
    (seq[prompt.len()..].to_vec(), accepted)
}

/// Seeded non-SI sampling with the target alone.
fn nonsi_decode(rule: VerifyRule, target: ToyLm, prompt: &[TokenId], len: usize) -> Vec<TokenId> {
    let mut seq = prompt.to_vec();
    for _ in 0..len {
        let p = target.probs(&seq);
        seq.push(rule.target_token(seq.len(), &p));
    }
    seq[prompt.len()..].to_vec()
}

/// Total-variation distance between the empirical joint law of the first two
/// tokens over `trials` seeds and the target's exact joint law.
fn joint_tv(
    trials: u64,
    decode: impl Fn(u64) -> Vec<TokenId>,
    target: ToyLm,
    prompt: &[TokenId],
) -> f64 {
    let mut counts = vec![0u64; VOCAB * VOCAB];
    for seed in 0..trials {
        let out = decode(seed);
        counts[out[0] as usize * VOCAB + out[1] as usize] += 1;
    }
    let p1 = target.probs(prompt);
    let mut tv = 0.0;
    for t1 in 0..VOCAB {
        let mut ctx = prompt.to_vec();
        ctx.push(t1 as TokenId);
        let p2 = target.probs(&ctx);
        for t2 in 0..VOCAB {
            let exact = f64::from(p1[t1]) * f64::from(p2[t2]);
            let seen = counts[t1 * VOCAB + t2] as f64 / trials as f64;
            tv += (exact - seen).abs();
        }
    }
    tv / 2.0
}

/// Speculative sampling with the acceptance ratio upside down: q/p.
fn wrong_verifier(
    rule: &VerifyRule,
    drafts: &DraftChain,
    target: &ProbTable,
    q: &ProbTable,
) -> Verdict {
    let VerifyRule::Speculative { seed } = *rule else {
        unreachable!()
    };
    for (i, &x) in drafts.tokens().iter().enumerate() {
        let (p, qr) = (target.row(i), q.row(i));
        let pos = (drafts.start() + i) as u64;
        let ratio = f64::from(qr[x as usize]) / f64::from(p[x as usize]).max(1e-12);
        if keyed_open01(seed, pos, 99) >= ratio {
            let residual: Vec<f32> = p.iter().zip(qr).map(|(a, b)| (a - b).max(0.0)).collect();
            let next = if residual.iter().any(|&r| r > 0.0) {
                sample_inverse_cdf(&residual, keyed_open01(seed, pos, 98))
            } else {
                sample_inverse_cdf(p, keyed_open01(seed, pos, 98))
            };
            return Verdict {
                accepted: i,
                next_token: next,
                drafted: drafts.len(),
            };
        }
    }
    let next = sample_inverse_cdf(
        target.row(drafts.len()),
        keyed_open01(seed, drafts.end() as u64, 97),
    );
    Verdict {
        accepted: drafts.len(),
        next_token: next,
        drafted: drafts.len(),
    }
}

const TRIALS: u64 = 60_000;
/// Expected TV of 60k samples over 64 cells is about 0.01; a wrong rule
/// lands far above.
const TV_BOUND: f64 = 0.025;

#[test]
fn speculative_sampling_reproduces_the_target_distribution() {
    for (model, noise, k) in [(1, 2, 1), (3, 4, 2), (5, 6, 3)] {
        let target = ToyLm::target(model);
        let drafter = ToyLm::drafter_of(target, noise, 0.6);
        let prompt = [1, 2];
        let accepted = std::cell::Cell::new(0);
        let tv = joint_tv(
            TRIALS,
            |seed| {
                let rule = VerifyRule::Speculative { seed };
                let (out, acc) =
                    speculative_decode(rule, real_verifier, target, drafter, &prompt, k, 2);
                accepted.set(accepted.get() + acc);
                out
            },
            target,
            &prompt,
        );
        assert!(tv < TV_BOUND, "model {model} k {k}: TV {tv}");
        assert!(
            accepted.get() > TRIALS as usize / 4,
            "drafts were accepted: {}",
            accepted.get()
        );
    }
}

#[test]
fn a_wrong_acceptance_ratio_fails_the_distribution_check() {
    let target = ToyLm::target(1);
    let drafter = ToyLm::drafter_of(target, 2, 0.6);
    let prompt = [1, 2];
    let tv = joint_tv(
        TRIALS,
        |seed| {
            speculative_decode(
                VerifyRule::Speculative { seed },
                wrong_verifier,
                target,
                drafter,
                &prompt,
                2,
                2,
            )
            .0
        },
        target,
        &prompt,
    );
    assert!(tv > 2.0 * TV_BOUND, "the check must catch q/p: TV {tv}");
}

#[test]
fn coupled_sampling_emits_exactly_seeded_nonsi_tokens() {
    let mut accepted_total = 0;
    let mut rejected_somewhere = false;
    for model in 0..40u64 {
        let target = ToyLm::target(model);
        let drafter = ToyLm::drafter_of(target, model + 1000, 0.4);
        for seed in 0..10u64 {
            let rule = VerifyRule::Coupled { seed };
            let prompt = [model as TokenId % 8, 3];
            let expected = nonsi_decode(rule, target, &prompt, 24);
            for k in [1, 3, 8] {
                let (got, accepted) =
                    speculative_decode(rule, real_verifier, target, drafter, &prompt, k, 24);
                assert_eq!(got, expected, "model {model} seed {seed} k {k}");
                accepted_total += accepted;
                rejected_somewhere |= accepted < 24;
            }
        }
    }
    assert!(
        accepted_total > 0 && rejected_somewhere,
        "drafts were both accepted and rejected"
    );
}

#[test]
fn coupled_sampling_follows_the_target_distribution() {
    let target = ToyLm::target(9);
    let drafter = ToyLm::drafter_of(target, 10, 0.5);
    let prompt = [4];
    let tv = joint_tv(
        TRIALS,
        |seed| {
            speculative_decode(
                VerifyRule::Coupled { seed },
                real_verifier,
                target,
                drafter,
                &prompt,
                2,
                2,
            )
            .0
        },
        target,
        &prompt,
    );
    assert!(tv < TV_BOUND, "TV {tv}");
}

#[test]
fn emitting_the_drafters_coupled_draw_fails_the_distribution_check() {
    // A broken coupled rule that trusts the drafter: its draws follow q, not p.
    let target = ToyLm::target(9);
    let drafter = ToyLm::drafter_of(target, 10, 0.5);
    let prompt = [4];
    let tv = joint_tv(
        TRIALS,
        |seed| {
            let mut seq = prompt.to_vec();
            for _ in 0..2 {
                let q = drafter.probs(&seq);
                seq.push(coupled_sample(seed, seq.len(), &q));
            }
            seq[1..].to_vec()
        },
        target,
        &prompt,
    );
    assert!(tv > 2.0 * TV_BOUND, "TV {tv}");
}

#[test]
fn greedy_speculation_equals_greedy_decoding() {
    for model in 0..20u64 {
        let target = ToyLm::target(model);
        let drafter = ToyLm::drafter_of(target, model + 7, 0.3);
        let prompt = [2, 5, 1];
        let expected = nonsi_decode(VerifyRule::Greedy, target, &prompt, 30);
        for k in [1, 3, 8] {
            let (got, _) = speculative_decode(
                VerifyRule::Greedy,
                real_verifier,
                target,
                drafter,
                &prompt,
                k,
                30,
            );
            assert_eq!(got, expected, "model {model} k {k}");
        }
    }
}

#[test]
fn verify_rejects_malformed_input() {
    let rule = VerifyRule::Greedy;
    let p = ProbTable::from_rows(&[[0.5f32, 0.5]; 2]).unwrap();
    assert!(
        rule.verify(&DraftChain::new(0, vec![0, 1]), &p, None)
            .is_err(),
        "too few target rows"
    );
    assert!(
        rule.verify(&DraftChain::new(0, vec![5]), &p, None).is_err(),
        "token out of vocabulary"
    );
    let spec = VerifyRule::Speculative { seed: 1 };
    assert!(
        spec.verify(&DraftChain::new(0, vec![1]), &p, None).is_err(),
        "missing drafter rows"
    );
    let q3 = ProbTable::from_rows(&[[0.2f32, 0.3, 0.5]]).unwrap();
    assert!(
        spec.verify(&DraftChain::new(0, vec![1]), &p, Some(&q3))
            .is_err(),
        "vocabulary mismatch"
    );
}
