//! One job on one worker outside any state machine, timed as a driver sees
//! it: from handing it over to its report.

use crate::error::{Result, SchedError};
use crate::task::{ReportKind, Task, Work};
use crate::worker::WorkerHandle;
use dsi_core::TokenId;
use dsi_core::cancel::CancelFlag;
use dsi_core::sampling::Decoding;
use dsi_core::schedule::JobId;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::unbounded_channel;

/// What a finished call returned and how long it took, in milliseconds.
pub(crate) struct Called {
    pub(crate) ms: f64,
    pub(crate) report: ReportKind,
}

/// Runs `work` after `context` on `worker` for `request` (greedy) and waits
/// for its end, at most `timeout` (then the job is cancelled). A failed,
/// cancelled or late job is an error naming the worker.
pub(crate) async fn call(
    worker: &WorkerHandle,
    timeout: Duration,
    request: u64,
    job: u64,
    context: Vec<TokenId>,
    work: Work,
) -> Result<Called> {
    let cancel = CancelFlag::new();
    let called = tokio::time::timeout(
        timeout,
        run(worker, request, job, context, work, cancel.clone()),
    )
    .await;
    called.unwrap_or_else(|_| {
        cancel.cancel();
        Err(SchedError::Unfit(format!(
            "worker {} gave no result within {} ms while measured",
            worker.name(),
            timeout.as_millis()
        )))
    })
}

async fn run(
    worker: &WorkerHandle,
    request: u64,
    job: u64,
    context: Vec<TokenId>,
    work: Work,
    cancel: CancelFlag,
) -> Result<Called> {
    let (reply, mut reports) = unbounded_channel();
    let began = Instant::now();
    let task = Task {
        request,
        job: JobId(job),
        context,
        work,
        decoding: Decoding::greedy(),
        cancel,
        reply,
    };
    let gone = || SchedError::Unfit(format!("worker {} stopped while measured", worker.name()));
    if !worker.send(task) {
        return Err(gone());
    }
    loop {
        let report = reports.recv().await.ok_or_else(gone)?;
        match report.kind {
            ReportKind::Started => continue,
            ReportKind::Failed(message) => {
                return Err(SchedError::Unfit(format!(
                    "worker {} failed while measured: {message}",
                    worker.name()
                )));
            }
            ReportKind::Cancelled { .. } => return Err(gone()),
            kind => {
                return Ok(Called {
                    ms: began.elapsed().as_secs_f64() * 1e3,
                    report: kind,
                });
            }
        }
    }
}

/// The median of `samples` (0 when empty).
pub(crate) fn median(mut samples: Vec<f64>) -> f64 {
    crate::stats::median(&mut samples)
}

/// Runs futures concurrently on this task and collects their outputs in
/// order (no spawning: they may borrow the caller's data).
pub(crate) async fn join_all<F: std::future::Future>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs
        .into_iter()
        .map(|o| o.expect("every future finished"))
        .collect()
}
