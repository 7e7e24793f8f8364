//! Routes and the HTTP/1 server: hyper over tokio, one task per connection, and the task that
//! reads the counters every second.

use crate::{Reply, StatusError, StatusPage};
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;

/// The page: one static file, its script and style inline, so nothing needs building.
const PAGE: &str = include_str!("page.html");
const HTML: &str = "text/html; charset=utf-8";
const JSON: &str = "application/json";
/// What Prometheus expects of a scrape target.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";
/// How often the counters are read for rates.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// How long an answer of `/api/metrics` or `/api/checkpoints` is served again: requests within
/// it share one rendering of the metrics, so many viewers (each page polls once a second) cost
/// about what one does. Measured with `benches/load.rs` (docs/benchmarks.md).
const FRESH_FOR: Duration = Duration::from_millis(250);

/// The answer for `path` made within [`FRESH_FOR`], or a new one from `make`.
fn fresh(page: &StatusPage, path: &'static str, make: impl FnOnce() -> Reply) -> Reply {
    let now = std::time::Instant::now();
    let lock = || {
        page.shared
            .answers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    };
    if let Some((_, _, reply)) = lock()
        .iter()
        .find(|(p, at, _)| *p == path && now.saturating_duration_since(*at) < FRESH_FOR)
    {
        return reply.clone();
    }
    // Made outside the lock: a slow rendering does not hold other paths' readers.
    let reply = make();
    let mut answers = lock();
    answers.retain(|(p, _, _)| *p != path);
    answers.push((path, now, reply.clone()));
    reply
}

pub(crate) fn route(page: &StatusPage, method: &str, target: &str) -> Reply {
    let path = target.split(['?', '#']).next().unwrap_or_default();
    if method != "GET" && method != "HEAD" {
        return reply(405, TEXT, "only GET and HEAD\n");
    }
    match path {
        "/" | "/index.html" => reply(200, HTML, PAGE),
        "/metrics" => reply(200, PROMETHEUS_TEXT, page.render_prometheus()),
        "/api/graph" => json(page.graph()),
        "/api/metrics" => fresh(page, "/api/metrics", || json(&page.metrics())),
        "/api/checkpoints" => fresh(page, "/api/checkpoints", || json(&page.checkpoints())),
        _ => reply(
            404,
            TEXT,
            "not found: try /, /metrics, /api/graph, /api/metrics or /api/checkpoints\n",
        ),
    }
}

fn reply(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> Reply {
    Reply {
        status,
        content_type,
        body: body.into(),
    }
}

fn json<T: serde::Serialize>(value: &T) -> Reply {
    match serde_json::to_vec(value) {
        Ok(body) => reply(200, JSON, body),
        Err(e) => reply(500, TEXT, format!("cannot serialise: {e}\n")),
    }
}

/// A bound socket waiting for its page: binding comes first, so that a taken port fails before
/// a pipeline's set-up rather than after it.
pub struct StatusListener {
    listener: TcpListener,
    bound: SocketAddr,
}

impl StatusListener {
    /// Listens on `addr` (port 0: any free port), serving nothing until [`serve`](Self::serve).
    pub async fn bind(addr: SocketAddr) -> Result<Self, StatusError> {
        let bind_error = |source| StatusError::Bind { addr, source };
        let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
        let bound = listener.local_addr().map_err(bind_error)?;
        Ok(StatusListener { listener, bound })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.bound
    }

    /// Serves `page` here until the runtime shuts down (see [`StatusPage::serve`]); returns the
    /// address.
    pub fn serve(self, page: StatusPage) -> SocketAddr {
        spawn(page, self.listener, self.bound)
    }
}

fn spawn(page: StatusPage, listener: TcpListener, bound: SocketAddr) -> SocketAddr {
    let sampler = page.clone();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(SAMPLE_EVERY);
        loop {
            ticks.tick().await;
            sampler.sample();
            // Without the exporter's own listener nothing else drains its histograms.
            sampler.run_upkeep();
        }
    });
    tokio::spawn(accept_loop(page, listener));
    tracing::info!("status page on http://{bound}/ (metrics at /metrics)");
    bound
}

async fn accept_loop(page: StatusPage, listener: TcpListener) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, mostly: wait rather than spin.
                tracing::warn!("status page: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let page = page.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let page = page.clone();
                async move { Ok::<_, Infallible>(answer(&page, &request)) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = connection.await {
                tracing::debug!("status page: connection ended: {e}");
            }
        });
    }
}

fn answer<B>(page: &StatusPage, request: &Request<B>) -> Response<Full<Bytes>> {
    let method = request.method().as_str();
    let target = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let Reply {
        status,
        content_type,
        body,
    } = route(page, method, target);
    let body = if method == "HEAD" { Bytes::new() } else { body };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    // Live numbers: a cached answer would show a stalled pipeline as healthy.
    response.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    response
}
