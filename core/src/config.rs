//! How a pipeline runs: [`PipelineConfig`], the builder every setting of a run lives in.

use crate::checkpoint::{CheckpointStore, CorruptCheckpoint};
use crate::dead_letter::ErrorPolicy;
use std::time::Duration;

/// How a pipeline runs. Builder-style; every setting has a default.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    pub(crate) id: String,
    pub(crate) checkpoint_interval: Option<Duration>,
    pub(crate) store: Option<CheckpointStore>,
    pub(crate) channel_capacity: usize,
    pub(crate) parallelism: usize,
    pub(crate) max_parallelism: usize,
    pub(crate) max_poll_wait: Duration,
    pub(crate) error_policy: Option<ErrorPolicy>,
    pub(crate) handle_signals: bool,
    pub(crate) allow_non_restored_state: bool,
    pub(crate) watermark_alignment: Option<Duration>,
    pub(crate) on_corrupt_checkpoint: CorruptCheckpoint,
}

impl PipelineConfig {
    /// A configuration for the pipeline `id`. The id scopes its checkpoints: a restarted
    /// pipeline with the same id resumes from them.
    pub fn new(id: impl Into<String>) -> Self {
        PipelineConfig {
            id: id.into(),
            checkpoint_interval: Some(Duration::from_secs(10)),
            store: None,
            channel_capacity: 8,
            parallelism: 1,
            max_parallelism: crate::key_group::DEFAULT_MAX_PARALLELISM,
            max_poll_wait: Duration::from_millis(100),
            error_policy: None,
            handle_signals: true,
            allow_non_restored_state: false,
            watermark_alignment: None,
            on_corrupt_checkpoint: CorruptCheckpoint::Refuse,
        }
    }

    /// The pipeline id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Take a checkpoint this often (default 10 s).
    pub fn checkpoint_interval(mut self, every: Duration) -> Self {
        self.checkpoint_interval = Some(every);
        self
    }

    /// No periodic checkpoints; only the final one at shutdown or end of input.
    pub fn without_periodic_checkpoints(mut self) -> Self {
        self.checkpoint_interval = None;
        self
    }

    /// Where checkpoints go (default: local directory `.watershed/checkpoints`).
    pub fn checkpoint_store(mut self, store: CheckpointStore) -> Self {
        self.store = Some(store);
        self
    }

    /// Capacity of each channel between tasks, in batches (default 8). Together with the
    /// sources' batch sizes this bounds the memory in flight: a full channel stops the sender.
    pub fn channel_capacity(mut self, batches: usize) -> Self {
        self.channel_capacity = batches.max(1);
        self
    }

    /// Default parallelism of keyed operators (default 1).
    pub fn parallelism(mut self, n: usize) -> Self {
        self.parallelism = n.max(1);
        self
    }

    /// The number of key groups keyed state is split into (default 128, at most 32768): the
    /// highest parallelism any keyed operator can ever be rescaled to from this pipeline's
    /// checkpoints. It is fixed for the life of the pipeline's state: a restore with another
    /// value is refused, since every key would fall in another group. Keyed operators'
    /// parallelism must not exceed it (checked when the pipeline runs). Pick it well above the
    /// parallelism you expect; each instance's share is `max_parallelism / parallelism` groups,
    /// so a multiple of the likely parallelisms spreads keys evenly. See docs/scaling.md.
    pub fn max_parallelism(mut self, n: usize) -> Self {
        self.max_parallelism = n;
        self
    }

    /// How long a source poll may wait for data (default 100 ms); bounds checkpoint latency.
    pub fn max_poll_wait(mut self, wait: Duration) -> Self {
        self.max_poll_wait = wait;
        self
    }

    /// What to do with rejected records. Default: dead-letter when a dead-letter sink is set,
    /// otherwise fail.
    pub fn error_policy(mut self, policy: ErrorPolicy) -> Self {
        self.error_policy = Some(policy);
        self
    }

    /// Whether SIGINT/SIGTERM stop the pipeline gracefully (default true). A second signal
    /// stops it at once, without the final checkpoint. The handlers stay installed after
    /// `run` returns (tokio cannot remove them); turn this off in programs that go on.
    pub fn handle_signals(mut self, on: bool) -> Self {
        self.handle_signals = on;
        self
    }

    /// Restore even if the checkpoint holds state, positions or pending commits of nodes that
    /// are no longer in the pipeline (they are dropped; default false: such a restore fails,
    /// because a renamed sink would silently lose its pending output).
    pub fn allow_non_restored_state(mut self, allow: bool) -> Self {
        self.allow_non_restored_state = allow;
        self
    }

    /// Watermark alignment (default off): where streams meet (a union, a join, a keyed
    /// operator fed by several upstream tasks), an input whose watermark is more than
    /// `max_drift` ahead of the combined watermark is not read until the others catch up. The
    /// fast input's channel fills and its source stops polling, so an input that runs ahead
    /// waits at the broker instead of in a join's or window's state: state stays bounded by
    /// the drift even when one source is much faster than the other (Flink's
    /// `withWatermarkAlignment`). Inputs are never held while a checkpoint barrier is being
    /// aligned. A slow input holds the others back until it goes idle, so give its
    /// [`WatermarkStrategy`](crate::WatermarkStrategy) an idleness timeout when it can fall
    /// silent.
    pub fn watermark_alignment(mut self, max_drift: Duration) -> Self {
        self.watermark_alignment = Some(max_drift);
        self
    }

    /// What to do when the newest checkpoint is corrupt (default
    /// [`Refuse`](CorruptCheckpoint::Refuse): do not start, name the
    /// checkpoint and object). [`FallBack`](CorruptCheckpoint::FallBack)
    /// restores the newest intact older checkpoint instead, which may write output again that
    /// the corrupt one had committed.
    pub fn on_corrupt_checkpoint(mut self, policy: CorruptCheckpoint) -> Self {
        self.on_corrupt_checkpoint = policy;
        self
    }
}
