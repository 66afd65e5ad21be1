//! The engine end to end against real PostgreSQL: runs, the in-process executor, leases,
//! retries, fencing, concurrency and fairness.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::{World, t0};
use engine::SystemClock;
use engine::local::{self, LocalExecutorConfig};
use model::engine::Outcome;
use model::state::{RunState, TaskState};
use store::{ClaimRequest, StoreError};
use tokio_util::sync::CancellationToken;

const CHAIN: &str = "name: chain\ntasks:\n  - {id: a, kind: noop}\n  - {id: b, kind: noop, depends_on: [a]}\n  - {id: c, kind: sleep, config: {seconds: 0.05}, depends_on: [b]}\n";

static NO_LABELS: std::sync::LazyLock<serde_json::Value> = std::sync::LazyLock::new(|| serde_json::json!({}));

fn req(limit: u32) -> ClaimRequest<'static> {
    ClaimRequest {
        pool: "default",
        region: None,
        labels: &NO_LABELS,
        worker_id: "test",
        limit,
        cpu_millis: u32::MAX,
        memory_bytes: u64::MAX,
        gpu: u32::MAX,
        lease: Duration::from_secs(30),
    }
}

#[tokio::test]
async fn a_chain_runs_to_success_on_the_in_process_executor() {
    for (layout, w) in World::layouts().await {
        eprintln!("layout: {layout}");
        let (t, p) = w.tenant("acme").await;
        let wf = w.workflow(t, p, CHAIN, chrono::Utc::now()).await;
        let stop = CancellationToken::new();
        tokio::spawn(local::run(w.store.clone(), Arc::new(SystemClock), LocalExecutorConfig::default(), stop.clone()));
        let run = w.trigger(t, wf, chrono::Utc::now()).await;
        assert_eq!(w.wait_end(t, run).await, RunState::Succeeded);
        let tasks = w.store.task_runs(t, run).await.unwrap();
        assert!(tasks.iter().all(|x| x.state == "succeeded"), "{tasks:?}");
        let attempts = w.store.attempts_of_run(t, run).await.unwrap();
        assert_eq!(attempts.len(), 3);
        // Each task started only after its upstream ended.
        for pair in attempts.windows(2) {
            assert!(pair[1].started_at.unwrap() >= pair[0].ended_at.unwrap(), "{attempts:?}");
        }
        stop.cancel();
    }
}

#[tokio::test]
async fn concurrent_claimers_never_claim_one_attempt_twice() {
    for (layout, w) in World::layouts().await {
        eprintln!("layout: {layout}");
        let (t, p) = w.tenant("acme").await;
        let mut doc = String::from("name: fan\ntasks:\n");
        for i in 0..200 {
            doc.push_str(&format!("  - {{id: t{i}, kind: noop}}\n"));
        }
        let wf = w.workflow(t, p, &doc, t0()).await;
        w.trigger(t, wf, t0()).await;
        let mut handles = Vec::new();
        for _ in 0..8 {
            let store = w.store.clone();
            handles.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let got = store.claim(&req(7), t0()).await.unwrap();
                    if got.is_empty() {
                        break;
                    }
                    mine.extend(got.into_iter().map(|c| c.attempt_id));
                }
                mine
            }));
        }
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.await.unwrap());
        }
        let unique: HashSet<_> = all.iter().collect();
        assert_eq!(all.len(), 200, "every attempt claimed");
        assert_eq!(unique.len(), 200, "none claimed twice");
    }
}

#[tokio::test]
async fn an_expired_lease_becomes_lost_and_the_retry_succeeds_while_the_stale_report_is_refused() {
    for (layout, w) in World::layouts().await {
        eprintln!("layout: {layout}");
        let (t, p) = w.tenant("acme").await;
        let wf =
            w.workflow(t, p, "name: w\ntasks:\n  - {id: a, kind: noop, retries: {count: 1, delay: 0s}}\n", t0()).await;
        let run = w.trigger(t, wf, t0()).await;
        let first = w.store.claim(&req(1), t0()).await.unwrap().remove(0);
        // The worker goes silent; its lease runs out and the reaper declares the attempt lost.
        let later = t0() + chrono::Duration::seconds(31);
        assert_eq!(w.store.reap_expired_leases(later, 10).await.unwrap(), 1);
        let second = w.store.claim(&req(1), later).await.unwrap().remove(0);
        assert_eq!((second.task_idx, second.attempt), (0, 2));
        // The first worker comes back and reports: refused by the fencing token.
        let stale = w
            .store
            .complete_attempt(
                t,
                first.attempt_id,
                first.lease_token,
                Outcome::Succeeded { outputs: Default::default() },
                later,
            )
            .await;
        assert!(matches!(stale, Err(StoreError::Stale)), "{stale:?}");
        w.store
            .complete_attempt(
                t,
                second.attempt_id,
                second.lease_token,
                Outcome::Succeeded { outputs: Default::default() },
                later,
            )
            .await
            .unwrap();
        assert_eq!(w.run_state(t, run).await, RunState::Succeeded);
        let attempts = w.store.attempts_of_run(t, run).await.unwrap();
        assert_eq!(attempts.iter().map(|a| a.state.as_str()).collect::<Vec<_>>(), ["lost", "succeeded"]);
    }
}

#[tokio::test]
async fn a_report_is_stored_whatever_its_reason_or_outputs_hold() {
    let w = World::one_shard().await;
    let (t, p) = w.tenant("acme").await;
    let wf = w.workflow(t, p, "name: w\ntasks:\n  - {id: a, kind: noop}\n", t0()).await;
    let run = w.trigger(t, wf, t0()).await;
    let c = w.store.claim(&req(1), t0()).await.unwrap().remove(0);
    // What a shell's stderr can say: quotes, a backslash before a quote, dollar quoting, a
    // statement of its own, lines, other scripts, and a NUL (which no text column can hold).
    let reason = "it's a 'quote' \\' $$ $x$ E'\\x41'; DROP TABLE attempts; --\nline two\t\u{1F600} \u{4E2D}\u{0}end";
    w.store
        .complete_attempt_with_exit(
            t,
            c.attempt_id,
            c.lease_token,
            Outcome::Failed { reason: reason.into() },
            Some(3),
            t0(),
        )
        .await
        .unwrap();
    assert_eq!(w.run_state(t, run).await, RunState::Failed);
    let a = w.store.attempts_of_run(t, run).await.unwrap().remove(0);
    assert_eq!(a.state, "failed");
    assert_eq!(a.exit_code, Some(3));
    assert_eq!(a.error.as_deref(), Some(reason.replace('\0', "\u{FFFD}").as_str()));
    assert_eq!(a.ended_at, Some(t0()));

    // Outputs too (a task writes them to a file, NUL and all), and they reach the task's row.
    let run = w.trigger(t, wf, t0()).await;
    let c = w.store.claim(&req(1), t0()).await.unwrap().remove(0);
    let outputs = [("k\u{0}ey".to_owned(), "it's \u{0} $$".to_owned())].into();
    w.store.complete_attempt(t, c.attempt_id, c.lease_token, Outcome::Succeeded { outputs }, t0()).await.unwrap();
    assert_eq!(w.run_state(t, run).await, RunState::Succeeded);
    let task = w.store.task_runs(t, run).await.unwrap().remove(0);
    assert_eq!(task.outputs, serde_json::json!({"k\u{FFFD}ey": "it's \u{FFFD} $$"}));
}

/// Claims count a tenant's running attempts only so far (`SHARE_COUNTED` per unit of weight),
/// but always as far as its quota: a quota above that still holds exactly.
#[tokio::test]
async fn a_quota_of_more_than_a_thousand_running_attempts_holds_exactly() {
    let w = World::one_shard().await;
    let (t, p) = w.tenant("big").await;
    let mut doc = String::from("name: wide\ntasks:\n");
    for i in 0..1_010 {
        doc.push_str(&format!("  - {{id: t{i}, kind: noop}}\n"));
    }
    let wf = w.workflow(t, p, &doc, t0()).await;
    // The largest weight there is, too: the count's cutoff scales with it and must not overflow.
    w.store.set_tenant_limits(t, Some(1_005), u32::MAX).await.unwrap();
    w.trigger(t, wf, t0()).await;
    let mut claimed = 0;
    loop {
        let got = w.store.claim(&req(400), t0()).await.unwrap().len();
        if got == 0 {
            break;
        }
        claimed += got;
    }
    assert_eq!(claimed, 1_005, "the quota, not the count's cutoff, stops the claims");
}

#[tokio::test]
async fn a_flooding_tenant_does_not_starve_another() {
    for (layout, w) in World::layouts().await {
        eprintln!("layout: {layout}");
        let (a, pa) = w.tenant("flood").await;
        let (b, pb) = w.tenant("small").await;
        let mut big = String::from("name: big\ntasks:\n");
        for i in 0..300 {
            big.push_str(&format!("  - {{id: t{i}, kind: noop}}\n"));
        }
        let big = w.workflow(a, pa, &big, t0()).await;
        let small = w
            .workflow(
                b,
                pb,
                "name: small\ntasks:\n  - {id: x, kind: noop}\n  - {id: y, kind: noop}\n  - {id: z, kind: noop}\n",
                t0(),
            )
            .await;
        // A floods first; B arrives later, with far fewer attempts in the queue.
        w.trigger(a, big, t0()).await;
        w.trigger(b, small, t0() + chrono::Duration::seconds(1)).await;
        // Four slots, nothing completes: B must get its fair half of them at once.
        let claimed = w.store.claim(&req(4), t0() + chrono::Duration::seconds(2)).await.unwrap();
        let of_b = claimed.iter().filter(|c| c.tenant_id == b).count();
        assert_eq!(of_b, 2, "two tenants of equal weight share 4 slots 2:2");
        // As A's attempts finish and free slots, B keeps its share until it runs out of work.
        let more = w.store.claim(&req(2), t0() + chrono::Duration::seconds(2)).await.unwrap();
        assert_eq!(more.iter().filter(|c| c.tenant_id == b).count(), 1, "B (2 running of 3) still gets its half");
        // With weights, shares follow them. A now has weight 3 and 3 running (share 1.0); a newcomer
        // C (weight 1, nothing running) gets slots until its share catches up, then they alternate:
        // over 6 slots C, A, C, A, A, A — A ends at 7 running (share 2.33), C at 2 (share 2).
        w.store.set_tenant_limits(a, None, 3).await.unwrap();
        let (c, pc) = w.tenant("third").await;
        let small_c = w.workflow(c, pc, "name: c\ntasks:\n  - {id: x, kind: noop}\n  - {id: y, kind: noop}\n  - {id: z, kind: noop}\n  - {id: w, kind: noop}\n", t0()).await;
        w.trigger(c, small_c, t0()).await;
        let by_weight = w.store.claim(&req(6), t0() + chrono::Duration::seconds(3)).await.unwrap();
        let (of_a, of_c) = (
            by_weight.iter().filter(|x| x.tenant_id == a).count(),
            by_weight.iter().filter(|x| x.tenant_id == c).count(),
        );
        assert_eq!((of_a, of_c), (4, 2));
    }
}

fn done(c: &store::Claimed) -> store::Completion {
    store::Completion {
        tenant: c.tenant_id,
        attempt_id: c.attempt_id,
        lease_token: c.lease_token,
        outcome: Outcome::Succeeded { outputs: Default::default() },
        exit_code: None,
    }
}

/// The next notification on a listener within `wait`, if any.
async fn heard(l: &mut sqlx::postgres::PgListener, wait: Duration) -> Option<String> {
    tokio::time::timeout(wait, l.recv()).await.ok().map(|n| n.unwrap().payload().to_owned())
}

#[tokio::test]
async fn a_report_hands_the_next_task_to_its_worker_in_the_same_commit_and_wakes_only_for_what_is_left() {
    for (layout, w) in World::layouts().await {
        eprintln!("layout: {layout}");
        let (t, p) = w.tenant("acme").await;
        let doc = "name: steps\ntasks:\n  - {id: a, kind: noop}\n  - {id: b, kind: noop, depends_on: [a]}\n  \
                   - {id: c, kind: noop, depends_on: [b]}\n  - {id: d, kind: noop, depends_on: [b]}\n";
        let wf = w.workflow(t, p, doc, t0()).await;
        let mut queue =
            w.store.listen_shard(w.store.shard_of(t).await.unwrap(), &[store::QUEUE_CHANNEL]).await.unwrap();
        let run = w.trigger(t, wf, t0()).await;
        assert_eq!(
            heard(&mut queue, Duration::from_secs(5)).await.as_deref(),
            Some("default"),
            "the root wakes claimers"
        );
        let a = w.store.claim(&req(1), t0()).await.unwrap();
        assert_eq!(a[0].task_id, "a");

        // a ends; b is claimed for the same worker in that transaction, and nobody else is woken.
        let clock = || t0() + chrono::Duration::seconds(1);
        let (answers, b) = w.store.complete_and_claim(vec![done(&a[0])], Some(&req(1)), &clock).await;
        assert!(answers[0].is_ok(), "{answers:?}");
        let b = b.unwrap();
        assert_eq!(b.iter().map(|c| c.task_id.as_str()).collect::<Vec<_>>(), ["b"]);
        assert_eq!(heard(&mut queue, Duration::from_millis(500)).await, None, "b was taken: no one to wake");
        let tasks = w.store.task_runs(t, run).await.unwrap();
        assert_eq!(
            tasks.iter().map(|x| x.state.as_str()).collect::<Vec<_>>(),
            ["succeeded", "running", "pending", "pending"]
        );

        // b ends and makes two ready; this worker has room for one, so the other's pool is woken
        // and another claimer takes it.
        let (_, next) = w.store.complete_and_claim(vec![done(&b[0])], Some(&req(1)), &clock).await;
        let next = next.unwrap();
        assert_eq!(next.len(), 1);
        assert_eq!(heard(&mut queue, Duration::from_secs(5)).await.as_deref(), Some("default"));
        let other = w.store.claim(&req(4), clock()).await.unwrap();
        assert_eq!(other.len(), 1);
        assert_ne!(other[0].task_id, next[0].task_id);

        // Nothing left: the last reports with a claim store them and claim nothing.
        let (answers, none) =
            w.store.complete_and_claim(vec![done(&next[0]), done(&other[0])], Some(&req(4)), &clock).await;
        assert!(answers.iter().all(Result::is_ok), "{answers:?}");
        assert!(none.unwrap().is_empty());
        assert_eq!(w.run_state(t, run).await, RunState::Succeeded);
        // A report that comes again is refused, claim or not.
        let (again, _) = w.store.complete_and_claim(vec![done(&a[0])], Some(&req(1)), &clock).await;
        assert!(matches!(again[0], Err(StoreError::Stale)), "{again:?}");
    }
}

#[tokio::test]
async fn the_claim_in_a_report_keeps_fair_share() {
    for (layout, w) in World::layouts().await {
        eprintln!("layout: {layout}");
        let (a, pa) = w.tenant("busy").await;
        let (b, pb) = w.tenant("quiet").await;
        let doc = "name: pair\ntasks:\n  - {id: a1, kind: noop}\n  - {id: a2, kind: noop}\n  - {id: a3, kind: noop, depends_on: [a1]}\n";
        let wf_a = w.workflow(a, pa, doc, t0()).await;
        let wf_b = w.workflow(b, pb, "name: one\ntasks:\n  - {id: b1, kind: noop}\n", t0()).await;
        w.trigger(a, wf_a, t0()).await;
        let running = w.store.claim(&req(2), t0()).await.unwrap();
        assert_eq!(running.len(), 2);
        w.trigger(b, wf_b, t0()).await;
        let mut queue =
            w.store.listen_shard(w.store.shard_of(a).await.unwrap(), &[store::QUEUE_CHANNEL]).await.unwrap();
        // a1 ends and makes a3 ready, but A still runs a2 and B runs nothing: B's attempt goes first.
        let a1 = running.iter().find(|c| c.task_id == "a1").unwrap();
        let clock = || t0() + chrono::Duration::seconds(1);
        let (_, got) = w.store.complete_and_claim(vec![done(a1)], Some(&req(1)), &clock).await;
        let got = got.unwrap();
        assert_eq!(got.iter().map(|c| (c.tenant_id, c.task_id.as_str())).collect::<Vec<_>>(), [(b, "b1")]);
        // a3 was left in the queue, and its claimers were told.
        assert_eq!(heard(&mut queue, Duration::from_secs(5)).await.as_deref(), Some("default"));
        let a3 = w.store.claim(&req(1), clock()).await.unwrap();
        assert_eq!(a3.iter().map(|c| c.task_id.as_str()).collect::<Vec<_>>(), ["a3"]);
    }
}

#[tokio::test]
async fn the_next_task_given_to_a_reporter_keeps_priority_and_queue_order() {
    for (layout, w) in World::layouts().await {
        eprintln!("layout: {layout}");
        let (t, p) = w.tenant("acme").await;
        // a1 and a2 are ready at once; a3 (after a1) has the same priority, a4 (after a3) a higher one.
        let doc = "name: order\ntasks:\n  - {id: a1, kind: noop, priority: 1}\n  - {id: a2, kind: noop}\n  \
                   - {id: a3, kind: noop, depends_on: [a1]}\n  - {id: a4, kind: noop, priority: 5, depends_on: [a3]}\n";
        let wf = w.workflow(t, p, doc, t0()).await;
        let run = w.trigger(t, wf, t0()).await;
        let a1 = w.store.claim(&req(1), t0()).await.unwrap();
        assert_eq!(a1.iter().map(|c| c.task_id.as_str()).collect::<Vec<_>>(), ["a1"]);
        // a1 ends and makes a3 ready, but a2 has waited longer at the same priority: a2 first.
        let clock = || t0() + chrono::Duration::seconds(1);
        let (_, got) = w.store.complete_and_claim(vec![done(&a1[0])], Some(&req(1)), &clock).await;
        let a2 = got.unwrap();
        assert_eq!(a2.iter().map(|c| c.task_id.as_str()).collect::<Vec<_>>(), ["a2"]);
        // a2 ends: a3 is next, from the queue.
        let (_, got) = w.store.complete_and_claim(vec![done(&a2[0])], Some(&req(1)), &clock).await;
        let a3 = got.unwrap();
        assert_eq!(a3.iter().map(|c| c.task_id.as_str()).collect::<Vec<_>>(), ["a3"]);
        // a3 ends: a4 starts at once, running under a lease like any claimed attempt, and a
        // report with that lease is taken.
        let (_, got) = w.store.complete_and_claim(vec![done(&a3[0])], Some(&req(1)), &clock).await;
        let a4 = got.unwrap();
        assert_eq!(a4.iter().map(|c| c.task_id.as_str()).collect::<Vec<_>>(), ["a4"]);
        let tasks = w.store.task_runs(t, run).await.unwrap();
        assert_eq!(
            tasks.iter().map(|x| x.state.as_str()).collect::<Vec<_>>(),
            ["succeeded", "succeeded", "succeeded", "running"]
        );
        let attempts = w.store.attempts_of_run(t, run).await.unwrap();
        let last = attempts.iter().find(|a| a.id == a4[0].attempt_id).unwrap();
        assert_eq!((last.state.as_str(), last.worker_id.as_deref()), ("running", Some("test")), "{last:?}");
        assert_eq!(last.started_at, Some(clock()));
        assert!(a4[0].lease_expires_at > clock());
        let stale = store::Completion { lease_token: a4[0].lease_token ^ 1, ..done(&a4[0]) };
        let (answers, _) = w.store.complete_and_claim(vec![stale], None, &clock).await;
        assert!(matches!(answers[0], Err(StoreError::Stale)), "{answers:?}");
        let (answers, none) = w.store.complete_and_claim(vec![done(&a4[0])], Some(&req(1)), &clock).await;
        assert!(answers[0].is_ok(), "{answers:?}");
        assert!(none.unwrap().is_empty());
        assert_eq!(w.run_state(t, run).await, RunState::Succeeded);
        assert!(w.store.claim(&req(4), clock()).await.unwrap().is_empty(), "nothing was left in the queue");
    }
}

#[tokio::test]
async fn a_tenant_quota_caps_its_running_attempts() {
    for (layout, w) in World::layouts().await {
        eprintln!("layout: {layout}");
        let (a, pa) = w.tenant("capped").await;
        w.store.set_tenant_limits(a, Some(3), 1).await.unwrap();
        let mut doc = String::from("name: many\ntasks:\n");
        for i in 0..10 {
            doc.push_str(&format!("  - {{id: t{i}, kind: noop}}\n"));
        }
        let wf = w.workflow(a, pa, &doc, t0()).await;
        w.trigger(a, wf, t0()).await;
        assert_eq!(w.store.claim(&req(10), t0()).await.unwrap().len(), 3);
        assert!(w.store.claim(&req(10), t0()).await.unwrap().is_empty(), "the quota is full");
    }
}

#[tokio::test]
async fn a_pool_with_slots_runs_no_more_than_that_many_at_once() {
    for (layout, w) in World::layouts().await {
        eprintln!("layout: {layout}");
        let (a, pa) = w.tenant("first").await;
        let (b, pb) = w.tenant("second").await;
        w.store.set_pool_slots("default", Some(3)).await.unwrap();
        let mut doc = String::from("name: many\ntasks:\n");
        for i in 0..10 {
            doc.push_str(&format!("  - {{id: t{i}, kind: noop}}\n"));
        }
        let wf = w.workflow(a, pa, &doc, t0()).await;
        w.trigger(a, wf, t0()).await;
        let first = w.store.claim(&req(10), t0()).await.unwrap();
        assert_eq!(first.len(), 3, "three slots");
        assert!(w.store.claim(&req(10), t0()).await.unwrap().is_empty(), "the pool is full");
        // A slot frees: the report's own claim takes one more, and no more.
        let clock = t0;
        let (answers, next) = w.store.complete_and_claim(vec![done(&first[0])], Some(&req(10)), &clock).await;
        assert!(answers[0].is_ok(), "{answers:?}");
        assert_eq!(next.unwrap().len(), 1, "one slot was freed");
        // Fair share still decides who gets a freed slot: B, with nothing running, on the same
        // shard as A or not (slots count per shard).
        let wf_b = w.workflow(b, pb, "name: one\ntasks:\n  - {id: x, kind: noop}\n", t0()).await;
        w.trigger(b, wf_b, t0()).await;
        let same_shard = w.store.shard_of(a).await.unwrap() == w.store.shard_of(b).await.unwrap();
        let got = w.store.claim(&req(10), t0()).await.unwrap();
        if same_shard {
            assert!(got.is_empty(), "the shard's three slots are taken: {got:?}");
            let (_, next) = w.store.complete_and_claim(vec![done(&first[1])], Some(&req(10)), &clock).await;
            let next = next.unwrap();
            assert_eq!(next.iter().map(|c| c.tenant_id).collect::<Vec<_>>(), [b], "B's turn: it runs nothing");
        } else {
            assert_eq!(got.iter().map(|c| c.tenant_id).collect::<Vec<_>>(), [b], "B's shard has free slots");
        }
    }
}

#[tokio::test]
async fn max_active_runs_queues_the_next_run_until_a_slot_frees() {
    let w = World::new().await;
    let (t, p) = w.tenant("acme").await;
    let wf = w.workflow(t, p, "name: one\nmax_active_runs: 1\ntasks:\n  - {id: a, kind: noop}\n", t0()).await;
    let r1 = w.trigger(t, wf, t0()).await;
    let r2 = w.trigger(t, wf, t0()).await;
    assert_eq!(w.run_state(t, r1).await, RunState::Running);
    assert_eq!(w.run_state(t, r2).await, RunState::Queued);
    let c = w.store.claim(&req(5), t0()).await.unwrap();
    assert_eq!(c.len(), 1, "only the running run's task is queued");
    w.store
        .complete_attempt(
            t,
            c[0].attempt_id,
            c[0].lease_token,
            Outcome::Succeeded { outputs: Default::default() },
            t0(),
        )
        .await
        .unwrap();
    assert_eq!(w.run_state(t, r1).await, RunState::Succeeded);
    assert_eq!(w.run_state(t, r2).await, RunState::Running, "the queued run started when the first ended");
}

#[tokio::test]
async fn runs_ending_in_one_batch_of_reports_start_as_many_queued_runs() {
    let w = World::one_shard().await;
    let (t, p) = w.tenant("acme").await;
    let wf = w.workflow(t, p, "name: two\nmax_active_runs: 2\ntasks:\n  - {id: a, kind: noop}\n", t0()).await;
    let mut runs = Vec::new();
    for _ in 0..5 {
        runs.push(w.trigger(t, wf, t0()).await);
    }
    let c = w.store.claim(&req(5), t0()).await.unwrap();
    assert_eq!(c.len(), 2, "two runs at a time");
    let answers = w.store.complete_attempts(c.iter().map(done).collect(), t0()).await;
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    let mut states = Vec::new();
    for r in &runs {
        states.push(w.run_state(t, *r).await);
    }
    use RunState::{Queued, Running, Succeeded};
    assert_eq!(states, [Succeeded, Succeeded, Running, Running, Queued], "the two oldest queued runs started");
    assert_eq!(w.store.claim(&req(5), t0()).await.unwrap().len(), 2);
}

#[tokio::test]
async fn cancelling_a_run_kills_its_running_attempt_and_cancels_the_rest() {
    let w = World::new().await;
    let (t, p) = w.tenant("acme").await;
    let wf = w
        .workflow(t, p, "name: w\ntasks:\n  - {id: a, kind: noop}\n  - {id: b, kind: noop, depends_on: [a]}\n", t0())
        .await;
    let run = w.trigger(t, wf, t0()).await;
    let c = w.store.claim(&req(1), t0()).await.unwrap().remove(0);
    w.store.run_event(t, run, &model::engine::Event::Cancel, t0()).await.unwrap();
    assert_eq!(w.run_state(t, run).await, RunState::Cancelled);
    // The worker learns it at its next lease renewal.
    let renewal =
        w.store.renew_leases(&[(t, c.attempt_id, c.lease_token)], Duration::from_secs(30), t0()).await.unwrap();
    assert_eq!(renewal, vec![(c.attempt_id, store::Renewal::Kill)]);
    let tasks = w.store.task_runs(t, run).await.unwrap();
    assert_eq!(tasks.iter().map(|x| x.state.as_str()).collect::<Vec<_>>(), ["cancelled", "cancelled"]);
    let _ = TaskState::Cancelled;
}

#[tokio::test]
async fn an_idempotency_key_makes_one_run_however_often_it_is_sent() {
    let w = World::new().await;
    let (t, p) = w.tenant("acme").await;
    let wf = w.workflow(t, p, "name: w\ntasks:\n  - {id: a, kind: noop}\n", t0()).await;
    let mut ids = HashSet::new();
    let mut handles = Vec::new();
    for _ in 0..6 {
        let store = w.store.clone();
        handles.push(tokio::spawn(async move {
            let new = store::NewRun {
                workflow: wf,
                trigger: model::state::Trigger::Api,
                logical_time: t0(),
                run_key: Some("api:order-42".into()),
                params: Default::default(),
                priority: 0,
                backfill: None,
                created_by: None,
                overlap: model::workflow::Overlap::Allow,
                parent: None,
            };
            store.create_run(t, new, t0()).await.unwrap()
        }));
    }
    for h in handles {
        match h.await.unwrap() {
            store::Created::New(id, _) | store::Created::Existing(id) => {
                ids.insert(id);
            }
            store::Created::Skipped => unreachable!(),
        }
    }
    assert_eq!(ids.len(), 1);
}

fn start_executors(w: &World) -> CancellationToken {
    let stop = CancellationToken::new();
    tokio::spawn(local::run(w.store.clone(), Arc::new(SystemClock), LocalExecutorConfig::default(), stop.clone()));
    let internal = LocalExecutorConfig {
        pool: model::workflow::INTERNAL_POOL.into(),
        worker_id: "scheduler".into(),
        ..LocalExecutorConfig::default()
    };
    tokio::spawn(local::run(w.store.clone(), Arc::new(SystemClock), internal, stop.clone()));
    stop
}

#[tokio::test]
async fn a_sub_workflow_task_runs_its_child_and_ends_with_it() {
    let w = World::new().await;
    let (t, p) = w.tenant("acme").await;
    w.workflow(t, p, "name: child\nparams: {n: 1}\ntasks:\n  - {id: c1, kind: sleep, config: {seconds: 0.1}}\n", t0())
        .await;
    w.workflow(t, p, "name: bad-child\ntasks:\n  - {id: x, kind: shell, config: {script: \"exit 1\"}}\n", t0()).await;
    let parent = w
        .workflow(t, p, "name: parent\ntasks:\n  - {id: a, kind: noop}\n  - {id: sub, kind: sub_workflow, config: {workflow: child, params: {n: 7}}, depends_on: [a]}\n  - {id: z, kind: noop, depends_on: [sub]}\n", t0())
        .await;
    let failing = w
        .workflow(
            t,
            p,
            "name: parent2\ntasks:\n  - {id: sub, kind: sub_workflow, config: {workflow: bad-child}}\n",
            t0(),
        )
        .await;
    let stop = start_executors(&w);
    let run = w.trigger(t, parent, t0()).await;
    assert_eq!(w.wait_end(t, run).await, RunState::Succeeded);
    let tasks = w.store.task_runs(t, run).await.unwrap();
    let child_id: model::RunId = tasks[1].outputs["run_id"].as_str().unwrap().parse().unwrap();
    let child = w.store.run(t, child_id).await.unwrap();
    assert_eq!(
        (child.trigger.as_str(), child.logical_time, child.run_state()),
        ("sub_workflow", t0(), RunState::Succeeded)
    );
    assert_eq!(child.params["n"], 7, "the task's params reach the child");
    let run2 = w.trigger(t, failing, t0()).await;
    assert_eq!(w.wait_end(t, run2).await, RunState::Failed, "a failed child fails its task");
    let reason = w.store.task_runs(t, run2).await.unwrap()[0].reason.clone().unwrap_or_default();
    assert!(reason.contains("bad-child") && reason.contains("failed"), "{reason}");
    stop.cancel();
}

#[tokio::test]
async fn cancelling_a_parent_cancels_its_child_run() {
    let w = World::new().await;
    let (t, p) = w.tenant("acme").await;
    let child_wf =
        w.workflow(t, p, "name: slow-child\ntasks:\n  - {id: s, kind: sleep, config: {seconds: 60}}\n", t0()).await;
    let parent = w
        .workflow(
            t,
            p,
            "name: parent\ntasks:\n  - {id: sub, kind: sub_workflow, config: {workflow: slow-child}}\n",
            t0(),
        )
        .await;
    let stop = start_executors(&w);
    let run = w.trigger(t, parent, t0()).await;
    let child = loop {
        let r = w
            .store
            .runs(t, &store::RunFilter { workflow: Some(child_wf), limit: 5, ..store::RunFilter::default() })
            .await
            .unwrap();
        if let Some(c) = r.first() {
            break c.run_id();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    w.store.run_event(t, run, &model::engine::Event::Cancel, chrono::Utc::now()).await.unwrap();
    assert_eq!(w.run_state(t, child).await, RunState::Cancelled);
    stop.cancel();
}

#[tokio::test]
async fn a_dependency_task_waits_for_the_other_workflows_run_of_the_same_logical_time() {
    let w = World::new().await;
    let (t, p) = w.tenant("acme").await;
    let upstream = w.workflow(t, p, "name: upstream\ntasks:\n  - {id: u, kind: noop}\n", t0()).await;
    let waiting = w.workflow(t, p, "name: waiting\ntasks:\n  - {id: dep, kind: dependency, config: {workflow: upstream}}\n  - {id: after, kind: noop, depends_on: [dep]}\n", t0()).await;
    let stop = start_executors(&w);
    let run = w.trigger(t, waiting, t0()).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        w.run_state(t, run).await,
        RunState::Running,
        "still waiting: upstream has no run for this logical time"
    );
    // A run of upstream for another logical time does not count; the same logical time does.
    w.trigger(t, upstream, t0() + chrono::Duration::hours(1)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(w.run_state(t, run).await, RunState::Running);
    w.trigger(t, upstream, t0()).await;
    assert_eq!(w.wait_end(t, run).await, RunState::Succeeded);
    stop.cancel();
}

fn report(c: &store::Claimed, outcome: Outcome) -> store::Completion {
    store::Completion { outcome, exit_code: Some(0), ..done(c) }
}

/// What a user can read of a run: its state, its tasks, its attempts (times left out).
async fn readout(w: &World, t: model::TenantId, run: model::RunId) -> String {
    let state = w.run_state(t, run).await;
    let tasks: Vec<_> = w
        .store
        .task_runs(t, run)
        .await
        .unwrap()
        .into_iter()
        .map(|x| (x.task_id, x.state, x.attempts, x.outputs, x.reason))
        .collect();
    let attempts: Vec<_> = w
        .store
        .attempts_of_run(t, run)
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.task_idx, a.attempt, a.state, a.error, a.exit_code, a.ended_at.is_some()))
        .collect();
    format!("{state:?} {tasks:?} {attempts:?}")
}

/// Reports stored together (one statement ends all their attempts, one reads all their runs,
/// one writes the steps that only move tasks and queue attempts) leave every run, task and
/// attempt as the same reports stored one at a time: outputs, a retry, a failure that stops its
/// run and kills the rest, runs that end, a stale lease, a report sent twice, an unknown attempt.
#[tokio::test]
async fn reports_stored_together_leave_what_they_leave_one_at_a_time() {
    const MIX: &str = "name: mix\ntasks:\n  - {id: a, kind: noop}\n  - {id: b, kind: noop, depends_on: [a]}\n  - {id: c, kind: noop, retries: {count: 1, delay: 0s}}\n  - {id: d, kind: noop}\n";
    const STOP: &str = "name: stop\nfailure_strategy: stop\ntasks:\n  - {id: x, kind: noop}\n  - {id: y, kind: noop}\n";
    let ok = || Outcome::Succeeded { outputs: Default::default() };
    let failed = |r: &str| Outcome::Failed { reason: r.to_owned() };
    for (layout, w) in World::layouts().await {
        eprintln!("layout: {layout}");
        let mut seen: Vec<(Vec<String>, Vec<String>)> = Vec::new();
        for together in [false, true] {
            let (t, p) = w.tenant(if together { "together" } else { "single" }).await;
            let (mix, stop) = (w.workflow(t, p, MIX, t0()).await, w.workflow(t, p, STOP, t0()).await);
            let runs = [
                w.trigger(t, mix, t0()).await,
                w.trigger(t, stop, t0()).await,
                w.trigger(t, mix, t0()).await,
                w.trigger(t, stop, t0()).await,
            ];
            let claimed = w.store.claim(&req(100), t0()).await.unwrap();
            assert_eq!(claimed.len(), 10);
            let at =
                |run: usize, task: usize| claimed.iter().find(|c| c.run_id == runs[run] && c.task_idx == task).unwrap();
            let outputs = [("rows".to_owned(), "42".to_owned())].into_iter().collect();
            let mut wrong_token = report(at(0, 3), ok());
            wrong_token.lease_token += 1;
            let unknown = store::Completion { attempt_id: uuid::Uuid::now_v7(), ..report(at(0, 3), ok()) };
            let first = vec![
                report(at(0, 0), Outcome::Succeeded { outputs }),
                report(at(1, 0), failed("boom")),
                report(at(2, 0), ok()),
                report(at(0, 2), failed("flaky")),
                wrong_token,
                report(at(1, 1), Outcome::Cancelled),
                report(at(3, 1), ok()),
                report(at(3, 0), failed("bust")),
                report(at(2, 0), ok()),
                unknown,
                report(at(2, 2), ok()),
                report(at(2, 3), ok()),
                report(at(0, 3), ok()),
            ];
            // Stored, then what they made ready is claimed: in the same transaction when together.
            let (answers, next) = if together {
                let (answers, next) = w.store.complete_and_claim(first, Some(&req(100)), &|| t0()).await;
                (answers, next.unwrap())
            } else {
                let mut answers = Vec::new();
                for r in first {
                    answers.push(
                        w.store
                            .complete_attempt_with_exit(t, r.attempt_id, r.lease_token, r.outcome, r.exit_code, t0())
                            .await,
                    );
                }
                (answers, w.store.claim(&req(100), t0()).await.unwrap())
            };
            let mut answered: Vec<String> = answers.iter().map(|a| format!("{a:?}")).collect();
            // b of both mixes, and c of the first again.
            assert_eq!(next.len(), 3, "{next:?}");
            let second: Vec<_> = next.iter().map(|c| report(c, ok())).collect();
            if together {
                answered.extend(w.store.complete_attempts(second, t0()).await.iter().map(|a| format!("{a:?}")));
            } else {
                for r in second {
                    let a = w
                        .store
                        .complete_attempt_with_exit(t, r.attempt_id, r.lease_token, r.outcome, r.exit_code, t0())
                        .await;
                    answered.push(format!("{a:?}"));
                }
            }
            let mut runs_read = Vec::new();
            for r in runs {
                runs_read.push(readout(&w, t, r).await);
            }
            let ends = ["Succeeded [", "Failed [", "Succeeded [", "Failed ["];
            assert!(runs_read.iter().zip(ends).all(|(r, e)| r.starts_with(e)), "{runs_read:#?}");
            assert!(runs_read[0].contains("\"rows\": String(\"42\")"), "{}", runs_read[0]);
            seen.push((answered, runs_read));
        }
        let (single, together) = (&seen[0], &seen[1]);
        assert_eq!(
            single.0,
            [
                "Ok(())",
                "Ok(())",
                "Ok(())",
                "Ok(())",
                "Err(Stale)",
                "Ok(())",
                "Ok(())",
                "Ok(())",
                "Err(Stale)",
                "Err(NotFound)",
                "Ok(())",
                "Ok(())",
                "Ok(())",
                "Ok(())",
                "Ok(())",
                "Ok(())"
            ]
        );
        assert_eq!(single.0, together.0, "the answers");
        for (i, (one, all)) in single.1.iter().zip(&together.1).enumerate() {
            assert_eq!(one, all, "run {i}");
        }
    }
}

/// Two workers report attempts of the same runs at once, in opposite orders: each batch locks
/// its runs in one order, so neither waits on the other in a cycle (a deadlock would abort one,
/// and its reports would come back as `Retry`).
#[tokio::test]
async fn batches_of_reports_over_the_same_runs_never_deadlock() {
    let w = World::one_shard().await;
    let (t, p) = w.tenant("acme").await;
    let wf = w.workflow(t, p, "name: two\ntasks:\n  - {id: a, kind: noop}\n  - {id: b, kind: noop}\n", t0()).await;
    for round in 0..5 {
        let mut runs = Vec::new();
        for _ in 0..16 {
            runs.push(w.trigger(t, wf, t0()).await);
        }
        let claimed = w.store.claim(&req(32), t0()).await.unwrap();
        assert_eq!(claimed.len(), 32);
        let of = |task: usize| -> Vec<store::Completion> {
            runs.iter().map(|r| done(claimed.iter().find(|c| c.run_id == *r && c.task_idx == task).unwrap())).collect()
        };
        let forward = of(0);
        let mut backward = of(1);
        backward.reverse();
        let (one, other) =
            tokio::join!(w.store.complete_attempts(forward, t0()), w.store.complete_attempts(backward, t0()));
        assert!(one.iter().chain(&other).all(Result::is_ok), "round {round}: {one:?} {other:?}");
        for r in &runs {
            assert_eq!(w.run_state(t, *r).await, RunState::Succeeded);
        }
    }
}

/// Another connection, in a transaction that holds the run's lock until it commits.
async fn hold_run(url: &str, t: model::TenantId, run: model::RunId) -> sqlx::PgConnection {
    use sqlx::Connection as _;
    let mut other = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut other).await.unwrap();
    sqlx::query("SELECT 1 FROM runs WHERE tenant_id = $1 AND id = $2 FOR UPDATE")
        .bind(t.as_uuid())
        .bind(run.as_uuid())
        .execute(&mut other)
        .await
        .unwrap();
    other
}

/// Whether `n` statements of this database come to wait for a lock within 10 s.
async fn lock_waiters(watch: &mut sqlx::PgConnection, n: i64) -> bool {
    for _ in 0..1000 {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()",
        )
        .fetch_one(&mut *watch)
        .await
        .unwrap();
        if waiting == n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// A batch of reports that waits for a run's lock while another transaction changes one of its
/// attempts (a kill requested, a lease renewed) still ends that attempt: it is found again at its
/// newest version, not refused as stale.
#[tokio::test]
async fn a_batch_of_reports_ends_an_attempt_changed_while_it_waited_for_the_run() {
    use sqlx::Connection as _;
    let db = testkit::TestDb::one_shard().await;
    let url = db.urls.catalog.clone();
    let w = World::on(db).await;
    let (t, p) = w.tenant("acme").await;
    let wf = w.workflow(t, p, "name: two\ntasks:\n  - {id: a, kind: noop}\n  - {id: b, kind: noop}\n", t0()).await;
    let run = w.trigger(t, wf, t0()).await;
    let claimed = w.store.claim(&req(2), t0()).await.unwrap();
    assert_eq!(claimed.len(), 2);
    // Another transaction holds the run and changes an attempt, as a cancel's kill request does.
    let mut other = hold_run(&url, t, run).await;
    sqlx::query("UPDATE attempts SET lease_expires_at = lease_expires_at + interval '1 minute' WHERE tenant_id = $1 AND id = $2")
        .bind(t.as_uuid())
        .bind(claimed[0].attempt_id)
        .execute(&mut other)
        .await
        .unwrap();
    let store = w.store.clone();
    let reports: Vec<_> = claimed.iter().map(done).collect();
    let batch = tokio::spawn(async move { store.complete_attempts(reports, t0()).await });
    // The batch's statement has begun (its snapshot taken) and waits for the run.
    let mut watch = sqlx::PgConnection::connect(&url).await.unwrap();
    assert!(lock_waiters(&mut watch, 1).await, "the batch never waited for the run");
    sqlx::query("COMMIT").execute(&mut other).await.unwrap();
    let answers = batch.await.unwrap();
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    assert_eq!(w.run_state(t, run).await, RunState::Succeeded);
}

#[tokio::test]
async fn log_chunks_are_stored_once_for_their_lease_and_their_tenant_only() {
    // One shard: the other tenant's write reaches the database that holds the attempt.
    let w = World::one_shard().await;
    let (t, p) = w.tenant("acme").await;
    let (other, _) = w.tenant("other").await;
    let wf = w.workflow(t, p, "name: w\ntasks:\n  - {id: a, kind: noop}\n", t0()).await;
    w.trigger(t, wf, t0()).await;
    let c = w.store.claim(&req(1), t0()).await.unwrap().remove(0);
    let chunk =
        |seq, lease_token, data: &'static [u8]| store::NewLogChunk { attempt: c.attempt_id, lease_token, seq, data };
    let token = c.lease_token;
    // One burst: a chunk sent twice (a reconnect re-sends), and one of an older lease.
    w.store
        .append_logs(
            t,
            &[chunk(0, token, b"a\n"), chunk(1, token, b"b\n"), chunk(0, token, b"a\n"), chunk(2, token - 1, b"old\n")],
            t0(),
        )
        .await
        .unwrap();
    // Another tenant cannot write into it, whatever it knows.
    w.store.append_logs(other, &[chunk(2, token, b"intruder\n")], t0()).await.unwrap();
    // The next burst repeats what was stored and goes on.
    w.store.append_logs(t, &[chunk(1, token, b"b\n"), chunk(2, token, b"c\n")], t0()).await.unwrap();
    let text: Vec<u8> =
        w.store.log_chunks(t, c.attempt_id, -1, 100).await.unwrap().into_iter().flat_map(|c| c.data).collect();
    assert_eq!(String::from_utf8_lossy(&text), "a\nb\nc\n");
    assert!(w.store.log_chunks(other, c.attempt_id, -1, 100).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_report_that_cannot_be_stored_does_not_hold_back_the_others_sent_with_it() {
    let w = World::one_shard().await;
    let (t, p) = w.tenant("acme").await;
    let wf = w.workflow(t, p, "name: w\nmax_active_runs: 2\ntasks:\n  - {id: a, kind: noop}\n", t0()).await;
    let (first, second) = (w.trigger(t, wf, t0()).await, w.trigger(t, wf, t0()).await);
    let c = w.store.claim(&req(2), t0()).await.unwrap();
    assert_eq!(c.len(), 2);
    // The database refuses to record the first attempt's end, every time.
    sqlx::raw_sql(&format!(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF NEW.id = '{}' AND NEW.state = 'succeeded' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$; \
         CREATE TRIGGER refuse BEFORE UPDATE ON attempts FOR EACH ROW EXECUTE FUNCTION refuse();",
        c[0].attempt_id
    ))
    .execute(&w.store.catalog_pool())
    .await
    .unwrap();
    let answers = w.store.complete_attempts(c.iter().map(done).collect(), t0()).await;
    assert!(matches!(answers[0], Err(StoreError::Retry)), "{answers:?}");
    assert!(answers[1].is_ok(), "{answers:?}");
    let ended: Vec<RunState> = vec![w.run_state(t, first).await, w.run_state(t, second).await];
    let run_of_second = if c[1].run_id == first { 0 } else { 1 };
    assert_eq!(ended[run_of_second], RunState::Succeeded, "{ended:?}");
    assert_eq!(ended[1 - run_of_second], RunState::Running, "{ended:?}");
}

/// A report reads its run in the statement that locks it, from a snapshot taken before the lock:
/// two reports of one run that wait for it together each find the other's step written when
/// their turn comes. The second must read the run again, or it would see its sibling still
/// running and never start the task that needs both. Alone, and with the claim that hands the
/// task over at once.
#[tokio::test]
async fn two_reports_waiting_for_their_run_together_both_count_in_its_next_step() {
    use sqlx::Connection as _;
    let db = testkit::TestDb::one_shard().await;
    let url = db.urls.catalog.clone();
    let w = World::on(db).await;
    let (t, p) = w.tenant("acme").await;
    let join = "name: join\ntasks:\n  - {id: a, kind: noop}\n  - {id: b, kind: noop}\n  - {id: c, kind: noop, depends_on: [a, b]}\n";
    let wf = w.workflow(t, p, join, t0()).await;
    let mut watch = sqlx::PgConnection::connect(&url).await.unwrap();
    for hand_off in [false, true] {
        let run = w.trigger(t, wf, t0()).await;
        let claimed = w.store.claim(&req(2), t0()).await.unwrap();
        assert_eq!(claimed.len(), 2);
        // Another transaction holds the run while both reports start.
        let mut other = hold_run(&url, t, run).await;
        let reports: Vec<_> = claimed
            .iter()
            .map(|c| {
                let (store, report) = (w.store.clone(), done(c));
                tokio::spawn(async move {
                    let next = req(1);
                    let (answers, got) =
                        store.complete_and_claim(vec![report], hand_off.then_some(&next), &|| t0()).await;
                    (answers, got.unwrap())
                })
            })
            .collect();
        assert!(lock_waiters(&mut watch, 2).await, "the reports never both waited for the run");
        sqlx::query("COMMIT").execute(&mut other).await.unwrap();
        let mut handed = Vec::new();
        for r in reports {
            let (answers, got) = r.await.unwrap();
            assert!(answers.iter().all(Result::is_ok), "{answers:?}");
            handed.extend(got.into_iter().map(|c| c.task_id));
        }
        let c = w.store.task_runs(t, run).await.unwrap().into_iter().find(|x| x.task_id == "c").unwrap();
        if hand_off {
            assert_eq!((handed, c.state.as_str()), (vec!["c".to_owned()], "running"));
        } else {
            assert_eq!((handed.len(), c.state.as_str()), (0, "queued"));
            let next = w.store.claim(&req(1), t0()).await.unwrap();
            assert_eq!(next.iter().map(|c| c.task_id.as_str()).collect::<Vec<_>>(), ["c"]);
        }
    }
}
