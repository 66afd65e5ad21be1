//! Why a queued attempt is not running: the placement it asks for against the live workers.
//!
//! An attempt is *unschedulable* when no live worker could ever take it as the registry stands:
//! none in its pool, none of them in its region or with its labels, or none big enough for its
//! resource request (a worker's total capacity, not what is free now: busy workers free up). Such
//! attempts wait — a worker may yet join — and the wait is shown in the run's view, in
//! `/api/v1/pools` and in the `orrery_pool_unschedulable_attempts` metric.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use model::units::{human_bytes, human_cpu};
use uuid::Uuid;

use crate::{Result, Store, WorkerRecord};

/// A worker that has not been heard from for this long is not counted as live even if the
/// registry still says connected (its server may have died without noting the disconnect).
pub const LIVE_WITHIN: Duration = Duration::seconds(60);

/// Where and on what an attempt asks to run.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Placement {
    pub pool: String,
    pub region: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub cpu_millis: u32,
    pub memory_bytes: u64,
    pub gpu: u32,
}

/// Queued attempts with one placement.
#[derive(Clone, Debug)]
pub struct Demand {
    pub placement: Placement,
    pub attempts: u64,
}

/// The part of a registry entry placement looks at.
#[derive(Clone, Debug)]
pub struct Offer {
    pub pool: String,
    pub region: String,
    pub labels: BTreeMap<String, String>,
    pub slots: u32,
    pub cpu_millis: u32,
    pub memory_bytes: u64,
    pub gpus: u32,
}

impl Offer {
    /// The registry's live workers (connected, not draining, heard from lately).
    pub fn live(workers: &[WorkerRecord], now: DateTime<Utc>) -> Vec<Offer> {
        workers
            .iter()
            .filter(|w| w.connected && !w.draining && w.last_seen_at >= now - LIVE_WITHIN)
            .map(|w| {
                let cap = |k: &str| w.capacity[k].as_u64().unwrap_or(0);
                Offer {
                    pool: w.pool.clone(),
                    region: w.region.clone(),
                    labels: serde_json::from_value(w.labels.clone()).unwrap_or_default(),
                    slots: u32::try_from(cap("slots")).unwrap_or(u32::MAX),
                    cpu_millis: u32::try_from(cap("cpu_millis")).unwrap_or(u32::MAX),
                    memory_bytes: cap("memory_bytes"),
                    gpus: u32::try_from(cap("gpus")).unwrap_or(u32::MAX),
                }
            })
            .collect()
    }
}

/// `None` if some live worker could take it; otherwise what stands in the way, in words that
/// say what to change.
pub fn why_unschedulable(p: &Placement, live: &[Offer]) -> Option<String> {
    let in_pool: Vec<&Offer> = live.iter().filter(|o| o.pool == p.pool && o.slots > 0).collect();
    if in_pool.is_empty() {
        return Some(format!("no live worker in pool `{}`: start one with `orrery worker --pool {}`", p.pool, p.pool));
    }
    let in_region: Vec<&Offer> =
        in_pool.iter().copied().filter(|o| p.region.as_deref().is_none_or(|r| r == o.region)).collect();
    if in_region.is_empty() {
        let mut regions: Vec<&str> = in_pool.iter().map(|o| o.region.as_str()).collect();
        regions.sort_unstable();
        regions.dedup();
        return Some(format!(
            "no live worker of pool `{}` is in region `{}` (its workers are in: {})",
            p.pool,
            p.region.as_deref().unwrap_or_default(),
            regions
                .iter()
                .map(|r| if r.is_empty() { "(none)".to_owned() } else { format!("`{r}`") })
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let labelled: Vec<&Offer> =
        in_region.iter().copied().filter(|o| p.labels.iter().all(|(k, v)| o.labels.get(k) == Some(v))).collect();
    if labelled.is_empty() {
        // A plugin no worker has is the likelier cause; name it the way an operator fixes it.
        let prefix = model::workflow::PLUGIN_LABEL_PREFIX;
        if let Some(plugin) = p.labels.keys().filter_map(|k| k.strip_prefix(prefix)).find(|name| {
            !in_region.iter().any(|o| o.labels.get(&format!("{prefix}{name}")).is_some_and(|v| v == "true"))
        }) {
            return Some(format!(
                "no live worker of pool `{}` has the plugin `{plugin}` installed \
                 (put an executable named {plugin} in a worker's --plugin-dir)",
                p.pool
            ));
        }
        let want: Vec<String> = p.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        return Some(format!("no live worker of pool `{}` has the labels {}", p.pool, want.join(", ")));
    }
    let fits = |o: &&Offer| o.cpu_millis >= p.cpu_millis && o.memory_bytes >= p.memory_bytes && o.gpus >= p.gpu;
    if labelled.iter().any(fits) {
        return None;
    }
    let mut short = Vec::new();
    let max_cpu = labelled.iter().map(|o| o.cpu_millis).max().unwrap_or(0);
    if p.cpu_millis > max_cpu {
        short.push(format!("{} (the most a worker offers is {})", human_cpu(p.cpu_millis), human_cpu(max_cpu)));
    }
    let max_mem = labelled.iter().map(|o| o.memory_bytes).max().unwrap_or(0);
    if p.memory_bytes > max_mem {
        short.push(format!(
            "{} of memory (the most a worker offers is {})",
            human_bytes(p.memory_bytes),
            human_bytes(max_mem)
        ));
    }
    let max_gpu = labelled.iter().map(|o| o.gpus).max().unwrap_or(0);
    if p.gpu > max_gpu {
        short.push(format!("{} GPU (the most a worker offers is {max_gpu})", p.gpu));
    }
    Some(if short.is_empty() {
        format!(
            "no single live worker of pool `{}` offers {}, {} of memory and {} GPU together",
            p.pool,
            human_cpu(p.cpu_millis),
            human_bytes(p.memory_bytes),
            p.gpu
        )
    } else {
        format!("needs {} in pool `{}`: lower the request or add a bigger worker", short.join(" and "), p.pool)
    })
}

#[derive(sqlx::FromRow)]
struct PlacementRow {
    pool: String,
    region: Option<String>,
    labels: serde_json::Value,
    cpu_millis: i32,
    memory_bytes: i64,
    gpu: i32,
}

#[derive(sqlx::FromRow)]
struct PlacedRow {
    attempt_id: Uuid,
    #[sqlx(flatten)]
    placement: PlacementRow,
}

#[derive(sqlx::FromRow)]
struct DemandRow {
    #[sqlx(flatten)]
    placement: PlacementRow,
    attempts: i64,
}

impl PlacementRow {
    fn placement(self) -> Placement {
        Placement {
            pool: self.pool,
            region: self.region,
            labels: serde_json::from_value(self.labels).unwrap_or_default(),
            cpu_millis: u32::try_from(self.cpu_millis).unwrap_or(0),
            memory_bytes: u64::try_from(self.memory_bytes).unwrap_or(0),
            gpu: u32::try_from(self.gpu).unwrap_or(0),
        }
    }
}

impl Store {
    /// Ready queued attempts (every tenant, every shard) by placement, scheduler-run pools left out.
    pub async fn queue_demand(&self, now: DateTime<Utc>) -> Result<Vec<Demand>> {
        let mut all: BTreeMap<Placement, u64> = BTreeMap::new();
        for (_, pool) in self.shard_pools() {
            let rows: Vec<DemandRow> = sqlx::query_as(
                "SELECT pool, region, labels, cpu_millis, memory_bytes, gpu, count(*) AS attempts FROM queue \
                 WHERE not_before <= $1 AND pool <> $2 GROUP BY 1, 2, 3, 4, 5, 6",
            )
            .bind(now)
            .bind(model::workflow::INTERNAL_POOL)
            .fetch_all(&pool)
            .await?;
            for DemandRow { placement, attempts } in rows {
                *all.entry(placement.placement()).or_default() += u64::try_from(attempts).unwrap_or(0);
            }
        }
        Ok(all.into_iter().map(|(placement, attempts)| Demand { placement, attempts }).collect())
    }

    /// The placements of some of a tenant's queued attempts (those still in the queue).
    pub async fn placements(&self, tenant: model::TenantId, attempts: &[Uuid]) -> Result<BTreeMap<Uuid, Placement>> {
        if attempts.is_empty() {
            return Ok(BTreeMap::new());
        }
        let rows: Vec<PlacedRow> = sqlx::query_as(
            "SELECT attempt_id, pool, region, labels, cpu_millis, memory_bytes, gpu FROM queue \
             WHERE tenant_id = $1 AND attempt_id = ANY($2) AND pool <> $3",
        )
        .bind(tenant.as_uuid())
        .bind(attempts)
        .bind(model::workflow::INTERNAL_POOL)
        .fetch_all(self.shard(tenant).await?)
        .await?;
        Ok(rows.into_iter().map(|r| (r.attempt_id, r.placement.placement())).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(pool: &str, region: &str, labels: &[(&str, &str)], cpu: u32, mem_gib: u64, gpus: u32) -> Offer {
        Offer {
            pool: pool.into(),
            region: region.into(),
            labels: labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            slots: 4,
            cpu_millis: cpu,
            memory_bytes: mem_gib << 30,
            gpus,
        }
    }

    fn need(pool: &str) -> Placement {
        Placement {
            pool: pool.into(),
            region: None,
            labels: BTreeMap::new(),
            cpu_millis: 1000,
            memory_bytes: 1 << 30,
            gpu: 0,
        }
    }

    #[test]
    fn says_what_stands_in_the_way() {
        let live = [offer("default", "eu", &[("disk", "ssd")], 2000, 4, 0), offer("default", "us", &[], 8000, 2, 1)];
        assert_eq!(why_unschedulable(&need("default"), &live), None);
        assert!(why_unschedulable(&need("gpu"), &live).unwrap().starts_with("no live worker in pool `gpu`"));
        let asia = Placement { region: Some("asia".into()), ..need("default") };
        assert_eq!(
            why_unschedulable(&asia, &live).unwrap(),
            "no live worker of pool `default` is in region `asia` (its workers are in: `eu`, `us`)"
        );
        let spark =
            Placement { labels: [("orrery.plugin.spark-submit".into(), "true".into())].into(), ..need("default") };
        assert_eq!(
            why_unschedulable(&spark, &[offer("default", "", &[("orrery.plugin.dbt", "true")], 1000, 1, 0)]).as_deref(),
            Some(
                "no live worker of pool `default` has the plugin `spark-submit` installed \
                 (put an executable named spark-submit in a worker's --plugin-dir)"
            )
        );
        let nvme = Placement { labels: [("disk".into(), "nvme".into())].into(), ..need("default") };
        assert_eq!(
            why_unschedulable(&nvme, &live).unwrap(),
            "no live worker of pool `default` has the labels disk=nvme"
        );
        let big = Placement { memory_bytes: 64 << 30, ..need("default") };
        assert_eq!(
            why_unschedulable(&big, &live).unwrap(),
            "needs 64 GiB of memory (the most a worker offers is 4 GiB) in pool `default`: lower the request or add a bigger worker"
        );
        // Each dimension fits some worker, but no worker fits them all.
        let both = Placement { memory_bytes: 3 << 30, gpu: 1, ..need("default") };
        assert!(why_unschedulable(&both, &live).unwrap().starts_with("no single live worker of pool `default` offers"));
        // Region-pinned, in a region that has a big enough worker.
        let eu = Placement { region: Some("eu".into()), memory_bytes: 4 << 30, ..need("default") };
        assert_eq!(why_unschedulable(&eu, &live), None);
    }
}
