//! Shard leases: which scheduler drives which shard's timers. Rows in the catalog with an owner,
//! an expiry and a fencing token that grows with every change of holder.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::{Result, ShardId, Store};

/// A lease held by this scheduler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardLease {
    pub shard: ShardId,
    pub token: i64,
    pub expires_at: DateTime<Utc>,
}

impl Store {
    /// Records that scheduler `me` is alive.
    pub async fn scheduler_heartbeat(&self, me: &str, hostname: &str, now: DateTime<Utc>) -> Result<()> {
        sqlx::query(
            "INSERT INTO schedulers (id, hostname, started_at, heartbeat_at) VALUES ($1, $2, $3, $3) \
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = EXCLUDED.heartbeat_at",
        )
        .bind(me)
        .bind(hostname)
        .bind(now)
        .execute(self.catalog())
        .await?;
        Ok(())
    }

    /// Renews this scheduler's leases, takes free ones up to its fair share (shards ÷ live
    /// schedulers, rounded up), and releases any beyond it so a newcomer can take them.
    /// Returns the leases held after this round.
    pub async fn balance_shard_leases(&self, me: &str, ttl: Duration, now: DateTime<Utc>) -> Result<Vec<ShardLease>> {
        let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::seconds(10));
        let until = now + ttl;
        for id in self.shard_ids() {
            sqlx::query("INSERT INTO shard_leases (shard_id) VALUES ($1) ON CONFLICT DO NOTHING")
                .bind(id)
                .execute(self.catalog())
                .await?;
        }
        let live: i64 = sqlx::query_scalar("SELECT count(*) FROM schedulers WHERE heartbeat_at > $1")
            .bind(now - ttl)
            .fetch_one(self.catalog())
            .await?;
        let shards = i64::try_from(self.shard_ids().len()).unwrap_or(1);
        let fair = usize::try_from((shards + live.max(1) - 1) / live.max(1)).unwrap_or(1);

        let mut held: Vec<ShardLease> = sqlx::query_as::<_, (i32, i64)>(
            "UPDATE shard_leases SET expires_at = $2 WHERE owner = $1 AND expires_at > $3 RETURNING shard_id, token",
        )
        .bind(me)
        .bind(until)
        .bind(now)
        .fetch_all(self.catalog())
        .await?
        .into_iter()
        .map(|(shard, token)| ShardLease { shard, token, expires_at: until })
        .collect();
        held.sort_by_key(|l| l.shard);
        while held.len() > fair {
            let give = held.pop().expect("more than fair");
            sqlx::query("UPDATE shard_leases SET owner = NULL, expires_at = $3 WHERE shard_id = $1 AND owner = $2")
                .bind(give.shard)
                .bind(me)
                .bind(now)
                .execute(self.catalog())
                .await?;
        }
        if held.len() < fair {
            let free: Vec<i32> = sqlx::query_scalar(
                "SELECT shard_id FROM shard_leases WHERE (owner IS NULL OR expires_at <= $1) AND shard_id = ANY($2) ORDER BY shard_id",
            )
            .bind(now)
            .bind(self.shard_ids())
            .fetch_all(self.catalog())
            .await?;
            for shard in free {
                if held.len() >= fair {
                    break;
                }
                let taken: Option<i64> = sqlx::query_scalar(
                    "UPDATE shard_leases SET owner = $2, token = token + 1, expires_at = $3 \
                     WHERE shard_id = $1 AND (owner IS NULL OR expires_at <= $4) RETURNING token",
                )
                .bind(shard)
                .bind(me)
                .bind(until)
                .bind(now)
                .fetch_optional(self.catalog())
                .await?;
                if let Some(token) = taken {
                    held.push(ShardLease { shard, token, expires_at: until });
                }
            }
        }
        Ok(held)
    }

    /// Gives up every lease of `me` (clean shutdown: another scheduler takes over at once).
    pub async fn release_shard_leases(&self, me: &str) -> Result<()> {
        sqlx::query("UPDATE shard_leases SET owner = NULL, expires_at = '-infinity' WHERE owner = $1")
            .bind(me)
            .execute(self.catalog())
            .await?;
        sqlx::query("DELETE FROM schedulers WHERE id = $1").bind(me).execute(self.catalog()).await?;
        Ok(())
    }
}
