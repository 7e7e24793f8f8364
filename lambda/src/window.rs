//! Lambda's tumbling windows for Kinesis (`TumblingWindowInSeconds`): the window's aggregate
//! state travels in the event and the response between invocations, and the results are
//! delivered on the window's final invocation.

use crate::error::LambdaError;
use crate::event::InputBatch;
use crate::handler::BatchItemFailure;
use crate::run::{run_batch, Function};
use crate::target::Target;
use aws_lambda_events::event::kinesis::KinesisTimeWindowEvent;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tokio::sync::Mutex;
use watershed_core::{DeadLetter, EventTime, Record, Stream, WatermarkStrategy, Window};
use watershed_operators::{Aggregator, WindowResult};

/// Lambda's limit on the state a tumbling window carries between invocations (1 MB).
pub const LAMBDA_STATE_LIMIT: usize = 1024 * 1024;

/// The response to a tumbling-window invocation: the state for the next one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowResponse {
    /// Per key (its JSON), the aggregator's accumulator (JSON); empty after the final
    /// invocation of a window.
    pub state: HashMap<String, String>,
    /// Always empty: a failure fails the invocation, whose state Lambda then resends.
    pub batch_item_failures: Vec<BatchItemFailure>,
}

/// The results a window emits.
pub type Results<K, A, T> = WindowResult<K, <A as Aggregator<T>>::Output>;

/// Runs `function`, keys its outputs and aggregates them per key in Lambda's tumbling window,
/// as `function(raw).key_by(key).window(TumblingWindows::of(..)).aggregate(aggregator)` does
/// in a long-running pipeline whose event time is the arrival time.
pub struct TumblingWindowHandler<T: Send + 'static, K, A: Aggregator<T>> {
    name: String,
    function: Function<T>,
    key: Arc<dyn Fn(&T) -> K + Send + Sync>,
    aggregator: A,
    state_limit: usize,
    results: Mutex<Box<dyn Target<Results<K, A, T>>>>,
    dead_letters: Mutex<Box<dyn Target<DeadLetter>>>,
}

impl<T, K, A> TumblingWindowHandler<T, K, A>
where
    T: Clone + Send + Sync + 'static,
    K: Serialize + DeserializeOwned + Send + 'static,
    A: Aggregator<T>,
{
    /// A handler aggregating `function`'s outputs per `key` with `aggregator`, delivering each
    /// window's results to `results`; dead letters are logged until
    /// [`dead_letters`](Self::dead_letters) sets a target.
    pub fn new(
        name: impl Into<String>,
        function: impl Fn(Stream<Bytes>) -> Stream<T> + Send + Sync + 'static,
        key: impl Fn(&T) -> K + Send + Sync + 'static,
        aggregator: A,
        results: impl Target<Results<K, A, T>> + 'static,
    ) -> Self {
        TumblingWindowHandler {
            name: name.into(),
            function: Arc::new(function),
            key: Arc::new(key),
            aggregator,
            state_limit: LAMBDA_STATE_LIMIT,
            results: Mutex::new(Box::new(results)),
            dead_letters: Mutex::new(Box::new(crate::handler::LogDeadLetters)),
        }
    }

    /// Where dead letters go.
    pub fn dead_letters(mut self, target: impl Target<DeadLetter> + 'static) -> Self {
        self.dead_letters = Mutex::new(Box::new(target));
        self
    }

    /// The largest state to return, in bytes of JSON (default [`LAMBDA_STATE_LIMIT`]).
    pub fn state_limit(mut self, bytes: usize) -> Self {
        self.state_limit = bytes;
        self
    }

    /// Handles one invocation: folds the batch into the window's state and, on the window's
    /// final invocation, delivers its results and returns an empty state.
    pub async fn handle(&self, payload: &serde_json::Value) -> Result<WindowResponse, LambdaError> {
        let event: KinesisTimeWindowEvent =
            serde_json::from_value(payload.clone()).map_err(|e| LambdaError::MalformedEvent {
                reason: e.to_string(),
            })?;
        let props = event.time_window_properties;
        let batch = InputBatch::from_event(event.kinesis_event)?;
        let shard = props
            .shard_id
            .clone()
            .or_else(|| batch.records().first().map(|r| r.shard.to_string()))
            .unwrap_or_default();
        let mut state = decode_state(&self.aggregator, &shard, props.state)?;
        if !batch.is_empty() {
            self.fold(&batch, &shard, &mut state).await?;
        }
        if props.is_final_invoke_for_window {
            let window = Window::new(
                EventTime(props.window.start.timestamp_millis()),
                EventTime(props.window.end.timestamp_millis()),
            );
            self.emit(&shard, window, state).await?;
            return Ok(WindowResponse::default());
        }
        let state = encode_state(&shard, state, self.state_limit)?;
        Ok(WindowResponse {
            state,
            batch_item_failures: Vec::new(),
        })
    }

    /// Runs the function over the batch, delivers its dead letters and adds its outputs.
    async fn fold(
        &self,
        batch: &InputBatch,
        shard: &str,
        state: &mut BTreeMap<String, A::Acc>,
    ) -> Result<(), LambdaError> {
        let first = &batch.records()[0];
        let produced = run_batch(
            &self.name,
            &self.function,
            &WatermarkStrategy::none(),
            batch,
        )
        .await
        .map_err(|error| LambdaError::Pipeline {
            shard: shard.to_owned(),
            first_sequence: first.sequence.clone(),
            error: Box::new(error),
        })?;
        if !produced.dead_letters.is_empty() {
            let letters = produced
                .dead_letters
                .into_iter()
                .map(crate::deliver::as_record)
                .collect();
            let id = format!("{shard}-{}", first.sequence);
            self.dead_letters
                .lock()
                .await
                .deliver(&id, letters)
                .await
                .map_err(|f| LambdaError::Delivery {
                    target: "dead letters",
                    shard: shard.to_owned(),
                    error: f.error,
                })?;
        }
        for output in produced.outputs {
            let key = serde_json::to_string(&(self.key)(&output.value)).map_err(|e| {
                LambdaError::BadState {
                    shard: shard.to_owned(),
                    reason: format!("a key does not encode: {e}"),
                }
            })?;
            let acc = state.entry(key).or_insert_with(|| self.aggregator.create());
            self.aggregator.add(acc, &output.value);
        }
        Ok(())
    }

    /// Delivers the window's results, named after shard and window so a retry rewrites them.
    async fn emit(
        &self,
        shard: &str,
        window: Window,
        state: BTreeMap<String, A::Acc>,
    ) -> Result<(), LambdaError> {
        let mut results = Vec::with_capacity(state.len());
        for (key, acc) in state {
            let key: K = serde_json::from_str(&key).map_err(|e| LambdaError::BadState {
                shard: shard.to_owned(),
                reason: format!("key {key}: {e}"),
            })?;
            let value = self.aggregator.finish(&acc);
            let result = WindowResult {
                key,
                window,
                value,
                is_update: false,
            };
            results.push(Record::new(result, EventTime(window.end.0 - 1)));
        }
        if results.is_empty() {
            return Ok(());
        }
        let id = format!("{shard}-window-{}", window.start.0);
        self.results
            .lock()
            .await
            .deliver(&id, results)
            .await
            .map_err(|f| LambdaError::Delivery {
                target: "results",
                shard: shard.to_owned(),
                error: f.error,
            })
    }
}

fn decode_state<T, A: Aggregator<T>>(
    _aggregator: &A,
    shard: &str,
    state: HashMap<String, String>,
) -> Result<BTreeMap<String, A::Acc>, LambdaError> {
    state
        .into_iter()
        .map(|(key, acc)| {
            let decoded = serde_json::from_str(&acc).map_err(|e| LambdaError::BadState {
                shard: shard.to_owned(),
                reason: format!("key {key}: {e}"),
            })?;
            Ok((key, decoded))
        })
        .collect()
}

fn encode_state<Acc: Serialize>(
    shard: &str,
    state: BTreeMap<String, Acc>,
    limit: usize,
) -> Result<HashMap<String, String>, LambdaError> {
    let mut encoded = HashMap::with_capacity(state.len());
    for (key, acc) in state {
        let acc = serde_json::to_string(&acc).map_err(|e| LambdaError::BadState {
            shard: shard.to_owned(),
            reason: format!("key {key}: the accumulator does not encode: {e}"),
        })?;
        encoded.insert(key, acc);
    }
    // The size Lambda sees: the state as the response's JSON carries it.
    let size = serde_json::to_vec(&encoded).map_or(usize::MAX, |v| v.len());
    if size > limit {
        return Err(LambdaError::StateTooLarge {
            shard: shard.to_owned(),
            size,
            limit,
        });
    }
    Ok(encoded)
}
