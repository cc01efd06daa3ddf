//! The pool under concurrent load on real worker threads: KV memory within
//! one budget per device, placement over the targets, and deadlines that
//! count from the start of work.

// Helpers outside #[test] functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use dsi_core::TokenId;
use dsi_core::cache_layout::{CacheFootprint, SegmentPolicy};
use dsi_core::model::{Feed, ForwardError, ForwardResults, KvModel, KvState, Rows, SeqId};
use dsi_core::sampling::Decoding;
use dsi_core::schedule::Mode;
use dsi_sched::{CachedModel, Generation, Pool, Request, Role, WorkerHandle};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const VOCAB: usize = 11;
const BYTES_PER_POSITION: usize = 100;
const CAPACITY: usize = 64;

/// Bytes held by every cache of the device, counted by the models
/// themselves, and the most ever held at once.
#[derive(Debug, Default)]
struct Device {
    held: AtomicUsize,
    peak: AtomicUsize,
    /// Every target feed: (sequence, tokens fed), in forward order.
    feeds: std::sync::Mutex<Vec<(SeqId, usize)>>,
}

/// A deterministic model whose next token depends on the last token and its
/// position; the drafter is wrong at every third position. Each sequence's
/// cache is a list of tokens that accounts its bytes as a segmented cache
/// would.
struct Counting {
    drafter: bool,
    caches: HashMap<SeqId, Vec<TokenId>>,
    device: Arc<Device>,
    prefill_delay: Duration,
}

impl Counting {
    fn footprint_of() -> CacheFootprint {
        CacheFootprint {
            bytes_per_position: BYTES_PER_POSITION,
            policy: SegmentPolicy::fixed(8),
            capacity: CAPACITY,
        }
    }

    fn bytes(cache: &[TokenId]) -> usize {
        Self::footprint_of().bytes_for(cache.len())
    }

    fn resize(&mut self, seq: SeqId, f: impl FnOnce(&mut Vec<TokenId>)) {
        let cache = self.caches.entry(seq).or_default();
        let before = Self::bytes(cache);
        f(cache);
        let after = Self::bytes(cache);
        let held = if after >= before {
            self.device.held.fetch_add(after - before, Ordering::SeqCst) + after - before
        } else {
            self.device.held.fetch_sub(before - after, Ordering::SeqCst) - (before - after)
        };
        self.device.peak.fetch_max(held, Ordering::SeqCst);
    }

    fn next(&self, token: TokenId, position: usize) -> usize {
        let truth = (token as usize * 7 + position) % VOCAB;
        if self.drafter && position.is_multiple_of(3) {
            (truth + 1) % VOCAB
        } else {
            truth
        }
    }
}

impl Drop for Counting {
    fn drop(&mut self) {
        let seqs: Vec<SeqId> = self.caches.keys().copied().collect();
        for seq in seqs {
            self.release(seq);
        }
    }
}

impl KvState for Counting {
    fn vocab(&self) -> usize {
        VOCAB
    }

    fn capacity(&self) -> usize {
        CAPACITY
    }

    fn cached(&self, seq: SeqId) -> usize {
        self.caches.get(&seq).map_or(0, Vec::len)
    }

    fn truncate(&mut self, seq: SeqId, keep: usize) {
        self.resize(seq, |c| c.truncate(keep));
    }

    fn release(&mut self, seq: SeqId) {
        self.resize(seq, Vec::clear);
        self.caches.remove(&seq);
    }

    fn cache_bytes(&self) -> usize {
        self.caches.values().map(|c| Self::bytes(c)).sum()
    }

    fn footprint(&self) -> Option<CacheFootprint> {
        Some(Self::footprint_of())
    }
}

impl KvModel for Counting {
    fn forward(&mut self, feeds: &[Feed<'_>]) -> ForwardResults {
        if feeds.iter().any(|f| f.tokens.len() > 1) {
            std::thread::sleep(self.prefill_delay);
        }
        feeds
            .iter()
            .map(|feed| {
                if feed.cancel.is_cancelled() {
                    return Err(ForwardError::Cancelled);
                }
                if !self.drafter {
                    let mut log = self.device.feeds.lock().unwrap();
                    log.push((feed.seq, feed.tokens.len()));
                }
                let first = self.cached(feed.seq);
                self.resize(feed.seq, |c| c.extend_from_slice(feed.tokens));
                let rows = feed.rows.min(feed.tokens.len());
                let skip = feed.tokens.len() - rows;
                let mut logits = Vec::with_capacity(rows * VOCAB);
                for (i, &token) in feed.tokens.iter().enumerate().skip(skip) {
                    let mut row = vec![0.0; VOCAB];
                    row[self.next(token, first + i + 1)] = 1.0;
                    logits.extend(row);
                }
                Ok(Rows::Logits(logits))
            })
            .collect()
    }
}

fn model(drafter: bool, device: &Arc<Device>, prefill_delay: Duration) -> Counting {
    Counting {
        drafter,
        caches: HashMap::new(),
        device: Arc::clone(device),
        prefill_delay,
    }
}

/// A drafter and `targets` target workers, all on the device `cpu`.
fn pool(targets: usize, device: &Arc<Device>, prefill_delay: Duration) -> Pool {
    pool_with_chunk(targets, device, prefill_delay, usize::MAX)
}

fn pool_with_chunk(
    targets: usize,
    device: &Arc<Device>,
    prefill_delay: Duration,
    chunk: usize,
) -> Pool {
    let spawn =
        |name: String, role: Role| WorkerHandle::spawn(name, role).unwrap().on_device("cpu");
    let drafter = spawn(
        "drafter".into(),
        Role::Drafter(Box::new(CachedModel::new(model(
            true,
            device,
            prefill_delay,
        )))),
    );
    let targets = (0..targets)
        .map(|i| {
            spawn(
                format!("target#{i}"),
                Role::Target(Box::new(
                    CachedModel::new(model(false, device, prefill_delay)).with_prefill_chunk(chunk),
                )),
            )
        })
        .collect();
    Pool::new(Some(drafter), targets).unwrap()
}

fn request(i: usize, mode: Mode) -> Request {
    Request {
        prompt: vec![(i % VOCAB) as TokenId, 3, 1],
        mode: mode.into(),
        k: 3,
        max_new_tokens: 20,
        eos: Vec::new(),
        decoding: Decoding::greedy(),
        targets: None,
    }
}

async fn run_all(pool: &Arc<Pool>, requests: Vec<Request>) -> Vec<Generation> {
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|r| {
            let pool = Arc::clone(pool);
            tokio::spawn(async move { pool.generate(r, |_| {}).await.unwrap() })
        })
        .collect();
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

/// One request's KV footprint: drafter plus every target, prompt plus new
/// tokens plus one lookahead.
fn one_request_bytes(targets: usize) -> usize {
    (targets + 1) * Counting::footprint_of().bytes_for(3 + 20 + 3 + 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_stay_within_the_kv_budget_and_wait_their_turn() {
    let alone_device = Arc::new(Device::default());
    let alone = Arc::new(pool(2, &alone_device, Duration::ZERO));
    let mut expected = Vec::new();
    for i in 0..12 {
        expected.push(alone.generate(request(i, Mode::Dsi), |_| {}).await.unwrap());
    }

    let device = Arc::new(Device::default());
    let budget = 3 * one_request_bytes(2);
    let pool = Arc::new(pool(2, &device, Duration::ZERO).with_kv_budget([("cpu".into(), budget)]));
    let requests = (0..12).map(|i| request(i, Mode::Dsi)).collect();
    let got = run_all(&pool, requests).await;
    for (i, (got, want)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(got.tokens, want.tokens, "request {i} equals itself alone");
        assert_eq!(got.tokens.len(), 20);
        assert!(
            got.stats.counters.errors.is_empty(),
            "{:?}",
            got.stats.counters.errors
        );
    }
    let accepted: u64 = got.iter().map(|g| g.stats.counters.accepted_tokens).sum();
    assert!(accepted > 0, "drafts were accepted");

    let peak = device.peak.load(Ordering::SeqCst);
    assert!(
        peak <= budget,
        "caches held {peak} bytes, over the budget {budget}"
    );
    assert!(
        peak > one_request_bytes(2),
        "several requests ran at once: {peak}"
    );
    // Workers free ended requests' caches in order, then return their
    // share of the reservation.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (waiting, waited) = pool.kv_waiting();
    assert_eq!(waiting, 0);
    assert!(waited > 0, "some requests waited for memory");
    let kv = pool.kv_memory();
    assert_eq!(kv.len(), 1);
    assert_eq!(kv[0].device.budget, budget);
    assert!(kv[0].device.peak_reserved <= budget);
    assert_eq!(kv[0].device.reserved, 0, "every reservation came back");
    assert_eq!(device.held.load(Ordering::SeqCst), 0);
    assert_eq!(kv[0].held, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_cannot_fit_alone_is_refused_with_the_numbers() {
    let device = Arc::new(Device::default());
    let budget = one_request_bytes(2) - 1;
    let pool = pool(2, &device, Duration::ZERO).with_kv_budget([("cpu".into(), budget)]);
    let err = pool
        .generate(request(0, Mode::Dsi), |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("3 tokens") && err.contains("max_tokens 20") && err.contains("budget"),
        "{err}"
    );
    assert!(pool.check_memory(&request(0, Mode::Dsi)).is_err());
    // Non-SI needs the target's cache only: it fits.
    assert!(pool.check_memory(&request(0, Mode::NonSi)).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_spread_over_every_target() {
    for mode in [Mode::Dsi, Mode::Si] {
        let device = Arc::new(Device::default());
        let pool = Arc::new(pool(4, &device, Duration::ZERO));
        let got = run_all(&pool, (0..8).map(|i| request(i, mode)).collect()).await;
        for target in 0..4 {
            let jobs: u64 = got
                .iter()
                .flat_map(|g| &g.stats.workers)
                .filter(|w| w.name == format!("target#{target}"))
                .map(|w| w.jobs)
                .sum();
            assert!(jobs > 0, "{mode}: target {target} ran no job");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_queued_behind_long_prefills_is_not_late() {
    // Every prefill takes 150 ms and the timeout is 250 ms: the sixth
    // request's prefill waits about 750 ms behind the others on the one
    // target, while that worker keeps moving.
    let device = Arc::new(Device::default());
    let pool = Arc::new(
        pool(1, &device, Duration::from_millis(150)).with_job_timeout(Duration::from_millis(250)),
    );
    let got = run_all(&pool, (0..6).map(|i| request(i, Mode::NonSi)).collect()).await;
    for g in &got {
        assert!(
            g.stats.counters.errors.is_empty(),
            "a healthy worker was retired: {:?}",
            g.stats.counters.errors
        );
        assert_eq!(g.tokens.len(), 20);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_prompt_is_filled_in_chunks_between_other_requests_work() {
    let device = Arc::new(Device::default());
    let pool = Arc::new(pool_with_chunk(1, &device, Duration::from_millis(20), 8));
    let long = Request {
        prompt: (0..50).map(|i| (i % VOCAB) as TokenId).collect(),
        max_new_tokens: 4,
        ..request(0, Mode::NonSi)
    };
    let mut alone = pool.generate(long.clone(), |_| {}).await.unwrap().tokens;
    device.feeds.lock().unwrap().clear();

    let short: Vec<Request> = (1..4).map(|i| request(i, Mode::NonSi)).collect();
    let mut requests = vec![long];
    requests.extend(short);
    let got = run_all(&pool, requests).await;
    assert_eq!(
        got[0].tokens,
        std::mem::take(&mut alone),
        "chunking changes no token"
    );

    let feeds = device.feeds.lock().unwrap().clone();
    assert!(
        feeds.iter().all(|&(_, n)| n <= 8 + 1),
        "no forward past a chunk: {feeds:?}"
    );
    // The long prompt's sequence is the one fed most.
    let long_id = feeds
        .iter()
        .max_by_key(|&&(id, _)| feeds.iter().filter(|f| f.0 == id).count())
        .unwrap()
        .0;
    let long_feeds: Vec<usize> = feeds
        .iter()
        .enumerate()
        .filter(|(_, f)| f.0 == long_id)
        .map(|(i, _)| i)
        .collect();
    let (first, last) = (long_feeds[0], *long_feeds.last().unwrap());
    assert!(
        feeds[first..last].iter().any(|f| f.0 != long_id),
        "other requests ran between the long prompt's chunks: {feeds:?}"
    );
}
