//! Dispatch: claiming ready attempts fairly across tenants, leases, and reports from workers.
//! The fairness algorithm is described in `dispatch.md` beside this file.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use model::engine::{Event, Outcome};
use model::state::AttemptState;
use model::{RunId, TenantId};
use serde_json::Value;
use uuid::Uuid;

use crate::runs::{Locked, QUEUE_CHANNEL, Wake};
use crate::{Result, ShardId, Store, StoreError};

/// What a worker (or the in-process executor) asks for.
#[derive(Clone, Debug)]
pub struct ClaimRequest<'a> {
    pub pool: &'a str,
    /// The worker's region: it takes attempts pinned to it, and unpinned ones.
    pub region: Option<&'a str>,
    /// The worker's labels: it takes attempts whose required labels it all carries.
    pub labels: &'a serde_json::Value,
    pub worker_id: &'a str,
    /// At most this many attempts.
    pub limit: u32,
    /// Free resources; an attempt whose request exceeds them is left for another worker.
    pub cpu_millis: u32,
    pub memory_bytes: u64,
    pub gpu: u32,
    /// How long the lease lasts without renewal.
    pub lease: Duration,
}

/// A claimed attempt: run it, renew its lease, report its end with `lease_token`.
#[derive(Clone, Debug)]
pub struct Claimed {
    pub tenant_id: TenantId,
    pub attempt_id: Uuid,
    pub run_id: RunId,
    pub task_idx: usize,
    pub attempt: u32,
    pub lease_token: i64,
    pub lease_expires_at: DateTime<Utc>,
    /// The task kind's settings and params, templates rendered.
    pub rendered: Value,
    pub timeout_secs: Option<f64>,
    pub task_id: String,
    pub logical_time: DateTime<Utc>,
    pub workflow: String,
    pub cpu_millis: u32,
    pub memory_bytes: u64,
    pub gpu: u32,
}

/// The answer to a lease renewal, per attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Renewal {
    /// Keep going.
    Held,
    /// Stop it: the run was cancelled or the task cleared.
    Kill,
    /// The lease is gone (expired and handed on, or the attempt ended): stop at once.
    Lost,
}

#[derive(sqlx::FromRow, serde::Deserialize)]
pub(crate) struct TenantCandidate {
    #[sqlx(default)]
    #[serde(skip)]
    pub(crate) shard: ShardId,
    tenant_id: Uuid,
    top: Option<i32>,
    running: i64,
    max_running: Option<i32>,
    weight: i32,
    #[sqlx(default)]
    pool_free: Option<i64>,
}

/// Ends the attempts of several reports, `$1..$6` column by column (tenant, attempt, lease token,
/// end state, error, exit code), at `$7`. `k`: each report's attempt, looked up by key. `l`:
/// their runs, locked one by one in `(tenant, run)` order (the lateral lookups follow the sorted
/// arrays), so that two such statements cannot deadlock. `m`: each attempt still running under
/// its lease token, locked after every run (its lookup waits on the count of `l`): the run first,
/// as every run event does. The update finds them by key, not by the address `m` locked: an
/// attempt changed while the statement waited for a run (a kill requested, a lease renewed) is
/// locked at its newest version, which the statement's snapshot cannot see by address, while by
/// key the update follows it there. Returns each ended attempt's report (1-based), run, task and
/// attempt number.
const REPORT_ENDS_SQL: &str = "WITH k AS MATERIALIZED ( \
       SELECT u.ord, u.token, u.state, u.error, u.exit, a.tenant_id, a.id, a.run_id \
       FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::text[], $5::text[], $6::int[]) WITH ORDINALITY \
         AS u(tenant_id, id, token, state, error, exit, ord) \
       CROSS JOIN LATERAL (SELECT tenant_id, id, run_id FROM attempts WHERE tenant_id = u.tenant_id AND id = u.id OFFSET 0) a), \
     o AS (SELECT array_agg(tenant_id ORDER BY tenant_id, run_id) AS ts, array_agg(run_id ORDER BY tenant_id, run_id) AS rs \
       FROM (SELECT DISTINCT tenant_id, run_id FROM k) d), \
     l AS MATERIALIZED ( \
       SELECT r.id FROM o CROSS JOIN LATERAL unnest(o.ts, o.rs) AS x(tenant_id, run_id) \
       CROSS JOIN LATERAL (SELECT id FROM runs WHERE tenant_id = x.tenant_id AND id = x.run_id FOR UPDATE) r), \
     n AS MATERIALIZED (SELECT count(*) AS locked FROM l), \
     m AS MATERIALIZED ( \
       SELECT k.ord, k.tenant_id, k.id, k.token, k.state, k.error, k.exit FROM n, k CROSS JOIN LATERAL ( \
         SELECT 1 FROM attempts WHERE tenant_id = k.tenant_id AND id = k.id AND lease_token = k.token \
           AND state = 'running' AND n.locked >= 0 FOR UPDATE) a) \
     UPDATE attempts SET state = m.state, ended_at = $7, error = m.error, exit_code = m.exit \
     FROM m WHERE attempts.tenant_id = m.tenant_id AND attempts.id = m.id \
       AND attempts.lease_token = m.token AND attempts.state = 'running' \
     RETURNING m.ord, attempts.run_id, attempts.task_idx, attempts.attempt";

/// A report's outcome as stored: NUL replaced (neither text nor jsonb can hold it, and what a
/// task prints or writes can: such a report would fail every time it was sent; it becomes
/// U+FFFD), the attempt's end state, and its error.
fn settle(mut outcome: Outcome) -> (Outcome, AttemptState, Option<String>) {
    let clean = |s: &str| s.replace('\0', "\u{FFFD}");
    match &mut outcome {
        Outcome::Failed { reason } if reason.contains('\0') => *reason = clean(reason),
        Outcome::Succeeded { outputs } if outputs.iter().any(|(k, v)| k.contains('\0') || v.contains('\0')) => {
            *outputs = outputs.iter().map(|(k, v)| (clean(k), clean(v))).collect();
        }
        _ => {}
    }
    let state = match &outcome {
        Outcome::Succeeded { .. } => AttemptState::Succeeded,
        Outcome::Failed { .. } => AttemptState::Failed,
        Outcome::TimedOut => AttemptState::TimedOut,
        Outcome::Lost => AttemptState::Lost,
        Outcome::Cancelled => AttemptState::Cancelled,
    };
    let error = match &outcome {
        Outcome::Failed { reason } => Some(reason.clone()),
        _ => None,
    };
    (outcome, state, error)
}

/// Picks how many attempts each tenant gets in this claim: by priority, then by weighted fair
/// share (the fewest running attempts per unit of weight first), within each tenant's quota.
fn allot(mut cands: Vec<TenantCandidate>, slots: u32, shard_caps: &HashMap<ShardId, u32>) -> Vec<(ShardId, Uuid, u32)> {
    cands.retain(|c| c.top.is_some());
    let mut taken: HashMap<Uuid, u32> = HashMap::new();
    let mut per_shard: HashMap<ShardId, u32> = HashMap::new();
    for _ in 0..slots {
        let pick = cands
            .iter()
            .filter(|c| {
                c.max_running
                    .is_none_or(|m| c.running + i64::from(taken.get(&c.tenant_id).copied().unwrap_or(0)) < i64::from(m))
            })
            .filter(|c| shard_caps.get(&c.shard).is_none_or(|cap| per_shard.get(&c.shard).copied().unwrap_or(0) < *cap))
            .min_by(|a, b| {
                // Counted as far as `SHARE_COUNTED` per unit of weight for every tenant alike
                // (a quota may have made the count go further).
                let share = |c: &TenantCandidate| {
                    let counted = c.running.min(SHARE_COUNTED * i64::from(c.weight.max(1)));
                    (counted + i64::from(taken.get(&c.tenant_id).copied().unwrap_or(0))) as f64
                        / f64::from(c.weight.max(1))
                };
                b.top.cmp(&a.top).then(share(a).total_cmp(&share(b))).then(a.tenant_id.cmp(&b.tenant_id))
            });
        match pick {
            Some(c) => {
                *taken.entry(c.tenant_id).or_default() += 1;
                *per_shard.entry(c.shard).or_default() += 1;
            }
            None => break,
        }
    }
    let shard_of: HashMap<Uuid, ShardId> = cands.iter().map(|c| (c.tenant_id, c.shard)).collect();
    let mut out: Vec<(ShardId, Uuid, u32)> = taken.into_iter().map(|(t, n)| (shard_of[&t], t, n)).collect();
    out.sort();
    out
}

/// A report whose worker claims in the same transaction may have the attempts its step makes
/// ready started for that worker at once, without a trip through the queue: fewer statements a
/// step, and none of the claim's. Only when the claim would have picked them anyway: the same
/// allotment decides, over the candidates read before the step's writes plus the new attempts
/// (`plan_hand_off`); what it does not hand over is claimed the ordinary way afterwards.
pub(crate) struct HandOff<'r> {
    /// The claim, less what the step has handed over (one slot and its resources each).
    pub(crate) req: ClaimRequest<'r>,
    pub(crate) shard: ShardId,
    /// Chosen by the step: `(task, attempt)` of each attempt to start at once.
    pub(crate) take: Vec<(usize, u32)>,
    /// Started by the step, for the worker.
    pub(crate) started: Vec<Claimed>,
    /// Whether the ordinary claim must still follow: the step decided nothing, or work is left
    /// that the worker might take.
    pub(crate) claim_after: bool,
    /// The candidates the step read, when its writes left them true (it queued nothing and
    /// ended no run): the claim that follows allots from them instead of reading them again.
    pub(crate) read: Option<Vec<TenantCandidate>>,
}

impl<'r> HandOff<'r> {
    fn new(req: ClaimRequest<'r>, shard: ShardId) -> Self {
        HandOff { req, shard, take: Vec::new(), started: Vec::new(), claim_after: true, read: None }
    }

    /// The step handed nothing over and its candidates stay true: the claim follows if any
    /// tenant has work the worker could take, allotted from them.
    pub(crate) fn keep_read(&mut self, cands: Vec<TenantCandidate>) {
        self.claim_after = self.req.limit > 0 && cands.iter().any(|c| c.top.is_some());
        self.read = Some(cands);
    }

    /// Whether an attempt of `spec` may run on this worker at all (pool, region, labels).
    pub(crate) fn places(&self, spec: &model::workflow::Task) -> bool {
        spec.pool == self.req.pool
            && spec.region.as_deref().is_none_or(|r| self.req.region == Some(r))
            && spec.labels.iter().all(|(k, v)| self.req.labels.get(k).and_then(Value::as_str) == Some(v.as_str()))
    }
}

/// A new attempt a step makes ready now that the reporting worker could run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fresh {
    pub(crate) task: usize,
    pub(crate) attempt: u32,
    pub(crate) priority: i32,
    pub(crate) cpu_millis: u32,
    pub(crate) memory_bytes: u64,
    pub(crate) gpu: u32,
}

/// Which of `fresh` (in the step's order) to start at once for the worker, and whether the
/// ordinary claim must follow. `cands` were read in the step's transaction before its writes,
/// with `tenant` among them. The new attempts join their tenant's candidacy (its best priority
/// rises to theirs) and the allotment is the claim's own ([`allot`]), so a hand-off never takes
/// a slot the claim would have given another tenant, nor passes over a queued attempt of its
/// own tenant with at least its priority (queued earlier, it goes first).
pub(crate) fn plan_hand_off(
    mut cands: Vec<TenantCandidate>,
    tenant: Uuid,
    fresh: &[Fresh],
    h: &HandOff<'_>,
) -> (Vec<(usize, u32)>, bool) {
    let Some(mine) = cands.iter().position(|c| c.tenant_id == tenant) else {
        // Not read (it always is): claim the ordinary way.
        return (Vec::new(), true);
    };
    let queued_top = cands[mine].top;
    let others_waiting = cands.iter().any(|c| c.tenant_id != tenant && c.top.is_some());
    let mut eligible: Vec<Fresh> =
        fresh.iter().filter(|f| queued_top.is_none_or(|q| f.priority > q)).copied().collect();
    eligible.sort_by_key(|f| std::cmp::Reverse(f.priority));
    let mut take = Vec::new();
    if let Some(best) = eligible.first().map(|f| f.priority) {
        cands[mine].top = Some(queued_top.map_or(best, |q| q.max(best)));
        let caps: HashMap<ShardId, u32> = pool_cap(&cands).map(|cap| (cands[0].shard, cap)).into_iter().collect();
        let mut n = allot(cands, h.req.limit, &caps).into_iter().find(|(_, t, _)| *t == tenant).map_or(0, |(.., n)| n);
        let (mut cpu, mut mem, mut gpu) = (h.req.cpu_millis, h.req.memory_bytes, h.req.gpu);
        for f in &eligible {
            // As the claim does: the prefix that fits the worker's free resources.
            if n == 0 || f.cpu_millis > cpu || f.memory_bytes > mem || f.gpu > gpu {
                break;
            }
            cpu -= f.cpu_millis;
            mem -= f.memory_bytes;
            gpu -= f.gpu;
            take.push((f.task, f.attempt));
            n -= 1;
        }
    }
    // The claim follows only if the worker has room left and something it could take is
    // queued: what was not handed over, its tenant's queued work, another tenant's.
    let room = h.req.limit > u32::try_from(take.len()).unwrap_or(u32::MAX);
    let waiting = take.len() < fresh.len() || queued_top.is_some() || others_waiting;
    (take, room && waiting)
}

/// A worker's report that an attempt ended ([`Store::complete_attempts`]).
#[derive(Clone, Debug)]
pub struct Completion {
    pub tenant: TenantId,
    pub attempt_id: Uuid,
    pub lease_token: i64,
    pub outcome: Outcome,
    pub exit_code: Option<i32>,
}

#[derive(sqlx::FromRow)]
struct Started {
    id: Uuid,
    run_id: Uuid,
    task_idx: i32,
    attempt: i32,
    lease_token: i64,
    rendered: Value,
    timeout_secs: Option<f64>,
    cpu_millis: i32,
    memory_bytes: i64,
    gpu: i32,
    task_id: String,
    logical_time: DateTime<Utc>,
    workflow: String,
}

// How the queue's transactions plan. The queue's statistics describe whatever it
// held when it was last analyzed, often nothing at all, and a plan made for an empty queue reads
// all of it once it is full (a sequential scan and a sort instead of the `queue_pick` walk):
// the claims of a backfill then slow down as the square of its size. A plan made when it held
// a row or two takes a tenant's rows through the `(tenant_id, attempt_id)` key and sorts them
// all to keep the best 16 (3.9 ms a claim, 10.5 ms its candidates, with 20,000 rows queued; the
// `queue_pick` walk: 0.4 and 0.3 ms). So the planner is told that sequential scans and sorts are
// a last resort (they remain where nothing else can do). Our
// connections have no JIT, which the cost of a plan that must sort would otherwise trigger.
//
// Hash and merge joins go too: the statements of these transactions start from a handful of
// keys, and a plan made without knowing how many (PostgreSQL's generic plan) hashed every run
// of the tenant to update the one whose state a step changed. With plans that find rows by key
// whatever the statistics, each statement is planned once per connection, until an ANALYZE of
// a table it reads (`force_generic_plan`): PostgreSQL otherwise planned the claim, its candidates and a burst's
// load and write afresh on every call, because a plan made for 16 rows looked cheaper than one
// made for an unknown number — 1.8–2.0 ms of planning in a burst of 16 reports, more than any of
// them took to run (docs/BENCHMARKS.md, "Plans made once"). The test
// `claims_walk_the_index_when_the_statistics_say_the_queue_is_empty` reads the plans kept.
//
// These settings are made on the connections of each database's queue pool when they open
// (`QUEUE_SETTINGS` in pools.rs), and every transaction that reads the queue runs there.

/// Placement, with the worker's offer in parameters `$p..$p+6` (pool, now, CPU, memory, GPUs,
/// region, labels): ready, fits the resources, in the worker's region or unpinned, and asking
/// only for labels the worker carries.
fn fits(p: usize) -> String {
    let (now, cpu, mem, gpu, region, labels) = (p + 1, p + 2, p + 3, p + 4, p + 5, p + 6);
    format!(
        "q.not_before <= ${now} AND q.cpu_millis <= ${cpu} AND q.memory_bytes <= ${mem} AND q.gpu <= ${gpu} \
         AND (q.region IS NULL OR q.region = ${region}) AND q.labels <@ ${labels}::jsonb"
    )
}

/// How far a tenant's running attempts are counted, per unit of its weight (and at least up to
/// its `max_running`). Counting is an index walk over every running attempt of the tenant, on
/// every claim: 21 ms at 13,000. Fair share compares these counts, so it is exact among tenants
/// below this many running attempts per unit of weight; tenants above it are treated as equal
/// (served by id), and still after every tenant below it.
const SHARE_COUNTED: i64 = 1_000;

/// The candidates statement ([`candidates`]), with the worker's offer in parameters `$p..$p+6`
/// (as [`fits`]). With `with_tenant`, that parameter's tenant is among the candidates even when
/// it has nothing queued (its running count and limits are what a hand-off needs).
pub(crate) fn candidates_sql(p: usize, with_tenant: Option<usize>) -> String {
    let fits = fits(p);
    let tenants = match with_tenant {
        Some(x) => format!("(SELECT tenant_id FROM t WHERE tenant_id IS NOT NULL UNION SELECT ${x}::uuid) t"),
        None => "t".to_owned(),
    };
    format!(
        "WITH RECURSIVE t AS ( \
       (SELECT tenant_id FROM queue WHERE pool = ${p} ORDER BY tenant_id LIMIT 1) \
       UNION ALL \
       SELECT (SELECT q.tenant_id FROM queue q WHERE q.pool = ${p} AND q.tenant_id > t.tenant_id ORDER BY q.tenant_id LIMIT 1) \
       FROM t WHERE t.tenant_id IS NOT NULL) \
     SELECT t.tenant_id, \
       (SELECT q.priority FROM queue q WHERE q.pool = ${p} AND q.tenant_id = t.tenant_id AND {fits} ORDER BY q.priority DESC LIMIT 1) AS top, \
       (SELECT count(*) FROM (SELECT FROM attempts a WHERE a.tenant_id = t.tenant_id AND a.state = 'running' \
          LIMIT greatest({SHARE_COUNTED}::bigint * COALESCE(l.weight, 1), l.max_running)) r) AS running, \
       l.max_running, COALESCE(l.weight, 1) AS weight, \
       (SELECT p.slots - (SELECT count(*) FROM (SELECT FROM attempts a WHERE a.state = 'running' AND a.pool = p.name \
          LIMIT greatest(p.slots, 0)) r) \
          FROM pools p WHERE p.name = ${p}) AS pool_free \
     FROM {tenants} LEFT JOIN tenant_limits l ON l.tenant_id = t.tenant_id WHERE t.tenant_id IS NOT NULL"
    )
}

/// The claim statement ([`claim_on`]): $1..$7 as in [`candidates_sql`], $8 tenant, $9 how many,
/// $10 worker, $11 lease expiry. `x` looks up each started attempt's task, run and workflow by
/// key; `OFFSET 0` keeps it a lookup per row: flattened into a join, the plan kept for the
/// statement read every run of the tenant.
fn claim_sql() -> String {
    let fits = fits(1);
    format!(
        "WITH locked AS ( \
       SELECT q.ctid, q.seq, q.attempt_id, q.priority, q.cpu_millis, q.memory_bytes, q.gpu FROM queue q \
       WHERE q.pool = $1 AND q.tenant_id = $8 AND {fits} \
       ORDER BY q.priority DESC, q.seq LIMIT $9 FOR UPDATE SKIP LOCKED), \
     fit AS ( \
       SELECT ctid, attempt_id, cpu_millis, memory_bytes, gpu FROM ( \
         SELECT l.*, sum(l.cpu_millis) OVER w AS c, sum(l.memory_bytes) OVER w AS m, sum(l.gpu) OVER w AS g \
         FROM locked l WINDOW w AS (ORDER BY l.priority DESC, l.seq)) x \
       WHERE c <= $3 AND m <= $4 AND g <= $5), \
     del AS ( \
       DELETE FROM queue q WHERE q.ctid = ANY (ARRAY(SELECT ctid FROM fit)) \
       RETURNING q.attempt_id, q.cpu_millis, q.memory_bytes, q.gpu), \
     upd AS ( \
       UPDATE attempts a SET state = 'running', worker_id = $10, started_at = $2, lease_expires_at = $11, \
         lease_token = floor(random() * 9007199254740991)::bigint \
       WHERE a.tenant_id = $8 AND a.id = ANY (ARRAY(SELECT attempt_id FROM del)) AND a.state = 'queued' \
       RETURNING a.id, a.run_id, a.task_idx, a.attempt, a.lease_token, a.rendered, a.timeout_secs), \
     tasks AS ( \
       UPDATE task_runs t SET state = 'running', updated_at = $2 FROM upd \
       WHERE t.tenant_id = $8 AND t.run_id = upd.run_id AND t.task_idx = upd.task_idx \
         AND t.state = 'queued' AND t.attempts = upd.attempt) \
     SELECT upd.*, del.cpu_millis, del.memory_bytes, del.gpu, x.task_id, x.logical_time, x.workflow \
     FROM upd JOIN del ON del.attempt_id = upd.id \
     CROSS JOIN LATERAL ( \
       SELECT tr.task_id, r.logical_time, w.name AS workflow FROM task_runs tr, runs r, workflows w \
       WHERE tr.tenant_id = $8 AND tr.run_id = upd.run_id AND tr.task_idx = upd.task_idx \
         AND r.tenant_id = $8 AND r.id = upd.run_id AND w.tenant_id = $8 AND w.id = r.workflow_id OFFSET 0) x"
    )
}

/// Tenants with ready work on one shard, with their best priority, running count and limits; and
/// the pool's free slots there (None: unlimited). One statement.
async fn candidates(
    conn: &mut sqlx::PgConnection,
    req: &ClaimRequest<'_>,
    now: DateTime<Utc>,
) -> Result<(Vec<TenantCandidate>, Option<u32>)> {
    // A loose index scan over (pool, tenant_id): one probe per tenant with work, not one per row.
    // The pool's free slots ride along (an init plan: computed once, not per row).
    let free = (req.cpu_millis, req.memory_bytes, req.gpu);
    let cands: Vec<TenantCandidate> =
        bind_offer(sqlx::query_as(&candidates_sql(1, None)), req, free, now).fetch_all(&mut *conn).await?;
    let free = pool_cap(&cands);
    Ok((cands, free))
}

/// Binds the worker's offer to the next seven parameters, as [`fits`] reads them: pool, now, free
/// CPU, memory and GPUs, region, labels.
pub(crate) fn bind_offer<'q, O>(
    q: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    req: &ClaimRequest<'q>,
    (cpu, mem, gpu): (u32, u64, u32),
    now: DateTime<Utc>,
) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
    q.bind(req.pool)
        .bind(now)
        .bind(i32::try_from(cpu).unwrap_or(i32::MAX))
        .bind(i64::try_from(mem).unwrap_or(i64::MAX))
        .bind(i32::try_from(gpu).unwrap_or(i32::MAX))
        .bind(req.region)
        .bind(req.labels)
}

/// The pool's free slots on the candidates' shard (None: unlimited).
fn pool_cap(cands: &[TenantCandidate]) -> Option<u32> {
    cands.first().and_then(|c| c.pool_free).map(|f| u32::try_from(f.max(0)).unwrap_or(0))
}

/// Claims each tenant's allotment on one shard, through `conn`.
async fn claim_on(
    conn: &mut sqlx::PgConnection,
    req: &ClaimRequest<'_>,
    allotted: &[(Uuid, u32)],
    free: &mut (u32, u64, u32),
    now: DateTime<Utc>,
) -> Result<Vec<Claimed>> {
    let lease_until = now + chrono::Duration::from_std(req.lease).unwrap_or(chrono::Duration::seconds(30));
    let mut claimed = Vec::new();
    let (mut cpu, mut mem, mut gpu) = *free;
    for &(tenant, n) in allotted {
        // One statement: lock up to n ready rows, keep the prefix whose summed requests fit the
        // worker, take them off the queue, start their attempts with a lease, and mark their
        // tasks running — the engine's AttemptStarted, guarded on the attempt number. Rows are
        // found by key (`= ANY (ARRAY(..))`, a lateral lookup), not by a join the planner may
        // turn around: the queue's statistics are whatever it held when last analyzed, often
        // nothing, and a plan made for an empty queue scans all of it once it is full. Queue
        // rows are deleted by the address they were locked at (`ctid`: a TID scan, no index to
        // choose wrongly; by `seq`, a generic plan made while the queue was empty walked all
        // of `queue_pick` to delete 16 rows).
        let started: Vec<Started> = bind_offer(sqlx::query_as(&claim_sql()), req, (cpu, mem, gpu), now)
            .bind(tenant)
            .bind(i64::from(n))
            .bind(req.worker_id)
            .bind(lease_until)
            .fetch_all(&mut *conn)
            .await?;
        for s in started {
            cpu = cpu.saturating_sub(u32::try_from(s.cpu_millis).unwrap_or(0));
            mem = mem.saturating_sub(u64::try_from(s.memory_bytes).unwrap_or(0));
            gpu = gpu.saturating_sub(u32::try_from(s.gpu).unwrap_or(0));
            claimed.push(Claimed {
                tenant_id: TenantId(tenant),
                attempt_id: s.id,
                run_id: RunId(s.run_id),
                task_idx: usize::try_from(s.task_idx).unwrap_or(0),
                attempt: u32::try_from(s.attempt).unwrap_or(0),
                lease_token: s.lease_token,
                lease_expires_at: lease_until,
                rendered: s.rendered,
                timeout_secs: s.timeout_secs,
                task_id: s.task_id,
                logical_time: s.logical_time,
                workflow: s.workflow,
                cpu_millis: u32::try_from(s.cpu_millis).unwrap_or(0),
                memory_bytes: u64::try_from(s.memory_bytes).unwrap_or(0),
                gpu: u32::try_from(s.gpu).unwrap_or(0),
            });
        }
    }
    *free = (cpu, mem, gpu);
    Ok(claimed)
}

impl Store {
    /// Claims up to `req.limit` ready attempts of `req.pool` from every shard, fairly across
    /// tenants; each becomes `running` with a lease, in the same statement that removes it
    /// from the queue (`FOR UPDATE SKIP LOCKED`: concurrent claimers never get the same attempt).
    pub async fn claim(&self, req: &ClaimRequest<'_>, now: DateTime<Utc>) -> Result<Vec<Claimed>> {
        let mut committed = Vec::new();
        self.claim_with(req, now, None, None, &mut committed).await?;
        Ok(committed)
    }

    /// [`Self::claim`]; a shard whose transaction the caller holds (`open`) is read and claimed
    /// through it, so it sees (and takes) what that transaction enqueued: those attempts are
    /// returned, to be the caller's once it commits. `read`: that shard's candidates, when the
    /// caller has them already (still true in its transaction). Every other shard claims and
    /// commits in a transaction of its own, and what it claimed goes to `committed` at once: it is
    /// leased to the claimer whatever happens next (an error on a later shard, or the caller's
    /// transaction failing), and must reach it. A shard that fails there is left out (its
    /// transaction rolled back: nothing of it is claimed); the error is returned only when nothing
    /// was claimed at all.
    async fn claim_with(
        &self,
        req: &ClaimRequest<'_>,
        now: DateTime<Utc>,
        mut open: Option<(ShardId, &mut sqlx::PgConnection)>,
        mut read: Option<Vec<TenantCandidate>>,
        committed: &mut Vec<Claimed>,
    ) -> Result<Vec<Claimed>> {
        // Fair share is decided over every shard's candidates at once (a tenant lives on one
        // shard, so tenants are disjoint), then each shard claims its allotment. A shard the
        // caller has no transaction on gets one here, planned as the queue needs (its pool).
        let mut cands = Vec::new();
        let mut caps = HashMap::new();
        let mut txs = HashMap::new();
        for (shard, pool) in self.queue_pools() {
            let (mut c, cap) = match &mut open {
                Some((s, conn)) if *s == shard => match read.take() {
                    Some(c) => {
                        let cap = pool_cap(&c);
                        (c, cap)
                    }
                    None => candidates(conn, req, now).await?,
                },
                _ => {
                    let mut tx = pool.begin().await?;
                    let read = candidates(&mut tx, req, now).await?;
                    txs.insert(shard, tx);
                    read
                }
            };
            c.iter_mut().for_each(|c| c.shard = shard);
            cands.extend(c);
            if let Some(cap) = cap {
                caps.insert(shard, cap);
            }
        }
        if cands.iter().all(|c| c.top.is_none()) {
            return Ok(Vec::new());
        }
        let allotted = allot(cands, req.limit, &caps);
        let mut out = Vec::new();
        let mut failed = None;
        let mut shards: Vec<ShardId> = allotted.iter().map(|(s, ..)| *s).collect();
        shards.dedup();
        // Free resources shrink as attempts are taken, across shards too.
        let mut free = (req.cpu_millis, req.memory_bytes, req.gpu);
        for shard in shards {
            let mine: Vec<(Uuid, u32)> =
                allotted.iter().filter(|(s, ..)| *s == shard).map(|(_, t, n)| (*t, *n)).collect();
            match &mut open {
                Some((s, conn)) if *s == shard => out.extend(claim_on(conn, req, &mine, &mut free, now).await?),
                _ => {
                    let mut tx = txs.remove(&shard).expect("a transaction on every shard whose candidates were read");
                    let claimed = match claim_on(&mut tx, req, &mine, &mut free, now).await {
                        Ok(claimed) => tx.commit().await.map(|()| claimed).map_err(StoreError::from),
                        Err(e) => Err(e),
                    };
                    match claimed {
                        Ok(claimed) => committed.extend(claimed),
                        Err(e) => {
                            tracing::warn!(shard, "claiming on a shard failed; the claim goes on without it: {e}");
                            failed.get_or_insert(e);
                        }
                    }
                }
            }
        }
        match failed {
            Some(e) if out.is_empty() && committed.is_empty() => Err(e),
            _ => Ok(out),
        }
    }

    /// A worker's report that an attempt ended. Refused (`Stale`) unless the attempt is still
    /// running under this lease token: a worker that lost its lease cannot overwrite the outcome
    /// of the attempt that replaced it.
    pub async fn complete_attempt(
        &self,
        tenant: TenantId,
        attempt_id: Uuid,
        lease_token: i64,
        outcome: Outcome,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.complete_attempt_with_exit(tenant, attempt_id, lease_token, outcome, None, now).await
    }

    /// [`Self::complete_attempt`] for a process, keeping its exit code.
    pub async fn complete_attempt_with_exit(
        &self,
        tenant: TenantId,
        attempt_id: Uuid,
        lease_token: i64,
        outcome: Outcome,
        exit_code: Option<i32>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let c = Completion { tenant, attempt_id, lease_token, outcome, exit_code };
        let mut tx = self.queue_pool(self.shard_of(tenant).await?)?.begin().await?;
        let done = self.complete_in(&mut tx, c, now, &mut Wake::NowInQueue).await?;
        tx.commit().await?;
        done
    }

    /// Several reports at once: one transaction (one durable commit) per shard instead of one
    /// per report. Per report, in order: stored, `Stale` or `NotFound`, as
    /// [`Self::complete_attempt`] says. A `Retry` stored nothing of that shard's reports (the
    /// worker sends them again).
    pub async fn complete_attempts(&self, reports: Vec<Completion>, now: DateTime<Utc>) -> Vec<Result<()>> {
        self.complete_and_claim(reports, None, &|| now).await.0
    }

    /// [`Self::complete_attempts`], then, with `next`, a claim for the worker that reported, in
    /// the transaction of the last shard's reports: a step (an attempt ends, its successor is
    /// enqueued and handed to a free slot) costs one durable commit, not two. Claimers are woken
    /// only for what this claim left in the queue. `now` is read for the reports and again for
    /// the claim. A shard's transaction that fails (its claim included) stores nothing; its
    /// reports are then tried one at a time, without the claim, and those that fail alone too
    /// answer `Retry`. Attempts claimed on other shards (committed by then) come back with their
    /// lease.
    pub async fn complete_and_claim(
        &self,
        reports: Vec<Completion>,
        next: Option<&ClaimRequest<'_>>,
        now: &(dyn Fn() -> DateTime<Utc> + Send + Sync),
    ) -> (Vec<Result<()>>, Result<Vec<Claimed>>) {
        let mut answers: Vec<Option<Result<()>>> = reports.iter().map(|_| None).collect();
        let mut by_shard: BTreeMap<ShardId, Vec<(usize, Completion)>> = BTreeMap::new();
        for (i, c) in reports.into_iter().enumerate() {
            match self.shard_of(c.tenant).await {
                Ok(shard) => by_shard.entry(shard).or_default().push((i, c)),
                Err(e) => answers[i] = Some(Err(e)),
            }
        }
        let fused = next.and(by_shard.keys().next_back().copied());
        let at = now();
        let mut claimed = Ok(Vec::new());
        // Claimed and committed on shards other than the fused one's: the worker's, even if the
        // fused transaction fails after.
        let mut elsewhere = Vec::new();
        for (shard, group) in by_shard {
            let idx: Vec<usize> = group.iter().map(|(i, _)| *i).collect();
            let tail = next.filter(|_| fused == Some(shard)).map(|req| (req, now));
            // Kept to be tried one by one if the group fails: one report that cannot be stored
            // must not hold back the others (its worker sends it again; they would fail with it).
            let alone = (group.len() > 1).then(|| group.clone());
            match self.complete_group(shard, group, at, tail, &mut elsewhere).await {
                Ok((done, got)) => {
                    for (i, d) in done {
                        answers[i] = Some(d);
                    }
                    claimed = Ok(got);
                }
                Err(e) => {
                    tracing::warn!(shard, reports = idx.len(), "storing reports failed: {e}");
                    // Nothing of this group was stored; what cannot be stored alone either comes
                    // again.
                    for i in idx {
                        answers[i] = Some(Err(StoreError::Retry));
                    }
                    for (i, c) in alone.into_iter().flatten() {
                        match self.complete_group(shard, vec![(i, c)], at, None, &mut Vec::new()).await {
                            Ok((done, _)) => done.into_iter().for_each(|(i, d)| answers[i] = Some(d)),
                            Err(e) => tracing::warn!(shard, "storing a report failed: {e}"),
                        }
                    }
                    if tail.is_some() {
                        claimed = Err(e);
                    }
                }
            }
        }
        if fused.is_none()
            && let Some(req) = next
        {
            claimed = self.claim(req, now()).await;
        }
        if !elsewhere.is_empty() {
            claimed = Ok(claimed.unwrap_or_default().into_iter().chain(elsewhere).collect());
        }
        (answers.into_iter().map(|a| a.unwrap_or(Err(StoreError::NotFound))).collect(), claimed)
    }

    /// One shard's reports in one transaction, runs locked in ascending order (so two such groups
    /// cannot deadlock); with `tail`, the claim that follows them, in the same transaction (what
    /// it claims and commits on other shards goes to `elsewhere` as it is committed).
    async fn complete_group(
        &self,
        shard: ShardId,
        group: Vec<(usize, Completion)>,
        now: DateTime<Utc>,
        tail: Option<(&ClaimRequest<'_>, &(dyn Fn() -> DateTime<Utc> + Send + Sync))>,
        elsewhere: &mut Vec<Claimed>,
    ) -> Result<(Vec<(usize, Result<()>)>, Vec<Claimed>)> {
        let mut tx = self.queue_pool(shard)?.begin().await?;
        let mut ready = Vec::new();
        // A lone report's step may hand its new attempts to the claimer (one shard: the
        // candidates it reads must be all of them for the allotment to be the claim's).
        let mut hand_off = tail
            .filter(|_| self.shard_count() == 1 && group.len() == 1)
            .map(|(req, _)| HandOff::new(req.clone(), shard));
        let out = if group.len() == 1 {
            let mut out = Vec::with_capacity(1);
            for (i, c) in group {
                let mut wake = match tail {
                    Some(_) => Wake::Deferred(&mut ready, hand_off.as_mut()),
                    None => Wake::NowInQueue,
                };
                out.push((i, self.complete_in(&mut tx, c, now, &mut wake).await?));
            }
            out
        } else {
            self.complete_many(&mut tx, group, now, tail.map(|_| &mut ready)).await?
        };
        let mut claimed = Vec::new();
        if let Some((req, clock)) = tail {
            let (rest, claim_after, read) = match hand_off {
                Some(h) => {
                    claimed = h.started;
                    (h.req, h.claim_after, h.read)
                }
                None => (req.clone(), true, None),
            };
            if claim_after && rest.limit > 0 {
                claimed.extend(self.claim_with(&rest, clock(), Some((shard, &mut tx)), read, elsewhere).await?);
            }
            let mut left: Vec<&str> = ready
                .iter()
                .filter(|(_, id)| !claimed.iter().any(|c| c.attempt_id == *id))
                .map(|(p, _)| p.as_str())
                .collect();
            left.sort_unstable();
            left.dedup();
            if !left.is_empty() {
                sqlx::query("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p")
                    .bind(QUEUE_CHANNEL)
                    .bind(&left)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok((out, claimed))
    }

    /// One report inside `tx`. The outer error is the database's (the transaction is done for);
    /// the inner one says the report was refused (`Stale`, `NotFound`).
    async fn complete_in(
        &self,
        tx: &mut sqlx::PgConnection,
        c: Completion,
        now: DateTime<Utc>,
        wake: &mut Wake<'_, '_>,
    ) -> Result<Result<()>> {
        let Completion { tenant, attempt_id, lease_token, outcome, exit_code } = c;
        let (outcome, state, error) = settle(outcome);
        // One statement: lock the run (lock order: the run first, as every run event does), then
        // end the attempt only if it still runs under this lease token. `a` is looked up once, by
        // itself: inlined, a planner without statistics (tables that just grew) joined it against
        // every run of the tenant.
        let ended: Option<(Uuid, i32, i32)> = sqlx::query_as(
            "WITH a AS MATERIALIZED (SELECT run_id FROM attempts WHERE tenant_id = $1 AND id = $2), \
                  r AS (SELECT id FROM runs WHERE tenant_id = $1 AND id IN (SELECT run_id FROM a) FOR UPDATE) \
             UPDATE attempts SET state = $4, ended_at = $5, error = $6, exit_code = $7 FROM r \
             WHERE attempts.tenant_id = $1 AND attempts.id = $2 AND attempts.run_id = r.id \
               AND attempts.lease_token = $3 AND attempts.state = 'running' \
             RETURNING attempts.run_id, attempts.task_idx, attempts.attempt",
        )
        .bind(tenant.as_uuid())
        .bind(attempt_id)
        .bind(lease_token)
        .bind(state.as_str())
        .bind(now)
        .bind(error)
        .bind(exit_code)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((run, task, attempt)) = ended else {
            let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM attempts WHERE tenant_id = $1 AND id = $2")
                .bind(tenant.as_uuid())
                .bind(attempt_id)
                .fetch_optional(&mut *tx)
                .await?;
            return Ok(Err(if exists.is_some() { StoreError::Stale } else { StoreError::NotFound }));
        };
        let event = Event::AttemptEnded {
            task: usize::try_from(task).unwrap_or(0),
            attempt: u32::try_from(attempt).unwrap_or(0),
            outcome,
        };
        self.run_event_waking(tx, tenant, RunId(run), &event, now, Locked::Yes, wake).await?;
        Ok(Ok(()))
    }

    /// Several reports of one shard inside `tx`, set-based. ONE statement locks their runs, in
    /// `(tenant, run)` order so that two such groups cannot deadlock, and ends each attempt that
    /// still runs under its lease token; the runs' steps follow, read and mostly written
    /// together ([`Store::attempt_ends_in`]). Per report: stored, `Stale` or `NotFound`, as in
    /// [`Self::complete_in`].
    async fn complete_many(
        &self,
        tx: &mut sqlx::PgConnection,
        group: Vec<(usize, Completion)>,
        now: DateTime<Utc>,
        ready: Option<&mut Vec<(String, Uuid)>>,
    ) -> Result<Vec<(usize, Result<()>)>> {
        let n = group.len();
        // A report sent twice in one burst (the same attempt and lease token) is stored once: the
        // first copy goes to the database, a later one is answered as it would be after the first (`sent[k]`: the report whose
        // copy it is, and its place in the statement's arrays).
        let mut sent: Vec<usize> = Vec::with_capacity(n);
        let mut copy_of: Vec<Option<usize>> = vec![None; n];
        let (mut tenants, mut ids, mut tokens) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut states, mut errors, mut exits) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        let mut outcomes = Vec::with_capacity(n);
        for (k, (_, c)) in group.iter().enumerate() {
            if let Some(&first) = sent.iter().find(|&&f| {
                let d = &group[f].1;
                (d.tenant, d.attempt_id, d.lease_token) == (c.tenant, c.attempt_id, c.lease_token)
            }) {
                copy_of[k] = Some(first);
                continue;
            }
            sent.push(k);
            let (outcome, state, error) = settle(c.outcome.clone());
            tenants.push(c.tenant.as_uuid());
            ids.push(c.attempt_id);
            tokens.push(c.lease_token);
            states.push(state.as_str());
            errors.push(error);
            exits.push(c.exit_code);
            outcomes.push(Some(outcome));
        }
        let ended: Vec<(i64, Uuid, i32, i32)> = sqlx::query_as(REPORT_ENDS_SQL)
            .bind(&tenants)
            .bind(&ids)
            .bind(&tokens)
            .bind(&states)
            .bind(&errors)
            .bind(&exits)
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
        let mut events = Vec::with_capacity(ended.len());
        let mut answers: Vec<Option<Result<()>>> = (0..n).map(|_| None).collect();
        for (ord, run, task, attempt) in ended {
            let x = usize::try_from(ord - 1).unwrap_or(0);
            let Some(outcome) = outcomes.get_mut(x).and_then(Option::take) else { continue };
            let k = sent[x];
            answers[k] = Some(Ok(()));
            let event = Event::AttemptEnded {
                task: usize::try_from(task).unwrap_or(0),
                attempt: u32::try_from(attempt).unwrap_or(0),
                outcome,
            };
            events.push((TenantId(tenants[x]), RunId(run), k, event));
        }
        // The lock order; a run's events in the order their reports came in.
        events.sort_by_key(|(t, r, k, _)| (t.as_uuid(), r.as_uuid(), *k));
        let events = events.into_iter().map(|(t, r, _, e)| (t, r, e)).collect();
        if sent.iter().any(|&k| answers[k].is_none()) {
            // Refused: known (a stale lease, or already ended) or not at all.
            let known: Vec<(Uuid, Uuid)> = sqlx::query_as(
                "SELECT a.tenant_id, a.id FROM unnest($1::uuid[], $2::uuid[]) AS u(tenant_id, id) \
                 CROSS JOIN LATERAL (SELECT tenant_id, id FROM attempts WHERE tenant_id = u.tenant_id AND id = u.id OFFSET 0) a",
            )
            .bind(&tenants)
            .bind(&ids)
            .fetch_all(&mut *tx)
            .await?;
            for (x, &k) in sent.iter().enumerate() {
                if answers[k].is_none() {
                    let refused =
                        if known.contains(&(tenants[x], ids[x])) { StoreError::Stale } else { StoreError::NotFound };
                    answers[k] = Some(Err(refused));
                }
            }
        }
        for k in 0..n {
            if let Some(first) = copy_of[k] {
                answers[k] = Some(match &answers[first] {
                    Some(Ok(())) | Some(Err(StoreError::Stale)) => Err(StoreError::Stale),
                    _ => Err(StoreError::NotFound),
                });
            }
        }
        self.attempt_ends_in(tx, events, now, ready).await?;
        Ok(group.into_iter().zip(answers).map(|((i, _), a)| (i, a.unwrap_or(Err(StoreError::NotFound)))).collect())
    }

    /// Renews the leases of a worker's running attempts; says which to stop.
    pub async fn renew_leases(
        &self,
        attempts: &[(TenantId, Uuid, i64)],
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<(Uuid, Renewal)>> {
        let until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(30));
        let mut by_tenant: HashMap<TenantId, (Vec<Uuid>, Vec<i64>)> = HashMap::new();
        for (t, id, tok) in attempts {
            let e = by_tenant.entry(*t).or_default();
            e.0.push(*id);
            e.1.push(*tok);
        }
        let mut out = Vec::new();
        for (tenant, (ids, toks)) in by_tenant {
            let held: Vec<(Uuid, bool)> = sqlx::query_as(
                "UPDATE attempts a SET lease_expires_at = $2 FROM unnest($3::uuid[], $4::bigint[]) AS r(id, token) \
                 WHERE a.tenant_id = $1 AND a.id = r.id AND a.lease_token = r.token AND a.state = 'running' AND a.lease_expires_at >= $5 \
                 RETURNING a.id, a.kill_requested",
            )
            .bind(tenant.as_uuid())
            .bind(until)
            .bind(&ids)
            .bind(&toks)
            .bind(now)
            .fetch_all(self.shard(tenant).await?)
            .await?;
            for id in ids {
                out.push(match held.iter().find(|(h, _)| *h == id) {
                    Some((_, true)) => (id, Renewal::Kill),
                    Some((_, false)) => (id, Renewal::Held),
                    None => (id, Renewal::Lost),
                });
            }
        }
        Ok(out)
    }

    /// Attempts whose lease expired become `lost`, and their tasks' retry policy decides.
    /// Returns how many were reaped.
    pub async fn reap_expired_leases(&self, now: DateTime<Utc>, limit: i64) -> Result<usize> {
        let mut n = 0;
        for (_, pool) in self.shard_pools() {
            let expired: Vec<(Uuid, Uuid)> = sqlx::query_as(
                "SELECT tenant_id, id FROM attempts WHERE state = 'running' AND lease_expires_at < $1 ORDER BY lease_expires_at LIMIT $2",
            )
            .bind(now)
            .bind(limit)
            .fetch_all(&pool)
            .await?;
            for (tenant, id) in expired {
                let tenant = TenantId(tenant);
                match self.end_without_lease(tenant, id, Outcome::Lost, "lease_expires_at < $3", now).await {
                    Ok(true) => n += 1,
                    Ok(false) | Err(StoreError::Retry) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(n)
    }

    /// Running attempts past their task's timeout: `fail` kills them (and retries), `warn` raises
    /// a warning once. Returns how many were handled.
    pub async fn enforce_timeouts(&self, now: DateTime<Utc>, limit: i64) -> Result<usize> {
        let mut n = 0;
        for (_, pool) in self.shard_pools() {
            let due: Vec<(Uuid, Uuid, Uuid, i32, i32)> = sqlx::query_as(
                "UPDATE attempts SET timeout_handled = true WHERE (tenant_id, id) IN ( \
                   SELECT tenant_id, id FROM attempts WHERE state = 'running' AND NOT timeout_handled AND timeout_secs IS NOT NULL \
                     AND started_at + make_interval(secs => timeout_secs) < $1 LIMIT $2 FOR UPDATE SKIP LOCKED) \
                 RETURNING tenant_id, id, run_id, task_idx, attempt",
            )
            .bind(now)
            .bind(limit)
            .fetch_all(&pool)
            .await?;
            for (tenant, _, run, task, attempt) in due {
                let event = Event::AttemptTimedOut {
                    task: usize::try_from(task).unwrap_or(0),
                    attempt: u32::try_from(attempt).unwrap_or(0),
                };
                self.run_event(TenantId(tenant), RunId(run), &event, now).await?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Ends a running attempt the worker can no longer report (lease expired), if `condition` holds.
    async fn end_without_lease(
        &self,
        tenant: TenantId,
        attempt_id: Uuid,
        outcome: Outcome,
        condition: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let mut tx = self.shard(tenant).await?.begin().await?;
        let found: Option<(Uuid, i32, i32)> =
            sqlx::query_as("SELECT run_id, task_idx, attempt FROM attempts WHERE tenant_id = $1 AND id = $2")
                .bind(tenant.as_uuid())
                .bind(attempt_id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some((run, task, attempt)) = found else { return Ok(false) };
        sqlx::query("SELECT 1 FROM runs WHERE tenant_id = $1 AND id = $2 FOR UPDATE")
            .bind(tenant.as_uuid())
            .bind(run)
            .execute(&mut *tx)
            .await?;
        let updated = sqlx::query(&format!(
            "UPDATE attempts SET state = 'lost', ended_at = $3, error = 'lease expired' \
             WHERE tenant_id = $1 AND id = $2 AND state = 'running' AND {condition}"
        ))
        .bind(tenant.as_uuid())
        .bind(attempt_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Ok(false);
        }
        let event = Event::AttemptEnded {
            task: usize::try_from(task).unwrap_or(0),
            attempt: u32::try_from(attempt).unwrap_or(0),
            outcome,
        };
        self.run_event_in(&mut tx, tenant, RunId(run), &event, now, Locked::Yes).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Ready attempts waiting per pool (and how many of them no live worker could take is the
    /// worker registry's business): the queue depth metric.
    pub async fn queue_depth(&self) -> Result<Vec<(String, i64)>> {
        let mut by_pool: HashMap<String, i64> = HashMap::new();
        for (_, pool) in self.shard_pools() {
            let rows: Vec<(String, i64)> =
                sqlx::query_as("SELECT pool, count(*) FROM queue GROUP BY pool").fetch_all(&pool).await?;
            for (p, n) in rows {
                *by_pool.entry(p).or_default() += n;
            }
        }
        let mut v: Vec<(String, i64)> = by_pool.into_iter().collect();
        v.sort();
        Ok(v)
    }

    /// Sets a tenant's dispatch limits (in its shard, where claims read them).
    pub async fn set_tenant_limits(&self, tenant: TenantId, max_running: Option<u32>, weight: u32) -> Result<()> {
        sqlx::query(
            "INSERT INTO tenant_limits (tenant_id, max_running, weight) VALUES ($1, $2, $3) \
             ON CONFLICT (tenant_id) DO UPDATE SET max_running = EXCLUDED.max_running, weight = EXCLUDED.weight",
        )
        .bind(tenant.as_uuid())
        .bind(max_running.map(|m| i32::try_from(m).unwrap_or(i32::MAX)))
        .bind(i32::try_from(weight.max(1)).unwrap_or(i32::MAX))
        .execute(self.shard(tenant).await?)
        .await?;
        Ok(())
    }

    /// A tenant's dispatch limits: (max running, weight); defaults when never set.
    pub async fn tenant_limits(&self, tenant: TenantId) -> Result<(Option<u32>, u32)> {
        let row: Option<(Option<i32>, i32)> =
            sqlx::query_as("SELECT max_running, weight FROM tenant_limits WHERE tenant_id = $1")
                .bind(tenant.as_uuid())
                .fetch_optional(self.shard(tenant).await?)
                .await?;
        Ok(row.map_or((None, 1), |(m, w)| (m.map(|m| u32::try_from(m).unwrap_or(0)), u32::try_from(w).unwrap_or(1))))
    }

    /// Every pool with a slot limit (the same on every shard).
    pub async fn pools(&self) -> Result<Vec<(String, Option<u32>)>> {
        let rows: Vec<(String, Option<i32>)> =
            sqlx::query_as("SELECT name, slots FROM pools ORDER BY name").fetch_all(self.catalog()).await?;
        Ok(rows.into_iter().map(|(n, s)| (n, s.map(|s| u32::try_from(s).unwrap_or(0)))).collect())
    }

    /// Sets a pool's slot limit on every shard (None = no limit beyond worker capacity).
    pub async fn set_pool_slots(&self, pool: &str, slots: Option<u32>) -> Result<()> {
        for (_, p) in self.shard_pools() {
            sqlx::query("INSERT INTO pools (name, slots) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET slots = EXCLUDED.slots")
                .bind(pool)
                .bind(slots.map(|s| i32::try_from(s).unwrap_or(i32::MAX)))
                .execute(&p)
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plan PostgreSQL keeps for `sql` (its generic plan, planned once), as text, inside a
    /// transaction begun as the queue's are.
    async fn generic_plan(conn: &mut sqlx::PgConnection, sql: &str, args: &str) -> String {
        generic_plan_typed(conn, sql, None, args).await
    }

    /// [`generic_plan`], the parameters' types given (`"uuid, text[]"`) where the statement
    /// leaves some unsaid.
    async fn generic_plan_typed(conn: &mut sqlx::PgConnection, sql: &str, types: Option<&str>, args: &str) -> String {
        use sqlx::Executor as _;
        let settings: Vec<String> =
            crate::pools::QUEUE_SETTINGS.iter().map(|(k, v)| format!("SET LOCAL {k} = {v}")).collect();
        conn.execute(format!("BEGIN; {}", settings.join("; ")).as_str()).await.unwrap();
        let types = types.map(|t| format!("({t})")).unwrap_or_default();
        conn.execute(format!("PREPARE probe{types} AS {sql}").as_str()).await.unwrap();
        let rows: Vec<String> =
            sqlx::query_scalar(&format!("EXPLAIN EXECUTE probe({args})")).fetch_all(&mut *conn).await.unwrap();
        conn.execute("ROLLBACK; DEALLOCATE probe").await.unwrap();
        rows.join("\n")
    }

    /// The queue's transactions run on connections that plan as the queue needs from the start.
    #[tokio::test]
    async fn the_queue_pool_plans_by_key_from_its_first_statement() {
        let db = testkit::TestDb::one_shard().await;
        let store = Store::connect(
            &crate::DatabaseUrls { catalog: db.urls.catalog.clone(), extra_shards: vec![] },
            &crate::StoreOptions::default(),
        )
        .await
        .unwrap();
        let mut conn = store.queue_pool(1).unwrap().acquire().await.unwrap();
        for (name, value) in crate::pools::QUEUE_SETTINGS {
            let got: String = sqlx::query_scalar(&format!("SHOW {name}")).fetch_one(&mut *conn).await.unwrap();
            assert_eq!(got, value, "{name}");
        }
        let mut other = store.shard_pool(1).unwrap().acquire().await.unwrap();
        let got: String = sqlx::query_scalar("SHOW enable_seqscan").fetch_one(&mut *other).await.unwrap();
        assert_eq!(got, "on", "the other pool plans as PostgreSQL does");
        drop((conn, other));
        store.close().await;
    }

    /// The queue's statistics are whatever it held when last analyzed, often nothing; a plan made
    /// from them must still walk `queue_pick` and delete claimed rows by address, or every claim
    /// reads the whole backlog.
    #[tokio::test]
    async fn claims_walk_the_index_when_the_statistics_say_the_queue_is_empty() {
        use sqlx::Connection as _;
        let db = testkit::TestDb::one_shard().await;
        let mut conn = sqlx::PgConnection::connect(&db.urls.catalog).await.unwrap();
        sqlx::query("SET jit = off").execute(&mut conn).await.unwrap(); // as on the store's connections
        sqlx::query(
            "INSERT INTO queue (tenant_id, attempt_id, pool, priority, not_before) \
             VALUES ('00000000-0000-0000-0000-000000000009', gen_random_uuid(), 'other', 0, now())",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        sqlx::query("ANALYZE queue").execute(&mut conn).await.unwrap();
        // Then a backlog arrives: 20,000 rows of five tenants, not analyzed.
        sqlx::query(
            "INSERT INTO queue (tenant_id, attempt_id, pool, priority, not_before) \
             SELECT ('00000000-0000-0000-0000-00000000000' || (g % 5))::uuid, gen_random_uuid(), 'default', g % 3, now() \
             FROM generate_series(1, 20000) g",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        // And the tenant has runs, analyzed (a few hundred: enough for a plan that hashes them
        // all to look cheap): a claim and a step's write must still look up the runs they touch
        // by key, not read all of the tenant's.
        sqlx::query("SET session_replication_role = replica").execute(&mut conn).await.unwrap(); // no parents
        sqlx::query(
            "INSERT INTO runs (tenant_id, id, workflow_id, version, trigger, logical_time, run_key, state) \
             SELECT '00000000-0000-0000-0000-000000000001', gen_random_uuid(), gen_random_uuid(), 1, 'manual', now(), \
               'k' || g, 'running' FROM generate_series(1, 300) g",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        sqlx::raw_sql("RESET session_replication_role; ANALYZE runs").execute(&mut conn).await.unwrap();
        let offer = "'default', now(), 1000, 1000000000, 0, NULL, '{}'";
        let cands = generic_plan(&mut conn, &candidates_sql(1, None), offer).await;
        assert!(!cands.contains("Seq Scan on queue"), "{cands}");
        assert!(cands.contains("queue_pick"), "{cands}");
        // As a report's step reads them for a hand-off: its own tenant among them.
        let cands = generic_plan(
            &mut conn,
            &candidates_sql(1, Some(8)),
            &format!("{offer}, '00000000-0000-0000-0000-000000000001'"),
        )
        .await;
        assert!(!cands.contains("Seq Scan on queue"), "{cands}");
        assert!(cands.contains("queue_pick"), "{cands}");
        let claim = generic_plan(
            &mut conn,
            &claim_sql(),
            &format!("{offer}, '00000000-0000-0000-0000-000000000001', 16, 'w', now()"),
        )
        .await;
        assert!(!claim.contains("Seq Scan on queue"), "{claim}");
        assert!(claim.contains("Index Scan using queue_pick on queue"), "{claim}");
        assert!(claim.contains("Tid Scan on queue"), "{claim}");
        assert!(claim.contains("Index Scan using runs_pkey on runs"), "{claim}");
        assert!(!claim.contains("runs_by_tenant"), "{claim}");
        // A step's write updates the runs and tasks it names, by key.
        let types = "timestamptz, text, timestamptz, uuid[], uuid[], uuid[], int[], int[], text[], jsonb[], float8[], \
                     timestamptz[], text[], bigint[], int[], int[], bigint[], int[], text[], jsonb[], text, text[], uuid[], \
                     uuid[], int[], text[], int[], int[], jsonb[], bool[], text[], uuid[], uuid[], text[], uuid[], uuid[], \
                     text[], jsonb[]";
        let nulls = vec!["NULL"; 38].join(", ");
        // Every variant of it (the parts a batch has rows for).
        use crate::runs::part;
        for parts in 1..=part::ALL {
            let write =
                generic_plan_typed(&mut conn, crate::runs::step_write_sql(parts, true), Some(types), &nulls).await;
            if parts & part::RUNS != 0 {
                assert!(write.contains("Index Scan using runs_pkey on runs"), "{parts}: {write}");
            }
            if parts & part::TASKS != 0 {
                assert!(write.contains("Index Scan using task_runs_pkey on task_runs"), "{parts}: {write}");
            }
            assert!(!write.contains("runs_by_tenant") && !write.contains("Hash Join"), "{parts}: {write}");
        }
    }

    fn c(id: u128, top: i32, running: i64, max: Option<i32>, weight: i32) -> TenantCandidate {
        TenantCandidate {
            shard: 1,
            tenant_id: Uuid::from_u128(id),
            top: Some(top),
            running,
            max_running: max,
            weight,
            pool_free: None,
        }
    }

    static NO_LABELS: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| serde_json::json!({}));

    fn offer(limit: u32, cpu_millis: u32) -> HandOff<'static> {
        let req = ClaimRequest {
            pool: "default",
            region: None,
            labels: &NO_LABELS,
            worker_id: "w",
            limit,
            cpu_millis,
            memory_bytes: u64::MAX,
            gpu: 0,
            lease: Duration::from_secs(30),
        };
        HandOff::new(req, 1)
    }

    fn fresh(task: usize, priority: i32, cpu_millis: u32) -> Fresh {
        Fresh { task, attempt: 1, priority, cpu_millis, memory_bytes: 0, gpu: 0 }
    }

    fn quiet(id: u128, running: i64) -> TenantCandidate {
        TenantCandidate { top: None, ..c(id, 0, running, None, 1) }
    }

    #[test]
    fn a_step_hands_its_new_attempts_to_the_reporter_as_the_claim_would_allot_them() {
        let me = Uuid::from_u128(1);
        // Nobody else waits: both new attempts start, and no claim need follow.
        let (take, after) = plan_hand_off(vec![quiet(1, 3)], me, &[fresh(4, 0, 0), fresh(5, 0, 0)], &offer(2, 1000));
        assert_eq!((take, after), (vec![(4, 1), (5, 1)], false));
        // One slot: the higher priority goes, the other is left for the claim... which has no
        // slot left to take it with.
        let (take, after) = plan_hand_off(vec![quiet(1, 3)], me, &[fresh(4, 0, 0), fresh(5, 2, 0)], &offer(1, 1000));
        assert_eq!((take, after), (vec![(5, 1)], false));
        // Two slots, another tenant waiting with a smaller share: it gets both.
        let waiting = c(2, 0, 0, None, 1);
        let (take, after) =
            plan_hand_off(vec![quiet(1, 3), waiting], me, &[fresh(4, 0, 0), fresh(5, 0, 0)], &offer(2, 1000));
        assert_eq!((take, after), (vec![], true));
        // With equal shares they split them: one new attempt starts, the claim follows for the
        // other tenant's.
        let waiting = c(2, 0, 0, None, 1);
        let (take, after) =
            plan_hand_off(vec![quiet(1, 0), waiting], me, &[fresh(4, 0, 0), fresh(5, 0, 0)], &offer(2, 1000));
        assert_eq!((take, after), (vec![(4, 1)], true));
        // ... but not when it is at its quota.
        let capped = c(2, 0, 2, Some(2), 1);
        let (take, _) =
            plan_hand_off(vec![quiet(1, 3), capped], me, &[fresh(4, 0, 0), fresh(5, 0, 0)], &offer(2, 1000));
        assert_eq!(take, vec![(4, 1), (5, 1)]);
        // The worker's free CPU bounds the prefix taken.
        let (take, after) =
            plan_hand_off(vec![quiet(1, 0)], me, &[fresh(4, 0, 600), fresh(5, 0, 600)], &offer(2, 1000));
        assert_eq!((take, after), (vec![(4, 1)], true));
        // The tenant's own queued attempt of the same priority waited longer: nothing is handed.
        let queued = c(1, 0, 3, None, 1);
        let (take, after) = plan_hand_off(vec![queued], me, &[fresh(4, 0, 0)], &offer(1, 1000));
        assert_eq!((take, after), (vec![], true));
    }

    #[test]
    fn shares_beyond_the_counted_running_attempts_are_equal() {
        // 1,500 running under a quota of 5,000 (counted that far) and 2,000 running without one
        // (counted to 1,000): both are beyond the cutoff, so they tie and go by id.
        let quota = c(1, 0, 1_500, Some(5_000), 1);
        let free = c(2, 0, 1_000, None, 1);
        assert_eq!(allot(vec![quota, free], 1, &HashMap::new()), vec![(1, Uuid::from_u128(1), 1)]);
        // Below it, fewer running goes first whatever the id.
        let few = c(2, 0, 999, Some(5_000), 1);
        let free = c(1, 0, 1_000, None, 1);
        assert_eq!(allot(vec![few, free], 1, &HashMap::new()), vec![(1, Uuid::from_u128(2), 1)]);
    }

    #[test]
    fn higher_priority_wins_then_the_smaller_share() {
        let a = allot(vec![c(1, 0, 0, None, 1), c(2, 5, 10, None, 1)], 1, &HashMap::new());
        assert_eq!(a, vec![(1, Uuid::from_u128(2), 1)], "priority first");
        let a = allot(vec![c(1, 0, 8, None, 1), c(2, 0, 1, None, 1)], 4, &HashMap::new());
        assert_eq!(a, vec![(1, Uuid::from_u128(2), 4)], "the tenant with less running fills up first");
        let a = allot(vec![c(1, 0, 0, None, 1), c(2, 0, 0, None, 3)], 8, &HashMap::new());
        assert_eq!(a, vec![(1, Uuid::from_u128(1), 2), (1, Uuid::from_u128(2), 6)], "weights split 1:3");
    }

    #[test]
    fn quotas_hold_and_unused_slots_are_not_forced() {
        let a = allot(vec![c(1, 0, 2, Some(3), 1), c(2, 0, 0, Some(1), 1)], 10, &HashMap::new());
        assert_eq!(a, vec![(1, Uuid::from_u128(1), 1), (1, Uuid::from_u128(2), 1)]);
        let capped = allot(vec![c(1, 0, 0, None, 1)], 10, &HashMap::from([(1, 2)]));
        assert_eq!(capped, vec![(1, Uuid::from_u128(1), 2)], "a pool's free slots on the shard cap it");
    }
}
