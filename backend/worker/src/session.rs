//! The worker's side of the stream: connect, register, ask for work, run it, report it.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures::StreamExt as _;
use rand::Rng;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::exec::{self, Attempt, ExecConfig, Finish};
use crate::proto::server_message::Body as In;
use crate::proto::worker_message::Body as Out;
use crate::proto::workers_client::WorkersClient;
use crate::proto::{Capacity, Heartbeat, Held, LogChunk, Register, Result as ResultMsg, WantWork, WorkerMessage};

/// Who this worker is and what it offers.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// `http://host:port` or `https://host:port` of an Orrery server.
    pub server: String,
    /// PEM certificates trusted for an https server beyond the public roots (an internal CA, or
    /// the server's own self-signed certificate).
    pub ca_cert: Option<Vec<u8>>,
    pub token: String,
    /// Stable for the life of the process (reconnects keep it).
    pub worker_id: String,
    pub pool: String,
    pub region: String,
    pub labels: BTreeMap<String, String>,
    pub capacity: Capacity,
    pub exec: ExecConfig,
    pub version: String,
    pub hostname: String,
    /// What a shutdown does to running attempts.
    pub on_shutdown: OnShutdown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnShutdown {
    /// Take nothing new; let running attempts finish and report (`orrery worker` on SIGTERM).
    Drain,
    /// Stop running attempts (process trees killed) without reporting: their leases expire and
    /// they are retried (the in-process worker of `orrery up`, which stops with its server).
    Stop,
}

/// GPUs `nvidia-smi` reports (0 without it).
pub fn detect_gpus() -> u32 {
    std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name", "--format=csv,noheader"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            u32::try_from(String::from_utf8_lossy(&o.stdout).lines().filter(|l| !l.trim().is_empty()).count())
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

struct Running {
    tenant_id: String,
    lease_token: i64,
    stop: exec::Stop,
    cpu_millis: u32,
    memory_bytes: u64,
    gpu: u32,
}

enum Event {
    Log(LogChunk),
    Done(ResultMsg),
}

/// State that outlives a connection.
struct State {
    cfg: WorkerConfig,
    /// Every attempt's stop, for a shutdown that stops them all (OnShutdown::Stop).
    kills: Option<KillList>,
    running: HashMap<String, Running>,
    /// Results sent but not acknowledged: sent again after every reconnect, and within a session
    /// a heartbeat later.
    unacked: HashMap<String, ResultMsg>,
    /// How often each unacknowledged result was sent again within sessions.
    resent: HashMap<String, u32>,
    draining: bool,
    /// When the last heartbeat the server acknowledged was sent: the leases of our attempts were
    /// renewed no earlier, so they last at least until then + a lease.
    renewed_at: Instant,
    /// Heartbeats sent and not yet acknowledged: (seq, when sent).
    beats: std::collections::VecDeque<(u64, Instant)>,
    next_beat: u64,
    lease: Duration,
}

impl State {
    fn free(&self) -> Capacity {
        let c = &self.cfg.capacity;
        let used_cpu: u32 = self.running.values().map(|r| r.cpu_millis).sum();
        let used_mem: u64 = self.running.values().map(|r| r.memory_bytes).sum();
        let used_gpus: u32 = self.running.values().map(|r| r.gpu).sum();
        Capacity {
            slots: c.slots.saturating_sub(u32::try_from(self.running.len()).unwrap_or(u32::MAX)),
            cpu_millis: c.cpu_millis.saturating_sub(used_cpu),
            memory_bytes: c.memory_bytes.saturating_sub(used_mem),
            gpus: c.gpus.saturating_sub(used_gpus),
        }
    }

    fn held(&self) -> Vec<Held> {
        self.running
            .iter()
            .map(|(id, r)| Held { tenant_id: r.tenant_id.clone(), attempt_id: id.clone(), lease_token: r.lease_token })
            .collect()
    }

    /// Attempts ended whose results the server has not acknowledged: their leases are kept too,
    /// so a result waiting behind its log, or sent again, does not find its attempt given up.
    /// Not past [`KEEP_LEASE_RESENDS`] sendings: a result the server keeps failing to store lets
    /// its lease run out, and the attempt's retry policy decides (the result, still sent, is
    /// then answered as stale).
    fn ended(&self) -> Vec<Held> {
        self.unacked
            .values()
            .filter(|r| self.resent.get(&r.attempt_id).is_none_or(|&n| n < KEEP_LEASE_RESENDS))
            .map(|r| Held {
                tenant_id: r.tenant_id.clone(),
                attempt_id: r.attempt_id.clone(),
                lease_token: r.lease_token,
            })
            .collect()
    }

    /// Fencing: with no renewal acknowledged for a lease (minus a margin for the kill itself and
    /// for clock rates), the server may hand our attempts' leases on any moment, so the attempts
    /// must be gone first: killed at once, no grace period.
    fn fence(&mut self) {
        let margin = (self.lease / 6).max(Duration::from_millis(500));
        if self.renewed_at.elapsed() <= self.lease.saturating_sub(margin) {
            return;
        }
        let doomed: Vec<&Running> = self.running.values().filter(|r| !r.stop.is_urgent()).collect();
        if !doomed.is_empty() {
            tracing::warn!(
                attempts = doomed.len(),
                since_renewal_ms = self.renewed_at.elapsed().as_millis(),
                "no lease renewal acknowledged for a lease: killing every running attempt before it can run twice"
            );
            for r in doomed {
                r.stop.urgent();
            }
        }
    }

    fn heartbeat(&mut self) -> Heartbeat {
        self.next_beat += 1;
        self.beats.push_back((self.next_beat, Instant::now()));
        // Unanswered ones past a lease are of no use.
        while self.beats.len() > 64 {
            self.beats.pop_front();
        }
        Heartbeat {
            free: Some(self.free()),
            running: self.held(),
            ended: self.ended(),
            draining: self.draining,
            seq: self.next_beat,
        }
    }

    fn heartbeat_acked(&mut self, seq: u64) {
        while let Some(&(s, at)) = self.beats.front() {
            if s > seq {
                break;
            }
            self.beats.pop_front();
            if s == seq {
                self.renewed_at = self.renewed_at.max(at);
            }
        }
    }
}

async fn connect(cfg: &WorkerConfig) -> Result<WorkersClient<Channel>, tonic::transport::Error> {
    let mut ep = Endpoint::from_shared(cfg.server.clone())?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true);
    if cfg.server.starts_with("https://") {
        let mut tls = ClientTlsConfig::new().with_webpki_roots();
        if let Some(pem) = &cfg.ca_cert {
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        ep = ep.tls_config(tls)?;
    }
    Ok(WorkersClient::new(ep.connect().await?))
}

/// An error with its causes: tonic's transport error alone says only "transport error", the
/// cause says which (a refused connection, an untrusted certificate).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// Runs the worker until `shutdown`; then drains: takes nothing new, lets running attempts finish
/// and their results be acknowledged.
pub async fn run(mut cfg: WorkerConfig, shutdown: CancellationToken) {
    crate::cgroup::clean_stale(&cfg.exec.cgroups, &cfg.worker_id);
    cfg.exec.warden = match crate::cgroup::Warden::start(&cfg.exec.cgroups, &cfg.worker_id) {
        Ok(w) => w.map(std::sync::Arc::new),
        Err(e) => {
            tracing::warn!(error = %e, "no warden for this worker's cgroups: each attempt gets a supervisor process");
            None
        }
    };
    crate::launch::clean_stale(&cfg.exec.work_root, &cfg.worker_id);
    // Launchers die with the worker's attempts; without a warden, each task needs its supervisor.
    if cfg.exec.warden.is_some() {
        let e = &cfg.exec;
        cfg.exec.launchers = crate::launch::Launchers::start(
            &e.cgroups,
            &cfg.worker_id,
            &e.work_root,
            e.run_as.as_ref(),
            e.cleanup.clone(),
        );
    }
    let (cgroups, id, cleanup) = (cfg.exec.cgroups.clone(), cfg.worker_id.clone(), cfg.exec.cleanup.clone());
    let launchers = cfg.exec.launchers.clone();
    run_inner(cfg, shutdown).await;
    if let Some(l) = launchers {
        l.close();
    }
    // Attempts' (and unused launchers') cgroups and directories still being removed.
    cleanup.close();
    cleanup.wait().await;
    crate::cgroup::remove_worker(&cgroups, &id);
}

async fn run_inner(cfg: WorkerConfig, shutdown: CancellationToken) {
    if cfg.on_shutdown == OnShutdown::Stop {
        return run_until_stopped(cfg, shutdown).await;
    }
    run_draining(cfg, shutdown).await;
}

/// Runs until `shutdown`, then kills every running attempt's process tree and returns.
async fn run_until_stopped(cfg: WorkerConfig, shutdown: CancellationToken) {
    let inner = CancellationToken::new();
    let kills: KillList = std::sync::Arc::default();
    let cfg = WorkerConfig { on_shutdown: OnShutdown::Drain, ..cfg };
    let task = tokio::spawn(run_draining_with(cfg, inner.clone(), Some(kills.clone())));
    shutdown.cancelled().await;
    for k in kills.lock().expect("kills poisoned").iter() {
        k.graceful();
    }
    // Give the runners a moment to kill their trees, then drop the session without reporting.
    tokio::time::sleep(Duration::from_millis(200)).await;
    task.abort();
    let _ = task.await;
}

async fn run_draining(cfg: WorkerConfig, shutdown: CancellationToken) {
    run_draining_with(cfg, shutdown, None).await;
}

type KillList = std::sync::Arc<std::sync::Mutex<Vec<exec::Stop>>>;

async fn run_draining_with(cfg: WorkerConfig, shutdown: CancellationToken, kills: Option<KillList>) {
    let (events_tx, mut events) = mpsc::channel::<Event>(256);
    let mut st = State {
        cfg,
        kills,
        running: HashMap::new(),
        unacked: HashMap::new(),
        resent: HashMap::new(),
        draining: false,
        renewed_at: Instant::now(),
        beats: std::collections::VecDeque::new(),
        next_beat: 0,
        lease: Duration::from_secs(30),
    };
    let mut backoff = Duration::from_millis(200);
    loop {
        if shutdown.is_cancelled() {
            st.draining = true;
        }
        if st.draining && st.running.is_empty() && st.unacked.is_empty() {
            tracing::info!("worker drained; stopping");
            return;
        }
        match session(&mut st, &events_tx, &mut events, &shutdown).await {
            Ok(()) => backoff = Duration::from_millis(200),
            Err(e) => tracing::warn!("session with {} ended: {e}; reconnecting", st.cfg.server),
        }
        // Backoff with jitter, watching the fence and the attempts meanwhile.
        let wait = backoff.mul_f64(rand::thread_rng().gen_range(0.5..1.5));
        backoff = (backoff * 2).min(Duration::from_secs(10));
        let until = Instant::now() + wait;
        while Instant::now() < until {
            st.fence();
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
                Some(e) = events.recv() => {
                    if let Event::Done(r) = e {
                        st.running.remove(&r.attempt_id);
                        st.unacked.insert(r.attempt_id.clone(), r);
                    }
                    // Log chunks made while disconnected are dropped (logs are best effort; results are not).
                }
            }
        }
    }
}

async fn session(
    st: &mut State,
    events_tx: &mpsc::Sender<Event>,
    events: &mut mpsc::Receiver<Event>,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    let mut client = connect(&st.cfg).await.map_err(|e| {
        let why = chain(&e);
        if why.contains("invalid peer certificate") {
            format!(
                "connecting: {why} (a server certificate from a private CA, or self-signed, is trusted with --ca-cert)"
            )
        } else {
            format!("connecting: {why}")
        }
    })?;
    // Two queues onto the one stream: control (registration, heartbeats, requests for work,
    // results) always goes first; log chunks take what is left. A task printing faster than the
    // server stores must not hold back the heartbeat that renews its own lease.
    let (tx, rx) = mpsc::channel::<Vec<WorkerMessage>>(64);
    let (logs, logs_rx) = mpsc::channel::<WorkerMessage>(LOG_QUEUE);
    let send = |body: Out| WorkerMessage { body: Some(body) };
    let mut ctl = Control { tx, batch: Vec::new(), stall: st.lease / 4 };
    ctl.push(Out::Register(Register {
        worker_id: st.cfg.worker_id.clone(),
        pool: st.cfg.pool.clone(),
        region: st.cfg.region.clone(),
        labels: st.cfg.labels.clone().into_iter().collect(),
        capacity: Some(st.cfg.capacity),
        version: st.cfg.version.clone(),
        hostname: st.cfg.hostname.clone(),
        isolation: match &st.cfg.exec.run_as {
            Some(u) => format!("{}; tasks run as {} (uid {})", st.cfg.exec.cgroups.describe(), u.name, u.uid),
            None => st.cfg.exec.cgroups.describe(),
        },
        running: st.held(),
        ended: st.ended(),
        free: Some(st.free()),
    }));
    ctl.flush().await?;
    let outbound = futures::stream::select_with_strategy(
        ReceiverStream::new(rx).flat_map(futures::stream::iter),
        ReceiverStream::new(logs_rx),
        |(): &mut ()| futures::stream::PollNext::Left,
    );
    let mut req = tonic::Request::new(outbound);
    let bearer: MetadataValue<_> = format!("Bearer {}", st.cfg.token)
        .parse()
        .map_err(|_| "the token has characters a header cannot carry".to_owned())?;
    req.metadata_mut().insert("authorization", bearer);
    let mut inbound = client.session(req).await.map_err(|s| s.message().to_owned())?.into_inner();
    for r in st.unacked.values() {
        ctl.push(Out::Result(r.clone()));
    }
    let mut heartbeat = tokio::time::interval(st.lease / 5);
    let mut fence = tokio::time::interval(Duration::from_millis(500));
    let mut asked: Option<Capacity> = None;
    // The last offer received: what the server sent after it was not counted in our requests.
    let mut offers_seen = 0;
    // Draining: the heartbeat that told the server, and whether an offer may still be on its way.
    // The server answers a stream's messages in order and drops the worker's request for work when
    // it hears of the drain, so once that heartbeat is acknowledged every offer has arrived (and
    // is run: its attempts are claimed for this worker). Leaving earlier would strand them until
    // their leases ran out.
    let mut drain_beat: Option<(u64, Instant)> = None;
    let mut offers_closed = false;
    // What the log lane had no room for: it goes first once there is room, and until then no
    // more events are taken (the attempts' own queues fill, and their output waits). Heartbeats,
    // kills and the fence go on meanwhile.
    let mut held: Option<(WorkerMessage, Instant)> = None;
    // Results unacknowledged at the last heartbeat.
    let mut unanswered: Vec<String> = Vec::new();
    loop {
        if shutdown.is_cancelled() && !st.draining {
            tracing::info!("draining: finishing running attempts, taking nothing new");
            st.draining = true;
        }
        if st.draining && drain_beat.is_none() && !offers_closed {
            // At once, so the server stops offering and the registry shows it.
            let hb = st.heartbeat();
            drain_beat = Some((hb.seq, Instant::now()));
            ctl.push(Out::Heartbeat(hb));
        }
        let free = st.free();
        if !st.draining && free.slots > 0 && asked.as_ref() != Some(&free) {
            ctl.push(Out::WantWork(WantWork { max: free.slots, free: Some(free), offers_seen: Some(offers_seen) }));
            asked = Some(free);
        }
        // What this turn has to say goes out in one write: a burst's results with the request
        // for the slots they freed, which the server then reads together.
        ctl.flush().await?;
        // Without an answer in a lease, the server is not listening; what it claimed for us is
        // given up with its lease either way.
        let settled = offers_closed || drain_beat.is_some_and(|(_, at)| at.elapsed() > st.lease);
        if st.draining && settled && st.running.is_empty() && st.unacked.is_empty() {
            return Ok(());
        }
        tokio::select! {
            // Timers first: a busy stream (a burst of results, a flood of output) must not
            // starve the heartbeat or the fence.
            biased;
            _ = heartbeat.tick() => {
                let hb = st.heartbeat();
                ctl.push(Out::Heartbeat(hb));
                // Results still unacknowledged a heartbeat later (the server could not store
                // them, say) go again; a copy is harmless. Not while the log lane holds
                // anything: a result waiting there behind its log must not be overtaken.
                if held.is_none() && logs.capacity() == LOG_QUEUE {
                    for id in &unanswered {
                        if let Some(r) = st.unacked.get(id) {
                            ctl.push(Out::Result(r.clone()));
                            *st.resent.entry(id.clone()).or_default() += 1;
                        }
                    }
                    unanswered = st.unacked.keys().cloned().collect();
                }
            }
            _ = fence.tick() => st.fence(),
            m = inbound.message() => {
                let m = m.map_err(|s| s.message().to_owned())?.ok_or("the server closed the stream")?;
                match m.body {
                    Some(In::Registered(r)) => {
                        st.lease = Duration::from_millis(u64::from(r.lease_millis.max(3_000)));
                        heartbeat = tokio::time::interval(Duration::from_millis(u64::from(r.heartbeat_millis.max(500))));
                    }
                    Some(In::Offer(o)) => {
                        asked = None;
                        offers_seen = o.seq;
                        // Every attempt of the offer is started (or ended, a no-op) and kept
                        // before anything is sent: a stream that breaks midway must not leave
                        // claimed attempts unknown to this worker (their leases would run out,
                        // and each would count as a lost attempt).
                        let mut ended = Vec::new();
                        for a in o.attempts {
                            if let Some(r) = start(st, a, events_tx.clone()) {
                                st.unacked.insert(r.attempt_id.clone(), r.clone());
                                ended.push(r);
                            }
                        }
                        // Ended as they started: reported at once (and again after a reconnect
                        // until acknowledged).
                        for r in ended {
                            ctl.push(Out::Result(r));
                        }
                    }
                    Some(In::Kill(k)) => {
                        if let Some(r) = st.running.get(&k.attempt_id) {
                            tracing::info!(attempt.id = %k.attempt_id, reason = %k.reason, "stopping an attempt");
                            r.stop.graceful();
                        }
                    }
                    Some(In::ResultAck(a)) => {
                        st.unacked.remove(&a.attempt_id);
                        st.resent.remove(&a.attempt_id);
                    }
                    Some(In::Drain(_)) => {
                        // Sent after the server dropped our request for work: nothing follows.
                        st.draining = true;
                        offers_closed = true;
                    }
                    Some(In::HeartbeatAck(a)) => {
                        st.heartbeat_acked(a.seq);
                        offers_closed |= drain_beat.is_some_and(|(seq, _)| a.seq >= seq);
                    }
                    None => {}
                }
            }
            // Room within a lease, or the server has stopped reading. (Not `stall`: the server
            // reads nothing while it stores a burst of log, which may take a while.)
            permit = tokio::time::timeout_at(held.as_ref().map_or(Instant::now(), |(_, at)| *at + st.lease), logs.reserve()), if held.is_some() => {
                let permit = permit
                    .map_err(|_| format!("the server has not read from the stream for {:?}", st.lease))?
                    .map_err(|_| "the stream to the server is closed".to_owned())?;
                permit.send(held.take().expect("guarded").0);
            }
            Some(e) = events.recv(), if held.is_none() => {
                // What is already waiting goes out before the next request for work, so a burst
                // of short tasks ends in one request for the slots they freed, not one each; at
                // most a bounded number per turn, so the timers get theirs.
                let mut next = Some(e);
                let mut taken = 0;
                while let Some(e) = next {
                    let lane = match e {
                        Event::Log(chunk) => Some(send(Out::Log(chunk))),
                        Event::Done(r) => {
                            st.running.remove(&r.attempt_id);
                            st.unacked.insert(r.attempt_id.clone(), r.clone());
                            asked = None;
                            // An attempt's result follows its last log chunk (a reader who sees
                            // the attempt end has its whole log): by the control lane when the
                            // log lane is empty, else behind what is in it.
                            if logs.capacity() == LOG_QUEUE {
                                ctl.push(Out::Result(r));
                                None
                            } else {
                                Some(send(Out::Result(r)))
                            }
                        }
                    };
                    if let Some(m) = lane {
                        match logs.try_send(m) {
                            Ok(()) => {}
                            Err(mpsc::error::TrySendError::Full(m)) => {
                                held = Some((m, Instant::now()));
                                break;
                            }
                            Err(mpsc::error::TrySendError::Closed(_)) => {
                                return Err("the stream to the server is closed".into());
                            }
                        }
                    }
                    taken += 1;
                    if taken == EVENTS_PER_TURN {
                        break;
                    }
                    next = events.try_recv().ok();
                }
            }
            () = shutdown.cancelled(), if !st.draining => {}
        }
    }
}

/// Sendings of a result past which its attempt's lease is no longer kept (see [`State::ended`]).
const KEEP_LEASE_RESENDS: u32 = 5;
/// Log chunks (64 KiB each) queued for the stream behind the control messages.
const LOG_QUEUE: usize = 8;
/// Events (log chunks, results) handled in one turn of a session's loop.
const EVENTS_PER_TURN: usize = 64;

/// The control lane: messages gathered during a turn of the session's loop and queued for the
/// stream together, so the stream's writer takes them in one go. Queued one by one, a result and
/// the request for work after it could leave in two writes, and the server would store the result
/// without the claim for the freed slot, then claim in a transaction of its own.
struct Control {
    tx: mpsc::Sender<Vec<WorkerMessage>>,
    batch: Vec<WorkerMessage>,
    /// A server that has not taken a batch within this has stopped reading (a black-holed
    /// connection fills its window): the session ends rather than stall the loop, which also
    /// keeps the fence.
    stall: Duration,
}

impl Control {
    fn push(&mut self, body: Out) {
        self.batch.push(WorkerMessage { body: Some(body) });
    }

    async fn flush(&mut self) -> Result<(), String> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        match tokio::time::timeout(self.stall, self.tx.send(batch)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err("the stream to the server is closed".into()),
            Err(_) => Err(format!("the server has not read from the stream for {:?}", self.stall)),
        }
    }
}

/// Starts an attempt. A `noop` has nothing to run: its result comes back at once, without a
/// task of its own, a log stream or a stop handle.
fn start(st: &mut State, a: crate::proto::Assignment, events: mpsc::Sender<Event>) -> Option<ResultMsg> {
    let task: serde_json::Value = serde_json::from_str(&a.task_json).unwrap_or_default();
    if task["kind"] == "noop" {
        return Some(ResultMsg {
            tenant_id: a.tenant_id,
            attempt_id: a.attempt_id,
            lease_token: a.lease_token,
            state: "succeeded".to_owned(),
            exit_code: 0,
            reason: String::new(),
            outputs: HashMap::new(),
        });
    }
    let stop = exec::Stop::default();
    if let Some(k) = &st.kills {
        let mut k = k.lock().expect("kills poisoned");
        k.retain(|c| !c.is_asked());
        k.push(stop.clone());
    }
    st.running.insert(
        a.attempt_id.clone(),
        Running {
            tenant_id: a.tenant_id.clone(),
            lease_token: a.lease_token,
            stop: stop.clone(),
            cpu_millis: a.cpu_millis,
            memory_bytes: a.memory_bytes,
            gpu: a.gpu,
        },
    );
    let attempt = Attempt {
        tenant_id: a.tenant_id.clone(),
        attempt_id: a.attempt_id.clone(),
        run_id: a.run_id,
        task_id: a.task_id,
        attempt: a.attempt,
        workflow: a.workflow,
        logical_time: a.logical_time,
        task,
        params: serde_json::from_str(&a.params_json).unwrap_or_default(),
        timeout: (a.timeout_secs > 0.0).then(|| Duration::from_secs_f64(a.timeout_secs)),
        cpu_millis: a.cpu_millis,
        memory_bytes: a.memory_bytes,
    };
    let exec_cfg = st.cfg.exec.clone();
    tokio::spawn(async move {
        let (log_tx, mut log_rx) = mpsc::channel::<Vec<u8>>(8);
        let (tenant, id, token) = (a.tenant_id.clone(), a.attempt_id.clone(), a.lease_token);
        // Beside the attempt in its task: its last chunk and its end follow each other at once.
        // It owns the receiver: when the worker's event loop is gone it drops it, and the pump
        // then discards output instead of waiting for room.
        let events_ref = &events;
        let forward = async move {
            let mut seq = 0u64;
            while let Some(data) = log_rx.recv().await {
                let chunk =
                    LogChunk { tenant_id: tenant.clone(), attempt_id: id.clone(), lease_token: token, seq, data };
                if events_ref.send(Event::Log(chunk)).await.is_err() {
                    return;
                }
                seq += 1;
            }
        };
        let run = async {
            let finish = exec::run(&attempt, &exec_cfg, log_tx, stop.clone()).await;
            stop.graceful(); // done: nothing left to stop (and a stop-all list can forget it)
            finish
        };
        let (finish, ()) = tokio::join!(run, forward);
        let (exit_code, reason, outputs) = match &finish {
            Finish::Succeeded { outputs } => (0, String::new(), outputs.clone()),
            Finish::Failed { exit_code, reason } => (*exit_code, reason.clone(), BTreeMap::new()),
            Finish::TimedOut => (-1, "timed out".into(), BTreeMap::new()),
            Finish::Cancelled => (-1, "stopped".into(), BTreeMap::new()),
        };
        let result = ResultMsg {
            tenant_id: a.tenant_id,
            attempt_id: a.attempt_id,
            lease_token: a.lease_token,
            state: finish.state().to_owned(),
            exit_code,
            reason,
            outputs: outputs.into_iter().collect(),
        };
        let _ = events.send(Event::Done(result)).await;
    });
    None
}
