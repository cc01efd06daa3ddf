//! One generation on the shared pool, as a task of its own: it waits for a
//! slot, runs the scheduler, turns tokens into text deltas, applies stop
//! strings (a stop string ends the request at once, keeping its stats), and
//! sends [`Piece`]s to whoever answers the client.
//!
//! The task watches its channel: when the client goes away (the response
//! body or the handler is dropped) the generation is dropped too, which
//! cancels every job it has on the workers. It also ends at the request's
//! deadline and when a drain runs out of grace.

use crate::admission::Ticket;
use crate::codec::TextCodec;
use crate::error::ApiError;
use crate::openai::{Endpoint, FinishReason, LogprobEntry, Usage};
use crate::output::{Output, Released};
use crate::prepare::Prepared;
use crate::state::State;
use dsi_core::cancel::CancelFlag;
use dsi_core::sampling::TokenLogprobs;
use dsi_core::schedule::StopReason;
use dsi_sched::{Generation, Update};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc::UnboundedSender;

/// What a generation sends, in order: text, then either an error or a
/// finish reason and usage, then `Done`.
#[derive(Debug)]
pub enum Piece {
    /// New text, with the log probabilities of the tokens it completes
    /// when the request asked for them.
    Text(String, Option<Vec<LogprobEntry>>),
    /// Why it ended.
    Finish(FinishReason),
    /// Token counts and dsi's acceptance figures.
    Usage(Usage),
    /// It failed after the response began (or before, for whole responses).
    Error(ApiError),
    /// Nothing follows.
    Done,
}

enum Outcome {
    Finished(Box<dsi_sched::Result<Generation>>),
    ClientGone,
    Deadline,
    Shutdown,
}

/// Runs `prepared` (response id `id`) once `ticket` gets a slot, sending
/// pieces to `tx`.
pub async fn run(
    state: Arc<State>,
    endpoint: Endpoint,
    id: String,
    prepared: Prepared,
    mut ticket: Ticket,
    arrived: Instant,
    tx: UnboundedSender<Piece>,
) {
    let deadline = tokio::time::Instant::from_std(arrived + state.config.request_timeout);
    let prompt_tokens = prepared.request.prompt.len();
    let mode = prepared.request.mode;
    let end = End {
        state: &state,
        endpoint,
        id: &id,
        mode: mode.to_string(),
        arrived,
        prompt_tokens,
    };
    let seed = prepared.request.decoding.params.seed;
    tokio::select! {
        () = ticket.run() => {}
        () = tx.closed() => return end.gone(0),
        () = tokio::time::sleep_until(deadline) => {
            return end.fail(&tx, ApiError::deadline(state.config.request_timeout.as_secs_f64()));
        }
        () = state.shutdown.cancelled() => return end.fail(&tx, ApiError::draining()),
    }

    let codec = Arc::clone(&state.codec);
    let logprobs = prepared.logprobs;
    if let Some(echo) = prepared.echo.filter(|e| !e.is_empty()) {
        let _ = tx.send(Piece::Text(echo, None));
    }
    let mut output = Output::new(prepared.stop);
    let mut first_token: Option<Instant> = None;
    let mut decode_error: Option<String> = None;
    let mut pending_logprobs: Option<Vec<TokenLogprobs>> = None;
    let stop = CancelFlag::new();
    let outcome = tokio::select! {
        result = state.pool.generate_until(prepared.request, &stop, |update| {
            let tokens = match update {
                Update::Tokens(tokens) => tokens,
                Update::Logprobs(rows) => return pending_logprobs = Some(rows.to_vec()),
                Update::Timeline(_) => return,
            };
            first_token.get_or_insert_with(Instant::now);
            let rows = pending_logprobs.take();
            match output.push(codec.as_ref(), tokens, rows.as_deref()) {
                Ok(released) => {
                    send(&tx, codec.as_ref(), released, logprobs);
                    if output.stopped() {
                        // Ends the request with its stats.
                        stop.cancel();
                    }
                }
                Err(e) => {
                    decode_error.get_or_insert(e);
                    stop.cancel();
                }
            }
        }) => Outcome::Finished(Box::new(result)),
        () = tx.closed() => Outcome::ClientGone,
        () = tokio::time::sleep_until(deadline) => Outcome::Deadline,
        () = state.shutdown.cancelled() => Outcome::Shutdown,
    };
    drop(ticket);

    let tokens = output.generated_tokens();
    let ttft_s = first_token.map(|t| t.duration_since(arrived).as_secs_f64());
    let tpot_s = first_token
        .filter(|_| tokens > 1)
        .map(|t| t.elapsed().as_secs_f64() / (tokens - 1) as f64);
    let mut usage = Usage {
        prompt_tokens,
        mode: mode.to_string(),
        ttft_ms: ttft_s.unwrap_or(0.0) * 1e3,
        seed,
        ..Usage::default()
    };
    let (finish, stats) = match outcome {
        _ if decode_error.is_some() => {
            let message = decode_error.unwrap_or_default();
            return end.fail(
                &tx,
                ApiError::engine(format!("the output cannot be decoded: {message}")),
            );
        }
        Outcome::Finished(result) => match *result {
            Ok(generation) => {
                let finish = match &generation.stop {
                    _ if output.stopped() => FinishReason::Stop,
                    StopReason::Eos => FinishReason::Stop,
                    StopReason::MaxTokens => FinishReason::Length,
                    StopReason::Cancelled if stop.is_cancelled() => FinishReason::Stop,
                    StopReason::Cancelled => {
                        return end.fail(&tx, ApiError::engine("the generation was cancelled"));
                    }
                    StopReason::Failed(why) => {
                        return end.fail(
                            &tx,
                            ApiError::engine(format!("the generation failed: {why}")),
                        );
                    }
                };
                (finish, generation.stats)
            }
            Err(e) => return end.fail(&tx, e.into()),
        },
        Outcome::ClientGone => {
            state
                .metrics
                .generation(prompt_tokens, None, tokens, ttft_s, tpot_s);
            return end.gone(tokens);
        }
        Outcome::Deadline => {
            return end.fail(
                &tx,
                ApiError::deadline(state.config.request_timeout.as_secs_f64()),
            );
        }
        Outcome::Shutdown => {
            return end.fail(
                &tx,
                ApiError::engine("the server shut down before the generation finished"),
            );
        }
    };
    // Empty after a stop string: the scan drops what follows it.
    match output.finish(codec.as_ref()) {
        Ok(rest) => send(&tx, codec.as_ref(), rest, logprobs),
        Err(e) => {
            let message = format!("the output cannot be decoded: {e}");
            return end.fail(&tx, ApiError::engine(message));
        }
    }
    usage.completion_tokens = output.completion_tokens();
    usage.total_tokens = prompt_tokens + usage.completion_tokens;
    let c = &stats.counters;
    usage.draft_tokens = c.draft_tokens;
    usage.accepted_tokens = c.accepted_tokens;
    usage.acceptance_rate = c.acceptance_rate().unwrap_or(0.0);
    usage.preempted_jobs = c.jobs_preempted;
    usage.mode = stats.mode.to_string();
    usage.policy = stats.policy().to_string();
    usage.auto = stats.auto.clone();
    state
        .metrics
        .generation(prompt_tokens, Some(&stats), tokens, ttft_s, tpot_s);
    end.finished(&usage, finish);
    let _ = tx.send(Piece::Finish(finish));
    let _ = tx.send(Piece::Usage(usage));
    let _ = tx.send(Piece::Done);
}

/// Sends released text, with its tokens' log probabilities rendered for
/// the response when `logprobs` was asked.
fn send(tx: &UnboundedSender<Piece>, codec: &dyn TextCodec, released: Released, logprobs: bool) {
    if released.is_empty() {
        return;
    }
    let entries = logprobs.then(|| {
        released
            .tokens
            .iter()
            .filter_map(|token| LogprobEntry::new(codec, token))
            .collect()
    });
    let _ = tx.send(Piece::Text(released.text, entries));
}

/// How a request ends: counted in the metrics and logged, one line each.
struct End<'a> {
    state: &'a State,
    endpoint: Endpoint,
    id: &'a str,
    mode: String,
    arrived: Instant,
    prompt_tokens: usize,
}

impl End<'_> {
    fn duration_ms(&self) -> f64 {
        self.arrived.elapsed().as_secs_f64() * 1e3
    }

    /// A 200 with its usage.
    fn finished(&self, usage: &Usage, finish: FinishReason) {
        self.state.metrics.request(self.endpoint, 200);
        tracing::info!(
            target: "dsi::request",
            id = self.id,
            endpoint = self.endpoint.label(),
            status = 200,
            mode = %self.mode,
            policy = %usage.policy,
            prompt_tokens = self.prompt_tokens,
            completion_tokens = usage.completion_tokens,
            acceptance = usage.acceptance_rate,
            ttft_ms = usage.ttft_ms,
            duration_ms = self.duration_ms(),
            finish = ?finish,
            "request finished"
        );
    }

    /// The client went away after `tokens` tokens (499, nginx's code).
    fn gone(&self, tokens: usize) {
        self.state.metrics.request(self.endpoint, 499);
        tracing::info!(
            target: "dsi::request",
            id = self.id,
            endpoint = self.endpoint.label(),
            status = 499,
            mode = %self.mode,
            prompt_tokens = self.prompt_tokens,
            completion_tokens = tokens,
            duration_ms = self.duration_ms(),
            "client went away"
        );
    }

    /// An error, sent to the client and then `Done`.
    fn fail(&self, tx: &UnboundedSender<Piece>, error: ApiError) {
        let status = error.status.as_u16();
        self.state.metrics.request(self.endpoint, status);
        tracing::warn!(
            target: "dsi::request",
            id = self.id,
            endpoint = self.endpoint.label(),
            status,
            mode = %self.mode,
            prompt_tokens = self.prompt_tokens,
            duration_ms = self.duration_ms(),
            error = %error.message,
            "request failed"
        );
        let _ = tx.send(Piece::Error(error));
        let _ = tx.send(Piece::Done);
    }
}
