//! The worker's end: a gRPC service over a local [`WorkerHandle`] (the same
//! worker thread, per-request caches, fair queue and verification as in
//! process). Each stream is one coordinator's connection; its requests'
//! caches and running jobs end with it.

use crate::auth::AuthToken;
use crate::context::Mirror;
use crate::info::{PROTOCOL_VERSION, WorkerInfo};
use crate::pb::worker_server::{Worker, WorkerServer};
use crate::pb::{self, from_worker, to_worker};
use crate::wire::{self, WireError};
use dsi_core::cancel::CancelFlag;
use dsi_core::sampling::Decoding;
use dsi_core::schedule::JobId;
use dsi_sched::WorkerHandle;
use dsi_sched::memory::Reservation;
use dsi_sched::task::{Report, ReportKind, Task};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};
use tokio_stream::Stream;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// How often a stream tells its coordinator the worker is alive.
const HEARTBEAT: Duration = Duration::from_millis(200);

/// HTTP/2 pings on idle connections, so a vanished peer is noticed.
pub(crate) const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// How long a ping may go unanswered before the connection is dropped.
pub(crate) const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// The worker service: one local worker and what it serves.
#[derive(Debug, Clone)]
pub struct WorkerService {
    handle: WorkerHandle,
    info: Arc<WorkerInfo>,
}

impl WorkerService {
    /// A service over `handle`, a worker that serves what `info` says.
    pub fn new(handle: WorkerHandle, info: WorkerInfo) -> Self {
        Self {
            handle,
            info: Arc::new(info),
        }
    }
}

/// How the server is reached.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Required on every call when set.
    pub token: Option<AuthToken>,
    /// Serve TLS with this identity: PEM certificate chain and key.
    pub tls: Option<(Vec<u8>, Vec<u8>)>,
}

/// Serves `service` on `listener` until `shutdown` resolves, with the
/// standard gRPC health service beside it (unauthenticated, so probes
/// need no secret; it says only whether the worker serves).
pub async fn serve(
    listener: TcpListener,
    service: WorkerService,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<WorkerServer<WorkerService>>().await;
    let token = options.token.clone();
    let worker = tonic::service::interceptor::InterceptedService::new(
        WorkerServer::new(service).max_decoding_message_size(256 << 20),
        move |request: Request<()>| match &token {
            Some(token) => token.check(request),
            None => Ok(request),
        },
    );
    let incoming = tonic::transport::server::TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(KEEPALIVE_INTERVAL));
    let builder = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT));
    let mut builder = match &options.tls {
        Some((cert, key)) => {
            let identity = tonic::transport::Identity::from_pem(cert, key);
            builder.tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))?
        }
        None => builder,
    };
    builder
        .add_service(health_service)
        .add_service(worker)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

type Outbound = UnboundedSender<Result<pb::FromWorker, Status>>;

#[tonic::async_trait]
impl Worker for WorkerService {
    async fn handshake(
        &self,
        request: Request<pb::HandshakeRequest>,
    ) -> Result<Response<pb::HandshakeReply>, Status> {
        let protocol = request.into_inner().protocol;
        if protocol != PROTOCOL_VERSION {
            return Err(Status::failed_precondition(format!(
                "the coordinator speaks protocol {protocol}, this worker {PROTOCOL_VERSION}: run the same dsi version on both"
            )));
        }
        Ok(Response::new(self.info.to_wire()))
    }

    type ServeStream = Pin<Box<dyn Stream<Item = Result<pb::FromWorker, Status>> + Send>>;

    async fn serve(
        &self,
        request: Request<Streaming<pb::ToWorker>>,
    ) -> Result<Response<Self::ServeStream>, Status> {
        let inbound = request.into_inner();
        let (out, stream) = unbounded_channel();
        tokio::spawn(heartbeat(self.handle.clone(), out.clone()));
        tokio::spawn(
            Connection {
                handle: self.handle.clone(),
                out,
                mirror: Mirror::default(),
                decodings: HashMap::new(),
                flags: Arc::default(),
            }
            .run(inbound),
        );
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(
            stream,
        ))))
    }
}

/// Tells the coordinator, while it listens, what the caches hold and how
/// long ago the worker last moved.
async fn heartbeat(handle: WorkerHandle, out: Outbound) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    loop {
        tick.tick().await;
        let idle = handle
            .last_progress()
            .map_or(Duration::ZERO, |at| at.elapsed());
        let beat = pb::FromWorker {
            kind: Some(from_worker::Kind::Heartbeat(pb::Heartbeat {
                kv_bytes: handle.kv_bytes() as u64,
                idle_us: idle.as_micros() as u64,
            })),
        };
        if out.send(Ok(beat)).is_err() {
            return;
        }
    }
}

/// The flags of one stream's running jobs, by tag.
type Flags = Arc<Mutex<HashMap<u64, CancelFlag>>>;

fn lock(flags: &Flags) -> std::sync::MutexGuard<'_, HashMap<u64, CancelFlag>> {
    flags.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One coordinator's stream.
struct Connection {
    handle: WorkerHandle,
    out: Outbound,
    mirror: Mirror,
    decodings: HashMap<u64, Decoding>,
    flags: Flags,
}

impl Connection {
    async fn run(mut self, mut inbound: Streaming<pb::ToWorker>) {
        loop {
            match inbound.message().await {
                Ok(Some(message)) => self.take(message),
                Ok(None) => break,
                Err(status) => {
                    tracing::info!(target: "dsi::worker", "a coordinator's stream broke: {}", status.message());
                    break;
                }
            }
        }
        // The coordinator is gone: its jobs stop and its caches go.
        for flag in lock(&self.flags).drain().map(|(_, flag)| flag) {
            flag.cancel();
        }
        for request in self.mirror.requests().collect::<Vec<_>>() {
            self.handle.release(request, None);
        }
    }

    fn take(&mut self, message: pb::ToWorker) {
        match message.kind {
            Some(to_worker::Kind::Run(run)) => {
                let tag = run.tag;
                if let Err(err) = self.run_job(run) {
                    self.report(tag, ReportKind::Failed(err.to_string()));
                }
            }
            Some(to_worker::Kind::Cancel(cancel)) => {
                if let Some(flag) = lock(&self.flags).get(&cancel.tag) {
                    flag.cancel();
                }
            }
            Some(to_worker::Kind::Release(release)) => self.release(release.request),
            None => {}
        }
    }

    fn run_job(&mut self, run: pb::Run) -> Result<(), WireError> {
        let context = self.mirror.decode(run.request, run.keep, &run.tail)?;
        if let Some(decoding) = run.decoding {
            self.decodings
                .insert(run.request, wire::decoding_from(decoding)?);
        }
        let decoding = self
            .decodings
            .get(&run.request)
            .cloned()
            .ok_or_else(|| WireError::new("job", "no settings sent for its request"))?;
        let work = wire::work_from(run.work)?;
        let (reply, mut reports) = unbounded_channel::<Report>();
        let cancel = CancelFlag::new();
        lock(&self.flags).insert(run.tag, cancel.clone());
        let task = Task {
            request: run.request,
            job: JobId(run.job),
            context,
            work,
            decoding,
            cancel,
            reply,
        };
        if !self.handle.send(task) {
            lock(&self.flags).remove(&run.tag);
            return Err(WireError::new("job", "the worker thread has stopped"));
        }
        let (out, flags, handle, tag) = (
            self.out.clone(),
            Arc::clone(&self.flags),
            self.handle.clone(),
            run.tag,
        );
        tokio::spawn(async move {
            while let Some(report) = reports.recv().await {
                let ends = wire::ends_job(&report.kind);
                if ends {
                    lock(&flags).remove(&tag);
                }
                let _ = out.send(Ok(wire_report(tag, report.kind, handle.kv_bytes())));
                if ends {
                    return;
                }
            }
        });
        Ok(())
    }

    fn release(&mut self, request: u64) {
        self.mirror.forget(request);
        self.decodings.remove(&request);
        let (reservation, freed) = Reservation::watch();
        self.handle.release(request, Some(reservation));
        let out = self.out.clone();
        tokio::spawn(async move {
            // The worker dropped it: the cache is freed (or the worker is
            // gone, which frees it too).
            let _ = freed.await;
            let _ = out.send(Ok(pb::FromWorker {
                kind: Some(from_worker::Kind::Released(pb::Released { request })),
            }));
        });
    }

    fn report(&self, tag: u64, kind: ReportKind) {
        let _ = self
            .out
            .send(Ok(wire_report(tag, kind, self.handle.kv_bytes())));
    }
}

fn wire_report(tag: u64, kind: ReportKind, kv_bytes: usize) -> pb::FromWorker {
    pb::FromWorker {
        kind: Some(from_worker::Kind::Report(pb::Report {
            tag,
            kind: Some(wire::report_kind(kind)),
            kv_bytes: kv_bytes as u64,
        })),
    }
}
