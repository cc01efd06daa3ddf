//! The driver on paused tokio time with scripted fake workers: overlap and
//! preemption, the timeline, hung and failing workers, cancellation.

mod common;

use common::{Behaviour, World, fake_worker};
use dsi_core::sampling::Decoding;
use dsi_core::schedule::{EventKind, Mode, StopReason};
use dsi_sched::{Pool, Request, TimelineRecord, Update};
use std::sync::atomic::Ordering;
use std::time::Duration;

const PROMPT: [u32; 3] = [0, 1, 0];

fn request(mode: Mode, k: usize, max_new_tokens: usize) -> Request {
    Request {
        prompt: PROMPT.to_vec(),
        mode: mode.into(),
        k,
        max_new_tokens,
        eos: Vec::new(),
        decoding: Decoding::greedy(),
        targets: None,
    }
}

fn pool(world: World, targets: &[Behaviour], drafter: Behaviour) -> Pool {
    let (drafter, _) = fake_worker("drafter", world, Duration::from_millis(2), drafter);
    let targets = targets
        .iter()
        .enumerate()
        .map(|(i, &b)| fake_worker(&format!("target {i}"), world, Duration::from_millis(20), b).0)
        .collect();
    Pool::new(Some(drafter), targets).expect("pool")
}

#[tokio::test(start_paused = true)]
async fn dsi_overlaps_preempts_and_matches_nonsi() {
    let world = World { seed: 3, hit: 0.7 };
    let pool = pool(world, &[Behaviour::Normal; 4], Behaviour::Normal);
    let expected = world.expected(PROMPT.len(), 60);
    for mode in [Mode::NonSi, Mode::Si, Mode::Dsi] {
        let mut streamed = Vec::new();
        let mut timeline: Vec<TimelineRecord> = Vec::new();
        let generation = pool
            .generate(request(mode, 3, 60), |update| match update {
                Update::Tokens(t) => streamed.extend_from_slice(t),
                Update::Timeline(r) => timeline.push(r.clone()),
                Update::Logprobs(_) => panic!("log probabilities were not asked for"),
            })
            .await
            .expect("generation");
        assert_eq!(generation.tokens, expected, "{mode}");
        assert_eq!(streamed, expected, "{mode}: the stream is the output");
        assert_eq!(generation.stop, StopReason::MaxTokens);
        let stats = &generation.stats;
        let started = timeline
            .iter()
            .filter(|r| r.event.kind == EventKind::Started)
            .count();
        assert!(started > 0, "the timeline records job starts");
        match mode {
            Mode::NonSi => {
                assert_eq!(stats.counters.jobs_started, 60);
                assert_eq!(stats.max_concurrent_jobs, 1);
            }
            Mode::Si => {
                assert!(stats.counters.accepted_tokens > 0);
                assert_eq!(stats.max_concurrent_jobs, 1, "SI never overlaps");
            }
            Mode::Dsi => {
                assert!(
                    stats.counters.drafts > 0 && stats.counters.accepted_tokens > 0,
                    "{stats:?}"
                );
                assert!(stats.max_concurrent_jobs >= 3, "{stats:?}");
                assert!(stats.counters.jobs_preempted > 0, "{stats:?}");
                assert!(
                    timeline
                        .iter()
                        .any(|r| r.event.kind == EventKind::Preempted)
                );
                // DSI jobs verify the whole unverified chain: k or more drafts.
                assert!(stats.acceptance_by_position.len() >= 3);
                assert!(stats.acceptance_by_position[0] > 0.0);
                assert!(
                    stats
                        .workers
                        .iter()
                        .any(|w| w.role == "drafter" && w.jobs > 0)
                );
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_perfect_drafter_hides_every_verification() {
    // With every draft accepted, DSI is limited by the drafter alone:
    // 20 ms targets, 2 ms drafts, k = 2, enough servers (ceil(20/4) = 5 + 1).
    let world = World { seed: 1, hit: 1.0 };
    let pool = pool(world, &[Behaviour::Normal; 6], Behaviour::Normal);
    let began = tokio::time::Instant::now();
    let generation = pool
        .generate(request(Mode::Dsi, 2, 40), |_| {})
        .await
        .expect("generation");
    let elapsed = began.elapsed();
    assert_eq!(generation.tokens, world.expected(PROMPT.len(), 40));
    assert_eq!(generation.stats.counters.epochs, 1, "nothing was rejected");
    // 39 drafts at 2 ms, then the last chain's verification: 98 ms, where
    // non-SI would need 800 ms.
    assert!(elapsed <= Duration::from_millis(110), "{elapsed:?}");
    assert!(elapsed >= Duration::from_millis(78), "{elapsed:?}");
}

#[tokio::test(start_paused = true)]
async fn a_failing_target_is_retired_and_the_output_is_intact() {
    let world = World { seed: 5, hit: 0.6 };
    let pool = pool(
        world,
        &[Behaviour::Fails, Behaviour::Normal, Behaviour::Normal],
        Behaviour::Normal,
    );
    let generation = pool
        .generate(request(Mode::Dsi, 3, 30), |_| {})
        .await
        .expect("generation");
    assert_eq!(generation.tokens, world.expected(PROMPT.len(), 30));
    assert!(
        generation
            .stats
            .counters
            .errors
            .iter()
            .any(|e| e.contains("injected device error")),
        "{:?}",
        generation.stats.counters.errors
    );
}

#[tokio::test(start_paused = true)]
async fn a_hung_target_misses_its_deadline_and_is_retired() {
    let world = World { seed: 6, hit: 0.6 };
    let pool = pool(
        world,
        &[Behaviour::Hangs, Behaviour::Normal],
        Behaviour::Normal,
    )
    .with_job_timeout(Duration::from_millis(200));
    let generation = pool
        .generate(request(Mode::NonSi, 3, 10), |_| {})
        .await
        .expect("generation");
    assert_eq!(generation.tokens, world.expected(PROMPT.len(), 10));
    assert_eq!(generation.stats.counters.errors.len(), 1);
    assert!(generation.stats.counters.errors[0].contains("no result within 200 ms"));
}

#[tokio::test(start_paused = true)]
async fn a_worker_that_hangs_after_its_job_was_preempted_is_still_retired() {
    // A worker that stops mid-request never acknowledges the cancel of its
    // preempted job: it is hung all the same, and must be retired at the
    // deadline, not fed new jobs that queue behind the stuck one.
    let world = World { seed: 6, hit: 0.5 };
    let pool = pool(
        world,
        &[Behaviour::HangsAfter(2), Behaviour::Normal],
        Behaviour::Normal,
    )
    .with_job_timeout(Duration::from_millis(200));
    let mut timeline: Vec<TimelineRecord> = Vec::new();
    let generation = pool
        .generate(request(Mode::Dsi, 2, 60), |update| {
            if let Update::Timeline(r) = update {
                timeline.push(r.clone());
            }
        })
        .await
        .expect("generation");
    assert_eq!(generation.tokens, world.expected(PROMPT.len(), 60));
    let errors = &generation.stats.counters.errors;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("no result within 200 ms"), "{errors:?}");
    let on_hung = |kind: EventKind| {
        timeline
            .iter()
            .enumerate()
            .filter(move |(_, r)| r.event.kind == kind && r.device.as_deref() == Some("target 0"))
    };
    let (failed, given_up) = on_hung(EventKind::Failed)
        .next()
        .expect("the hung worker's job was given up on");
    // The scenario: the job it hangs in was preempted before its deadline.
    assert!(
        on_hung(EventKind::Preempted).any(|(i, r)| i < failed && r.event.job == given_up.event.job),
        "{given_up:?}"
    );
    // Once retired, nothing more is sent to it.
    let started_after = timeline[failed..]
        .iter()
        .filter(|r| r.event.kind == EventKind::Started && r.device.as_deref() == Some("target 0"))
        .count();
    assert_eq!(started_after, 0);
}

#[tokio::test(start_paused = true)]
async fn a_failing_drafter_falls_back_to_nonsi() {
    let world = World { seed: 7, hit: 0.8 };
    let pool = pool(world, &[Behaviour::Normal; 2], Behaviour::Fails);
    let generation = pool
        .generate(request(Mode::Dsi, 3, 12), |_| {})
        .await
        .expect("generation");
    assert_eq!(generation.tokens, world.expected(PROMPT.len(), 12));
    assert!(generation.stats.counters.fell_back_to_nonsi);
    assert_eq!(generation.stats.mode, Mode::NonSi);
}

#[tokio::test(start_paused = true)]
async fn every_target_failing_fails_the_request_with_the_reason() {
    let world = World { seed: 8, hit: 0.8 };
    let pool = pool(world, &[Behaviour::Fails; 2], Behaviour::Normal);
    let generation = pool
        .generate(request(Mode::Dsi, 3, 12), |_| {})
        .await
        .expect("the request itself was valid");
    assert!(
        matches!(&generation.stop, StopReason::Failed(m) if m.contains("injected device error")),
        "{:?}",
        generation.stop
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_a_request_cancels_its_jobs_and_frees_the_pool() {
    let world = World { seed: 9, hit: 0.7 };
    let (drafter, drafter_seen) = fake_worker(
        "drafter",
        world,
        Duration::from_millis(2),
        Behaviour::Normal,
    );
    let mut seen = Vec::new();
    let targets = (0..3)
        .map(|i| {
            let (handle, s) = fake_worker(
                &format!("target {i}"),
                world,
                Duration::from_millis(500),
                Behaviour::Normal,
            );
            seen.push(s);
            handle
        })
        .collect();
    let pool = Pool::new(Some(drafter), targets).expect("pool");
    let cut = tokio::time::timeout(
        Duration::from_millis(700),
        pool.generate(request(Mode::Dsi, 3, 100), |_| {}),
    )
    .await;
    assert!(cut.is_err(), "the request was still running");
    // Give the workers a moment to notice their flags.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let cancelled: usize = seen
        .iter()
        .map(|s| s.cancelled.load(Ordering::SeqCst))
        .sum::<usize>()
        + drafter_seen.cancelled.load(Ordering::SeqCst);
    assert!(cancelled >= 2, "running jobs stopped: {cancelled}");
    // The pool serves the next request in full.
    let generation = pool
        .generate(request(Mode::Dsi, 3, 8), |_| {})
        .await
        .expect("generation");
    assert_eq!(generation.tokens, world.expected(PROMPT.len(), 8));
}

#[tokio::test(start_paused = true)]
async fn requests_that_do_not_fit_are_refused_clearly() {
    let world = World { seed: 2, hit: 0.5 };
    let (target, _) = fake_worker("t", world, Duration::from_millis(1), Behaviour::Normal);
    let pool = Pool::new(None, vec![target])
        .expect("pool")
        .with_limits(dsi_sched::Limits {
            vocab: 60,
            context: 16,
        });
    let err = pool
        .generate(request(Mode::Dsi, 3, 4), |_| {})
        .await
        .expect_err("no drafter");
    assert!(err.to_string().contains("needs a drafter"), "{err}");
    let err = pool
        .generate(request(Mode::NonSi, 3, 40), |_| {})
        .await
        .expect_err("too long");
    assert!(err.to_string().contains("exceeds the context"), "{err}");
    let mut bad = request(Mode::NonSi, 3, 4);
    bad.prompt = vec![3, 99];
    let err = pool.generate(bad, |_| {}).await.expect_err("bad token");
    assert!(err.to_string().contains("99"), "{err}");
    let err = pool
        .generate(request(Mode::NonSi, 3, 0), |_| {})
        .await
        .expect_err("zero tokens");
    assert!(err.to_string().contains("max_new_tokens"), "{err}");
    assert!(Pool::new(None, Vec::new()).is_err());
}
