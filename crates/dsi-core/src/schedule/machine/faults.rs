//! Workers that fail: a job that reports an error, and a worker that stops
//! answering. Either way the worker is retired for this request and the
//! positions it owed are verified elsewhere; a failed drafter leaves the
//! target decoding alone.

use super::{Command, LiveJob, Machine, StopReason, WorkerState};
use crate::schedule::{EventKind, JobId, Mode, WorkerRef};

impl Machine {
    /// A worker reported that `job` failed. A job already preempted only
    /// ends: its worker answered, so it stays in service.
    pub fn on_failed(&mut self, job: JobId, message: String) {
        let Some(live) = self.finish_job(job) else {
            return;
        };
        self.job_event(EventKind::Failed, job, &live, None);
        if !live.preempted {
            self.retire(live.worker, &message);
            self.rerun(&[live]);
        }
        self.keep_busy();
    }

    /// `job` gave no sign of life within its deadline, preempted or not: a
    /// worker that does not even acknowledge a cancel is hung. It is retired
    /// for this request, and its other jobs, queued behind the hung one, are
    /// cancelled and their positions verified elsewhere.
    pub fn on_timed_out(&mut self, job: JobId, message: String) {
        let Some(live) = self.finish_job(job) else {
            return;
        };
        self.job_event(EventKind::Failed, job, &live, None);
        let worker = live.worker;
        let behind: Vec<JobId> = self
            .live
            .iter()
            .filter(|(_, other)| other.worker == worker)
            .map(|(&id, _)| id)
            .collect();
        let mut lost = vec![live];
        for id in behind {
            if let Some(other) = self.finish_job(id) {
                self.commands.push(Command::Cancel { job: id, worker });
                self.job_event(EventKind::Failed, id, &other, None);
                lost.push(other);
            }
        }
        self.retire(worker, &message);
        self.rerun(&lost);
        self.keep_busy();
    }

    /// Takes `worker` out of this request, once, with `message` in the
    /// errors; the last target going ends the request as failed.
    fn retire(&mut self, worker: WorkerRef, message: &str) {
        match worker {
            WorkerRef::Drafter => {
                // Already retired by a fault. Both conditions: a non-SI
                // plan starts it retired without one, and a retune asked
                // before the fault may revive it (then it is retired again).
                if self.drafter == WorkerState::Retired && self.counters.fell_back_to_nonsi {
                    return;
                }
                // Drafts already delivered stay valid and their jobs run on;
                // from here the target decodes alone.
                self.counters
                    .errors
                    .push(format!("drafter: {message}; finishing as non-SI"));
                self.counters.fell_back_to_nonsi = true;
                self.drafter = WorkerState::Retired;
                self.mode = Mode::NonSi;
            }
            WorkerRef::Target(w) => {
                if self.targets[w] == WorkerState::Retired {
                    return;
                }
                self.counters.errors.push(format!(
                    "target worker {w}: {message}; retired for this request"
                ));
                self.targets[w] = WorkerState::Retired;
                if self.targets.iter().all(|&s| s == WorkerState::Retired) {
                    self.finish(StopReason::Failed(format!(
                        "every target worker failed; the last said: {message}"
                    )));
                }
            }
        }
    }

    /// Queues again the verifications that `lost` jobs owed: those of the
    /// current epoch that were not preempted (a drafter's lost drafts are
    /// not redrafted: the request continues as non-SI).
    fn rerun(&mut self, lost: &[LiveJob]) {
        for live in lost {
            let owed = !live.preempted && live.epoch == self.epoch;
            if owed && self.stop.is_none() && matches!(live.worker, WorkerRef::Target(_)) {
                self.submit_verify(live.end.max(self.verified_len()));
            }
        }
    }
}
