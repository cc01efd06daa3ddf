//! The DSI, SI and non-SI state machine driven by scripted and randomized
//! event orders: job order, LIFO, preemption, the epoch-start job, stale
//! reports, faults, and losslessness under every interleaving.

use dsi_core::TokenId;
use dsi_core::Verdict;
use dsi_core::rng::SplitMix64;
use dsi_core::sampling::Decoding;
use dsi_core::schedule::{
    Command, Drafted, JobId, Machine, Mode, Plan, Policy, StopReason, WorkerRef,
};
use dsi_core::verify::verify_greedy;
use std::collections::BTreeMap;

fn plan(mode: Mode, k: usize, servers: usize, max_new_tokens: usize) -> Plan {
    Plan {
        mode,
        k,
        servers,
        max_new_tokens,
        eos: Vec::new(),
        decoding: Decoding::greedy(),
        early_bonus: true,
    }
}

fn drafted(tokens: &[TokenId]) -> Vec<Drafted> {
    tokens
        .iter()
        .map(|&token| Drafted { token, probs: None })
        .collect()
}

fn verdict(accepted: usize, next_token: TokenId, drafted: usize) -> Verdict {
    Verdict {
        accepted,
        next_token,
        drafted,
    }
}

/// Splits commands into (verify jobs by worker, draft jobs, cancels).
#[derive(Debug, Default)]
struct Issued {
    verify: Vec<(JobId, usize, Vec<TokenId>, usize)>,
    draft: Vec<(JobId, Vec<TokenId>, usize)>,
    cancel: Vec<JobId>,
}

fn issued(machine: &mut Machine) -> Issued {
    let mut out = Issued::default();
    for command in machine.take_commands() {
        match command {
            Command::Verify {
                job,
                worker,
                context,
                drafts,
                ..
            } => out.verify.push((job, worker, context, drafts)),
            Command::Draft {
                job,
                context,
                count,
            } => out.draft.push((job, context, count)),
            Command::Cancel { job, .. } => out.cancel.push(job),
        }
    }
    out
}

#[test]
fn nonsi_is_one_draftless_job_at_a_time() {
    let mut m = Machine::new(plan(Mode::NonSi, 0, 2, 3), vec![5]).unwrap();
    m.start();
    for expected in [7, 8, 9] {
        let c = issued(&mut m);
        assert!(c.draft.is_empty());
        assert_eq!(c.verify.len(), 1, "one job at a time");
        let (job, _, context, drafts) = c.verify[0].clone();
        assert_eq!(drafts, 0);
        assert_eq!(context.len(), m.output().len() + 1);
        m.on_verified(job, verdict(0, expected, 0));
    }
    assert_eq!(m.output(), &[7, 8, 9]);
    assert_eq!(m.stop_reason(), Some(&StopReason::MaxTokens));
    assert!(issued(&mut m).verify.is_empty());
}

#[test]
fn dsi_starts_an_epoch_job_and_drafts_at_once() {
    let mut m = Machine::new(plan(Mode::Dsi, 3, 2, 20), vec![1, 2]).unwrap();
    m.start();
    let c = issued(&mut m);
    assert_eq!(c.verify.len(), 1, "the epoch-start job");
    assert_eq!(c.verify[0].3, 0, "it has no drafts");
    assert_eq!(c.verify[0].2, vec![1, 2], "it runs on the verified prefix");
    assert_eq!(c.draft.len(), 1);
    assert_eq!(c.draft[0].2, 3, "the drafter drafts k tokens");

    // The drafter delivers: a job for the whole chain goes to the free
    // server, and the drafter goes on without waiting.
    m.on_drafted(c.draft[0].0, drafted(&[10, 11, 12]));
    let c2 = issued(&mut m);
    assert_eq!(c2.verify.len(), 1);
    assert_eq!(c2.verify[0].1, 1, "the busy server is skipped");
    assert_eq!(c2.verify[0].2, vec![1, 2, 10, 11, 12]);
    assert_eq!(c2.verify[0].3, 3);
    assert_eq!(c2.draft.len(), 1, "the drafter never waits");
    assert_eq!(c2.draft[0].1, vec![1, 2, 10, 11, 12]);
}

#[test]
fn queued_jobs_run_newest_first_and_stale_ones_are_dropped() {
    // One server: the epoch job occupies it while two chains queue up.
    let mut m = Machine::new(plan(Mode::Dsi, 2, 1, 50), vec![1]).unwrap();
    m.start();
    let c = issued(&mut m);
    let epoch_job = c.verify[0].0;
    m.on_drafted(c.draft[0].0, drafted(&[10, 11]));
    let c = issued(&mut m);
    assert!(
        c.verify.is_empty(),
        "the only server is busy: the job queues"
    );
    m.on_drafted(c.draft[0].0, drafted(&[12, 13]));
    let c = issued(&mut m);
    assert!(c.verify.is_empty());
    let next_draft = c.draft[0].0;

    // The epoch job confirms the first draft; the newest chain runs next.
    m.on_verified(epoch_job, verdict(0, 10, 0));
    assert_eq!(m.output(), &[10]);
    let c = issued(&mut m);
    assert_eq!(c.verify.len(), 1);
    let (newest, _, context, drafts) = c.verify[0].clone();
    assert_eq!(context, vec![1, 10, 11, 12, 13], "LIFO: the longest chain");
    assert_eq!(drafts, 3, "rebased on the grown verified prefix");

    // It accepts everything; the older queued chain reveals nothing new and
    // is dropped when the server frees up.
    m.on_drafted(next_draft, drafted(&[14, 15]));
    issued(&mut m);
    m.on_verified(newest, verdict(3, 14, 3));
    assert_eq!(m.output(), &[10, 11, 12, 13, 14]);
    assert!(m.counters().jobs_dropped >= 1, "{:?}", m.counters());
    let c = issued(&mut m);
    assert_eq!(c.verify.len(), 1);
    assert_eq!(c.verify[0].2, vec![1, 10, 11, 12, 13, 14, 15]);
}

#[test]
fn a_rejection_preempts_every_job_of_the_epoch() {
    let mut m = Machine::new(plan(Mode::Dsi, 2, 3, 50), vec![1]).unwrap();
    m.start();
    let c = issued(&mut m);
    let epoch_job = c.verify[0].0;
    m.on_drafted(c.draft[0].0, drafted(&[10, 11]));
    let c = issued(&mut m);
    let first_chain = c.verify[0].0;
    m.on_drafted(c.draft[0].0, drafted(&[12, 13]));
    let c = issued(&mut m);
    let second_chain = c.verify[0].0;
    let drafting = c.draft[0].0;

    // The first chain's second draft is wrong: the target says 99.
    m.on_verified(first_chain, verdict(1, 99, 2));
    assert_eq!(m.output(), &[10, 99]);
    let c = issued(&mut m);
    let mut cancelled = c.cancel.clone();
    cancelled.sort();
    let mut expected = vec![epoch_job, second_chain, drafting];
    expected.sort();
    assert_eq!(
        cancelled, expected,
        "every job built on the old chain stops"
    );
    assert_eq!(m.counters().jobs_preempted, 2);
    assert_eq!(m.counters().epochs, 2);
    // A new epoch: a draft-less job on the new prefix and a fresh draft.
    assert!(c.verify.iter().any(|v| v.3 == 0 && v.2 == vec![1, 10, 99]));
    assert_eq!(c.draft.len(), 1);
    assert_eq!(c.draft[0].1, vec![1, 10, 99]);

    // Late results of the dead epoch change nothing.
    m.on_verified(second_chain, verdict(3, 42, 3));
    m.on_drafted(drafting, drafted(&[7, 7]));
    assert_eq!(m.output(), &[10, 99]);
    assert!(m.counters().wasted_target_forwards >= 1);
}

#[test]
fn a_bonus_token_that_disagrees_with_the_next_draft_ends_the_epoch() {
    let mut m = Machine::new(plan(Mode::Dsi, 2, 2, 50), vec![1]).unwrap();
    m.start();
    let c = issued(&mut m);
    let epoch_job = c.verify[0].0;
    m.on_drafted(c.draft[0].0, drafted(&[10, 11]));
    let c = issued(&mut m);
    let chain_job = c.verify[0].0;
    m.on_drafted(c.draft[0].0, drafted(&[12, 13]));
    issued(&mut m);
    // The epoch job's token agrees with the first draft.
    m.on_verified(epoch_job, verdict(0, 10, 0));
    assert_eq!(m.output(), &[10]);
    assert_eq!(m.counters().epochs, 1);
    // Both drafts accepted, but the bonus (50) is not the next draft (12).
    m.on_verified(chain_job, verdict(2, 50, 2));
    assert_eq!(m.output(), &[10, 11, 50]);
    assert_eq!(m.counters().epochs, 2);
}

#[test]
fn without_early_bonus_the_rejection_waits_for_the_next_job() {
    // The paper's simulator ignores bonus tokens: a disagreeing bonus does
    // not end the epoch; the job that verifies the next draft does.
    let mut p = plan(Mode::Dsi, 2, 3, 50);
    p.early_bonus = false;
    let mut m = Machine::new(p, vec![1]).unwrap();
    m.start();
    let c = issued(&mut m);
    let epoch_job = c.verify[0].0;
    m.on_drafted(c.draft[0].0, drafted(&[10, 11]));
    let c = issued(&mut m);
    let first = c.verify[0].0;
    m.on_drafted(c.draft[0].0, drafted(&[12, 13]));
    let second = issued(&mut m).verify[0].0;
    m.on_verified(epoch_job, verdict(0, 10, 0));
    m.on_verified(first, verdict(2, 50, 2));
    assert_eq!(m.output(), &[10, 11], "the bonus is not used");
    assert_eq!(m.counters().epochs, 1);
    m.on_verified(second, verdict(2, 50, 4));
    assert_eq!(m.output(), &[10, 11, 50]);
    assert_eq!(m.counters().epochs, 2);
}

#[test]
fn si_drafts_then_waits_for_each_verification() {
    let mut m = Machine::new(plan(Mode::Si, 3, 4, 5), vec![1]).unwrap();
    m.start();
    let c = issued(&mut m);
    assert!(c.verify.is_empty(), "SI drafts first");
    m.on_drafted(c.draft[0].0, drafted(&[10, 11, 12]));
    let c = issued(&mut m);
    assert!(c.draft.is_empty(), "the drafter waits");
    assert_eq!(c.verify.len(), 1);
    assert_eq!(c.verify[0].1, 0, "SI uses one server");
    m.on_verified(c.verify[0].0, verdict(3, 13, 3));
    assert_eq!(m.output(), &[10, 11, 12, 13]);
    // One token left: only the target may produce it, with no drafts.
    let c = issued(&mut m);
    assert!(c.draft.is_empty());
    assert_eq!(c.verify.len(), 1);
    assert_eq!(c.verify[0].3, 0);
    m.on_verified(c.verify[0].0, verdict(0, 14, 0));
    assert_eq!(m.output(), &[10, 11, 12, 13, 14]);
    assert_eq!(m.stop_reason(), Some(&StopReason::MaxTokens));
}

#[test]
fn eos_stops_and_is_not_emitted() {
    let mut p = plan(Mode::NonSi, 0, 1, 10);
    p.eos = vec![2];
    let mut m = Machine::new(p, vec![1]).unwrap();
    m.start();
    let job = issued(&mut m).verify[0].0;
    m.on_verified(job, verdict(0, 7, 0));
    let job = issued(&mut m).verify[0].0;
    m.on_verified(job, verdict(0, 2, 0));
    assert_eq!(m.output(), &[7]);
    assert_eq!(m.stop_reason(), Some(&StopReason::Eos));
}

#[test]
fn a_failed_target_is_retired_and_its_job_runs_elsewhere() {
    let mut m = Machine::new(plan(Mode::NonSi, 0, 2, 5), vec![1]).unwrap();
    m.start();
    let (job, worker, _, _) = issued(&mut m).verify[0].clone();
    m.on_failed(job, "device lost".into());
    let c = issued(&mut m);
    assert_eq!(c.verify.len(), 1);
    assert_ne!(c.verify[0].1, worker, "the failed worker is retired");
    assert_eq!(m.counters().errors.len(), 1);
    assert!(m.counters().errors[0].contains("device lost"));
    // The last worker failing ends the request with the reason.
    m.on_failed(c.verify[0].0, "out of memory".into());
    assert!(
        matches!(m.stop_reason(), Some(StopReason::Failed(msg)) if msg.contains("out of memory"))
    );
}

#[test]
fn a_worker_silent_past_a_preempted_jobs_deadline_is_retired() {
    // Three servers; a rejection preempts the jobs on two of them.
    let mut m = Machine::new(plan(Mode::Dsi, 2, 3, 50), vec![1]).unwrap();
    m.start();
    let c = issued(&mut m);
    m.on_drafted(c.draft[0].0, drafted(&[10, 11]));
    let c = issued(&mut m);
    let first_chain = c.verify[0].0;
    m.on_drafted(c.draft[0].0, drafted(&[12, 13]));
    let c = issued(&mut m);
    let (stuck, hung, _, _) = c.verify[0].clone();
    let mut drafting = c.draft[0].0;
    m.on_verified(first_chain, verdict(1, 99, 2));
    let mut c = issued(&mut m);
    assert!(c.cancel.contains(&stuck));
    // The freed server gets new work before anyone knows it hangs.
    let mut behind = None;
    for _ in 0..20 {
        behind = c.verify.iter().find(|v| v.1 == hung).cloned();
        if behind.is_some() {
            break;
        }
        drafting = c.draft.first().map_or(drafting, |d| d.0);
        m.on_drafted(drafting, drafted(&[20, 21]));
        c = issued(&mut m);
    }
    let behind = behind.expect("the preempted job's server was given work again");
    // It never acknowledged the cancel: it is hung.
    m.on_timed_out(stuck, "no result within 200 ms".into());
    let c = issued(&mut m);
    assert_eq!(m.counters().errors.len(), 1, "{:?}", m.counters().errors);
    assert!(m.counters().errors[0].contains(&format!("target worker {hung}")));
    assert_eq!(
        c.cancel,
        vec![behind.0],
        "the job queued behind it is given up"
    );
    let rerun = c
        .verify
        .iter()
        .find(|v| v.2 == behind.2)
        .expect("its positions are verified again");
    assert_ne!(rerun.1, hung, "elsewhere");
    // Its late report changes nothing; it never gets work again.
    m.on_verified(behind.0, verdict(0, 5, 0));
    m.on_timed_out(behind.0, "no result within 200 ms".into());
    assert_eq!(m.counters().errors.len(), 1);
    for _ in 0..20 {
        let c = issued(&mut m);
        assert!(c.verify.iter().all(|v| v.1 != hung));
        let Some(d) = c.draft.first() else { break };
        m.on_drafted(d.0, drafted(&[30, 31]));
    }
}

#[test]
fn a_failed_drafter_falls_back_to_nonsi() {
    let mut m = Machine::new(plan(Mode::Dsi, 3, 2, 4), vec![1]).unwrap();
    m.start();
    let c = issued(&mut m);
    m.on_failed(c.draft[0].0, "drafter crashed".into());
    assert_eq!(m.mode(), Mode::NonSi);
    assert!(m.counters().fell_back_to_nonsi);
    // The epoch job still runs; non-SI continues from it.
    m.on_verified(c.verify[0].0, verdict(0, 7, 0));
    for token in [8, 9, 10] {
        let c = issued(&mut m);
        assert!(c.draft.is_empty());
        m.on_verified(c.verify[0].0, verdict(0, token, 0));
    }
    assert_eq!(m.output(), &[7, 8, 9, 10]);
}

#[test]
fn cancel_stops_everything() {
    let mut m = Machine::new(plan(Mode::Dsi, 3, 2, 40), vec![1]).unwrap();
    m.start();
    let c = issued(&mut m);
    m.cancel();
    let c2 = issued(&mut m);
    assert_eq!(c2.cancel.len(), c.verify.len() + c.draft.len());
    assert_eq!(m.stop_reason(), Some(&StopReason::Cancelled));
}

/// A toy world: the target's greedy token at position `p` is `truth(p)`;
/// the drafter is right with probability `hit`.
struct World {
    seed: u64,
    hit: f64,
}

impl World {
    fn truth(&self, position: usize) -> TokenId {
        (dsi_core::rng::keyed_u64(self.seed, position as u64, 1) % 50) as TokenId + 2
    }

    fn draft(&self, position: usize, salt: u64) -> TokenId {
        let u = dsi_core::rng::keyed_open01(self.seed, position as u64, 2 + salt);
        if u < self.hit {
            self.truth(position)
        } else {
            1
        }
    }
}

#[derive(Debug, Clone)]
enum Pending {
    Draft {
        context_len: usize,
        count: usize,
    },
    Verify {
        worker: usize,
        context: Vec<TokenId>,
        drafts: usize,
    },
}

/// Drives the machine with a random completion order, random late and
/// cancelled reports, and checks that the output is the target's. With
/// `retune`, it also switches mode, lookahead, servers and non-SI probing
/// at random between events, as `auto` may.
fn run_random(mode: Mode, k: usize, servers: usize, seed: u64) {
    run_random_with(mode, k, servers, seed, false);
}

fn run_random_with(mode: Mode, k: usize, servers: usize, seed: u64, retune: bool) {
    let world = World { seed, hit: 0.75 };
    let prompt = vec![0, 1, 0];
    let max_new = 40;
    let mut m = Machine::new(plan(mode, k, servers, max_new), prompt.clone()).expect("machine");
    let mut rng = SplitMix64::new(seed ^ 0xA5A5);
    let mut pending: BTreeMap<JobId, (Pending, bool)> = BTreeMap::new();
    let mut busy: BTreeMap<usize, JobId> = BTreeMap::new();
    let mut failed_targets = std::collections::BTreeSet::new();
    // SI keeps to one server; retunes may use any of the plan's.
    let in_use = if mode == Mode::Si && !retune {
        1
    } else {
        servers
    };
    let max_k = if retune { 8 } else { k };
    let mut drafter_failed = false;
    m.start();
    for _step in 0..10_000 {
        for command in m.take_commands() {
            match command {
                Command::Draft {
                    job,
                    context,
                    count,
                } => {
                    assert!(count >= 1 && count <= max_k.max(Machine::PROBE_DRAFTS));
                    pending.insert(
                        job,
                        (
                            Pending::Draft {
                                context_len: context.len(),
                                count,
                            },
                            false,
                        ),
                    );
                }
                Command::Verify {
                    job,
                    worker,
                    context,
                    drafts,
                    ..
                } => {
                    assert!(
                        !failed_targets.contains(&worker),
                        "a retired worker got a job"
                    );
                    if let Some(other) = busy.get(&worker) {
                        let (_, cancelled) = pending[other];
                        assert!(cancelled, "worker {worker} got a job while busy");
                    }
                    busy.insert(worker, job);
                    pending.insert(
                        job,
                        (
                            Pending::Verify {
                                worker,
                                context,
                                drafts,
                            },
                            false,
                        ),
                    );
                }
                Command::Cancel { job, worker } => {
                    if let Some(entry) = pending.get_mut(&job) {
                        entry.1 = true;
                    }
                    if let WorkerRef::Target(w) = worker
                        && busy.get(&w) == Some(&job)
                    {
                        busy.remove(&w);
                    }
                }
            }
        }
        if m.stop_reason().is_some() {
            break;
        }
        if retune && rng.next_open01() < 0.15 {
            let mode = [Mode::NonSi, Mode::Si, Mode::Dsi][rng.next_u64() as usize % 3];
            let policy = Policy {
                mode,
                k: 1 + rng.next_u64() as usize % 8,
                servers: 1 + rng.next_u64() as usize % servers,
            };
            // Refused only once the drafter failed; then it stays non-SI.
            let refused = m.retune(policy).is_err();
            assert_eq!(refused, drafter_failed && mode.drafts());
            m.probe_every(rng.next_u64() as usize % 6);
        }
        assert!(
            !pending.is_empty(),
            "the machine stalled: {:?}",
            m.counters()
        );
        let index = (rng.next_u64() as usize) % pending.len();
        let job = *pending.keys().nth(index).expect("a pending job");
        let (work, cancelled) = pending.remove(&job).expect("a pending job");
        if let Pending::Verify { worker, .. } = &work
            && busy.get(worker) == Some(&job)
        {
            busy.remove(worker);
        }
        if cancelled && rng.next_open01() < 0.5 {
            m.on_cancelled(job, rng.next_open01() < 0.5);
            continue;
        }
        // Now and then a worker fails a job or falls silent past a job's
        // deadline (a cancelled job's too): at most all targets but one,
        // and the drafter once.
        let fault = rng.next_open01() < 0.02;
        let mut retire = |m: &mut Machine| {
            if cancelled || rng.next_open01() < 0.5 {
                m.on_timed_out(job, "injected silence".into());
            } else {
                m.on_failed(job, "injected fault".into());
            }
        };
        match &work {
            Pending::Verify { worker, .. }
                if fault && failed_targets.len() + 1 < in_use && failed_targets.insert(*worker) =>
            {
                retire(&mut m);
                continue;
            }
            Pending::Draft { .. } if fault && !drafter_failed => {
                drafter_failed = true;
                retire(&mut m);
                continue;
            }
            _ => {}
        }
        // Otherwise the result arrives anyway (late when cancelled).
        match work {
            Pending::Draft { context_len, count } => {
                let tokens: Vec<TokenId> = (0..count)
                    .map(|i| world.draft(context_len + i, job.0))
                    .collect();
                m.on_drafted(job, drafted(&tokens));
            }
            Pending::Verify {
                context, drafts, ..
            } => {
                let start = context.len() - drafts;
                for (i, &t) in context[..start].iter().enumerate().skip(prompt.len()) {
                    assert_eq!(t, world.truth(i), "a job was built on an unverified prefix");
                }
                let choices: Vec<TokenId> =
                    (start..=context.len()).map(|p| world.truth(p)).collect();
                let v = verify_greedy(&context[start..], &choices).expect("verdict");
                m.on_verified(job, v);
            }
        }
    }
    let expected: Vec<TokenId> = (prompt.len()..prompt.len() + max_new)
        .map(|p| world.truth(p))
        .collect();
    assert_eq!(m.stop_reason(), Some(&StopReason::MaxTokens));
    assert_eq!(
        m.output(),
        expected.as_slice(),
        "{mode} k={k} N={servers} seed={seed}"
    );
    if mode != Mode::NonSi && !drafter_failed && !retune {
        assert!(m.counters().accepted_tokens > 0, "drafts were accepted");
    }
    assert_eq!(
        m.counters().errors.len(),
        failed_targets.len() + usize::from(drafter_failed)
    );
}

#[test]
fn every_interleaving_emits_the_targets_tokens() {
    for seed in 0..300 {
        for (mode, k, servers) in [
            (Mode::NonSi, 0, 1),
            (Mode::NonSi, 0, 3),
            (Mode::Si, 1, 1),
            (Mode::Si, 4, 2),
            (Mode::Dsi, 1, 1),
            (Mode::Dsi, 3, 2),
            (Mode::Dsi, 8, 4),
        ] {
            run_random(mode, k, servers, seed);
        }
    }
}

#[test]
fn retunes_mid_request_emit_the_targets_tokens() {
    for seed in 0..300 {
        for (mode, k, servers) in [(Mode::NonSi, 0, 1), (Mode::Si, 3, 3), (Mode::Dsi, 4, 4)] {
            run_random_with(mode, k.max(1), servers, seed, true);
        }
    }
}

#[test]
fn retunes_are_checked_and_wait_for_a_clean_point() {
    let mut m = Machine::new(plan(Mode::Dsi, 3, 2, 20), vec![5]).unwrap();
    let policy = |mode, k, servers| Policy { mode, k, servers };
    assert!(
        m.retune(policy(Mode::Dsi, 3, 3)).is_err(),
        "more servers than the plan's"
    );
    assert!(m.retune(policy(Mode::Si, 0, 1)).is_err(), "no lookahead");
    m.start();
    // DSI runs its epoch job and a draft: the switch to non-SI waits.
    let c = issued(&mut m);
    assert_eq!((c.verify.len(), c.draft.len()), (1, 1));
    m.retune(policy(Mode::NonSi, 0, 1)).unwrap();
    assert_eq!(m.policy().mode, Mode::Dsi);
    // The drafts come back and the epoch job rejects the first: a new
    // epoch, and from there non-SI.
    let (job, _, _, drafts) = c.verify[0].clone();
    assert_eq!(drafts, 0);
    m.on_drafted(c.draft[0].0, drafted(&[1, 1, 1]));
    assert_eq!(m.policy().mode, Mode::Dsi, "the epoch's jobs still run");
    let c = issued(&mut m);
    assert_eq!((c.verify.len(), c.draft.len()), (1, 1), "DSI goes on");
    m.on_verified(job, verdict(0, 9, 0));
    assert_eq!(m.policy(), policy(Mode::NonSi, 0, 1));
    let c = issued(&mut m);
    assert!(c.draft.is_empty(), "non-SI drafts nothing");
    assert_eq!(c.verify.len(), 1);
}
