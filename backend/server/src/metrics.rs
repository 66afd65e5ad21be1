//! Prometheus metrics: `orrery_<subsystem>_<what>_<unit>`.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::AppState;

pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    db_connections: IntGaugeVec,
    pool_queued: IntGaugeVec,
    pool_unschedulable: IntGaugeVec,
    pool_workers: IntGaugeVec,
}

impl Metrics {
    pub fn new(version: &str, commit: &str) -> Metrics {
        let registry = Registry::new();
        let build = IntGaugeVec::new(
            Opts::new("orrery_build_info", "Always 1; the labels say which build is running."),
            &["version", "commit"],
        )
        .expect("valid metric");
        build.with_label_values(&[version, commit]).set(1);
        let http_requests = IntCounterVec::new(
            Opts::new("orrery_http_requests_total", "HTTP requests answered, by route template and status."),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "orrery_http_request_duration_seconds",
                "Time to answer an HTTP request, by route template.",
            )
            .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["method", "route"],
        )
        .expect("valid metric");
        let db_connections = IntGaugeVec::new(
            Opts::new("orrery_db_pool_connections", "Database pool connections by pool and state (idle, in_use, max)."),
            &["pool", "state"],
        )
        .expect("valid metric");
        let pool_queued = IntGaugeVec::new(
            Opts::new("orrery_pool_queued_attempts", "Attempts ready to run and waiting for a worker, by pool."),
            &["pool"],
        )
        .expect("valid metric");
        let pool_unschedulable = IntGaugeVec::new(
            Opts::new(
                "orrery_pool_unschedulable_attempts",
                "Queued attempts no live worker can take (pool, region, labels or size), by pool.",
            ),
            &["pool"],
        )
        .expect("valid metric");
        let pool_workers = IntGaugeVec::new(Opts::new("orrery_pool_live_workers", "Live workers by pool."), &["pool"])
            .expect("valid metric");
        registry.register(Box::new(build)).expect("register");
        registry.register(Box::new(pool_queued.clone())).expect("register");
        registry.register(Box::new(pool_unschedulable.clone())).expect("register");
        registry.register(Box::new(pool_workers.clone())).expect("register");
        registry.register(Box::new(http_requests.clone())).expect("register");
        registry.register(Box::new(http_duration.clone())).expect("register");
        registry.register(Box::new(db_connections.clone())).expect("register");
        #[cfg(target_os = "linux")]
        registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self())).expect("register");
        Metrics {
            registry,
            http_requests,
            http_duration,
            db_connections,
            pool_queued,
            pool_unschedulable,
            pool_workers,
        }
    }

    /// Sets the pool gauges from a fresh look (pools that are gone disappear).
    pub fn set_pools(&self, pools: &[api_types::PoolStatus]) {
        self.pool_queued.reset();
        self.pool_unschedulable.reset();
        self.pool_workers.reset();
        for p in pools {
            self.pool_queued.with_label_values(&[p.name.as_str()]).set(i64::try_from(p.queued).unwrap_or(i64::MAX));
            self.pool_unschedulable
                .with_label_values(&[p.name.as_str()])
                .set(i64::try_from(p.unschedulable).unwrap_or(i64::MAX));
            self.pool_workers.with_label_values(&[p.name.as_str()]).set(i64::from(p.workers));
        }
    }

    /// The text exposition, with pool gauges read now.
    pub fn render(&self, pools: &[store::PoolStats]) -> String {
        for p in pools {
            let in_use = i64::from(p.size) - i64::from(p.idle);
            self.db_connections.with_label_values(&[p.pool.as_str(), "idle"]).set(i64::from(p.idle));
            self.db_connections.with_label_values(&[p.pool.as_str(), "in_use"]).set(in_use.max(0));
            self.db_connections.with_label_values(&[p.pool.as_str(), "max"]).set(i64::from(p.max));
        }
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf).expect("text encoding cannot fail");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}

/// Counts and times every request by its route template (`/api/v1/tenants/{tenant}`), never the
/// raw path, so label cardinality stays bounded.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().as_str().to_owned();
    let route =
        req.extensions().get::<MatchedPath>().map_or_else(|| route_class(req.uri().path()), |p| p.as_str().to_owned());
    let res = next.run(req).await;
    let m = &state.metrics;
    m.http_requests.with_label_values(&[method.as_str(), route.as_str(), res.status().as_str()]).inc();
    m.http_duration.with_label_values(&[method.as_str(), route.as_str()]).observe(start.elapsed().as_secs_f64());
    res
}

/// Unmatched paths (static files, console pages, 404s) grouped into a few classes.
fn route_class(path: &str) -> String {
    if path.starts_with("/pkg/") {
        "/pkg/*".into()
    } else if path.starts_with("/api/") {
        "/api/*unmatched".into()
    } else {
        "/*console".into()
    }
}
