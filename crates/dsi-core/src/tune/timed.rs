//! The paper's simulator extended with measured costs: one generation under
//! a [`Policy`], run through the real state machine on a clock, with job
//! durations from a [`CostProfile`] and jobs that share compute slowed down
//! as the profile measured (processor sharing).
//!
//! The paper's simulator charges a fixed `1` per target forward and `c` per
//! drafter forward and assumes servers never compete; here a verification
//! of `k + 1` rows costs what it measured, and each running job progresses
//! at the rate the number of jobs running beside it allows. Driving the
//! [`Machine`] itself (LIFO queue, preemption, the epoch's non-SI job,
//! early bonus) keeps the prediction honest about what the scheduler does.

use super::CostProfile;
use crate::TokenId;
use crate::Verdict;
use crate::rng::keyed_open01;
use crate::sampling::Decoding;
use crate::schedule::{Command, Drafted, JobId, Machine, Plan, Policy, WorkerRef};

/// The target's token at every position: drafts are right or wrong against it.
const RIGHT: TokenId = 0;
const WRONG: TokenId = 1;

/// A job in flight: how much of its work (milliseconds at full speed) is
/// left, and what it reports when done.
struct Running {
    job: JobId,
    left_ms: f64,
    report: Report,
}

enum Report {
    Drafted(Vec<Drafted>),
    Verified(Verdict),
}

/// Mean milliseconds per token of generating `tokens` tokens under `policy`
/// when each draft is accepted with probability `a`, independently (the
/// paper's model), over `seeds` runs with the given seeds. `servers` bounds
/// the policy's servers (the pool's targets).
pub fn ms_per_token(
    profile: &CostProfile,
    policy: Policy,
    a: f64,
    tokens: usize,
    seeds: &[u64],
) -> f64 {
    let total: f64 = seeds
        .iter()
        .map(|&seed| run(profile, policy, a, tokens, seed))
        .sum();
    total / seeds.len().max(1) as f64
}

/// One generation; its time in milliseconds per token.
fn run(profile: &CostProfile, policy: Policy, a: f64, tokens: usize, seed: u64) -> f64 {
    let policy = policy.normalized();
    let plan = Plan {
        mode: policy.mode,
        k: policy.k.max(1),
        servers: policy.servers,
        max_new_tokens: tokens,
        eos: Vec::new(),
        decoding: Decoding::greedy(),
        early_bonus: true,
    };
    let Ok(mut machine) = Machine::new(plan, vec![RIGHT]) else {
        return f64::INFINITY;
    };
    // Whether the n-th draft at a position is right is drawn keyed by
    // (position, n): every policy meets the same drafts, so policies are
    // compared on the same luck, not each on its own.
    let mut drafted_at: Vec<u64> = vec![0; tokens + 2];
    let mut running: Vec<Running> = Vec::new();
    let mut drafter_busy = false;
    let mut now = 0.0;
    machine.start();
    loop {
        for command in machine.take_commands() {
            match command {
                Command::Draft {
                    job,
                    context,
                    count,
                } => {
                    let drafts = (context.len()..context.len() + count)
                        .map(|position| {
                            let n = &mut drafted_at[position.min(tokens + 1)];
                            *n += 1;
                            let right = keyed_open01(seed, position as u64, *n) < a;
                            Drafted {
                                token: if right { RIGHT } else { WRONG },
                                probs: None,
                            }
                        })
                        .collect();
                    drafter_busy = true;
                    running.push(Running {
                        job,
                        left_ms: profile.drafter_ms(count),
                        report: Report::Drafted(drafts),
                    });
                }
                Command::Verify {
                    job,
                    context,
                    drafts,
                    ..
                } => {
                    let chain = &context[context.len() - drafts..];
                    let accepted = chain.iter().take_while(|&&t| t == RIGHT).count();
                    running.push(Running {
                        job,
                        left_ms: profile.target_ms(drafts + 1),
                        report: Report::Verified(Verdict {
                            accepted,
                            next_token: RIGHT,
                            drafted: drafts,
                        }),
                    });
                }
                // A cancelled job stops at once and frees its worker.
                Command::Cancel { job, worker } => {
                    running.retain(|r| r.job != job);
                    if worker == WorkerRef::Drafter {
                        drafter_busy = false;
                    }
                    machine.on_cancelled(job, true);
                }
            }
        }
        if machine.stop_reason().is_some() {
            break;
        }
        if running.is_empty() {
            // Nothing in flight and not finished: the machine is stuck,
            // which would be a bug; do not spin.
            return f64::INFINITY;
        }
        // Rates under processor sharing, then the first job to finish.
        let targets = running
            .iter()
            .filter(|r| matches!(r.report, Report::Verified(_)))
            .count();
        let rate = |r: &Running| match r.report {
            Report::Verified(_) => 1.0 / profile.target_factor(targets, drafter_busy),
            Report::Drafted(_) => 1.0 / profile.drafter_factor(targets),
        };
        let (next, dt) = running
            .iter()
            .enumerate()
            .map(|(i, r)| (i, r.left_ms / rate(r)))
            .min_by(|x, y| x.1.total_cmp(&y.1))
            .expect("running is not empty");
        let rates: Vec<f64> = running.iter().map(rate).collect();
        for (r, rate) in running.iter_mut().zip(rates) {
            r.left_ms -= dt * rate;
        }
        now += dt;
        let done = running.swap_remove(next);
        match done.report {
            Report::Drafted(drafts) => {
                drafter_busy = false;
                machine.on_drafted(done.job, drafts);
            }
            Report::Verified(verdict) => machine.on_verified(done.job, verdict),
        }
    }
    now / machine.output().len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::Mode;

    fn policy(mode: Mode, k: usize, servers: usize) -> Policy {
        Policy { mode, k, servers }
    }

    #[test]
    fn nonsi_costs_one_target_forward_per_token() {
        let p = CostProfile::independent(vec![10.0, 12.0], 1.0, 1);
        let t = ms_per_token(&p, policy(Mode::NonSi, 0, 1), 0.5, 50, &[1]);
        assert!((t - 10.0).abs() < 1e-9, "{t}");
    }

    #[test]
    fn si_matches_its_closed_form() {
        // Per iteration k drafter steps plus one verification of k + 1 rows;
        // (1 - a^(k+1)) / (1 - a) tokens per iteration in expectation.
        let p = CostProfile::independent(vec![10.0, 10.0, 10.0, 10.0, 10.0], 1.0, 1);
        let (a, k) = (0.7f64, 4);
        let per_iteration = k as f64 * 1.0 + 10.0;
        let tokens = (1.0 - a.powi(k as i32 + 1)) / (1.0 - a);
        let expected = per_iteration / tokens;
        let seeds: Vec<u64> = (0..40).collect();
        let t = ms_per_token(&p, policy(Mode::Si, k, 1), a, 400, &seeds);
        assert!((t / expected - 1.0).abs() < 0.05, "{t} vs {expected}");
    }

    #[test]
    fn dsi_on_independent_servers_beats_si_and_nonsi() {
        let p = CostProfile::independent(vec![100.0; 11], 3.3, 7);
        let seeds = [1, 2, 3, 4];
        let nonsi = ms_per_token(&p, policy(Mode::NonSi, 0, 1), 0.8, 100, &seeds);
        let si = ms_per_token(&p, policy(Mode::Si, 5, 1), 0.8, 100, &seeds);
        let dsi = ms_per_token(&p, policy(Mode::Dsi, 5, 7), 0.8, 100, &seeds);
        assert!(dsi < si && si < nonsi, "dsi {dsi} si {si} nonsi {nonsi}");
    }

    #[test]
    fn shared_compute_makes_concurrency_cost() {
        // Two servers on one processor: each runs at half speed beside the
        // other, the drafter slows them too.
        let mut p = CostProfile::independent(vec![10.0; 6], 2.0, 2);
        let free = ms_per_token(&p, policy(Mode::Dsi, 5, 2), 0.5, 100, &[7]);
        p.target_slowdown = vec![1.0, 2.0];
        p.target_slowdown_with_drafter = vec![1.5, 2.5];
        p.drafter_slowdown = vec![1.0, 2.0, 3.0];
        let shared = ms_per_token(&p, policy(Mode::Dsi, 5, 2), 0.5, 100, &[7]);
        assert!(shared > free * 1.2, "shared {shared} free {free}");
    }
}
