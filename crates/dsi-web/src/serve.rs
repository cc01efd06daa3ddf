//! One worker of the page: takes its tasks in order, runs each through
//! `dsi-core`'s [`KvSync`] (the code the server's worker threads run) and
//! reports back; between tasks it lets the page's other tasks run.

use crate::driver::Clock;
use crate::task::{Report, ReportKind, Task};
use dsi_core::model::{AsyncKvModel, ForwardError, SeqId};
use dsi_core::sampling::Decoding;
use dsi_core::schedule::Work;
use dsi_core::worker::{Job, JobStep, KvSync, verify};
use futures_channel::mpsc::{UnboundedReceiver, UnboundedSender};
use futures_util::StreamExt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Serves `request`'s tasks until the driver closes the inbox, then frees
/// the request's cache.
pub(crate) async fn serve<M: AsyncKvModel>(
    sync: &mut KvSync<M>,
    request: SeqId,
    decoding: &Decoding,
    mut inbox: UnboundedReceiver<Task>,
    reports: UnboundedSender<Report>,
    clock: &Clock,
) {
    while let Some(task) = inbox.next().await {
        let kind = if task.cancel.is_cancelled() {
            ReportKind::Cancelled { ran: false }
        } else {
            send(&reports, &task, clock, ReportKind::Started);
            run(sync, request, decoding, &task).await
        };
        send(&reports, &task, clock, kind);
        yield_now().await;
    }
    sync.release(request);
}

fn send(reports: &UnboundedSender<Report>, task: &Task, clock: &Clock, kind: ReportKind) {
    // The driver has stopped listening only once the request ended.
    let _ = reports.unbounded_send(Report {
        job: task.job,
        at_ms: clock.ms(),
        kind,
    });
}

/// Runs one task to its end: a long prefix takes several calls, the
/// page's other tasks running in between.
async fn run<M: AsyncKvModel>(
    sync: &mut KvSync<M>,
    request: SeqId,
    decoding: &Decoding,
    task: &Task,
) -> ReportKind {
    loop {
        let job = Job {
            request,
            context: &task.context,
            count: task.work.count(),
            decoding,
            cancel: &task.cancel,
        };
        let step = match &task.work {
            Work::Draft { .. } => sync
                .draft(&[job])
                .await
                .pop()
                .map(|r| r.map(|step| map_step(step, ReportKind::Drafted))),
            Work::Verify {
                drafts,
                draft_probs,
            } => sync.score(&[job]).await.pop().map(|r| {
                r.and_then(|step| match step {
                    JobStep::Prefilled => Ok(JobStep::Prefilled),
                    JobStep::Done(scored) => verify(
                        &task.context,
                        *drafts,
                        draft_probs.as_ref(),
                        decoding,
                        &scored,
                    )
                    .map(|verified| JobStep::Done(ReportKind::Verified(verified.verdict))),
                })
            }),
        };
        match step {
            Some(Ok(JobStep::Done(kind))) => return kind,
            Some(Ok(JobStep::Prefilled)) if task.cancel.is_cancelled() => {
                return ReportKind::Cancelled { ran: true };
            }
            Some(Ok(JobStep::Prefilled)) => yield_now().await,
            Some(Err(ForwardError::Cancelled)) => return ReportKind::Cancelled { ran: true },
            Some(Err(ForwardError::Failed(message))) => return ReportKind::Failed(message),
            None => return ReportKind::Failed("the model returned no result".into()),
        }
    }
}

fn map_step<T>(step: JobStep<T>, f: impl FnOnce(T) -> ReportKind) -> JobStep<ReportKind> {
    match step {
        JobStep::Prefilled => JobStep::Prefilled,
        JobStep::Done(value) => JobStep::Done(f(value)),
    }
}

/// Returns once, after letting every other ready task of the executor run.
fn yield_now() -> YieldNow {
    YieldNow(false)
}

struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}
