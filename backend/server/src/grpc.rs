//! The server's half of the worker protocol (`backend/worker/proto`): one session per worker
//! stream. Workers register, ask for work sized to their free capacity, renew leases with their
//! heartbeats, stream logs, and report results, which are acknowledged once stored.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use model::TenantId;
use model::engine::Outcome;
use serde_json::json;
use service::Services;
use store::{ClaimRequest, Claimed, Completion, NewLogChunk, QUEUE_CHANNEL, Renewal, Store, StoreError, WorkerRecord};
use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use worker::proto::server_message::Body as Out;
use worker::proto::worker_message::Body as In;
use worker::proto::workers_server::{Workers, WorkersServer};
use worker::proto::{
    Assignment, Capacity, Drain, HeartbeatAck, Held, Kill, Offer, Registered, ResultAck, ServerMessage, WorkerMessage,
};

/// The gRPC path the service answers on (mounted beside the HTTP API on the same listener).
pub const PATH: &str = "/orrery.worker.v1.Workers/Session";

/// Messages of a worker handled together (one claim, one write of results, one of logs).
const BURST: usize = 256;
/// Log bytes stored in one statement, at most about.
const LOG_BURST_BYTES: usize = 4 << 20;

/// Wakes sessions waiting for work in a pool when the queue's NOTIFY says it has some.
#[derive(Clone, Default)]
pub struct QueueWakers(Arc<Mutex<HashMap<String, Arc<Notify>>>>);

impl QueueWakers {
    pub fn of(&self, pool: &str) -> Arc<Notify> {
        self.0.lock().expect("wakers poisoned").entry(pool.to_owned()).or_default().clone()
    }

    fn wake_all(&self) {
        for w in self.0.lock().expect("wakers poisoned").values() {
            w.notify_waiters();
        }
    }

    /// Listens to every shard's queue channel until `shutdown`.
    pub fn start(&self, store: &Store, shutdown: &CancellationToken) {
        for shard in store.shard_ids() {
            let (store, wakers, stop) = (store.clone(), self.clone(), shutdown.clone());
            tokio::spawn(async move {
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = store.follow_shard(shard, &[QUEUE_CHANNEL], |pool| {
                        match pool {
                            Some(pool) => wakers.of(pool).notify_waiters(),
                            // Listening (again): work announced meanwhile may wait in any pool.
                            None => wakers.wake_all(),
                        }
                        true
                    }) => {}
                }
            });
        }
    }
}

#[derive(Clone)]
pub struct WorkerService {
    pub services: Services,
    pub clock: Arc<dyn engine::Clock>,
    pub wakers: QueueWakers,
    /// Leases granted to workers' attempts; heartbeats every third of it.
    pub lease: Duration,
    /// Ends every session when the server stops (workers reconnect to another server).
    pub shutdown: CancellationToken,
}

impl WorkerService {
    pub fn into_server(self) -> WorkersServer<Self> {
        WorkersServer::new(self)
    }
}

type SessionStream = Pin<Box<dyn Stream<Item = Result<ServerMessage, Status>> + Send>>;

#[tonic::async_trait]
impl Workers for WorkerService {
    type SessionStream = SessionStream;

    async fn session(&self, req: Request<Streaming<WorkerMessage>>) -> Result<Response<SessionStream>, Status> {
        let token = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| Status::unauthenticated("a worker token is needed: --token or ORRERY_WORKER_TOKEN"))?
            .to_owned();
        self.services.authenticate_worker(&token).await.map_err(|_| {
            Status::unauthenticated(
                "this is not a valid worker token (create one with `orrery token create --worker NAME`)",
            )
        })?;
        let inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(256);
        let me = self.clone();
        tokio::spawn(async move {
            if let Err(e) = me.run(inbound, tx.clone()).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

fn msg(body: Out) -> Result<ServerMessage, Status> {
    Ok(ServerMessage { body: Some(body) })
}

fn parse_held(h: &Held) -> Option<(TenantId, uuid::Uuid, i64)> {
    Some((h.tenant_id.parse().ok()?, h.attempt_id.parse().ok()?, h.lease_token))
}

fn capacity_json(c: Option<&Capacity>) -> serde_json::Value {
    let c = c.copied().unwrap_or_default();
    json!({ "slots": c.slots, "cpu_millis": c.cpu_millis, "memory_bytes": c.memory_bytes, "gpus": c.gpus })
}

fn assignment(c: Claimed) -> Assignment {
    Assignment {
        tenant_id: c.tenant_id.to_string(),
        attempt_id: c.attempt_id.to_string(),
        lease_token: c.lease_token,
        run_id: c.run_id.to_string(),
        task_id: c.task_id,
        attempt: c.attempt,
        task_json: c.rendered["kind"].to_string(),
        params_json: c.rendered["params"].to_string(),
        timeout_secs: c.timeout_secs.unwrap_or(0.0),
        cpu_millis: c.cpu_millis,
        memory_bytes: c.memory_bytes,
        gpu: c.gpu,
        workflow: c.workflow,
        logical_time: c.logical_time.to_rfc3339(),
    }
}

/// Offers sent on a session, until the worker says it has seen them. A worker counts its free
/// capacity from the tasks it runs; what an offer still on its way holds is not among them, so a
/// task that ends meanwhile has the worker ask for that capacity again. Taken off its request
/// here, or the worker would be offered more than it has.
#[derive(Default)]
struct InFlight {
    sent: u64,
    offers: VecDeque<(u64, Capacity)>,
}

impl InFlight {
    /// Numbers an offer and keeps what it holds.
    fn send(&mut self, offer: &mut Offer) {
        self.sent += 1;
        offer.seq = self.sent;
        let mut held =
            Capacity { slots: u32::try_from(offer.attempts.len()).unwrap_or(u32::MAX), ..Capacity::default() };
        for a in &offer.attempts {
            held.cpu_millis = held.cpu_millis.saturating_add(a.cpu_millis);
            held.memory_bytes = held.memory_bytes.saturating_add(a.memory_bytes);
            held.gpus = held.gpus.saturating_add(a.gpu);
        }
        self.offers.push_back((self.sent, held));
    }

    /// A request for work arrived: the offers it says were seen are counted in it.
    fn seen(&mut self, want: &worker::proto::WantWork) {
        match want.offers_seen {
            Some(seen) => {
                while self.offers.front().is_some_and(|(seq, _)| *seq <= seen) {
                    self.offers.pop_front();
                }
            }
            // A worker that does not say (an older one): its requests are taken as they are.
            None => self.offers.clear(),
        }
    }

    /// What the worker has free once the offers on their way to it are counted.
    fn free(&self, want: &worker::proto::WantWork) -> Capacity {
        let mut free = want.free.unwrap_or_default();
        for (_, held) in &self.offers {
            free.slots = free.slots.saturating_sub(held.slots);
            free.cpu_millis = free.cpu_millis.saturating_sub(held.cpu_millis);
            free.memory_bytes = free.memory_bytes.saturating_sub(held.memory_bytes);
            free.gpus = free.gpus.saturating_sub(held.gpus);
        }
        free
    }
}

struct Worker {
    id: String,
    pool: String,
    region: Option<String>,
    labels: serde_json::Value,
}

impl WorkerService {
    async fn run(
        &self,
        mut inbound: Streaming<WorkerMessage>,
        tx: mpsc::Sender<Result<ServerMessage, Status>>,
    ) -> Result<(), Status> {
        let store = &self.services.store;
        let first = tokio::time::timeout(Duration::from_secs(10), inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("register first"))??;
        let Some(WorkerMessage { body: Some(In::Register(reg)) }) = first else {
            return Err(Status::invalid_argument("the first message of a session must be Register"));
        };
        if reg.worker_id.is_empty() || reg.pool.is_empty() {
            return Err(Status::invalid_argument("Register needs a worker_id and a pool"));
        }
        let now = self.clock.now();
        let w = Worker {
            id: reg.worker_id.clone(),
            pool: reg.pool.clone(),
            region: (!reg.region.is_empty()).then(|| reg.region.clone()),
            labels: serde_json::to_value(&reg.labels).unwrap_or_else(|_| json!({})),
        };
        let mut draining = store
            .register_worker(&WorkerRecord {
                id: w.id.clone(),
                pool: w.pool.clone(),
                region: reg.region.clone(),
                labels: w.labels.clone(),
                hostname: reg.hostname.clone(),
                version: reg.version.clone(),
                isolation: reg.isolation.clone(),
                capacity: capacity_json(reg.capacity.as_ref()),
                // After a reconnect, its running attempts hold part of it.
                free: capacity_json(reg.free.as_ref().or(reg.capacity.as_ref())),
                running: i32::try_from(reg.running.len()).unwrap_or(i32::MAX),
                draining: false,
                connected: true,
                connected_at: now,
                last_seen_at: now,
            })
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        tracing::info!(worker.id = %w.id, pool = %w.pool, region = %reg.region, isolation = %reg.isolation, "worker connected");
        let heartbeat = self.lease / 5;
        tx.send(msg(Out::Registered(Registered {
            heartbeat_millis: u32::try_from(heartbeat.as_millis()).unwrap_or(u32::MAX),
            lease_millis: u32::try_from(self.lease.as_millis()).unwrap_or(u32::MAX),
        })))
        .await
        .map_err(|_| Status::cancelled("gone"))?;
        if draining {
            // Asked through the API while it was away: told at once, before it asks for work.
            let _ = tx.send(msg(Out::Drain(Drain {}))).await;
        }
        // Attempts it kept running across a reconnect: keep their leases, or tell it to stop.
        self.renew(&reg.running, &reg.ended, &tx).await;

        let wake = self.wakers.of(&w.pool);
        let mut pending: Option<worker::proto::WantWork> = None;
        let mut in_flight = InFlight::default();
        let mut retry = tokio::time::interval(Duration::from_secs(1));
        // Not polled while nothing is asked for: ticks missed meanwhile must not all fire at once
        // (a claim each, back to back) when the worker next waits for work.
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A worker silent for a lease is gone (a partition shows no FIN, no RST): drop the stream
        // so the registry says so; the worker connects again when it can.
        let mut heard = tokio::time::Instant::now();
        let result = 'session: loop {
            let notified = wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // Nothing new for a worker not heard from in two heartbeats: it may be cut off, and
            // what it is offered would wait out a lease before anyone else could run it. Its
            // request stands; the next word from it makes it good again.
            let quiet = heard.elapsed() > 2 * heartbeat;
            // A request that offers on their way fill entirely is dropped: the worker asks again
            // when they arrive.
            if let Some((want, req)) =
                pending.take_if(|_| !quiet).and_then(|want| Some((want, self.claim_request(&w, &want, &in_flight)?)))
            {
                match self.offer(&req).await {
                    Ok(Some(mut offer)) => {
                        in_flight.send(&mut offer);
                        if tx.send(msg(Out::Offer(offer))).await.is_err() {
                            break 'session Ok(());
                        }
                    }
                    Ok(None) => pending = Some(want),
                    Err(e) => {
                        // Tried again at the next tick or message: the worker asks again only when
                        // its free capacity changes, so a request dropped here would leave it idle.
                        tracing::warn!(worker.id = %w.id, "claiming work failed: {e}");
                        pending = Some(want);
                    }
                }
            }
            let first = tokio::select! {
                // The server stopping, what the worker sent (it may have waited while this
                // session was busy),
                // then the lease's end: a silent worker is dropped, not offered what woke us.
                biased;
                () = self.shutdown.cancelled() => break 'session Err(Status::unavailable("the server is stopping; connect again")),
                m = inbound.message() => m,
                () = tokio::time::sleep_until(heard + self.lease) => {
                    tracing::warn!(worker.id = %w.id, "no word from the worker for a lease: dropping its stream");
                    break 'session Err(Status::unavailable("no heartbeat for a lease"));
                }
                () = &mut notified, if pending.is_some() => continue 'session,
                _ = retry.tick(), if pending.is_some() => continue 'session,
            };
            // Every message already here is handled before the next claim: a burst of results (and
            // the request for the slots they freed) makes one claim and one commit, not one each.
            // Within bounds: a flood of output is stored a few MiB at a time.
            let mut next = Some(first);
            let (mut results, mut logs, mut log_bytes, mut taken) = (Vec::new(), Vec::new(), 0, 0);
            while let Some(m) = next {
                let body = match m {
                    Ok(Some(WorkerMessage { body })) => body,
                    Ok(None) => break 'session Ok(()),
                    Err(e) => break 'session Err(e),
                };
                match body {
                    Some(In::WantWork(want)) => {
                        in_flight.seen(&want);
                        // A request sent before it heard of its drain: nothing more for it.
                        pending = Some(want).filter(|_| !draining);
                    }
                    Some(In::Heartbeat(hb)) => {
                        // Its own word counts even when the registry could not be written.
                        draining |= self.heartbeat(&w, &hb, &tx).await || hb.draining;
                        // Draining: nothing more for it.
                        pending = pending.filter(|_| !draining);
                    }
                    Some(In::Log(chunk)) => {
                        log_bytes += chunk.data.len();
                        logs.push(chunk);
                    }
                    // Stored together below.
                    Some(In::Result(r)) => results.push(r),
                    Some(In::Register(_)) => break 'session Err(Status::invalid_argument("already registered")),
                    None => {}
                }
                taken += 1;
                if taken == BURST || log_bytes >= LOG_BURST_BYTES {
                    break;
                }
                next = futures::FutureExt::now_or_never(inbound.message());
            }
            // An attempt's log before its result.
            self.store_logs(&logs).await;
            pending = self.results(&w, results, pending.take(), &mut in_flight, &tx).await;
            // Silence is counted while this session listens: what the worker sent meanwhile waits
            // to be read, and is.
            heard = tokio::time::Instant::now();
        };
        let _ = store.worker_disconnected(&w.id, self.clock.now()).await;
        tracing::info!(worker.id = %w.id, "worker disconnected");
        result
    }

    /// Stores log chunks, one statement per tenant. A chunk that cannot be stored is dropped
    /// (logs are best effort; results are not).
    async fn store_logs(&self, chunks: &[worker::proto::LogChunk]) {
        let mut by_tenant: HashMap<TenantId, Vec<NewLogChunk<'_>>> = HashMap::new();
        for c in chunks {
            if let (Ok(t), Ok(attempt)) = (c.tenant_id.parse::<TenantId>(), c.attempt_id.parse::<uuid::Uuid>()) {
                by_tenant.entry(t).or_default().push(NewLogChunk {
                    attempt,
                    lease_token: c.lease_token,
                    seq: i64::try_from(c.seq).unwrap_or(i64::MAX),
                    data: &c.data,
                });
            }
        }
        for (tenant, chunks) in by_tenant {
            if let Err(e) = self.services.store.append_logs(tenant, &chunks, self.clock.now()).await {
                tracing::warn!(tenant.id = %tenant, chunks = chunks.len(), "storing log chunks failed: {e}");
            }
        }
    }

    /// Renews the worker's leases and records its load; acknowledged only once the leases are
    /// renewed (a worker that hears nothing for a lease stops its attempts: fencing). True when
    /// the worker drains, of its own accord or asked through the API (told once).
    async fn heartbeat(
        &self,
        w: &Worker,
        hb: &worker::proto::Heartbeat,
        tx: &mpsc::Sender<Result<ServerMessage, Status>>,
    ) -> bool {
        let renewed = self.renew(&hb.running, &hb.ended, tx).await;
        let running = i32::try_from(hb.running.len()).unwrap_or(i32::MAX);
        let store = &self.services.store;
        let draining = match store
            .worker_seen(&w.id, &capacity_json(hb.free.as_ref()), running, hb.draining, self.clock.now())
            .await
        {
            Ok(true) => {
                if !hb.draining {
                    let _ = tx.send(msg(Out::Drain(Drain {}))).await;
                }
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::warn!(worker.id = %w.id, "recording a heartbeat failed: {e}");
                false
            }
        };
        if renewed {
            let _ = tx.send(msg(Out::HeartbeatAck(HeartbeatAck { seq: hb.seq }))).await;
        }
        draining
    }

    /// What a worker's request for work asks of the queue, with the offers on their way to it
    /// counted; None when they fill it.
    fn claim_request<'a>(
        &self,
        w: &'a Worker,
        want: &worker::proto::WantWork,
        in_flight: &InFlight,
    ) -> Option<ClaimRequest<'a>> {
        let free = in_flight.free(want);
        let limit = want.max.min(free.slots);
        (limit > 0).then(|| ClaimRequest {
            pool: &w.pool,
            region: w.region.as_deref(),
            labels: &w.labels,
            worker_id: &w.id,
            limit,
            cpu_millis: free.cpu_millis,
            memory_bytes: free.memory_bytes,
            gpu: free.gpus,
            lease: self.lease,
        })
    }

    /// Claims what the request asks for; None when there is nothing for it now.
    async fn offer(&self, req: &ClaimRequest<'_>) -> Result<Option<Offer>, StoreError> {
        let claimed = self.services.store.claim(req, self.clock.now()).await?;
        Ok(self.offer_of(claimed).await)
    }

    /// The offer of what was claimed; None when nothing was.
    async fn offer_of(&self, claimed: Vec<Claimed>) -> Option<Offer> {
        if claimed.is_empty() {
            return None;
        }
        let mut attempts = Vec::with_capacity(claimed.len());
        for c in claimed {
            let tenant = c.tenant_id;
            let mut a = assignment(c);
            self.attach_connection(tenant, &mut a).await;
            attempts.push(a);
        }
        Some(Offer { attempts, seq: 0 })
    }

    /// An `sql` task gets its connection (URL with credentials) with its assignment, and only
    /// then; a connection that does not exist becomes an error the worker reports.
    async fn attach_connection(&self, tenant: TenantId, a: &mut Assignment) {
        let Ok(mut task) = serde_json::from_str::<serde_json::Value>(&a.task_json) else { return };
        if task["kind"] != "sql" {
            return;
        }
        let name = task["config"]["connection"].as_str().unwrap_or_default().to_owned();
        task["connection"] = match self.services.store.connection(tenant, &name).await {
            Ok(c) => serde_json::json!({ "kind": c.kind, "url": c.url }),
            Err(StoreError::NotFound) => serde_json::json!({
                "error": format!(
                    "this tenant has no connection `{name}`: create it with `orrery connection put {name} --url postgres://...`"
                )
            }),
            Err(e) => serde_json::json!({ "error": format!("reading connection `{name}`: {e}") }),
        };
        a.task_json = task.to_string();
    }

    /// Renews the leases a worker holds: of the attempts it runs (told to stop those it must
    /// not) and of those it ended whose results it has not had acknowledged; false if that could
    /// not be done (the database).
    async fn renew(&self, running: &[Held], ended: &[Held], tx: &mpsc::Sender<Result<ServerMessage, Status>>) -> bool {
        let held: Vec<(TenantId, uuid::Uuid, i64)> = running.iter().chain(ended).filter_map(parse_held).collect();
        if held.is_empty() {
            return true;
        }
        match self.services.store.renew_leases(&held, self.lease, self.clock.now()).await {
            Ok(answers) => {
                // An ended attempt has nothing left to stop.
                let ended: std::collections::HashSet<uuid::Uuid> =
                    ended.iter().filter_map(|h| h.attempt_id.parse().ok()).collect();
                for (id, answer) in answers.into_iter().filter(|(id, _)| !ended.contains(id)) {
                    let reason = match answer {
                        Renewal::Held => continue,
                        Renewal::Kill => "stopped: the run was cancelled or the task cleared",
                        Renewal::Lost => "the lease is gone: the attempt was given up",
                    };
                    let _ = tx.send(msg(Out::Kill(Kill { attempt_id: id.to_string(), reason: reason.into() }))).await;
                }
                true
            }
            Err(e) => {
                tracing::warn!("renewing leases failed: {e}");
                false
            }
        }
    }

    /// Stores reports (one transaction per shard) and acknowledges each stored or refused one;
    /// one that could not be stored is not acknowledged, and the worker sends it again. When the
    /// worker waits for work (`want`), the claim for it shares the last transaction and its offer
    /// goes out ahead of the acknowledgements. Returns the request for work still open.
    async fn results(
        &self,
        w: &Worker,
        reports: Vec<worker::proto::Result>,
        want: Option<worker::proto::WantWork>,
        in_flight: &mut InFlight,
        tx: &mpsc::Sender<Result<ServerMessage, Status>>,
    ) -> Option<worker::proto::WantWork> {
        if reports.is_empty() {
            return want;
        }
        let mut ids = Vec::with_capacity(reports.len());
        let mut completions = Vec::with_capacity(reports.len());
        for r in reports {
            let (Ok(tenant), Ok(attempt)) = (r.tenant_id.parse::<TenantId>(), r.attempt_id.parse::<uuid::Uuid>())
            else {
                let _ = tx.send(msg(Out::ResultAck(ResultAck { attempt_id: r.attempt_id, accepted: false }))).await;
                continue;
            };
            let exit_code =
                matches!(r.state.as_str(), "succeeded" | "failed").then_some(r.exit_code).filter(|c| *c >= 0);
            let outcome = match r.state.as_str() {
                "succeeded" => Outcome::Succeeded { outputs: r.outputs.into_iter().collect() },
                "timed_out" => Outcome::TimedOut,
                "cancelled" => Outcome::Cancelled,
                _ => Outcome::Failed {
                    reason: if r.reason.is_empty() { format!("exit code {}", r.exit_code) } else { r.reason },
                },
            };
            ids.push(r.attempt_id);
            completions.push(Completion {
                tenant,
                attempt_id: attempt,
                lease_token: r.lease_token,
                outcome,
                exit_code,
            });
        }
        let req = want.as_ref().and_then(|want| self.claim_request(w, want, in_flight));
        // Filled by offers on their way: dropped (the worker asks again when they arrive).
        let want = want.filter(|_| req.is_some());
        let now = || self.clock.now();
        let (answers, claimed) = self.services.store.complete_and_claim(completions, req.as_ref(), &now).await;
        // The offer before the acknowledgements: it is what the worker waits on.
        let still_wanted = match claimed {
            Ok(claimed) => match self.offer_of(claimed).await {
                Some(mut offer) => {
                    in_flight.send(&mut offer);
                    let _ = tx.send(msg(Out::Offer(offer))).await;
                    None
                }
                None => want,
            },
            Err(e) => {
                tracing::warn!(worker.id = %w.id, "claiming work failed: {e}");
                want
            }
        };
        for (attempt_id, answer) in ids.into_iter().zip(answers) {
            let accepted = match answer {
                Ok(()) => true,
                Err(StoreError::Stale | StoreError::NotFound) => false,
                Err(e) => {
                    tracing::warn!(worker.id = %w.id, attempt.id = %attempt_id, "storing a result failed: {e}");
                    continue;
                }
            };
            let _ = tx.send(msg(Out::ResultAck(ResultAck { attempt_id, accepted }))).await;
        }
        still_wanted
    }
}
