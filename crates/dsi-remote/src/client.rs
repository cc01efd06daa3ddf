//! The coordinator's end: a [`WorkerHandle`] whose task channel a proxy
//! serves over one gRPC stream to a worker in another process, so the
//! scheduler drives it as it drives a worker thread.
//!
//! The proxy keeps each job's reply channel and cancellation flag, sends a
//! `Cancel` the moment a flag is raised, and turns the worker's reports
//! back into the scheduler's. When the connection breaks, every job in
//! flight fails at once (the scheduler's failover re-queues it on another
//! target, then falls back to non-SI) and the proxy reconnects with
//! backoff; jobs sent meanwhile fail at once, so requests never wait on a
//! worker that is down. A worker that comes back serving another model is
//! not used.

use crate::auth::AuthToken;
use crate::context::Mirror;
use crate::info::{PROTOCOL_VERSION, WorkerInfo};
use crate::pb::worker_client::WorkerClient;
use crate::pb::{self, from_worker, to_worker};
use crate::server::{KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT};
use crate::wire;
use dsi_core::sampling::Decoding;
use dsi_core::schedule::JobId;
use dsi_sched::memory::Reservation;
use dsi_sched::task::{Message, Report, ReportKind, Task};
use dsi_sched::{RemoteMarks, WorkerHandle};
use std::collections::HashMap;
use std::future::Future;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::sync::oneshot;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// Why a remote worker cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The address is not `grpc://host:port` (or `grpcs://`).
    #[error("bad worker address {0:?}: expected grpc://HOST:PORT (or grpcs:// with TLS)")]
    Address(String),
    /// Nothing answered.
    #[error("cannot reach worker {url}: {reason}")]
    Unreachable {
        /// The worker.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// It answered and said no (auth token, protocol version).
    #[error("worker {url} refused the connection: {reason}")]
    Refused {
        /// The worker.
        url: String,
        /// Its words.
        reason: String,
    },
    /// The coordinator's own runtime could not start.
    #[error("cannot start the gRPC client runtime: {0}")]
    Runtime(String),
}

/// How to reach workers.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Sent on every call (the worker's `--auth-token-file`).
    pub token: Option<AuthToken>,
    /// PEM certificate of the authority that signed the workers'
    /// certificates (`grpcs://` addresses).
    pub tls_ca: Option<Vec<u8>>,
    /// How long a connection attempt may take.
    pub connect_timeout: Duration,
    /// First wait before reconnecting; doubles up to `max_backoff`.
    pub first_backoff: Duration,
    /// Longest wait between reconnection attempts.
    pub max_backoff: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            token: None,
            tls_ca: None,
            connect_timeout: Duration::from_secs(5),
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// A connected remote worker: the handle to give the pool and what it
/// serves.
#[derive(Debug)]
pub struct RemoteWorker {
    /// The scheduler's handle (named and budgeted by its address).
    pub handle: WorkerHandle,
    /// What the worker said in the handshake.
    pub info: WorkerInfo,
}

/// True for the addresses [`connect`] takes.
pub fn is_remote(spec: &str) -> bool {
    spec.starts_with("grpc://") || spec.starts_with("grpcs://")
}

/// Connects to the worker at `url` and hands back its handle once it
/// answered the handshake. Blocks; the connection lives on a small runtime
/// of its own, so the handle works from any thread or runtime.
pub fn connect(url: &str, options: ConnectOptions) -> Result<RemoteWorker, RemoteError> {
    let runtime = runtime()?;
    let endpoint = endpoint(url, &options)?;
    let (sent, answer) = std::sync::mpsc::channel();
    let (url_owned, opts) = (url.to_owned(), options.clone());
    let attempt = endpoint.clone();
    runtime.spawn(async move {
        let _ = sent.send(handshake(&url_owned, &attempt, &opts).await);
    });
    let (channel, info) = answer
        .recv()
        .map_err(|_| RemoteError::Runtime("the handshake task vanished".into()))??;
    let (tasks, inbox) = unbounded_channel();
    let (handle, marks) = WorkerHandle::remote(url, tasks, info.footprint);
    let handle = handle.on_device(url);
    let proxy = Proxy {
        url: url.to_owned(),
        endpoint,
        options,
        first: info.clone(),
        marks,
    };
    runtime.spawn(proxy.run(inbox, channel));
    Ok(RemoteWorker { handle, info })
}

/// The runtime every proxy of this process runs on: one thread, so a job
/// crosses one thread boundary on its way out (from the driver) and one on
/// the way back (to the driver), which keeps the overhead per job low.
fn runtime() -> Result<&'static Handle, RemoteError> {
    static RUNTIME: OnceLock<Result<Handle, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            let handle = runtime.handle().clone();
            std::thread::Builder::new()
                .name("dsi-remote".into())
                .spawn(move || runtime.block_on(std::future::pending::<()>()))
                .map_err(|e| e.to_string())?;
            Ok(handle)
        })
        .as_ref()
        .map_err(|e| RemoteError::Runtime(e.clone()))
}

fn endpoint(url: &str, options: &ConnectOptions) -> Result<Endpoint, RemoteError> {
    let (scheme, authority) = if let Some(rest) = url.strip_prefix("grpc://") {
        ("http", rest)
    } else if let Some(rest) = url.strip_prefix("grpcs://") {
        ("https", rest)
    } else {
        return Err(RemoteError::Address(url.into()));
    };
    if authority.is_empty() || authority.contains('/') || !authority.contains(':') {
        return Err(RemoteError::Address(url.into()));
    }
    let endpoint = Endpoint::from_shared(format!("{scheme}://{authority}"))
        .map_err(|_| RemoteError::Address(url.into()))?
        .tcp_nodelay(true)
        .connect_timeout(options.connect_timeout)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    tls(endpoint, scheme, url, options)
}

/// TLS for `grpcs://` addresses, trusting `tls_ca` (else the system's
/// roots are not loaded: a private authority is what a cluster uses).
fn tls(
    endpoint: Endpoint,
    scheme: &str,
    url: &str,
    options: &ConnectOptions,
) -> Result<Endpoint, RemoteError> {
    if scheme != "https" {
        return Ok(endpoint);
    }
    let Some(ca) = &options.tls_ca else {
        return Err(RemoteError::Refused {
            url: url.into(),
            reason: "a grpcs:// worker needs the certificate authority that signed its \
                     certificate (--worker-tls-ca)"
                .into(),
        });
    };
    let config = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca));
    endpoint
        .tls_config(config)
        .map_err(|e| RemoteError::Refused {
            url: url.into(),
            reason: format!("TLS setup: {e}"),
        })
}

/// Adds the auth token to every call.
#[derive(Debug, Clone)]
struct Attach(Option<AuthToken>);

impl Interceptor for Attach {
    fn call(&mut self, request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        match &self.0 {
            Some(token) => token.attach(request),
            None => Ok(request),
        }
    }
}

type Client = WorkerClient<InterceptedService<Channel, Attach>>;

fn client(channel: Channel, options: &ConnectOptions) -> Client {
    WorkerClient::with_interceptor(channel, Attach(options.token.clone()))
        .max_decoding_message_size(256 << 20)
}

/// Connects and asks what the worker serves.
async fn handshake(
    url: &str,
    endpoint: &Endpoint,
    options: &ConnectOptions,
) -> Result<(Channel, WorkerInfo), RemoteError> {
    let unreachable = |reason: String| RemoteError::Unreachable {
        url: url.into(),
        reason,
    };
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| unreachable(source_chain(&e)))?;
    let reply = tokio::time::timeout(
        options.connect_timeout,
        client(channel.clone(), options).handshake(pb::HandshakeRequest {
            protocol: PROTOCOL_VERSION,
        }),
    )
    .await
    .map_err(|_| unreachable("no handshake reply in time".into()))?
    .map_err(|status| match status.code() {
        tonic::Code::Unavailable => unreachable(status.message().into()),
        _ => RemoteError::Refused {
            url: url.into(),
            reason: status.message().into(),
        },
    })?;
    let info = WorkerInfo::from_wire(reply.into_inner()).map_err(|e| RemoteError::Refused {
        url: url.into(),
        reason: e.to_string(),
    })?;
    Ok((channel, info))
}

/// An error and its causes on one line.
fn source_chain(err: &dyn std::error::Error) -> String {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line
}

/// Serves one remote worker's task channel.
struct Proxy {
    url: String,
    endpoint: Endpoint,
    options: ConnectOptions,
    /// What the worker served at the first handshake.
    first: WorkerInfo,
    marks: RemoteMarks,
}

/// How a connection ended.
enum Ended {
    /// Every handle is gone: the proxy stops.
    Closed,
    /// The connection broke, for this reason.
    Broken(String),
}

/// A job sent and not yet finished.
struct Flight {
    job: JobId,
    reply: UnboundedSender<Report>,
    /// Dropped when the job ends, which stops its cancellation watcher.
    _done: oneshot::Sender<()>,
}

impl Proxy {
    async fn run(self, mut inbox: UnboundedReceiver<Message>, channel: Channel) {
        let mut channel = Some(channel);
        loop {
            let reason = match channel.take() {
                Some(ch) => match self.connected(ch, &mut inbox).await {
                    Ended::Closed => return,
                    Ended::Broken(why) => why,
                },
                None => "not connected".into(),
            };
            tracing::warn!(target: "dsi::remote", "worker {}: {reason}; reconnecting", self.url);
            match self.reconnect(&mut inbox, reason).await {
                Some(ch) => {
                    tracing::info!(target: "dsi::remote", "worker {} is back", self.url);
                    channel = Some(ch);
                }
                None => return,
            }
        }
    }

    /// Tries again with backoff until the worker answers as the same
    /// worker, failing every job sent meanwhile. `None`: every handle is
    /// gone.
    async fn reconnect(
        &self,
        inbox: &mut UnboundedReceiver<Message>,
        mut reason: String,
    ) -> Option<Channel> {
        let mut backoff = self.options.first_backoff;
        loop {
            self.failing(inbox, &reason, tokio::time::sleep(backoff))
                .await?;
            backoff = (backoff * 2).min(self.options.max_backoff);
            let attempt = handshake(&self.url, &self.endpoint, &self.options);
            match self.failing(inbox, &reason, attempt).await? {
                Ok((channel, info)) => match info.differs_from(&self.first) {
                    None => return Some(channel),
                    Some(why) => reason = format!("the restarted worker is refused: {why}"),
                },
                Err(e) => reason = e.to_string(),
            }
        }
    }

    /// Runs `work` while failing every job that arrives (the worker is
    /// down). `None`: every handle is gone.
    async fn failing<T>(
        &self,
        inbox: &mut UnboundedReceiver<Message>,
        reason: &str,
        work: impl Future<Output = T>,
    ) -> Option<T> {
        tokio::pin!(work);
        loop {
            tokio::select! {
                out = &mut work => return Some(out),
                message = inbox.recv() => match message? {
                    Message::Run(task) => reply(
                        &task.reply,
                        task.job,
                        ReportKind::Failed(format!(
                            "worker {} is unreachable ({reason}); reconnecting",
                            self.url
                        )),
                    ),
                    // A worker that is down holds no cache.
                    Message::Release(_, reservation) => drop(reservation),
                },
            }
        }
    }

    /// Serves one connection until it breaks or every handle is gone.
    async fn connected(&self, channel: Channel, inbox: &mut UnboundedReceiver<Message>) -> Ended {
        let (out, outbound) = unbounded_channel::<pb::ToWorker>();
        let mut inbound = match client(channel, &self.options)
            .serve(UnboundedReceiverStream::new(outbound))
            .await
        {
            Ok(response) => response.into_inner(),
            Err(status) => return Ended::Broken(status.message().to_owned()),
        };
        let mut state = Link {
            url: self.url.clone(),
            out,
            flights: HashMap::new(),
            mirror: Mirror::default(),
            decodings: HashMap::new(),
            pending: HashMap::new(),
            next_tag: 0,
        };
        let (cancels, mut cancelled) = unbounded_channel::<u64>();
        let ended = loop {
            tokio::select! {
                message = inbox.recv() => match message {
                    None => break Ended::Closed,
                    Some(Message::Run(task)) => {
                        if !state.run(task, &cancels) {
                            break Ended::Broken("the stream to the worker closed".into());
                        }
                    }
                    Some(Message::Release(request, reservation)) => state.release(request, reservation),
                },
                Some(tag) = cancelled.recv() => {
                    if state.flights.contains_key(&tag) {
                        state.send(to_worker::Kind::Cancel(pb::Cancel { tag }));
                    }
                }
                incoming = inbound.message() => match incoming {
                    Ok(Some(message)) => self.take(&mut state, message),
                    Ok(None) => break Ended::Broken("the worker closed the stream".into()),
                    Err(status) => break Ended::Broken(status.message().to_owned()),
                },
            }
        };
        let why = match &ended {
            Ended::Closed => "the coordinator stopped".to_owned(),
            Ended::Broken(why) => why.clone(),
        };
        for (_, flight) in state.flights.drain() {
            reply(
                &flight.reply,
                flight.job,
                ReportKind::Failed(format!("lost the connection to worker {}: {why}", self.url)),
            );
        }
        ended
    }

    /// One message from the worker.
    fn take(&self, state: &mut Link, message: pb::FromWorker) {
        let now = Instant::now();
        match message.kind {
            Some(from_worker::Kind::Report(report)) => {
                self.marks.set_kv_bytes(report.kv_bytes as usize);
                self.marks.moved_at(now);
                let Some(flight) = state.flights.get(&report.tag) else {
                    return;
                };
                let kind =
                    wire::report_kind_from(report.kind, self.first.vocab).unwrap_or_else(|e| {
                        ReportKind::Failed(format!("worker {} sent {e}", self.url))
                    });
                let ends = wire::ends_job(&kind);
                reply(&flight.reply, flight.job, kind);
                if ends {
                    state.flights.remove(&report.tag);
                }
            }
            Some(from_worker::Kind::Released(released)) => {
                state.pending.remove(&released.request);
            }
            Some(from_worker::Kind::Heartbeat(beat)) => {
                self.marks.set_kv_bytes(beat.kv_bytes as usize);
                let idle = Duration::from_micros(beat.idle_us);
                self.marks.moved_at(now.checked_sub(idle).unwrap_or(now));
            }
            None => {}
        }
    }
}

/// One connection's state on the coordinator's side.
struct Link {
    /// The worker's address, for the errors that name it.
    url: String,
    out: UnboundedSender<pb::ToWorker>,
    flights: HashMap<u64, Flight>,
    mirror: Mirror,
    decodings: HashMap<u64, Decoding>,
    /// Reservations of released requests, dropped when the worker says
    /// their caches are freed.
    pending: HashMap<u64, Vec<Reservation>>,
    next_tag: u64,
}

impl Link {
    fn send(&self, kind: to_worker::Kind) -> bool {
        self.out.send(pb::ToWorker { kind: Some(kind) }).is_ok()
    }

    /// Sends a job; false when the stream is gone (the job then failed).
    fn run(&mut self, task: Task, cancels: &UnboundedSender<u64>) -> bool {
        if task.cancel.is_cancelled() {
            reply(&task.reply, task.job, ReportKind::Cancelled { ran: false });
            return true;
        }
        let tag = self.next_tag;
        self.next_tag += 1;
        let (keep, tail) = self.mirror.encode(task.request, &task.context);
        let decoding = (self.decodings.get(&task.request) != Some(&task.decoding)).then(|| {
            self.decodings.insert(task.request, task.decoding.clone());
            wire::decoding(&task.decoding)
        });
        let run = pb::Run {
            tag,
            request: task.request,
            job: task.job.0,
            keep: keep as u64,
            tail,
            work: Some(wire::work(&task.work)),
            decoding,
        };
        if !self.send(to_worker::Kind::Run(run)) {
            reply(
                &task.reply,
                task.job,
                ReportKind::Failed(format!("the stream to worker {} closed", self.url)),
            );
            return false;
        }
        let (done, finished) = oneshot::channel::<()>();
        let (cancel, cancels) = (task.cancel.clone(), cancels.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = cancel.cancelled() => { let _ = cancels.send(tag); }
                _ = finished => {}
            }
        });
        self.flights.insert(
            tag,
            Flight {
                job: task.job,
                reply: task.reply,
                _done: done,
            },
        );
        true
    }

    fn release(&mut self, request: u64, reservation: Option<Reservation>) {
        self.mirror.forget(request);
        self.decodings.remove(&request);
        if self.send(to_worker::Kind::Release(pb::Release { request })) {
            self.pending.entry(request).or_default().extend(reservation);
        }
    }
}

fn reply(to: &UnboundedSender<Report>, job: JobId, kind: ReportKind) {
    // The request may have ended: nobody to tell then.
    let _ = to.send(Report {
        job,
        at: Instant::now(),
        kind,
    });
}
