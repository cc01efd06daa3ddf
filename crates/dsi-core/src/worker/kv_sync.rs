//! KV-cache synchronization: a model that remembers which tokens each of its
//! caches (one per request) holds, so each job feeds only what is missing.
//!
//! A job carries its whole context (verified prefix plus drafts). The worker
//! keeps the longest prefix it shares with what the request's cache holds,
//! truncates the rest in O(1) (a rejected draft's keys and values simply
//! fall off the end), and feeds the missing tokens plus the drafts. The jobs
//! of one call, one per request, go through the model in one forward.

use super::job::{Job, JobResults, JobStep, complete, undecided};
use super::scores::{Scored, Scores};
use crate::TokenId;
use crate::model::{AsyncKvModel, Feed, ForwardError, ForwardResults, Readback, Rows, SeqId};
use crate::schedule::Drafted;
use std::collections::HashMap;

/// Tokens one forward feeds at most when it fills a cache (`--prefill-chunk`).
///
/// Measured with `dsi bench decode --prefill-chunks 32,64,128,256,512` on
/// the 2-core CPU (a 512-token prompt): 128 gave the most prefill tokens/s
/// of the five sizes for the bundled target, the SmolLM-135M shape and the
/// Llama-3.2-1B shape alike, while a 256 chunk holds a worker twice as long
/// (1B shape: 4.5 s per 128-token forward against 9.4 s per 256).
pub const DEFAULT_PREFILL_CHUNK: usize = 128;

/// A model plus the tokens each of its caches holds; drafts and scores,
/// stepping every job of a call in one forward.
#[derive(Debug)]
pub struct KvSync<M> {
    model: M,
    held: HashMap<SeqId, Vec<TokenId>>,
    prefill_chunk: usize,
}

/// What the next forward of a job feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// `context[shared..shared + chunk]` into the cache, no logits: more
    /// than a chunk of the prefix is missing.
    Chunk { shared: usize, chunk: usize },
    /// `context[shared..]`, with the logits of its last `rows` tokens.
    Rest { shared: usize, rows: usize },
}

impl Plan {
    fn tokens<'c>(&self, context: &'c [TokenId]) -> &'c [TokenId] {
        match *self {
            Plan::Chunk { shared, chunk } => &context[shared..shared + chunk],
            Plan::Rest { shared, .. } => &context[shared..],
        }
    }

    fn rows(&self) -> usize {
        match *self {
            Plan::Chunk { .. } => 0,
            Plan::Rest { rows, .. } => rows,
        }
    }

    fn shared(&self) -> usize {
        match *self {
            Plan::Chunk { shared, .. } | Plan::Rest { shared, .. } => shared,
        }
    }
}

impl<M: AsyncKvModel> KvSync<M> {
    /// Wraps `model`, whose caches start empty.
    pub fn new(model: M) -> Self {
        Self {
            model,
            held: HashMap::new(),
            prefill_chunk: DEFAULT_PREFILL_CHUNK,
        }
    }

    /// Fills a cache by forwards of at most `chunk` tokens (at least 1), so
    /// a long prompt neither holds its worker for one long forward while
    /// other requests wait nor needs the activations of the whole prompt.
    pub fn with_prefill_chunk(mut self, chunk: usize) -> Self {
        self.prefill_chunk = chunk.max(1);
        self
    }

    /// The tokens `request`'s cache holds.
    pub fn held(&self, request: SeqId) -> &[TokenId] {
        self.held.get(&request).map_or(&[], Vec::as_slice)
    }

    /// The wrapped model.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// Forgets `request`'s cached state and frees its memory.
    pub fn release(&mut self, request: SeqId) {
        self.model.release(request);
        self.held.remove(&request);
    }

    /// Forgets every request's cached state (a panic left it unknown).
    pub fn reset(&mut self) {
        for request in std::mem::take(&mut self.held).into_keys() {
            self.model.release(request);
        }
    }

    /// Tokens the next call for `job` would feed to read `rows` logit rows
    /// (1 to draft, drafts + 1 to verify); 0 when it would fail without a
    /// forward.
    pub fn next_feed(&self, job: &Job<'_>, rows: usize) -> usize {
        match self.plan(job.request, job.context, rows) {
            Ok(plan) => plan.tokens(job.context).len(),
            Err(_) => 0,
        }
    }

    /// The prefix of `context` `request`'s cache can keep.
    fn shared(&self, request: SeqId, context: &[TokenId]) -> usize {
        self.held(request)
            .iter()
            .zip(context)
            .take_while(|(a, b)| a == b)
            .count()
            .min(self.model.cached(request))
    }

    /// What the next forward feeds to read the logits of the last `rows`
    /// tokens of `context` (those are always fed; the rest of the shared
    /// prefix is reused). A prefix missing more than a chunk is filled a
    /// chunk at a time first.
    fn plan(&self, request: SeqId, context: &[TokenId], rows: usize) -> Result<Plan, ForwardError> {
        if context.len() > self.model.capacity() {
            return Err(ForwardError::Failed(format!(
                "the context is {} tokens but this worker's cache holds {}: lower max_tokens or the prompt length",
                context.len(),
                self.model.capacity()
            )));
        }
        let feed_from = context.len().saturating_sub(rows);
        let shared = self.shared(request, context).min(feed_from);
        let missing = feed_from - shared;
        Ok(if missing > self.prefill_chunk {
            Plan::Chunk {
                shared,
                chunk: self.prefill_chunk,
            }
        } else {
            Plan::Rest {
                shared,
                rows: rows.min(context.len()),
            }
        })
    }

    /// Runs each job's planned feed in one forward, its rows read back as
    /// `readback(job)` asks, and records what each cache now holds.
    async fn feed(
        &mut self,
        planned: &[(Job<'_>, Plan)],
        readback: impl Fn(&Job<'_>) -> Readback,
    ) -> ForwardResults {
        for (job, plan) in planned {
            let shared = plan.shared();
            self.model.truncate(job.request, shared);
            self.held.entry(job.request).or_default().truncate(shared);
        }
        let feeds: Vec<Feed<'_>> = planned
            .iter()
            .map(|(job, plan)| Feed {
                seq: job.request,
                tokens: plan.tokens(job.context),
                rows: plan.rows(),
                cancel: job.cancel,
                readback: readback(job),
            })
            .collect();
        let results = self.model.forward(&feeds).await;
        for ((job, plan), result) in planned.iter().zip(&results) {
            if result.is_ok() {
                self.held
                    .entry(job.request)
                    .or_default()
                    .extend_from_slice(plan.tokens(job.context));
            }
        }
        results
    }

    /// Plans every job reading `rows(job)` rows, feeds the planned ones in
    /// one forward, and hands each finished feed's rows to `done`.
    async fn step_all<T>(
        &mut self,
        jobs: &[Job<'_>],
        rows: impl Fn(&Job<'_>) -> usize,
        readback: impl Fn(&Job<'_>) -> Readback,
        mut done: impl FnMut(usize, Rows) -> Result<T, ForwardError>,
    ) -> JobResults<T> {
        let plans: Vec<Result<Plan, ForwardError>> = jobs
            .iter()
            .map(|job| self.plan(job.request, job.context, rows(job)))
            .collect();
        let refused: Vec<_> = plans
            .iter()
            .map(|p| p.as_ref().err().cloned().map(Err))
            .collect();
        let open = undecided(&refused);
        // Every open job has a plan, so `planned` lines up with it.
        let planned: Vec<(Job<'_>, Plan)> = open
            .iter()
            .filter_map(|&i| plans[i].as_ref().ok().map(|&plan| (jobs[i], plan)))
            .collect();
        let fed = self.feed(&planned, readback).await;
        let ran = open
            .iter()
            .zip(&planned)
            .zip(fed)
            .map(|((&i, &(_, plan)), logits)| match (plan, logits) {
                (_, Err(e)) => Err(e),
                (Plan::Chunk { .. }, Ok(_)) => Ok(JobStep::Prefilled),
                (Plan::Rest { .. }, Ok(logits)) => done(i, logits).map(JobStep::Done),
            })
            .collect();
        complete(refused, ran)
    }

    /// Drafts `job.count` tokens after each job's context, each with the
    /// drafter's distribution when its decoding needs it, stepping every job
    /// at once. A job whose flag is raised stops with
    /// [`ForwardError::Cancelled`] at the next step.
    pub async fn draft(&mut self, jobs: &[Job<'_>]) -> JobResults<Vec<Drafted>> {
        let mut drafted: Vec<Vec<Drafted>> = jobs.iter().map(|_| Vec::new()).collect();
        // Step 0: each job's missing context plus the logits of its last
        // token (or a chunk of a long prefix).
        let live: Vec<usize> = (0..jobs.len())
            .filter(|&i| jobs[i].count > 0 && !jobs[i].context.is_empty())
            .collect();
        let first: Vec<Job<'_>> = live.iter().map(|&i| jobs[i]).collect();
        let firsts = self
            .step_all(
                &first,
                |_| 1,
                |job| job.decoding.draft_readback(),
                |j, rows| draft_token(&first[j], &[], rows),
            )
            .await;
        let mut results: Vec<Option<Result<JobStep<Vec<Drafted>>, ForwardError>>> = jobs
            .iter()
            .map(|job| match (job.context.is_empty(), job.count) {
                (true, _) => Some(Err(ForwardError::Failed(
                    "drafting needs a non-empty context".into(),
                ))),
                (false, 0) => Some(Ok(JobStep::Done(Vec::new()))),
                _ => None,
            })
            .collect();
        let mut stepping = Vec::new();
        for (&i, result) in live.iter().zip(firsts) {
            match result {
                Ok(JobStep::Done((token, probs))) => {
                    drafted[i].push(Drafted { token, probs });
                    stepping.push(i);
                }
                Ok(JobStep::Prefilled) => results[i] = Some(Ok(JobStep::Prefilled)),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        // Later steps: one token per job still drafting, all in one forward.
        let capacity = self.model.capacity();
        loop {
            stepping.retain(|&i| {
                let job = &jobs[i];
                let position = job.context.len() + drafted[i].len();
                if job.cancel.is_cancelled() {
                    results[i] = Some(Err(ForwardError::Cancelled));
                    false
                } else {
                    drafted[i].len() < job.count && position <= capacity
                }
            });
            if stepping.is_empty() {
                break;
            }
            let previous: Vec<[TokenId; 1]> = stepping
                .iter()
                .map(|&i| [drafted[i].last().map_or(0, |d| d.token)])
                .collect();
            let feeds: Vec<Feed<'_>> = stepping
                .iter()
                .zip(&previous)
                .map(|(&i, token)| Feed {
                    seq: jobs[i].request,
                    tokens: token,
                    rows: 1,
                    cancel: jobs[i].cancel,
                    readback: jobs[i].decoding.draft_readback(),
                })
                .collect();
            let fed = self.model.forward(&feeds).await;
            let mut failed = Vec::new();
            for ((&i, token), rows) in stepping.iter().zip(&previous).zip(fed) {
                let job = &jobs[i];
                if rows.is_ok() {
                    self.held.entry(job.request).or_default().push(token[0]);
                }
                match rows.and_then(|rows| draft_token(job, &drafted[i], rows)) {
                    Ok((token, probs)) => drafted[i].push(Drafted { token, probs }),
                    Err(e) => {
                        results[i] = Some(Err(e));
                        failed.push(i);
                    }
                }
            }
            stepping.retain(|i| !failed.contains(i));
        }
        results
            .into_iter()
            .zip(drafted)
            .map(|(result, drafted)| result.unwrap_or(Ok(JobStep::Done(drafted))))
            .collect()
    }

    /// Scores each job's context, whose last `job.count` tokens are drafts:
    /// what the verifier needs at the `count + 1` positions from
    /// `context.len() - count` on, every job in one forward where it can.
    /// Every row is processed by the request's logits processors against
    /// its own prefix, exactly as the drafter processed its rows.
    pub async fn score(&mut self, jobs: &[Job<'_>]) -> JobResults<Scored> {
        let vocab = self.model.vocab();
        let refused: Vec<_> = jobs
            .iter()
            .map(|job| {
                (job.count >= job.context.len()).then(|| {
                    Err(ForwardError::Failed(format!(
                        "{} drafts need a prefix before them, but the context has {} tokens",
                        job.count,
                        job.context.len()
                    )))
                })
            })
            .collect();
        let batch: Vec<Job<'_>> = undecided(&refused).iter().map(|&i| jobs[i]).collect();
        let ran = self
            .step_all(
                &batch,
                |job| job.count + 1,
                |job| job.decoding.score_readback(),
                |j, rows| Scores::of_job(&batch[j], vocab, rows),
            )
            .await;
        complete(refused, ran)
    }
}

/// The drafter's token after `job`'s context and its `drafted` tokens so
/// far, from the row a forward read back (with the distribution it was
/// drawn from when the rule needs it).
fn draft_token(
    job: &Job<'_>,
    drafted: &[Drafted],
    rows: Rows,
) -> Result<(TokenId, Option<Vec<f32>>), ForwardError> {
    let position = job.context.len() + drafted.len();
    match rows {
        Rows::Argmax(ids) => match ids.as_slice() {
            [id] => Ok((*id, None)),
            _ => Err(ForwardError::Failed(format!(
                "a draft step read back {} maxima for its one row",
                ids.len()
            ))),
        },
        Rows::Logits(logits) => {
            // The processors see the drafts so far; nothing else needs them.
            let logits = match &job.decoding.processors {
                None => logits,
                Some(_) => {
                    let drafts: Vec<TokenId> = drafted.iter().map(|d| d.token).collect();
                    job.decoding.process(job.context, &drafts, logits)
                }
            };
            Ok(job.decoding.draft_token(position, &logits))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cancel::CancelFlag;
    use crate::model::{ForwardResults, KvModel, KvState, Readback, Ready, Rows};
    use crate::sampling::{Decoding, SamplingParams};
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    const VOCAB: usize = 8;

    /// Logits that favour `(last + 1) % VOCAB`, so drafts are predictable,
    /// from a cache that records what was fed; with `device_argmax`, rows
    /// that ask for their maximum get it, as a GPU model answers.
    #[derive(Debug, Default)]
    struct Counter {
        caches: HashMap<SeqId, Vec<TokenId>>,
        device_argmax: bool,
        argmax_rows: usize,
    }

    impl KvState for Counter {
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
            self.caches.entry(seq).or_default().truncate(keep);
        }
        fn release(&mut self, seq: SeqId) {
            self.caches.remove(&seq);
        }
    }

    impl KvModel for Counter {
        fn forward(&mut self, feeds: &[Feed<'_>]) -> ForwardResults {
            feeds
                .iter()
                .map(|feed| {
                    let cache = self.caches.entry(feed.seq).or_default();
                    cache.extend_from_slice(feed.tokens);
                    let rows = &feed.tokens[feed.tokens.len() - feed.rows..];
                    if self.device_argmax && feed.readback == Readback::Argmax {
                        self.argmax_rows += rows.len();
                        return Ok(Rows::Argmax(
                            rows.iter().map(|&t| (t + 1) % VOCAB as TokenId).collect(),
                        ));
                    }
                    Ok(Rows::Logits(
                        rows.iter()
                            .flat_map(|&t| {
                                (0..VOCAB).map(move |v| f32::from(v == (t as usize + 1) % VOCAB))
                            })
                            .collect(),
                    ))
                })
                .collect()
        }
    }

    /// A device whose every forward is pending once before its logits come,
    /// as WebGPU's readback is in a browser.
    struct Pending(Ready<Counter>);

    impl KvState for Pending {
        fn vocab(&self) -> usize {
            self.0.vocab()
        }
        fn capacity(&self) -> usize {
            self.0.capacity()
        }
        fn cached(&self, seq: SeqId) -> usize {
            self.0.cached(seq)
        }
        fn truncate(&mut self, seq: SeqId, keep: usize) {
            self.0.truncate(seq, keep);
        }
        fn release(&mut self, seq: SeqId) {
            self.0.release(seq);
        }
    }

    impl AsyncKvModel for Pending {
        async fn forward(&mut self, feeds: &[Feed<'_>]) -> ForwardResults {
            let mut polled = false;
            std::future::poll_fn(|cx| {
                if polled {
                    Poll::Ready(())
                } else {
                    polled = true;
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
            })
            .await;
            self.0.forward(feeds).await
        }
    }

    /// Polls `future` to its end, counting the times it was pending.
    fn run<F: Future>(future: F) -> (F::Output, usize) {
        let mut future = pin!(future);
        let mut cx = Context::from_waker(Waker::noop());
        let mut pending = 0;
        loop {
            match future.as_mut().poll(&mut cx) {
                Poll::Ready(out) => return (out, pending),
                Poll::Pending => pending += 1,
            }
        }
    }

    #[test]
    fn awaited_forwards_give_what_ready_ones_give() {
        let decoding = Decoding::new(SamplingParams::greedy(), false).unwrap();
        let cancel = CancelFlag::new();
        let context = [3, 4, 5];
        let job = |count| Job {
            request: 1,
            context: &context,
            count,
            decoding: &decoding,
            cancel: &cancel,
        };
        let mut ready = KvSync::new(Ready(Counter::default()));
        let mut awaited = KvSync::new(Pending(Ready(Counter::default())));
        let (drafted, pending) = run(awaited.draft(&[job(3)]));
        assert_eq!(pending, 3, "one wait per drafting step");
        assert_eq!(drafted, run(ready.draft(&[job(3)])).0);
        let tokens: Vec<TokenId> = match &drafted[0] {
            Ok(JobStep::Done(d)) => d.iter().map(|d| d.token).collect(),
            other => panic!("{other:?}"),
        };
        assert_eq!(tokens, [6, 7, 0]);
        // Score the last two tokens as drafts: the cache holds what was scored.
        let scored = run(awaited.score(&[job(2)])).0;
        assert_eq!(scored, run(ready.score(&[job(2)])).0);
        assert_eq!(awaited.held(1), &[3, 4, 5]);
        awaited.release(1);
        assert!(awaited.held(1).is_empty());
    }

    /// Greedy drafting and scoring ask for each row's maximum; a model that
    /// answers with maxima (a GPU) drafts and scores as one that sends its
    /// logits, and a request that needs logits (log probabilities) gets
    /// them from both.
    #[test]
    fn maxima_read_back_give_what_logits_give() {
        let greedy = Decoding::new(SamplingParams::greedy(), false).unwrap();
        let mut with_logprobs = greedy.clone();
        with_logprobs.logprobs = Some(2);
        let cancel = CancelFlag::new();
        let context = [3, 4, 5];
        for decoding in [&greedy, &with_logprobs] {
            let job = |count| Job {
                request: 1,
                context: &context,
                count,
                decoding,
                cancel: &cancel,
            };
            let mut logits = KvSync::new(Ready(Counter::default()));
            let mut maxima = KvSync::new(Ready(Counter {
                device_argmax: true,
                ..Counter::default()
            }));
            assert_eq!(
                run(maxima.draft(&[job(3)])).0,
                run(logits.draft(&[job(3)])).0
            );
            let scored = run(maxima.score(&[job(2)])).0;
            assert_eq!(scored, run(logits.score(&[job(2)])).0);
            let read = maxima.model().0.argmax_rows;
            match decoding.logprobs {
                // Three draft rows (the first after the prompt), three scored.
                None => assert_eq!(read, 6),
                Some(_) => {
                    assert_eq!(read, 3, "drafts need no logprobs; the scores do");
                    let Ok(JobStep::Done(scored)) = &scored[0] else {
                        panic!("{scored:?}")
                    };
                    assert!(scored.logits.is_some());
                }
            }
        }
    }
}
