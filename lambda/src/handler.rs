//! The handler: one Kinesis event batch in, the processing function run over it, outputs and
//! dead letters delivered in shard order, a partial batch response out.

use crate::deliver::{deliver, response_from};
use crate::emf::{names, Timer};
use crate::error::LambdaError;
use crate::event::InputBatch;
use crate::failure::{FailedBatch, FailureCause, GiveUp};
use crate::run::{run_batch, Function};
use crate::target::{DeliveryFailure, Target};
use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio::sync::Mutex;
use watershed_core::{DeadLetter, Record, Stream, WatermarkStrategy};

/// The response Lambda reads with `FunctionResponseTypes: ["ReportBatchItemFailures"]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchResponse {
    /// Per shard, the first record not fully delivered; Lambda retries from it.
    pub batch_item_failures: Vec<BatchItemFailure>,
}

/// One batch item failure: a sequence number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchItemFailure {
    /// The sequence number of the record to retry from.
    pub item_identifier: String,
}

/// Runs a processing function over Kinesis event batches in Lambda.
///
/// Build it with [`KinesisHandler::builder`]; call [`handle`](KinesisHandler::handle) per
/// invocation, or hand it to [`run`](crate::run) to serve the Lambda runtime API.
pub struct KinesisHandler<T: Send + 'static> {
    name: String,
    function: Function<T>,
    watermarks: WatermarkStrategy<Bytes>,
    outputs: Mutex<Box<dyn Target<T>>>,
    dead_letters: Mutex<Box<dyn Target<DeadLetter>>>,
    give_up: Option<GiveUp>,
}

/// Builds a [`KinesisHandler`].
pub struct KinesisHandlerBuilder<T: Send + 'static> {
    name: String,
    function: Function<T>,
    watermarks: WatermarkStrategy<Bytes>,
    outputs: Box<dyn Target<T>>,
    dead_letters: Box<dyn Target<DeadLetter>>,
    give_up: Option<GiveUp>,
}

impl<T: Clone + Send + Sync + 'static> KinesisHandler<T> {
    /// A handler named `name` (the pipeline id and the prefix of sink nodes) that runs
    /// `function` over each batch and delivers its outputs to `outputs`.
    pub fn builder(
        name: impl Into<String>,
        function: impl Fn(Stream<Bytes>) -> Stream<T> + Send + Sync + 'static,
        outputs: impl Target<T> + 'static,
    ) -> KinesisHandlerBuilder<T> {
        KinesisHandlerBuilder {
            name: name.into(),
            function: Arc::new(function),
            // Windows inside one batch close when the batch ends, whatever the strategy.
            watermarks: WatermarkStrategy::none(),
            outputs: Box::new(outputs),
            dead_letters: Box::new(LogDeadLetters),
            give_up: None,
        }
    }

    /// Handles one invocation payload: parses it, runs the function, delivers, and answers
    /// with the batch item failures. An `Err` fails the invocation: Lambda retries the whole
    /// batch (and bisects it with `BisectBatchOnFunctionError`).
    pub async fn handle(&self, payload: &serde_json::Value) -> Result<BatchResponse, LambdaError> {
        let _timer = Timer::start();
        let handled = match InputBatch::from_json(payload) {
            Ok(batch) => self.handle_batch(&batch).await,
            Err(e) => Err(e),
        };
        match &handled {
            Ok(response) => metrics::counter!(names::FAILURES)
                .increment(response.batch_item_failures.len() as u64),
            Err(_) => metrics::counter!(names::ERRORS).increment(1),
        }
        handled
    }

    /// Handles an already parsed batch.
    pub async fn handle_batch(&self, batch: &InputBatch) -> Result<BatchResponse, LambdaError> {
        let Some(first) = batch.records().first() else {
            return Ok(BatchResponse::default());
        };
        let produced = match run_batch(&self.name, &self.function, &self.watermarks, batch).await {
            Ok(produced) => produced,
            Err(error) => {
                let error = LambdaError::Pipeline {
                    shard: first.shard.to_string(),
                    first_sequence: first.sequence.clone(),
                    error: Box::new(error),
                };
                if let Some(give_up) = &self.give_up {
                    if let Some(attempts) = give_up.failed(first) {
                        let message = error.to_string();
                        let cause = FailureCause::Processing;
                        if give_up.give_up(batch, 0, attempts, cause, &message).await {
                            return Ok(BatchResponse::default());
                        }
                    }
                }
                return Err(error);
            }
        };
        metrics::counter!(names::RECORDS).increment(batch.records().len() as u64);
        metrics::counter!(names::OUTPUTS).increment(produced.outputs.len() as u64);
        metrics::counter!(names::DEAD_LETTERS).increment(produced.dead_letters.len() as u64);
        let mut outputs = self.outputs.lock().await;
        let mut dead_letters = self.dead_letters.lock().await;
        let failed = deliver(
            batch,
            produced.outputs,
            produced.dead_letters,
            &mut **outputs,
            &mut **dead_letters,
        )
        .await;
        drop((outputs, dead_letters));
        let Some((at, error)) = failed else {
            if let Some(give_up) = &self.give_up {
                give_up.succeeded(batch.records());
            }
            return Ok(BatchResponse::default());
        };
        if let Some(give_up) = &self.give_up {
            give_up.succeeded(&batch.records()[..at]);
            if let Some(attempts) = give_up.failed(&batch.records()[at]) {
                let cause = FailureCause::Delivery;
                if give_up.give_up(batch, at, attempts, cause, &error).await {
                    return Ok(BatchResponse::default());
                }
            }
        }
        Ok(response_from(batch, at))
    }
}

impl<T: Clone + Send + Sync + 'static> KinesisHandlerBuilder<T> {
    /// Event time and watermarks of the raw records (default: the arrival time, no
    /// watermark before the batch ends).
    pub fn watermarks(mut self, strategy: WatermarkStrategy<Bytes>) -> Self {
        self.watermarks = strategy;
        self
    }

    /// Where dead letters go (default: logged at error level with reason and origin).
    pub fn dead_letters(mut self, target: impl Target<DeadLetter> + 'static) -> Self {
        self.dead_letters = Box::new(target);
        self
    }

    /// Gives up on records that keep failing, as Lambda's `DestinationConfig.OnFailure` does
    /// after `MaximumRetryAttempts`: when delivering a record's outputs or dead letters has
    /// failed `attempts` times (or the function has failed on a batch starting at the same
    /// record `attempts` times), the handler sends `target` a [`FailedBatch`] per shard (shard,
    /// first and last sequence number given up on, the error) and answers as if the records
    /// were processed, so the shard moves on. If `target` fails too, Lambda retries as before.
    ///
    /// Attempts are counted per container (Lambda does not tell a function how often it
    /// retried a Kinesis batch): a retry in another container starts counting again, so the
    /// handler gives up after *at least* `attempts` failures, never fewer. The event source
    /// mapping's `MaximumRetryAttempts` with its own `OnFailure` destination stays the bound
    /// that always holds (docs/lambda.md).
    pub fn on_failure(mut self, target: impl Target<FailedBatch> + 'static, attempts: u32) -> Self {
        self.give_up = Some(GiveUp::new(Box::new(target), attempts));
        self
    }

    /// The handler.
    pub fn build(self) -> KinesisHandler<T> {
        KinesisHandler {
            name: self.name,
            function: self.function,
            watermarks: self.watermarks,
            outputs: Mutex::new(self.outputs),
            dead_letters: Mutex::new(self.dead_letters),
            give_up: self.give_up,
        }
    }
}

/// The default dead-letter target: logs each dead letter (a bad record is never silently
/// lost; set a real target to keep them).
pub(crate) struct LogDeadLetters;

#[async_trait]
impl Target<DeadLetter> for LogDeadLetters {
    async fn deliver(
        &mut self,
        batch_id: &str,
        records: Vec<Record<DeadLetter>>,
    ) -> Result<(), DeliveryFailure> {
        for r in records {
            let origin = r.value.origin.as_ref().map(|o| o.to_string());
            tracing::error!(batch = batch_id, origin, reason = %r.value.reason, "dead letter");
        }
        Ok(())
    }
}
