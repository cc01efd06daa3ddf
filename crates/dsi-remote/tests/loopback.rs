//! Remote workers over real gRPC connections on loopback, in one process:
//! a pool mixing local and remote targets (and a remote drafter) emits the
//! tokens of local non-SI, greedy and seeded; a worker that vanishes mid
//! request costs nothing but time; a wrong token is refused by name.

// Helpers outside #[test] functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use dsi_core::TokenId;
use dsi_core::model::{Feed, ForwardError, ForwardResults, KvModel, KvState, Rows, SeqId};
use dsi_core::sampling::{Decoding, SamplingParams};
use dsi_core::schedule::{Mode, ModeSetting};
use dsi_remote::{
    AuthToken, ConnectOptions, ModelIdentity, RemoteError, ServeOptions, WorkerInfo, WorkerRole,
    WorkerService,
};
use dsi_sched::{CachedModel, Generation, Pool, Request, Role, WorkerHandle};
use std::collections::HashMap;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

const VOCAB: usize = 48;

/// A small deterministic "language model": the next token's logits are a
/// hash of the last two tokens; `skew` perturbs some of them (a drafter
/// close to the target, not equal). `delay` makes each forward take time.
#[derive(Debug)]
struct HashModel {
    skew: u64,
    delay: Duration,
    caches: HashMap<SeqId, Vec<TokenId>>,
}

impl HashModel {
    fn new(skew: u64, delay: Duration) -> Self {
        Self {
            skew,
            delay,
            caches: HashMap::new(),
        }
    }

    fn logits(&self, previous: TokenId, last: TokenId) -> Vec<f32> {
        (0..VOCAB as u64)
            .map(|t| {
                let mut h = (u64::from(previous) * 1_000_003 + u64::from(last)) * 7919 + t;
                if self.skew != 0 && t % 5 == self.skew % 5 {
                    h ^= self.skew;
                }
                h = h.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                (h >> 40) as f32 / (1u64 << 24) as f32 * 6.0
            })
            .collect()
    }
}

impl KvState for HashModel {
    fn vocab(&self) -> usize {
        VOCAB
    }

    fn capacity(&self) -> usize {
        512
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

impl KvModel for HashModel {
    fn forward(&mut self, feeds: &[Feed<'_>]) -> ForwardResults {
        std::thread::sleep(self.delay);
        feeds
            .iter()
            .map(|feed| {
                if feed.cancel.is_cancelled() {
                    return Err(ForwardError::Cancelled);
                }
                if let Some(&bad) = feed.tokens.iter().find(|&&t| t as usize >= VOCAB) {
                    return Err(ForwardError::Failed(format!("unknown token {bad}")));
                }
                let cache = self.caches.entry(feed.seq).or_default();
                let start = cache.len();
                cache.extend_from_slice(feed.tokens);
                let cache = cache.clone();
                let rows = feed.rows.min(feed.tokens.len());
                let end = start + feed.tokens.len();
                Ok(Rows::Logits(
                    (end - rows..end)
                        .flat_map(|p| {
                            let previous = if p == 0 { 0 } else { cache[p - 1] };
                            self.logits(previous, cache[p])
                        })
                        .collect(),
                ))
            })
            .collect()
    }
}

fn worker(role: WorkerRole, delay: Duration) -> WorkerHandle {
    let model = CachedModel::new(HashModel::new(
        if role == WorkerRole::Drafter { 3 } else { 0 },
        delay,
    ));
    let role = match role {
        WorkerRole::Target => Role::Target(Box::new(model)),
        WorkerRole::Drafter => Role::Drafter(Box::new(model)),
    };
    WorkerHandle::spawn("local", role).unwrap()
}

fn info(role: WorkerRole) -> WorkerInfo {
    WorkerInfo {
        role,
        model: ModelIdentity {
            config: "c".into(),
            tokenizer: "t".into(),
            weights: role.to_string(),
        },
        dtype: "f32".into(),
        device: "cpu".into(),
        numerics: "invariant".into(),
        vocab: VOCAB,
        context: 512,
        kv_budget_bytes: 1 << 20,
        footprint: None,
        version: "test".into(),
    }
}

/// A worker process stand-in: its own runtime (dropping it closes every
/// connection, as a killed process would) serving one worker on loopback.
struct Served {
    url: String,
    runtime: Runtime,
}

fn serve(role: WorkerRole, delay: Duration, token: Option<&str>) -> Served {
    serve_with(
        role,
        delay,
        ServeOptions {
            token: token.and_then(AuthToken::new),
            ..ServeOptions::default()
        },
    )
}

fn serve_with(role: WorkerRole, delay: Duration, options: ServeOptions) -> Served {
    serve_at("127.0.0.1:0", role, delay, options)
}

/// [`serve_with`] on `address`, waiting (up to 2 s) for it to come free
/// (a restart on the port of a worker just gone).
fn serve_at(address: &str, role: WorkerRole, delay: Duration, options: ServeOptions) -> Served {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime.block_on(async {
        for _ in 0..100 {
            if let Ok(listener) = TcpListener::bind(address).await {
                return listener;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("address {address} never came free");
    });
    let url = format!("grpc://{}", listener.local_addr().unwrap());
    let service = WorkerService::new(worker(role, delay), info(role));
    runtime.spawn(dsi_remote::serve(
        listener,
        service,
        options,
        std::future::pending(),
    ));
    Served { url, runtime }
}

fn connect(url: &str, token: Option<&str>) -> Result<WorkerHandle, RemoteError> {
    let options = ConnectOptions {
        token: token.and_then(AuthToken::new),
        ..ConnectOptions::default()
    };
    dsi_remote::connect(url, options).map(|remote| remote.handle)
}

fn request(mode: Mode, decoding: Decoding) -> Request {
    Request {
        prompt: vec![1, 2, 3, 4, 5],
        mode: ModeSetting::Fixed(mode),
        k: 3,
        max_new_tokens: 40,
        eos: Vec::new(),
        decoding,
        targets: None,
    }
}

fn generate(pool: &Pool, request: Request) -> Generation {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(pool.generate(request, |_| {}))
        .unwrap()
}

/// Generates and checks that no job failed.
fn generate_clean(pool: &Pool, request: Request) -> Generation {
    let out = generate(pool, request);
    assert!(
        out.stats.counters.errors.is_empty(),
        "{:?}",
        out.stats.counters.errors
    );
    out
}

fn seeded(seed: u64) -> Decoding {
    Decoding::new(
        SamplingParams {
            temperature: 0.8,
            top_k: Some(20),
            top_p: Some(0.95),
            seed,
        },
        false,
    )
    .unwrap()
}

#[test]
fn mixed_local_and_remote_workers_emit_non_si_tokens() {
    let remote_target = serve(WorkerRole::Target, Duration::ZERO, None);
    let remote_drafter = serve(WorkerRole::Drafter, Duration::ZERO, None);
    let local = Pool::new(
        Some(worker(WorkerRole::Drafter, Duration::ZERO)),
        vec![worker(WorkerRole::Target, Duration::ZERO)],
    )
    .unwrap();
    let mixed = Pool::new(
        Some(connect(&remote_drafter.url, None).unwrap()),
        vec![
            worker(WorkerRole::Target, Duration::ZERO),
            connect(&remote_target.url, None).unwrap(),
        ],
    )
    .unwrap();
    // Drafts accepted per mode over every decoding: each drafting mode
    // must have used the remote drafter's drafts somewhere (a single run
    // may see the target win every race).
    let mut accepted = [0u64; 3];
    for decoding in [Decoding::greedy(), seeded(7), seeded(8)] {
        let reference = generate(&local, request(Mode::NonSi, decoding.clone()));
        assert_eq!(reference.tokens.len(), 40);
        for (m, mode) in [Mode::NonSi, Mode::Si, Mode::Dsi].into_iter().enumerate() {
            let out = generate_clean(&mixed, request(mode, decoding.clone()));
            assert_eq!(out.tokens, reference.tokens, "{mode:?} {decoding:?}");
            accepted[m] += out.stats.counters.accepted_tokens;
        }
    }
    assert!(
        accepted[1] > 0 && accepted[2] > 0,
        "drafts accepted (nonsi, si, dsi): {accepted:?}"
    );
    // Speculative sampling carries the drafter's distributions across.
    let speculative = Decoding::new(seeded(5).params, true).unwrap();
    let out = generate_clean(&mixed, request(Mode::Dsi, speculative));
    assert_eq!(out.tokens.len(), 40);
}

#[test]
fn a_worker_that_vanishes_mid_request_costs_only_time() {
    let doomed = serve(WorkerRole::Target, Duration::from_millis(3), None);
    let pool = Pool::new(
        Some(worker(WorkerRole::Drafter, Duration::ZERO)),
        vec![
            connect(&doomed.url, None).unwrap(),
            worker(WorkerRole::Target, Duration::from_millis(3)),
        ],
    )
    .unwrap();
    let reference = generate(&pool, request(Mode::NonSi, Decoding::greedy()));
    let url = doomed.url.clone();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(40));
        // Every connection of the "process" closes at once.
        doomed.runtime.shutdown_background();
    });
    let mut dsi = request(Mode::Dsi, Decoding::greedy());
    dsi.max_new_tokens = 40;
    let out = generate(&pool, dsi);
    killer.join().unwrap();
    assert_eq!(out.tokens, reference.tokens);
    let errors = &out.stats.counters.errors;
    assert!(
        errors.iter().any(|e| e.contains(&url)),
        "the lost worker is named in the errors: {errors:?}"
    );
    // The worker is down: later jobs on it fail at once, the request still
    // completes on the other target.
    let later = generate(&pool, request(Mode::Dsi, Decoding::greedy()));
    assert_eq!(later.tokens, reference.tokens);
}

#[test]
fn a_restarted_worker_is_used_again() {
    let first = serve(WorkerRole::Target, Duration::ZERO, None);
    let url = first.url.clone();
    let address = url.trim_start_matches("grpc://").to_owned();
    let options = ConnectOptions {
        first_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(50),
        ..ConnectOptions::default()
    };
    let remote = dsi_remote::connect(&url, options).unwrap();
    let pool = Pool::new(None, vec![remote.handle]).unwrap();
    let reference = generate(&pool, request(Mode::NonSi, Decoding::greedy()));
    first.runtime.shutdown_background();
    let down = generate(&pool, request(Mode::NonSi, Decoding::greedy()));
    assert!(down.tokens.is_empty() || !down.stats.counters.errors.is_empty());
    // Restart on the same port.
    let _restarted = serve_at(
        &address,
        WorkerRole::Target,
        Duration::ZERO,
        ServeOptions::default(),
    );
    let mut again = None;
    for _ in 0..100 {
        let out = generate(&pool, request(Mode::NonSi, Decoding::greedy()));
        if out.stats.counters.errors.is_empty() {
            again = Some(out);
            break;
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    let again = again.expect("the restarted worker serves again");
    assert_eq!(again.tokens, reference.tokens);
}

#[test]
fn a_wrong_or_missing_token_is_refused_by_name() {
    let guarded = serve(WorkerRole::Target, Duration::ZERO, Some("s3cret"));
    for token in [None, Some("guess")] {
        let err = connect(&guarded.url, token).expect_err("refused");
        let message = err.to_string();
        assert!(
            matches!(err, RemoteError::Refused { .. }) && message.contains("auth token"),
            "{message}"
        );
    }
    let pool = Pool::new(None, vec![connect(&guarded.url, Some("s3cret")).unwrap()]).unwrap();
    assert_eq!(
        generate(&pool, request(Mode::NonSi, Decoding::greedy()))
            .tokens
            .len(),
        40
    );
}

#[test]
fn bad_addresses_and_silent_ports_are_clear_errors() {
    for bad in ["http://x:1", "grpc://", "grpc://host", "grpc://host:1/path"] {
        let err = connect(bad, None).expect_err("bad address");
        assert!(matches!(err, RemoteError::Address(_)), "{bad}: {err}");
    }
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = connect(&format!("grpc://127.0.0.1:{port}"), None).expect_err("nobody there");
    assert!(matches!(err, RemoteError::Unreachable { .. }), "{err}");
}

#[test]
fn tls_connections_need_the_authority_and_carry_jobs() {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let served = serve_with(
        WorkerRole::Target,
        Duration::ZERO,
        ServeOptions {
            token: AuthToken::new("t"),
            tls: Some((cert.pem().into_bytes(), key.serialize_pem().into_bytes())),
        },
    );
    let url = served.url.replace("grpc://", "grpcs://");
    let options = |tls_ca: Option<Vec<u8>>| ConnectOptions {
        token: AuthToken::new("t"),
        tls_ca,
        ..ConnectOptions::default()
    };
    let err = dsi_remote::connect(&url, options(None)).expect_err("no authority");
    assert!(err.to_string().contains("--worker-tls-ca"), "{err}");
    // Plain text to a TLS port gets no answer it can use.
    assert!(dsi_remote::connect(&served.url, options(None)).is_err());
    let remote = dsi_remote::connect(&url, options(Some(cert.pem().into_bytes()))).unwrap();
    let pool = Pool::new(None, vec![remote.handle]).unwrap();
    let out = generate_clean(&pool, request(Mode::NonSi, Decoding::greedy()));
    assert_eq!(out.tokens.len(), 40);
}

#[test]
fn the_health_service_answers_probes_without_the_secret() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let served = serve(WorkerRole::Target, Duration::ZERO, Some("secret"));
    let address = served.url.replace("grpc://", "http://");
    let statuses = served.runtime.block_on(async move {
        let channel = tonic::transport::Endpoint::from_shared(address)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = HealthClient::new(channel);
        let mut statuses = Vec::new();
        for service in ["", "dsi.worker.v1.Worker"] {
            let request = HealthCheckRequest {
                service: service.into(),
            };
            statuses.push(client.check(request).await.unwrap().into_inner().status);
        }
        statuses
    });
    assert_eq!(statuses, [ServingStatus::Serving as i32; 2]);
}
