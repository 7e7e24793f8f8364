//! Watershed on AWS Lambda: the processing function a long-running pipeline runs, run over
//! each Kinesis event batch an event source mapping invokes a function with.
//!
//! ```no_run
//! use watershed_lambda::{KinesisHandler, MemoryTarget};
//! use watershed_operators::prelude::*;
//!
//! # async fn main_() -> Result<(), lambda_runtime::Error> {
//! let handler = KinesisHandler::builder(
//!     "clicks",
//!     |raw| raw.decode_json::<u64>().map(|n: u64| n * 2),
//!     MemoryTarget::new(),
//! )
//! .build();
//! watershed_lambda::run(handler).await
//! # }
//! ```
//!
//! Each batch runs through the core runtime (a bounded source of the batch's records, with
//! their shard and sequence number as origin); outputs and dead letters are delivered in shard
//! order, and a delivery failure is answered with a partial batch response naming the first
//! record not delivered, so Lambda retries from it and nothing before it is delivered twice.
//! [`TumblingWindowHandler`] runs Lambda's tumbling windows (`TumblingWindowInSeconds`): the
//! aggregate state travels in the events and responses, and each window's results are
//! delivered on its final invocation. [`SqsTarget`] sends dead letters, and the description of
//! records the handler gives up on ([`KinesisHandlerBuilder::on_failure`], Lambda's
//! on-failure record), to an SQS queue. docs/lambda.md explains deployment and what is
//! exactly-once.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod deliver;
mod emf;
mod error;
mod event;
mod failure;
mod handler;
mod run;
mod sqs;
mod target;
mod window;

pub use emf::{flush_emf, install_emf};
pub use error::LambdaError;
pub use event::{compare_sequences, InputBatch, KinesisInput};
pub use failure::{FailedBatch, FailureCause};
pub use handler::{BatchItemFailure, BatchResponse, KinesisHandler, KinesisHandlerBuilder};
pub use sqs::{SqsTarget, SQS_MESSAGE_LIMIT};
pub use target::{DeliveryFailure, MemoryTarget, SinkTarget, Target};
pub use window::{Results, TumblingWindowHandler, WindowResponse, LAMBDA_STATE_LIMIT};

use lambda_runtime::{service_fn, LambdaEvent};
use std::sync::Arc;

/// Serves the Lambda runtime API with `handler` until the runtime ends the process. Needs the
/// environment Lambda (or `cargo lambda watch`) sets. Metrics (the handler's and the
/// runtime's) are written as CloudWatch EMF lines after each invocation, in namespace
/// `Watershed` with the function's name as dimension, unless a metrics recorder is installed.
pub async fn run<T>(handler: KinesisHandler<T>) -> Result<(), lambda_runtime::Error>
where
    T: Clone + Send + Sync + 'static,
{
    let handler = Arc::new(handler);
    let emf = emf_in_lambda();
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let handler = handler.clone();
        async move {
            let handled = handler.handle(&event.payload).await;
            flush(emf);
            handled.map_err(lambda_runtime::Error::from)
        }
    }))
    .await
}

/// The EMF recorder, when none is installed yet.
fn emf_in_lambda() -> Option<&'static metrics_cloudwatch_embedded::Collector> {
    let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "watershed".into());
    match install_emf("Watershed", &function) {
        Ok(collector) => Some(collector),
        Err(e) => {
            tracing::warn!(%e, "metrics are not written as EMF: another recorder is installed");
            None
        }
    }
}

fn flush(emf: Option<&'static metrics_cloudwatch_embedded::Collector>) {
    if let Some(collector) = emf {
        if let Err(e) = flush_emf(collector, std::io::stdout().lock()) {
            tracing::warn!(%e, "could not write the EMF metrics line");
        }
    }
}

/// [`run`] for a [`TumblingWindowHandler`]: serves the Lambda runtime API, answering each
/// invocation with the window state for the next one.
pub async fn run_windows<T, K, A>(
    handler: TumblingWindowHandler<T, K, A>,
) -> Result<(), lambda_runtime::Error>
where
    T: Clone + Send + Sync + 'static,
    K: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    A: watershed_operators::Aggregator<T>,
{
    let handler = Arc::new(handler);
    let emf = emf_in_lambda();
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let handler = handler.clone();
        async move {
            let handled = handler.handle(&event.payload).await;
            flush(emf);
            handled.map_err(lambda_runtime::Error::from)
        }
    }))
    .await
}
