//! Prometheus metrics in the text exposition format, kept by hand: a few
//! counters, gauges and two histograms need no registry crate.

use crate::openai::Endpoint;
use dsi_core::schedule::judged_rate;
use dsi_sched::Stats;
use dsi_sched::forwards::{ForwardStats, Histogram};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Upper bounds (seconds) of the time-to-first-token buckets.
const TTFT_BOUNDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Upper bounds (seconds) of the time-per-output-token buckets.
const TPOT_BOUNDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Writes `histogram` as `name`, with `labels` (`key="value",...`) on every
/// line when there are any.
fn render_histogram(out: &mut String, name: &str, labels: &str, histogram: &Histogram) {
    let sep = if labels.is_empty() { "" } else { "," };
    for (bound, count) in histogram.buckets() {
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {count}");
    }
    let _ = writeln!(
        out,
        "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
        histogram.count()
    );
    let braces = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    let _ = writeln!(
        out,
        "{name}_sum{braces} {}\n{name}_count{braces} {}",
        histogram.sum(),
        histogram.count()
    );
}

fn histogram_header(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
}

#[derive(Debug)]
struct Inner {
    requests: BTreeMap<(&'static str, u16), u64>,
    prompt_tokens: u64,
    completion_tokens: u64,
    draft_tokens: u64,
    accepted_tokens: u64,
    reached_by_position: Vec<u64>,
    accepted_by_position: Vec<u64>,
    jobs_started: u64,
    preempted_jobs: u64,
    wasted_target_forwards: u64,
    wasted_drafts: u64,
    drafter_busy_ms: f64,
    target_busy_ms: f64,
    target_jobs: u64,
    ttft: Histogram,
    tpot: Histogram,
    vanished: u64,
}

/// Everything `/metrics` reports.
#[derive(Debug)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

/// The gauges read at scrape time.
#[derive(Debug, Clone)]
pub struct Gauges {
    /// Requests waiting for a generation slot.
    pub queued: usize,
    /// Generations running.
    pub running: usize,
    /// KV memory per budgeted device.
    pub kv: Vec<dsi_sched::KvUse>,
    /// Requests waiting for KV memory now, and that ever had to wait.
    pub kv_waiting: (usize, u64),
    /// Each worker's forwards so far, by worker name.
    pub forwards: Vec<(String, ForwardStats)>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                requests: BTreeMap::new(),
                prompt_tokens: 0,
                completion_tokens: 0,
                draft_tokens: 0,
                accepted_tokens: 0,
                reached_by_position: Vec::new(),
                accepted_by_position: Vec::new(),
                jobs_started: 0,
                preempted_jobs: 0,
                wasted_target_forwards: 0,
                wasted_drafts: 0,
                drafter_busy_ms: 0.0,
                target_busy_ms: 0.0,
                target_jobs: 0,
                ttft: Histogram::new(TTFT_BOUNDS),
                tpot: Histogram::new(TPOT_BOUNDS),
                vanished: 0,
            }),
        }
    }
}

impl Metrics {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        // A panic while holding the lock leaves plain counters: keep going.
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut inner)
    }

    /// Counts a finished request by endpoint and status.
    pub fn request(&self, endpoint: Endpoint, status: u16) {
        self.with(|m| *m.requests.entry((endpoint.label(), status)).or_default() += 1);
    }

    /// Counts a generation whose task ended without finishing (a panic):
    /// its client got a 500 or an error event.
    pub fn vanished(&self) {
        self.with(|m| m.vanished += 1);
    }

    /// Records a generation: tokens, drafts, jobs and latencies
    /// (`ttft_s` from arrival, `tpot_s` per later token).
    pub fn generation(
        &self,
        prompt_tokens: usize,
        stats: Option<&Stats>,
        tokens: usize,
        ttft_s: Option<f64>,
        tpot_s: Option<f64>,
    ) {
        self.with(|m| {
            m.prompt_tokens += prompt_tokens as u64;
            m.completion_tokens += tokens as u64;
            if let Some(s) = stats {
                let c = &s.counters;
                m.draft_tokens += c.draft_tokens;
                m.accepted_tokens += c.accepted_tokens;
                add(&mut m.reached_by_position, &c.reached_by_position);
                add(&mut m.accepted_by_position, &c.accepted_by_position);
                m.jobs_started += c.jobs_started;
                m.preempted_jobs += c.jobs_preempted;
                m.wasted_target_forwards += c.wasted_target_forwards;
                m.wasted_drafts += c.wasted_drafts;
                for w in &s.workers {
                    if w.role == "drafter" {
                        m.drafter_busy_ms += w.busy_ms;
                    } else {
                        m.target_busy_ms += w.busy_ms;
                        m.target_jobs += w.jobs;
                    }
                }
            }
            if let Some(t) = ttft_s {
                m.ttft.observe(t);
            }
            if let Some(t) = tpot_s {
                m.tpot.observe(t);
            }
        });
    }

    /// The acceptance rate `a` so far: accepted over judged drafts (None
    /// before any verdict on a draft).
    pub fn acceptance(&self) -> Option<f64> {
        self.with(|m| judged_rate(&m.reached_by_position, &m.accepted_by_position))
    }
    /// The measured operating point: drafter time per drafted token over
    /// target time per verification forward (None before both ran).
    pub fn drafter_latency_ratio(&self) -> Option<f64> {
        self.with(|m| {
            (m.draft_tokens > 0 && m.target_jobs > 0 && m.target_busy_ms > 0.0).then(|| {
                (m.drafter_busy_ms / m.draft_tokens as f64)
                    / (m.target_busy_ms / m.target_jobs as f64)
            })
        })
    }

    /// The exposition text.
    pub fn render(&self, gauges: Gauges) -> String {
        self.with(|m| {
            let mut out = String::new();
            let mut counter = |name: &str, help: &str, value: u64| {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
            };
            counter("dsi_prompt_tokens_total", "Prompt tokens of finished requests.", m.prompt_tokens);
            counter("dsi_generated_tokens_total", "Tokens generated.", m.completion_tokens);
            counter("dsi_draft_tokens_total", "Tokens proposed by the drafter.", m.draft_tokens);
            counter("dsi_accepted_tokens_total", "Drafted tokens the target accepted.", m.accepted_tokens);
            counter("dsi_verification_jobs_total", "Verification and draft jobs started.", m.jobs_started);
            counter("dsi_preempted_jobs_total", "Jobs preempted because a draft they built on was rejected.", m.preempted_jobs);
            counter("dsi_wasted_target_forwards_total", "Target forwards whose result was discarded.", m.wasted_target_forwards);
            counter("dsi_wasted_drafts_total", "Drafted tokens discarded.", m.wasted_drafts);
            counter("dsi_generation_panics_total", "Generations whose task ended without finishing (answered 500 or an error event).", m.vanished);
            let _ = writeln!(out, "# HELP dsi_requests_total Requests answered, by endpoint and HTTP status.\n# TYPE dsi_requests_total counter");
            for ((endpoint, status), n) in &m.requests {
                let _ = writeln!(out, "dsi_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}");
            }
            let _ = writeln!(out, "# HELP dsi_drafts_reaching_position_total Verification jobs that reached draft index i.\n# TYPE dsi_drafts_reaching_position_total counter");
            for (i, n) in m.reached_by_position.iter().enumerate() {
                let _ = writeln!(out, "dsi_drafts_reaching_position_total{{position=\"{i}\"}} {n}");
            }
            let _ = writeln!(out, "# HELP dsi_drafts_accepted_at_position_total Drafts accepted at index i of a verification job.\n# TYPE dsi_drafts_accepted_at_position_total counter");
            for (i, n) in m.accepted_by_position.iter().enumerate() {
                let _ = writeln!(out, "dsi_drafts_accepted_at_position_total{{position=\"{i}\"}} {n}");
            }
            let _ = writeln!(out, "# HELP dsi_acceptance_by_position Fraction of jobs reaching draft index i that accepted it.\n# TYPE dsi_acceptance_by_position gauge");
            for (i, (&reached, &accepted)) in m.reached_by_position.iter().zip(&m.accepted_by_position).enumerate() {
                if reached > 0 {
                    let _ = writeln!(out, "dsi_acceptance_by_position{{position=\"{i}\"}} {}", accepted as f64 / reached as f64);
                }
            }
            let _ = writeln!(out, "# HELP dsi_queue_depth Requests waiting for a generation slot.\n# TYPE dsi_queue_depth gauge\ndsi_queue_depth {}", gauges.queued);
            let _ = writeln!(out, "# HELP dsi_active_generations Generations running.\n# TYPE dsi_active_generations gauge\ndsi_active_generations {}", gauges.running);
            render_kv(&mut out, &gauges);
            for (name, help, histogram) in [
                ("dsi_time_to_first_token_seconds", "Time from a request's arrival to its first token.", &m.ttft),
                ("dsi_time_per_output_token_seconds", "Mean time per token after the first, per request.", &m.tpot),
            ] {
                histogram_header(&mut out, name, help);
                render_histogram(&mut out, name, "", histogram);
            }
            render_forwards(&mut out, &gauges);
            out
        })
    }
}

/// Each worker's forwards: sequences, rows and seconds per forward.
fn render_forwards(out: &mut String, gauges: &Gauges) {
    type Part = fn(&ForwardStats) -> &Histogram;
    let parts: [(&str, &str, Part); 3] = [
        (
            "dsi_forward_sequences",
            "Sequences (requests) per forward of a worker: the batch size.",
            |s| &s.members,
        ),
        (
            "dsi_forward_rows",
            "Rows (tokens fed) per forward of a worker.",
            |s| &s.rows,
        ),
        (
            "dsi_forward_seconds",
            "Time per forward of a worker.",
            |s| &s.seconds,
        ),
    ];
    for (name, help, part) in parts {
        histogram_header(out, name, help);
        for (worker, stats) in &gauges.forwards {
            render_histogram(out, name, &format!("worker=\"{worker}\""), part(stats));
        }
    }
}

/// KV memory per device: budget, reserved by admitted requests, held by
/// caches now; requests waiting for memory.
fn render_kv(out: &mut String, gauges: &Gauges) {
    let per_device = [
        ("dsi_kv_budget_bytes", "KV-cache budget of the device.", 0),
        (
            "dsi_kv_reserved_bytes",
            "KV-cache bytes reserved by admitted requests.",
            1,
        ),
        (
            "dsi_kv_held_bytes",
            "KV-cache bytes the device's caches hold now.",
            2,
        ),
        (
            "dsi_kv_peak_reserved_bytes",
            "The most KV-cache bytes ever reserved at once.",
            3,
        ),
    ];
    for (name, help, which) in per_device {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for kv in &gauges.kv {
            let value = match which {
                0 => kv.device.budget,
                1 => kv.device.reserved,
                2 => kv.held,
                _ => kv.device.peak_reserved,
            };
            let _ = writeln!(out, "{name}{{device=\"{}\"}} {value}", kv.device.device);
        }
    }
    let (waiting, waited) = gauges.kv_waiting;
    let _ = writeln!(
        out,
        "# HELP dsi_kv_waiting_requests Requests waiting for KV-cache memory.\n# TYPE dsi_kv_waiting_requests gauge\ndsi_kv_waiting_requests {waiting}"
    );
    let _ = writeln!(
        out,
        "# HELP dsi_kv_waited_requests_total Requests that had to wait for KV-cache memory.\n# TYPE dsi_kv_waited_requests_total counter\ndsi_kv_waited_requests_total {waited}"
    );
}

fn add(total: &mut Vec<u64>, more: &[u64]) {
    if total.len() < more.len() {
        total.resize(more.len(), 0);
    }
    for (t, m) in total.iter_mut().zip(more) {
        *t += m;
    }
}
