//! What the examples show while they run: a status page (with the Prometheus metrics at
//! `/metrics`) and a progress line.

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub use watershed_core::metric_catalogue::{CHECKPOINT_BUCKETS, LATENCY_BUCKETS};

/// The Prometheus recorder of the examples: histograms with the catalogue's bucket bounds
/// ([`watershed_core::metric_catalogue::HISTOGRAM_BUCKETS`]: [`LATENCY_BUCKETS`],
/// [`CHECKPOINT_BUCKETS`]), summaries for the others, no listener of its own.
pub fn prometheus_builder() -> Result<PrometheusBuilder, BuildError> {
    let mut builder = PrometheusBuilder::new();
    for (name, bounds) in watershed_core::metric_catalogue::HISTOGRAM_BUCKETS {
        builder = builder.set_buckets_for_metric(Matcher::Full((*name).into()), bounds)?;
    }
    Ok(builder)
}

/// Registers the help text and unit of every catalogued metric (core, operators and the
/// connectors) with the installed recorder.
pub fn describe_metrics() {
    watershed_core::metric_catalogue::describe_all();
    watershed_core::metric_catalogue::describe(watershed_source_kafka::metric_catalogue::CATALOGUE);
    watershed_core::metric_catalogue::describe(
        watershed_source_kinesis::metric_catalogue::CATALOGUE,
    );
    watershed_core::metric_catalogue::describe(watershed_sink_s3::metric_catalogue::CATALOGUE);
}

/// Records every metric from now on, so what the set-up reports before the pipeline runs is
/// kept; [`serve_status`] serves them once the pipeline is built.
pub fn install_recorder() -> Result<PrometheusHandle, Box<dyn std::error::Error>> {
    let recorder = prometheus_builder()?.build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)?;
    describe_metrics();
    Ok(handle)
}

/// Listens on `addr` for the status page, before any set-up: a port already taken fails the
/// example at once, not after it has reached its brokers.
pub async fn bind_status(
    addr: SocketAddr,
) -> Result<watershed_status::StatusListener, Box<dyn std::error::Error>> {
    Ok(watershed_status::StatusListener::bind(addr).await?)
}

/// Serves the status page of `pipeline` on `listener` (`http://<addr>/`, with its latest
/// rejections), and every metric at `/metrics` (Prometheus text format). Returns the address.
pub fn serve_status(
    listener: watershed_status::StatusListener,
    handle: PrometheusHandle,
    pipeline: &watershed_core::Pipeline,
) -> SocketAddr {
    let page = watershed_status::StatusPage::new(handle, pipeline.describe())
        .with_rejections(pipeline.recent_rejections());
    listener.serve(page)
}

fn sum_of(rendered: &str, name: &str) -> f64 {
    rendered
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter(|l| l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Every 2 s, one line on stderr: records/s in and out, the largest consumer lag, checkpoints.
/// Silent when stderr is not a terminal (piped or in CI).
pub fn print_progress(handle: PrometheusHandle, name: &'static str) {
    if !std::io::stderr().is_terminal() {
        return;
    }
    tokio::spawn(async move {
        let mut last = (Instant::now(), 0.0, 0.0);
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let text = handle.render();
            let (r_in, r_out) = (
                sum_of(&text, "watershed_records_in_total"),
                sum_of(&text, "watershed_records_out_total"),
            );
            let secs = last.0.elapsed().as_secs_f64();
            let lag = text
                .lines()
                .filter(|l| {
                    l.starts_with("watershed_kafka_consumer_lag{")
                        || l.starts_with("watershed_kinesis_millis_behind_latest{")
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .fold(0.0, f64::max);
            let checkpoints = sum_of(&text, "watershed_checkpoint_duration_seconds_count");
            eprintln!(
                "[{name}] in {:>9.0} rec/s  out {:>9.0} rec/s  max lag {lag:.0}  checkpoints {checkpoints:.0}",
                (r_in - last.1) / secs,
                (r_out - last.2) / secs,
            );
            last = (Instant::now(), r_in, r_out);
        }
    });
}

/// The S3 client of the examples, configured like any AWS client: credentials from the AWS
/// default chain (environment, profile, web identity, container or instance role), region from
/// `AWS_REGION`, the bucket from `WATERSHED_S3_BUCKET` (or `AWS_BUCKET`), and an endpoint only
/// when one is configured (`WATERSHED_S3_ENDPOINT`, `AWS_ENDPOINT`): nothing falls back to a
/// local server, so a deployment that relies on an instance role writes to S3, not localhost.
/// `scripts/run-example` and the tests configure the local server of `scripts/brokers`.
pub fn s3_client() -> Result<object_store::aws::AmazonS3, Box<dyn std::error::Error>> {
    let bucket_set = ["WATERSHED_S3_BUCKET", "AWS_BUCKET", "AWS_BUCKET_NAME"]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
    if !bucket_set {
        return Err(
            "no S3 bucket configured: set WATERSHED_S3_BUCKET (and WATERSHED_S3_ENDPOINT \
                    for a local S3 server such as the one scripts/brokers starts)"
                .into(),
        );
    }
    Ok(watershed_sink_s3::amazon_s3_from_env()?)
}

/// Where an example keeps its checkpoints: a local directory, or `s3://bucket/prefix` — the
/// choice for a deployment, where the machine and its disk may be replaced and only shared
/// storage outlives a process. The S3 store uses the same credentials, region and endpoint as
/// [`s3_client`]; the bucket comes from the URL.
pub fn checkpoint_store(
    spec: &str,
) -> Result<watershed_core::CheckpointStore, Box<dyn std::error::Error>> {
    let Some(rest) = spec.strip_prefix("s3://") else {
        return Ok(watershed_core::CheckpointStore::local(spec)?);
    };
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let prefix = prefix.trim_matches('/');
    if bucket.is_empty() || prefix.is_empty() {
        return Err(format!(
            "--checkpoints {spec}: write s3://BUCKET/PREFIX (a bucket and a prefix for the \
             checkpoints), or a local directory"
        )
        .into());
    }
    let store = watershed_sink_s3::amazon_s3_builder_from_env()
        .with_bucket_name(bucket)
        .build()
        .map_err(|e| format!("--checkpoints {spec}: {e}"))?;
    Ok(watershed_core::CheckpointStore::new(
        std::sync::Arc::new(store),
        prefix,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use watershed_core::metric_catalogue as m;

    /// Rule: the lag thresholds of the ADR (30 s, 60 s) are bucket bounds of both histograms.
    #[test]
    fn thirty_and_sixty_seconds_are_bucket_bounds() {
        let recorder = prometheus_builder().unwrap().build_recorder();
        metrics::with_local_recorder(&recorder, || {
            metrics::histogram!(m::END_TO_END_LATENCY, m::LABEL_NODE => "s").record(31.0);
            metrics::histogram!(m::CHECKPOINT_DURATION, m::LABEL_PIPELINE => "p").record(0.02);
        });
        let text = recorder.handle().render();
        for name in [
            "watershed_end_to_end_latency_seconds_bucket",
            "watershed_checkpoint_duration_seconds_bucket",
        ] {
            for bound in ["le=\"30\"", "le=\"60\""] {
                let line = text
                    .lines()
                    .find(|l| l.starts_with(name) && l.contains(bound));
                assert!(line.is_some(), "{name} {bound} in:\n{text}");
            }
        }
    }
}
