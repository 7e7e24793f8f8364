//! What the examples show while they run: a Prometheus endpoint and a progress line.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Serves every metric at `http://<addr>/metrics` (Prometheus text format).
pub fn serve_metrics(addr: SocketAddr) -> Result<PrometheusHandle, Box<dyn std::error::Error>> {
    let (recorder, exporter) = PrometheusBuilder::new().with_http_listener(addr).build()?;
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)?;
    tokio::spawn(exporter);
    Ok(handle)
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

/// The S3 client of the examples: from the environment (`WATERSHED_S3_*`, `AWS_*`), or — when
/// neither an endpoint nor credentials are set — the local S3 server of `scripts/brokers`
/// (`http://127.0.0.1:9000`, bucket `watershed-test`, test credentials).
pub fn s3_client() -> Result<object_store::aws::AmazonS3, Box<dyn std::error::Error>> {
    let configured = [
        "WATERSHED_S3_ENDPOINT",
        "AWS_ENDPOINT",
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some());
    if configured {
        return Ok(watershed_sink_s3::amazon_s3_from_env()?);
    }
    Ok(object_store::aws::AmazonS3Builder::new()
        .with_endpoint("http://127.0.0.1:9000")
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .with_bucket_name("watershed-test")
        .with_region("us-east-1")
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .build()?)
}
