//! Prometheus metrics: the server keeps plain counters and histograms
//! under one lock; a scrape takes a snapshot of them and of the gauges
//! read at that moment and has `prometheus-client` encode it (text format,
//! OpenMetrics flavour: `# EOF` at the end, counters named `*_total`).

use crate::openai::Endpoint;
use dsi_core::schedule::judged_rate;
use dsi_sched::Stats;
use dsi_sched::forwards::{ForwardStats, Histogram};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;

/// Upper bounds (seconds) of the time-to-first-token buckets.
const TTFT_BOUNDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Upper bounds (seconds) of the time-per-output-token buckets.
const TPOT_BOUNDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

#[derive(Debug, Clone)]
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
        let scrape = Scrape {
            counters: self.with(|m| m.clone()),
            gauges,
        };
        let mut registry = Registry::default();
        registry.register_collector(Box::new(scrape));
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

/// One scrape: the counters as they were, and the gauges read with them.
#[derive(Debug)]
struct Scrape {
    counters: Inner,
    gauges: Gauges,
}

/// Encodes one metric family after its descriptor. `name` is the
/// sample's name without the `_total` the encoder adds to counters.
fn family<'e>(
    encoder: &'e mut DescriptorEncoder<'_>,
    name: &'e str,
    help: &str,
    kind: MetricType,
) -> Result<MetricEncoder<'e>, fmt::Error> {
    encoder.encode_descriptor(name, help, None, kind)
}

fn counter(encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: u64) -> fmt::Result {
    ConstCounter::new(value).encode(family(encoder, name, help, MetricType::Counter)?)
}

fn gauge<V: prometheus_client::encoding::EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: V,
) -> fmt::Result {
    ConstGauge::new(value).encode(family(encoder, name, help, MetricType::Gauge)?)
}

/// One labelled sample per `(labels, value)`.
fn labelled<V, M: EncodeMetric>(
    encoder: &mut DescriptorEncoder<'_>,
    (name, help, kind): (&str, &str, MetricType),
    samples: impl IntoIterator<Item = (Vec<(&'static str, String)>, V)>,
    metric: impl Fn(V) -> M,
) -> fmt::Result {
    let mut family = family(encoder, name, help, kind)?;
    for (labels, value) in samples {
        metric(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// `histogram`'s cumulative counts as the encoder's per-bucket counts,
/// with the `+Inf` bucket last.
fn encode_histogram(encoder: MetricEncoder<'_>, histogram: &Histogram) -> fmt::Result {
    let mut encoder = encoder;
    let mut below = 0;
    let mut buckets: Vec<(f64, u64)> = histogram
        .buckets()
        .map(|(bound, cumulative)| {
            let bucket = (bound, cumulative - below);
            below = cumulative;
            bucket
        })
        .collect();
    buckets.push((f64::MAX, histogram.count() - below));
    encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
        histogram.sum(),
        histogram.count(),
        &buckets,
        None,
    )
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let m = &self.counters;
        let e = &mut encoder;
        for (name, help, value) in [
            (
                "dsi_prompt_tokens",
                "Prompt tokens of finished requests.",
                m.prompt_tokens,
            ),
            (
                "dsi_generated_tokens",
                "Tokens generated.",
                m.completion_tokens,
            ),
            (
                "dsi_draft_tokens",
                "Tokens proposed by the drafter.",
                m.draft_tokens,
            ),
            (
                "dsi_accepted_tokens",
                "Drafted tokens the target accepted.",
                m.accepted_tokens,
            ),
            (
                "dsi_verification_jobs",
                "Verification and draft jobs started.",
                m.jobs_started,
            ),
            (
                "dsi_preempted_jobs",
                "Jobs preempted because a draft they built on was rejected.",
                m.preempted_jobs,
            ),
            (
                "dsi_wasted_target_forwards",
                "Target forwards whose result was discarded.",
                m.wasted_target_forwards,
            ),
            (
                "dsi_wasted_drafts",
                "Drafted tokens discarded.",
                m.wasted_drafts,
            ),
            (
                "dsi_generation_panics",
                "Generations whose task ended without finishing (answered 500 or an error event).",
                m.vanished,
            ),
        ] {
            counter(e, name, help, value)?;
        }
        labelled(
            e,
            (
                "dsi_requests",
                "Requests answered, by endpoint and HTTP status.",
                MetricType::Counter,
            ),
            m.requests.iter().map(|(&(endpoint, status), &n)| {
                (
                    vec![
                        ("endpoint", endpoint.to_string()),
                        ("status", status.to_string()),
                    ],
                    n,
                )
            }),
            ConstCounter::new,
        )?;
        let position = |i: usize| vec![("position", i.to_string())];
        for (name, help, counts) in [
            (
                "dsi_drafts_reaching_position",
                "Verification jobs that reached draft index i.",
                &m.reached_by_position,
            ),
            (
                "dsi_drafts_accepted_at_position",
                "Drafts accepted at index i of a verification job.",
                &m.accepted_by_position,
            ),
        ] {
            labelled(
                e,
                (name, help, MetricType::Counter),
                counts.iter().enumerate().map(|(i, &n)| (position(i), n)),
                ConstCounter::new,
            )?;
        }
        labelled(
            e,
            (
                "dsi_acceptance_by_position",
                "Fraction of jobs reaching draft index i that accepted it.",
                MetricType::Gauge,
            ),
            m.reached_by_position
                .iter()
                .zip(&m.accepted_by_position)
                .enumerate()
                .filter(|(_, (reached, _))| **reached > 0)
                .map(|(i, (&reached, &accepted))| (position(i), accepted as f64 / reached as f64)),
            ConstGauge::new,
        )?;
        let g = &self.gauges;
        gauge(
            e,
            "dsi_queue_depth",
            "Requests waiting for a generation slot.",
            g.queued as u64,
        )?;
        gauge(
            e,
            "dsi_active_generations",
            "Generations running.",
            g.running as u64,
        )?;
        encode_kv(e, g)?;
        for (name, help, histogram) in [
            (
                "dsi_time_to_first_token_seconds",
                "Time from a request's arrival to its first token.",
                &m.ttft,
            ),
            (
                "dsi_time_per_output_token_seconds",
                "Mean time per token after the first, per request.",
                &m.tpot,
            ),
        ] {
            encode_histogram(family(e, name, help, MetricType::Histogram)?, histogram)?;
        }
        encode_forwards(e, g)
    }
}

/// Each worker's forwards: sequences, rows and seconds per forward.
fn encode_forwards(encoder: &mut DescriptorEncoder<'_>, gauges: &Gauges) -> fmt::Result {
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
        let mut family = family(encoder, name, help, MetricType::Histogram)?;
        for (worker, stats) in &gauges.forwards {
            let labels = [("worker", worker.as_str())];
            encode_histogram(family.encode_family(&labels)?, part(stats))?;
        }
    }
    Ok(())
}

/// KV memory per device: budget, reserved by admitted requests, held by
/// caches now; requests waiting for memory.
fn encode_kv(encoder: &mut DescriptorEncoder<'_>, gauges: &Gauges) -> fmt::Result {
    type Read = fn(&dsi_sched::KvUse) -> u64;
    let per_device: [(&str, &str, Read); 4] = [
        (
            "dsi_kv_budget_bytes",
            "KV-cache budget of the device.",
            |kv| kv.device.budget as u64,
        ),
        (
            "dsi_kv_reserved_bytes",
            "KV-cache bytes reserved by admitted requests.",
            |kv| kv.device.reserved as u64,
        ),
        (
            "dsi_kv_held_bytes",
            "KV-cache bytes the device's caches hold now.",
            |kv| kv.held as u64,
        ),
        (
            "dsi_kv_peak_reserved_bytes",
            "The most KV-cache bytes ever reserved at once.",
            |kv| kv.device.peak_reserved as u64,
        ),
    ];
    for (name, help, read) in per_device {
        labelled(
            encoder,
            (name, help, MetricType::Gauge),
            gauges
                .kv
                .iter()
                .map(|kv| (vec![("device", kv.device.device.clone())], read(kv))),
            ConstGauge::new,
        )?;
    }
    let (waiting, waited) = gauges.kv_waiting;
    gauge(
        encoder,
        "dsi_kv_waiting_requests",
        "Requests waiting for KV-cache memory.",
        waiting as u64,
    )?;
    counter(
        encoder,
        "dsi_kv_waited_requests",
        "Requests that had to wait for KV-cache memory.",
        waited,
    )
}

fn add(total: &mut Vec<u64>, more: &[u64]) {
    if total.len() < more.len() {
        total.resize(more.len(), 0);
    }
    for (t, m) in total.iter_mut().zip(more) {
        *t += m;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_encoder_keeps_the_names_and_values() {
        let metrics = Metrics::default();
        metrics.request(Endpoint::Completions, 200);
        metrics.request(Endpoint::Completions, 200);
        metrics.request(Endpoint::Chat, 400);
        metrics.vanished();
        metrics.generation(5, None, 7, Some(0.02), Some(0.003));
        let mut forwards = ForwardStats::default();
        forwards.members.observe(1.0);
        forwards.members.observe(3.0);
        let text = metrics.render(Gauges {
            queued: 2,
            running: 1,
            kv: Vec::new(),
            kv_waiting: (0, 4),
            forwards: vec![("cpu#0".into(), forwards)],
        });
        for line in [
            "dsi_requests_total{endpoint=\"completions\",status=\"200\"} 2",
            "dsi_requests_total{endpoint=\"chat\",status=\"400\"} 1",
            "dsi_generation_panics_total 1",
            "dsi_prompt_tokens_total 5",
            "dsi_generated_tokens_total 7",
            "dsi_queue_depth 2",
            "dsi_active_generations 1",
            "dsi_kv_waited_requests_total 4",
            "dsi_time_to_first_token_seconds_count 1",
            "dsi_time_to_first_token_seconds_bucket{le=\"0.025\"} 1",
            "dsi_time_to_first_token_seconds_bucket{le=\"0.01\"} 0",
            "dsi_forward_sequences_bucket{le=\"1.0\",worker=\"cpu#0\"} 1",
            "dsi_forward_sequences_bucket{le=\"4.0\",worker=\"cpu#0\"} 2",
            "dsi_forward_sequences_bucket{le=\"+Inf\",worker=\"cpu#0\"} 2",
            "dsi_forward_sequences_count{worker=\"cpu#0\"} 2",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }
}
