//! Workers over plain-data models: KV-cache synchronization (what is
//! truncated and fed), cancellation, and losslessness under sampling on real
//! threads (seeded coupled sampling gives non-SI's tokens; speculative
//! sampling gives the target's distribution).

// Helpers outside #[test] functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use dsi_core::TokenId;
use dsi_core::cancel::CancelFlag;
use dsi_core::model::{Feed, ForwardError, ForwardResults, KvModel, KvState, Rows, SeqId};
use dsi_core::sampling::{Decoding, SamplingParams};
use dsi_core::schedule::{Mode, ModeSetting};
use dsi_sched::roles::{Drafter, Job, JobStep, Scorer, Scores};
use dsi_sched::tune::{PriorSource, ProfileSpec};
use dsi_sched::{CachedModel, Pool, Request, Role, WorkerHandle};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const VOCAB: usize = 4;

/// A tiny "language model": the next-token logits depend on the last token
/// only (a Markov chain), given by a table. It records every call.
#[derive(Debug, Clone)]
struct TableModel {
    table: [[f32; VOCAB]; VOCAB],
    caches: HashMap<SeqId, Vec<TokenId>>,
    calls: Arc<Mutex<Vec<String>>>,
}

impl TableModel {
    fn target() -> Self {
        Self::new([
            [1.0, 0.2, -0.5, 0.0],
            [0.0, 0.9, 0.4, -1.0],
            [0.3, -0.2, 0.8, 0.5],
            [-0.4, 0.6, 0.1, 0.7],
        ])
    }

    /// Close to the target, but not equal: some drafts are rejected.
    fn drafter() -> Self {
        Self::new([
            [1.2, -0.2, -0.5, 0.3],
            [0.3, 0.5, 0.4, -1.0],
            [0.3, -0.5, 1.1, 0.2],
            [-0.1, 0.6, -0.2, 0.9],
        ])
    }

    fn new(table: [[f32; VOCAB]; VOCAB]) -> Self {
        Self {
            table,
            caches: HashMap::new(),
            calls: Arc::default(),
        }
    }

    fn softmax(&self, last: TokenId) -> Vec<f64> {
        let row = self.table[last as usize];
        let exp: Vec<f64> = row.iter().map(|&l| f64::from(l).exp()).collect();
        let total: f64 = exp.iter().sum();
        exp.iter().map(|e| e / total).collect()
    }
}

impl KvState for TableModel {
    fn vocab(&self) -> usize {
        VOCAB
    }

    fn capacity(&self) -> usize {
        64
    }

    fn cached(&self, seq: SeqId) -> usize {
        self.caches.get(&seq).map_or(0, Vec::len)
    }

    fn truncate(&mut self, seq: SeqId, keep: usize) {
        let cache = self.caches.entry(seq).or_default();
        if keep < cache.len() {
            self.calls.lock().unwrap().push(format!("truncate {keep}"));
        }
        cache.truncate(keep);
    }

    fn release(&mut self, seq: SeqId) {
        self.caches.remove(&seq);
    }
}

impl KvModel for TableModel {
    /// Logs one line per forward: its feeds separated by ` | `.
    fn forward(&mut self, feeds: &[Feed<'_>]) -> ForwardResults {
        let mut logged = Vec::new();
        let results = feeds
            .iter()
            .map(|feed| {
                if feed.cancel.is_cancelled() {
                    return Err(ForwardError::Cancelled);
                }
                let cache = self.caches.entry(feed.seq).or_default();
                if cache.len() + feed.tokens.len() > 64 {
                    return Err(ForwardError::Failed("cache full".into()));
                }
                let rows = feed.rows.min(feed.tokens.len());
                logged.push(format!("feed {:?} -> {rows}", feed.tokens));
                cache.extend_from_slice(feed.tokens);
                Ok(Rows::Logits(
                    feed.tokens[feed.tokens.len() - rows..]
                        .iter()
                        .flat_map(|&t| self.table[t as usize])
                        .collect(),
                ))
            })
            .collect();
        if !logged.is_empty() {
            self.calls.lock().unwrap().push(logged.join(" | "));
        }
        results
    }
}

/// One job of `request` for a batched call.
fn job<'a>(
    request: SeqId,
    context: &'a [TokenId],
    count: usize,
    decoding: &'a Decoding,
    cancel: &'a CancelFlag,
) -> Job<'a> {
    Job {
        request,
        context,
        count,
        decoding,
        cancel,
    }
}

/// Scores one job of request 1 and unwraps its finished scores.
fn score(
    worker: &mut CachedModel<TableModel>,
    context: &[TokenId],
    drafts: usize,
    cancel: &CancelFlag,
) -> Result<Scores, ForwardError> {
    let greedy = Decoding::greedy();
    let job = job(1, context, drafts, &greedy, cancel);
    match worker.score(&[job]).pop().unwrap()? {
        JobStep::Done(scored) => Ok(scored.scores),
        JobStep::Prefilled => panic!("no chunked prefill expected"),
    }
}

/// Drafts `count` tokens for request 1.
fn draft(worker: &mut CachedModel<TableModel>, context: &[TokenId], count: usize) -> Vec<TokenId> {
    let greedy = Decoding::greedy();
    let go = CancelFlag::new();
    match worker
        .draft(&[job(1, context, count, &greedy, &go)])
        .pop()
        .unwrap()
    {
        Ok(JobStep::Done(drafts)) => drafts.iter().map(|d| d.token).collect(),
        other => panic!("drafting failed: {other:?}"),
    }
}

fn calls(model: &TableModel) -> Vec<String> {
    std::mem::take(&mut *model.calls.lock().unwrap())
}

#[test]
fn a_scorer_feeds_only_what_its_cache_lacks() {
    let model = TableModel::target();
    let log = model.clone();
    let mut worker = CachedModel::new(model);
    let go = CancelFlag::new();

    score(&mut worker, &[1, 2, 3], 0, &go).unwrap();
    assert_eq!(
        calls(&log),
        ["feed [1, 2, 3] -> 1"],
        "a prefill reads one row"
    );
    // Drafts after the same prefix: only the last prefix token (for its
    // logits) and the drafts are fed.
    score(&mut worker, &[1, 2, 3, 0, 1], 2, &go).unwrap();
    assert_eq!(
        calls(&log),
        ["truncate 2", "feed [3, 0, 1] -> 3"],
        "a verification of k drafts reads k + 1 rows"
    );
    assert_eq!(worker.held(1), &[1, 2, 3, 0, 1]);
    // The second draft was rejected and replaced: roll back in O(1), feed the
    // correction and the new drafts.
    score(&mut worker, &[1, 2, 3, 0, 2, 2], 2, &go).unwrap();
    assert_eq!(calls(&log), ["truncate 3", "feed [0, 2, 2] -> 3"]);
    // Another context entirely for the same request.
    score(&mut worker, &[3, 3], 0, &go).unwrap();
    assert_eq!(calls(&log), ["truncate 0", "feed [3, 3] -> 1"]);
}

#[test]
fn the_jobs_of_one_call_share_one_forward_each_with_its_own_cache() {
    let model = TableModel::target();
    let log = model.clone();
    let mut worker = CachedModel::new(model);
    let greedy = Decoding::greedy();
    let go = CancelFlag::new();
    let jobs = [
        job(1, &[1, 2, 3], 0, &greedy, &go),
        job(2, &[0, 1], 0, &greedy, &go),
    ];
    let first = worker.score(&jobs);
    assert_eq!(calls(&log), ["feed [1, 2, 3] -> 1 | feed [0, 1] -> 1"]);
    let jobs = [
        job(2, &[0, 1, 2, 2], 2, &greedy, &go),
        job(1, &[1, 2, 3, 0], 1, &greedy, &go),
    ];
    let second = worker.score(&jobs);
    assert_eq!(
        calls(&log),
        [
            "truncate 1",
            "truncate 2",
            "feed [1, 2, 2] -> 3 | feed [3, 0] -> 2"
        ],
        "each request keeps its own cache: each feeds its last prefix token again"
    );
    for result in first.iter().chain(&second) {
        assert!(matches!(result, Ok(JobStep::Done(_))), "{result:?}");
    }
    // A result is the one it would have alone.
    let mut alone = CachedModel::new(TableModel::target());
    let want = score(&mut alone, &[1, 2, 3, 0], 1, &go).unwrap();
    let got = worker.score(&[job(1, &[1, 2, 3, 0], 1, &greedy, &go)]);
    assert_eq!(got, [Ok(JobStep::Done(want.into()))]);
}

#[test]
fn a_drafter_feeds_one_token_per_step_and_resumes_where_it_stopped() {
    let model = TableModel::drafter();
    let log = model.clone();
    let mut worker = CachedModel::new(model);
    let tokens = draft(&mut worker, &[1, 2], 3);
    assert_eq!(
        calls(&log),
        [
            "feed [1, 2] -> 1".to_string(),
            format!("feed [{}] -> 1", tokens[0]),
            format!("feed [{}] -> 1", tokens[1])
        ]
    );
    // The next batch continues the chain: only the last draft is new.
    let mut context = vec![1, 2];
    context.extend(&tokens);
    draft(&mut worker, &context, 1);
    assert_eq!(calls(&log), [format!("feed [{}] -> 1", tokens[2])]);
}

#[test]
fn a_drafter_steps_every_request_at_once() {
    let model = TableModel::drafter();
    let log = model.clone();
    let mut worker = CachedModel::new(model);
    let greedy = Decoding::greedy();
    let go = CancelFlag::new();
    let jobs = [
        job(1, &[1, 2], 3, &greedy, &go),
        job(2, &[3], 2, &greedy, &go),
    ];
    let drafted: Vec<Vec<TokenId>> = worker
        .draft(&jobs)
        .into_iter()
        .map(|r| match r {
            Ok(JobStep::Done(d)) => d.iter().map(|d| d.token).collect(),
            other => panic!("{other:?}"),
        })
        .collect();
    let (a, b) = (&drafted[0], &drafted[1]);
    assert_eq!((a.len(), b.len()), (3, 2));
    assert_eq!(
        calls(&log),
        [
            "feed [1, 2] -> 1 | feed [3] -> 1".to_string(),
            format!("feed [{}] -> 1 | feed [{}] -> 1", a[0], b[0]),
            format!("feed [{}] -> 1", a[1]),
        ],
        "one forward per step for every request still drafting"
    );
    // The same drafts as each request alone.
    let mut alone = CachedModel::new(TableModel::drafter());
    assert_eq!(&draft(&mut alone, &[1, 2], 3), a);
    let mut alone = CachedModel::new(TableModel::drafter());
    let mut other = vec![3];
    other.extend(draft(&mut alone, &[3], 2));
    assert_eq!(&other[1..], b.as_slice());
}

#[test]
fn a_cancelled_job_leaves_the_cache_as_it_was() {
    let model = TableModel::target();
    let mut worker = CachedModel::new(model);
    score(&mut worker, &[1, 2, 3], 0, &CancelFlag::new()).unwrap();
    let stop = CancelFlag::new();
    stop.cancel();
    let err = score(&mut worker, &[1, 2, 3, 0, 0], 2, &stop).unwrap_err();
    assert_eq!(err, ForwardError::Cancelled);
    assert_eq!(
        worker.held(1),
        &[1, 2],
        "rolled back to the shared prefix, nothing fed"
    );
    assert_eq!(worker.model().cached(1), 2);
    // Too long a context is a clear error, not a panic.
    let long = vec![1; 100];
    let err = score(&mut worker, &long, 0, &CancelFlag::new()).unwrap_err();
    assert!(matches!(err, ForwardError::Failed(m) if m.contains("cache holds 64")));
}

fn table_pool(targets: usize) -> Pool {
    let drafter = WorkerHandle::spawn(
        "drafter",
        Role::Drafter(Box::new(CachedModel::new(TableModel::drafter()))),
    )
    .unwrap();
    let targets = (0..targets)
        .map(|i| {
            WorkerHandle::spawn(
                format!("target {i}"),
                Role::Target(Box::new(CachedModel::new(TableModel::target()))),
            )
            .unwrap()
        })
        .collect();
    Pool::new(Some(drafter), targets).unwrap()
}

#[test]
fn concurrent_requests_share_the_workers_and_each_gets_its_own_tokens() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let spawn = |name: String, role| WorkerHandle::spawn(name, role).unwrap();
    let drafter = spawn(
        "drafter".into(),
        Role::Drafter(Box::new(CachedModel::new(TableModel::drafter()))),
    );
    let targets = (0..3)
        .map(|i| {
            spawn(
                format!("target {i}"),
                Role::Target(Box::new(CachedModel::new(TableModel::target()))),
            )
        })
        .collect();
    let pool = Arc::new(Pool::new(Some(drafter), targets).unwrap());
    let requests: Vec<Request> = (0..12u64)
        .map(|i| Request {
            prompt: vec![(i % 4) as TokenId, ((i / 4) % 4) as TokenId],
            ..request(Mode::Dsi, 1 + (i as usize % 3), 30, sampled(i, false))
        })
        .collect();
    let alone: Vec<Vec<TokenId>> = requests
        .iter()
        .map(|r| {
            let nonsi = Request {
                mode: Mode::NonSi.into(),
                ..r.clone()
            };
            runtime
                .block_on(pool.generate(nonsi, |_| {}))
                .unwrap()
                .tokens
        })
        .collect();
    let together = runtime.block_on(async {
        let runs: Vec<_> = requests
            .iter()
            .cloned()
            .map(|r| {
                let pool = Arc::clone(&pool);
                tokio::spawn(async move { pool.generate(r, |_| {}).await.unwrap() })
            })
            .collect();
        let mut out = Vec::new();
        for run in runs {
            out.push(run.await.unwrap());
        }
        out
    });
    for (i, (g, reference)) in together.iter().zip(&alone).enumerate() {
        assert_eq!(&g.tokens, reference, "request {i}");
        assert_eq!(g.tokens.len(), 30);
    }
    assert!(
        together
            .iter()
            .any(|g| g.stats.counters.accepted_tokens > 0)
    );
}

#[test]
fn raising_the_stop_flag_ends_the_request_with_its_stats() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let pool = table_pool(2);
    let stop = dsi_core::cancel::CancelFlag::new();
    let mut seen = 0;
    let g = runtime
        .block_on(pool.generate_until(
            request(Mode::Dsi, 2, 50, Decoding::greedy()),
            &stop,
            |update| {
                if let dsi_sched::Update::Tokens(t) = update {
                    seen += t.len();
                    if seen >= 5 {
                        stop.cancel();
                    }
                }
            },
        ))
        .unwrap();
    assert_eq!(g.stop, dsi_core::schedule::StopReason::Cancelled);
    assert!(
        g.tokens.len() >= 5 && g.tokens.len() < 50,
        "{}",
        g.tokens.len()
    );
    assert_eq!(g.stats.new_tokens, g.tokens.len());
    assert_eq!(g.stats.mode, Mode::Dsi);
    // The pool serves the next request in full.
    let next = runtime
        .block_on(pool.generate(request(Mode::Dsi, 2, 20, Decoding::greedy()), |_| {}))
        .unwrap();
    assert_eq!(next.tokens.len(), 20);
}

#[test]
fn a_long_request_does_not_starve_a_short_one() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    // Every forward takes at least 2 ms, so the long request holds the
    // workers for a few hundred milliseconds; without turns the short one
    // would wait for all of it.
    let latency = dsi_sched::Latency::from_ms(2.0, 2.0);
    let drafter = WorkerHandle::spawn(
        "drafter",
        Role::Drafter(Box::new(CachedModel::new(dsi_sched::Emulated::new(
            TableModel::drafter(),
            latency,
        )))),
    )
    .unwrap();
    let target = WorkerHandle::spawn(
        "target",
        Role::Target(Box::new(CachedModel::new(dsi_sched::Emulated::new(
            TableModel::target(),
            latency,
        )))),
    )
    .unwrap();
    let pool = Arc::new(Pool::new(Some(drafter), vec![target]).unwrap());
    let finished = Arc::new(Mutex::new(Vec::new()));
    runtime.block_on(async {
        let run = |name: &'static str, max_new_tokens: usize| {
            let (pool, finished) = (Arc::clone(&pool), Arc::clone(&finished));
            tokio::spawn(async move {
                let r = Request {
                    max_new_tokens,
                    ..request(Mode::Si, 3, max_new_tokens, Decoding::greedy())
                };
                pool.generate(r, |_| {}).await.unwrap();
                finished.lock().unwrap().push(name);
            })
        };
        let long = run("long", 150);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let short = run("short", 3);
        short.await.unwrap();
        long.await.unwrap();
    });
    assert_eq!(*finished.lock().unwrap(), ["short", "long"]);
}

fn sampled(seed: u64, speculative: bool) -> Decoding {
    let params = SamplingParams {
        temperature: 1.0,
        top_k: None,
        top_p: None,
        seed,
    };
    Decoding::new(params, speculative).unwrap()
}

fn request(mode: Mode, k: usize, max_new_tokens: usize, decoding: Decoding) -> Request {
    Request {
        prompt: vec![0],
        mode: mode.into(),
        k,
        max_new_tokens,
        eos: Vec::new(),
        decoding,
        targets: None,
    }
}

#[test]
fn seeded_coupled_sampling_gives_nonsi_tokens_in_every_mode() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let pool = table_pool(3);
    let mut accepted = 0;
    for seed in 0..20 {
        let decoding = sampled(seed, false);
        let reference = runtime
            .block_on(pool.generate(request(Mode::NonSi, 3, 24, decoding.clone()), |_| {}))
            .unwrap()
            .tokens;
        for (mode, k) in [(Mode::Si, 2), (Mode::Dsi, 1), (Mode::Dsi, 3)] {
            let g = runtime
                .block_on(pool.generate(request(mode, k, 24, decoding.clone()), |_| {}))
                .unwrap();
            assert_eq!(g.tokens, reference, "{mode} k={k} seed={seed}");
            accepted += g.stats.counters.accepted_tokens;
        }
    }
    assert!(accepted > 0, "drafts were accepted");
}

#[test]
fn auto_measures_the_pool_chooses_and_gives_nonsi_tokens() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let pool = table_pool(3);
    let auto = |decoding| Request {
        mode: ModeSetting::Auto,
        ..request(Mode::NonSi, 1, 24, decoding)
    };
    // Without a profile, auto is refused with what to do.
    let refused = runtime
        .block_on(pool.generate(auto(Decoding::greedy()), |_| {}))
        .unwrap_err();
    assert!(refused.to_string().contains("measure_profile"), "{refused}");
    let spec = ProfileSpec {
        rows: 4,
        repeats: 2,
        context: vec![0, 1, 2, 3, 0, 1, 2, 3],
    };
    let profile = runtime.block_on(pool.measure_profile(&spec)).unwrap();
    assert_eq!(profile.target_ms_by_rows.len(), 4);
    assert_eq!(profile.target_slowdown.len(), 3);
    assert_eq!(profile.drafter_slowdown.len(), 4);
    let pool = pool.with_profile(profile).unwrap();
    for seed in 0..10 {
        for decoding in [Decoding::greedy(), sampled(seed, false)] {
            let reference = runtime
                .block_on(pool.generate(request(Mode::NonSi, 1, 24, decoding.clone()), |_| {}))
                .unwrap()
                .tokens;
            let g = runtime
                .block_on(pool.generate(auto(decoding), |_| {}))
                .unwrap();
            assert_eq!(g.tokens, reference, "seed {seed}");
            let chosen = g.stats.auto.expect("auto reports its choice");
            assert!(!chosen.decisions.is_empty());
            assert!((0.0..=1.0).contains(&chosen.acceptance));
        }
    }
    // Later requests start from the pool's history instead of a probe.
    let g = runtime
        .block_on(pool.generate(auto(Decoding::greedy()), |_| {}))
        .unwrap();
    assert_eq!(g.stats.auto.unwrap().prior_from, PriorSource::History);
}

/// The exact joint law of the first two new tokens under a model.
fn joint(model: &TableModel) -> Vec<f64> {
    let mut out = vec![0.0; VOCAB * VOCAB];
    let first = model.softmax(0);
    for (a, pa) in first.iter().enumerate() {
        for (b, pb) in model.softmax(a as TokenId).iter().enumerate() {
            out[a * VOCAB + b] = pa * pb;
        }
    }
    out
}

fn total_variation(p: &[f64], q: &[f64]) -> f64 {
    p.iter().zip(q).map(|(a, b)| (a - b).abs()).sum::<f64>() / 2.0
}

#[test]
fn speculative_sampling_through_dsi_follows_the_target_distribution() {
    const TRIALS: usize = 3000;
    const BOUND: f64 = 0.045;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let pool = table_pool(2);
    let mut counts = [0.0; VOCAB * VOCAB];
    let mut accepted = 0;
    let mut preempted = 0;
    for seed in 0..TRIALS as u64 {
        let g = runtime
            .block_on(pool.generate(request(Mode::Dsi, 2, 3, sampled(seed, true)), |_| {}))
            .unwrap();
        assert_eq!(
            g.tokens.len(),
            3,
            "{:?} {:?}",
            g.stop,
            g.stats.counters.errors
        );
        counts[g.tokens[0] as usize * VOCAB + g.tokens[1] as usize] += 1.0;
        accepted += g.stats.counters.accepted_tokens;
        preempted += g.stats.counters.jobs_preempted;
    }
    let empirical: Vec<f64> = counts.iter().map(|c| c / TRIALS as f64).collect();
    let target = joint(&TableModel::target());
    let drafter = joint(&TableModel::drafter());
    let tv = total_variation(&empirical, &target);
    eprintln!(
        "TV to the target {tv:.4}; drafter vs target {:.4}",
        total_variation(&drafter, &target)
    );
    assert!(tv < BOUND, "TV to the target {tv:.4} >= {BOUND}");
    // The bound can tell a wrong output apart: emitting the drafter's
    // samples would be this far from the target.
    let wrong = total_variation(&drafter, &target);
    assert!(wrong > 2.0 * BOUND, "the test cannot fail: {wrong:.4}");
    assert!(
        accepted > 0 && preempted > 0,
        "{accepted} accepted, {preempted} preempted"
    );
}
