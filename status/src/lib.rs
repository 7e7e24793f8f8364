//! A status page served by the pipeline process: on one address, the Prometheus metrics
//! (`/metrics`, so it replaces the exporter's own listener), a page that draws the pipeline's
//! graph with live rates, per-split lag, checkpoints and dead letters (`/`), and the JSON it
//! reads (`/api/graph`, `/api/metrics`, `/api/checkpoints`). docs/status.md documents the
//! endpoints and their JSON.
//!
//! ```no_run
//! # async fn example(pipeline: &watershed_core::Pipeline) -> Result<(), Box<dyn std::error::Error>> {
//! use metrics_exporter_prometheus::PrometheusBuilder;
//! use watershed_status::StatusPage;
//!
//! let recorder = PrometheusBuilder::new().build_recorder();
//! let handle = recorder.handle();
//! metrics::set_global_recorder(recorder)?;
//! let address = StatusPage::new(handle, pipeline.describe())
//!     .serve("127.0.0.1:9464".parse()?)
//!     .await?;
//! println!("status page: http://{address}/");
//! # Ok(()) }
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod collect;
mod history;
mod prometheus;
mod server;
mod views;

pub use views::{
    Bucket, CheckpointsView, Distribution, MetricsView, NodeMetrics, SplitLag, SplitWatermark,
    Totals,
};

use history::{History, Reading};
use metrics_exporter_prometheus::PrometheusHandle;
pub use server::StatusListener;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use watershed_core::{PipelineDescription, RecentRejections};

/// Why the status page could not be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StatusError {
    /// The address is taken, or not this machine's.
    #[error("status page: cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the system said.
        source: std::io::Error,
    },
}

/// An answer to one request, whatever server carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// The `Content-Type` header.
    pub content_type: &'static str,
    /// The body.
    pub body: bytes::Bytes,
}

/// The status page of one pipeline: its graph and the process's metrics.
#[derive(Clone)]
pub struct StatusPage {
    shared: Arc<Shared>,
}

struct Shared {
    handle: PrometheusHandle,
    graph: PipelineDescription,
    history: Mutex<History>,
    rejections: std::sync::OnceLock<RecentRejections>,
    /// Recent answers of the JSON endpoints, by path (see `server::FRESH_FOR`).
    answers: Mutex<Vec<(&'static str, Instant, Reply)>>,
}

impl StatusPage {
    /// The page of the pipeline `graph` ([`Pipeline::describe`](watershed_core::Pipeline::describe)),
    /// showing the metrics `handle` renders.
    pub fn new(handle: PrometheusHandle, graph: PipelineDescription) -> Self {
        StatusPage {
            shared: Arc::new(Shared {
                handle,
                graph,
                history: Mutex::new(History::default()),
                answers: Mutex::new(Vec::new()),
                rejections: std::sync::OnceLock::new(),
            }),
        }
    }

    /// The graph the page draws.
    pub fn graph(&self) -> &PipelineDescription {
        &self.shared.graph
    }

    /// What `/api/metrics` answers now.
    pub fn metrics(&self) -> MetricsView {
        let samples = prometheus::parse(&self.shared.handle.render());
        let graph = &self.shared.graph;
        let mut nodes = collect::node_metrics(&samples, graph);
        self.history().fill_rates(Instant::now(), &mut nodes);
        MetricsView {
            pipeline: graph.pipeline.clone(),
            unix_seconds: unix_now(),
            totals: collect::totals(&nodes, graph),
            nodes,
            splits: collect::split_lags(&samples),
            watermarks: collect::split_watermarks(&samples, graph),
            latest_rejections: self
                .shared
                .rejections
                .get()
                .map(RecentRejections::latest)
                .unwrap_or_default(),
        }
    }

    /// What `/api/checkpoints` answers now.
    pub fn checkpoints(&self) -> CheckpointsView {
        let samples = prometheus::parse(&self.shared.handle.render());
        let mut view = collect::checkpoints(&samples, &self.shared.graph.pipeline, unix_now());
        let d = &view.duration_seconds;
        view.last_duration_seconds = self.history().last_duration(d.count, d.sum);
        view
    }

    /// Takes a reading of the counters, for rates and the last checkpoint's duration. The
    /// server does it every second; call it yourself when answering through [`respond`](Self::respond)
    /// from another server.
    pub fn sample(&self) {
        let samples = prometheus::parse(&self.shared.handle.render());
        let graph = &self.shared.graph;
        let nodes = collect::node_metrics(&samples, graph);
        let checkpoints = collect::checkpoints(&samples, &graph.pipeline, unix_now());
        let d = &checkpoints.duration_seconds;
        let reading = Reading::new(Instant::now(), &nodes, d.count, d.sum);
        self.history().record(reading);
    }

    /// The answer to `method` `path` (a query string is ignored): `GET` (or `HEAD`) on a
    /// known path, 404 on another path, 405 for another method.
    pub fn respond(&self, method: &str, path: &str) -> Reply {
        server::route(self, method, path)
    }

    /// Listens on `addr` and serves the page there until the runtime shuts down; every second
    /// it reads the counters and runs the recorder's upkeep (as the exporter's own listener
    /// would: build the recorder without one). Returns the address it listens on (useful with port 0).
    pub async fn serve(self, addr: SocketAddr) -> Result<SocketAddr, StatusError> {
        Ok(StatusListener::bind(addr).await?.serve(self))
    }

    /// Shows `rejections` (from [`Pipeline::recent_rejections`](watershed_core::Pipeline::recent_rejections)):
    /// the latest rejected records' nodes and reasons, in `/api/metrics` and on the page.
    pub fn with_rejections(self, rejections: RecentRejections) -> Self {
        // Set once, before the page is shared; a second call keeps the first.
        let _ = self.shared.rejections.set(rejections);
        self
    }

    fn history(&self) -> std::sync::MutexGuard<'_, History> {
        // A panic while holding the lock leaves readings that are still valid.
        self.shared
            .history
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn run_upkeep(&self) {
        self.shared.handle.run_upkeep();
    }

    fn render_prometheus(&self) -> String {
        self.shared.handle.render()
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
