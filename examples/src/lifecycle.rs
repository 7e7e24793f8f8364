//! How the examples start and stop: a log subscriber, SIGINT/SIGTERM from the first moment of
//! `main`, and errors printed once, readably, through the log.

use std::future::Future;
use std::process::ExitCode;
use tokio::sync::watch;
use watershed_core::{Pipeline, ShutdownHandle};

/// Logs to stderr, filtered by `RUST_LOG` (default: `info` for Watershed, `warn` for the rest);
/// colours only on a terminal, so a log file or a log collector gets plain text.
pub fn init_logging() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,watershed=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Stop requests (SIGINT, SIGTERM), counted from the moment [`Stop::listen`] is called.
///
/// The examples do real work before their pipeline runs (creating topics, loading the
/// reference table from S3): a signal then must end them cleanly, not kill them halfway, and
/// must not be lost between that set-up and the pipeline.
#[derive(Clone)]
pub struct Stop {
    count: watch::Receiver<u32>,
}

impl Stop {
    /// Starts listening. Call it first in `main`, inside the runtime.
    pub fn listen() -> std::io::Result<Stop> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        let (tx, count) = watch::channel(0u32);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
                tx.send_modify(|n| *n += 1);
            }
        });
        Ok(Stop { count })
    }

    /// Resolves once a stop was requested (at once if it already was).
    pub async fn requested(&mut self) {
        let _ = self.count.wait_for(|n| *n > 0).await;
    }

    /// Runs `setup` unless a stop is requested first: `None` then, and nothing of the set-up
    /// runs further.
    pub async fn unless_stopped<T>(&mut self, setup: impl Future<Output = T>) -> Option<T> {
        tokio::select! {
            r = setup => Some(r),
            _ = self.requested() => {
                tracing::info!("stop requested during start-up: nothing to checkpoint yet, exiting");
                None
            }
        }
    }

    /// From now on, the first request stops the pipeline gracefully (a final checkpoint) and
    /// a second one exits at once.
    pub fn forward_to(mut self, pipeline: ShutdownHandle) {
        tokio::spawn(async move {
            self.requested().await;
            tracing::info!("stop requested: final checkpoint, then exit (again to abort)");
            pipeline.shutdown();
            let _ = self.count.wait_for(|n| *n > 1).await;
            tracing::warn!("second stop request: exiting without a final checkpoint");
            std::process::exit(130);
        });
    }
}

/// Runs an example: listens for stop requests first, builds its pipeline with `build` (a stop
/// during the set-up ends it cleanly), runs it with stop requests forwarded, and logs the
/// summary.
pub async fn serve(
    name: &str,
    build: impl Future<Output = Result<Pipeline, Box<dyn std::error::Error>>>,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut stop = Stop::listen()?;
    let Some(pipeline) = stop.unless_stopped(build).await else {
        return Ok(());
    };
    let pipeline = pipeline?;
    stop.forward_to(pipeline.shutdown_handle());
    tracing::info!("{name} running");
    let summary = pipeline.run().await?;
    tracing::info!(
        records = summary.records_in,
        checkpoints = summary.checkpoints,
        rejected = summary.rejected,
        "{name} stopped"
    );
    Ok(())
}

/// The exit of an example's `main`: an error is logged once, with its causes, as text a person
/// can act on (not a `Debug` dump).
pub fn exit_with(name: &str, result: Result<(), Box<dyn std::error::Error>>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut text = e.to_string();
            let mut cause = e.source();
            while let Some(c) = cause {
                let c_text = c.to_string();
                // thiserror messages often embed their source already.
                if !text.contains(&c_text) {
                    text.push_str(": ");
                    text.push_str(&c_text);
                }
                cause = c.source();
            }
            tracing::error!("{name} failed: {text}");
            ExitCode::FAILURE
        }
    }
}
