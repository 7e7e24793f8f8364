//! Does serving the status page slow the pipeline? The same in-process pipeline (a generator,
//! a keyed operator at parallelism 2, a sink) runs alone and while 200 clients each load
//! `/api/metrics` once a second (200 concurrent dashboards, a bounded load) from the same
//! process, interleaved, three runs each. Prints records per second of each run and the
//! median ratio loaded / alone (target ≥ 0.95).
//!
//! `cargo bench -p watershed-status --bench load`

use metrics_exporter_prometheus::PrometheusBuilder;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use watershed_core::connectors::{CollectSink, GeneratorSource};
use watershed_core::*;
use watershed_status::StatusPage;

const CLIENTS: usize = 200;
const RECORDS_PER_SPLIT: u64 = 80_000_000;

fn pipeline(id: &str) -> Pipeline {
    let pipeline = Pipeline::new(
        PipelineConfig::new(id)
            .checkpoint_store(CheckpointStore::memory())
            .checkpoint_interval(Duration::from_secs(1))
            .parallelism(2)
            .handle_signals(false),
    );
    pipeline
        .source(
            "numbers",
            GeneratorSource::new(2, RECORDS_PER_SPLIT, |s, i| {
                Record::new(i * 2 + s as u64, EventTime(i as i64))
            }),
            WatermarkStrategy::monotonous(),
        )
        .key_by(|v: &u64| *v % 1_000)
        .process("counts", |_| {
            FnOperator::new(|b: Batch<u64>, out: &mut Collector<u64>| {
                out.emit_all(b.into_iter().filter(|r| r.value % 100_000 == 0))
            })
        })
        .sink("out", CollectSink::new());
    pipeline
}

/// One closed-loop client: a request, its whole answer, then the rest of the second.
async fn dashboard(addr: SocketAddr, stop: Arc<AtomicBool>, answered: Arc<AtomicU64>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
            continue;
        };
        let request = "GET /api/metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";
        if stream.write_all(request.as_bytes()).await.is_err() {
            continue;
        }
        let mut body = Vec::new();
        if stream.read_to_end(&mut body).await.is_ok() && body.starts_with(b"HTTP/1.1 200") {
            answered.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Records per second of one run, and the requests answered meanwhile.
async fn run(id: &str, loaded: bool) -> (f64, u64) {
    let pipeline = pipeline(id);
    let handle = metrics_handle();
    let addr = StatusPage::new(handle, pipeline.describe())
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .expect("status page listens");
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..if loaded { CLIENTS } else { 0 })
        .map(|_| tokio::spawn(dashboard(addr, stop.clone(), answered.clone())))
        .collect();
    let started = Instant::now();
    let summary = pipeline.run().await.expect("pipeline runs");
    let seconds = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.abort();
    }
    (
        summary.records_in as f64 / seconds,
        answered.load(Ordering::Relaxed),
    )
}

fn metrics_handle() -> metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).expect("the bench's only recorder");
            handle
        })
        .clone()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        metrics_handle();
        // Warm-up: allocator, page cache, the first metric registrations.
        run("load-warm-up", false).await;
        let (mut alone, mut loaded, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..3 {
            let (a, _) = run(&format!("load-alone-{i}"), false).await;
            let (l, answered) = run(&format!("load-loaded-{i}"), true).await;
            println!(
                "run {i}: alone {:.0} records/s, with {CLIENTS} dashboards {:.0} records/s ({answered} requests answered), ratio {:.3}",
                a,
                l,
                l / a
            );
            alone.push(a);
            loaded.push(l);
            ratios.push(l / a);
        }
        println!(
            "median: alone {:.0} records/s, loaded {:.0} records/s, loaded/alone {:.3} (target >= 0.95)",
            median(alone),
            median(loaded),
            median(ratios)
        );
    });
}
