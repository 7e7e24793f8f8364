use crate::error::BoxError;
use crate::record::{Record, SplitId};
use crate::source::{Source, SourceEvent};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// Position of a [`GeneratorSource`]: the index of the next record of every split.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeneratorPosition {
    /// Next index per split.
    pub next: Vec<u64>,
}

type MakeFn<T> = Box<dyn Fn(usize, u64) -> Record<T> + Send>;

/// A deterministic source: record `i` of split `s` is `make(s, i)`.
///
/// Because records are a pure function of `(split, index)`, a restored position regenerates
/// exactly the records after it, which makes this source the reference for exactly-once tests.
/// Bounded (`per_split` records per split) or unbounded, optionally rate-limited.
pub struct GeneratorSource<T> {
    make: MakeFn<T>,
    splits: Vec<SplitId>,
    next: Vec<u64>,
    sizes: Option<Vec<u64>>,
    batch_size: usize,
    rate: Option<f64>,
    started: Option<(Instant, u64)>,
    emitted: u64,
    cursor: usize,
    announced: usize,
}

impl<T: Send + 'static> GeneratorSource<T> {
    /// `splits` splits of `per_split` records each.
    pub fn new(
        splits: usize,
        per_split: u64,
        make: impl Fn(usize, u64) -> Record<T> + Send + 'static,
    ) -> Self {
        Self::sized(vec![per_split; splits.max(1)], make)
    }

    /// One split per entry of `sizes`, with that many records.
    pub fn sized(sizes: Vec<u64>, make: impl Fn(usize, u64) -> Record<T> + Send + 'static) -> Self {
        let sizes = if sizes.is_empty() { vec![0] } else { sizes };
        let splits = sizes.len();
        GeneratorSource {
            make: Box::new(make),
            splits: (0..splits)
                .map(|s| SplitId::new(format!("gen-{s}")))
                .collect(),
            next: vec![0; splits],
            sizes: Some(sizes),
            batch_size: 1024,
            rate: None,
            started: None,
            emitted: 0,
            cursor: 0,
            announced: 0,
        }
    }

    /// Never ends.
    pub fn unbounded(mut self) -> Self {
        self.sizes = None;
        self
    }

    /// Records per batch (default 1024).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// At most `per_second` records per second over all splits.
    pub fn rate(mut self, per_second: f64) -> Self {
        self.rate = Some(per_second).filter(|r| *r > 0.0);
        self
    }

    fn remaining(&self, s: usize) -> u64 {
        match &self.sizes {
            Some(sizes) => sizes[s].saturating_sub(self.next[s]),
            None => u64::MAX,
        }
    }
}

#[async_trait]
impl<T: Send + 'static> Source for GeneratorSource<T> {
    type Item = T;
    type Position = GeneratorPosition;

    async fn open(&mut self, restored: Option<GeneratorPosition>) -> Result<(), BoxError> {
        if let Some(p) = restored {
            if p.next.len() != self.splits.len() {
                return Err(format!(
                    "restored position has {} splits, generator has {}",
                    p.next.len(),
                    self.splits.len()
                )
                .into());
            }
            self.next = p.next;
        }
        Ok(())
    }

    async fn poll(&mut self, max_wait: Duration) -> Result<SourceEvent<T>, BoxError> {
        let n = self.splits.len();
        // Every split holds the watermark back from the start, not only once it has records.
        if self.announced < n {
            self.announced += 1;
            return Ok(SourceEvent::SplitAdded(
                self.splits[self.announced - 1].clone(),
            ));
        }
        let Some(s) = (0..n)
            .map(|k| (self.cursor + k) % n)
            .find(|&s| self.remaining(s) > 0)
        else {
            return Ok(SourceEvent::Finished);
        };
        self.cursor = (s + 1) % n;
        let mut count = (self.batch_size as u64).min(self.remaining(s));
        if let Some(rate) = self.rate {
            let (t0, base) = *self.started.get_or_insert((Instant::now(), self.emitted));
            let allowed = (t0.elapsed().as_secs_f64() * rate) as u64 + 1;
            let budget = allowed.saturating_sub(self.emitted - base);
            if budget == 0 {
                let wait = Duration::try_from_secs_f64(1.0 / rate)
                    .unwrap_or(max_wait)
                    .min(max_wait);
                tokio::time::sleep(wait).await;
                return Ok(SourceEvent::Idle);
            }
            count = count.min(budget);
        }
        let start = self.next[s];
        let records: Vec<Record<T>> = (start..start + count).map(|i| (self.make)(s, i)).collect();
        self.next[s] = start + count;
        self.emitted += count;
        Ok(SourceEvent::Batch {
            split: self.splits[s].clone(),
            records,
        })
    }

    fn position(&self) -> GeneratorPosition {
        GeneratorPosition {
            next: self.next.clone(),
        }
    }
}
