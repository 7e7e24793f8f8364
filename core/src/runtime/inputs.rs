//! The receiving side of every task: merges one or more input channels, aligns checkpoint
//! barriers across them, combines their watermarks and, when configured, holds back
//! an input whose event time runs too far ahead of the others (watermark alignment).

use crate::checkpoint::CheckpointId;
use crate::message::Message;
use crate::time::EventTime;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc::Receiver;

#[derive(Debug, Clone, Copy)]
struct InputState {
    closed: bool,
    blocked: bool,
    idle: bool,
    watermark: EventTime,
}

/// Merged, aligned inputs of one task.
///
/// - After barrier `n` arrives on an input, that input is not read again until barrier `n` has
///   arrived on every open input; then the barrier is yielded once (aligned checkpoints).
/// - The yielded watermark is the minimum over open inputs that are not idle, emitted only when
///   it strictly increases; when every open input is idle, the maximum is emitted followed by
///   `Idle` (Flink's `StatusWatermarkValve`).
/// - A closed input no longer counts for either rule; `None` once every input is closed.
/// - With a maximum drift, an input whose watermark is more than the drift ahead of the output
///   watermark is not read until the output catches up, so a fast input waits in its bounded
///   channel (and its source stops) instead of filling a join's or window's state. Never while
///   a barrier is being aligned: the held input may be the one whose barrier is awaited.
pub(crate) struct Inputs<T> {
    rxs: Vec<Receiver<Message<T>>>,
    state: Vec<InputState>,
    max_drift: Option<i64>,
    aligning: Option<CheckpointId>,
    arrived: usize,
    out_watermark: EventTime,
    out_idle: bool,
    queued: VecDeque<Message<T>>,
    next: usize,
}

impl<T> Inputs<T> {
    /// Inputs that hold back an input running more than `max_drift` ahead (see the type's docs);
    /// `None` reads every input as soon as it has data.
    pub(crate) fn aligned(rxs: Vec<Receiver<Message<T>>>, max_drift: Option<Duration>) -> Self {
        let mut inputs = Inputs::new(rxs);
        // A single input has nobody to wait for.
        if inputs.rxs.len() > 1 {
            inputs.max_drift = max_drift.map(|d| d.as_millis().min(i64::MAX as u128) as i64);
        }
        inputs
    }

    pub(crate) fn new(rxs: Vec<Receiver<Message<T>>>) -> Self {
        let state = vec![
            InputState {
                closed: false,
                blocked: false,
                idle: false,
                watermark: EventTime::MIN,
            };
            rxs.len()
        ];
        Inputs {
            rxs,
            state,
            max_drift: None,
            aligning: None,
            arrived: 0,
            out_watermark: EventTime::MIN,
            out_idle: false,
            queued: VecDeque::new(),
            next: 0,
        }
    }

    /// The next message, or `None` when every input has closed. Cancel-safe.
    pub(crate) async fn next(&mut self) -> Option<Message<T>> {
        poll_fn(|cx| self.poll_next(cx)).await
    }

    fn open_count(&self) -> usize {
        self.state.iter().filter(|s| !s.closed).count()
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Message<T>>> {
        loop {
            if let Some(m) = self.queued.pop_front() {
                return Poll::Ready(Some(m));
            }
            let n = self.rxs.len();
            let mut progressed = false;
            for k in 0..n {
                let i = (self.next + k) % n;
                if self.state[i].closed || self.state[i].blocked || self.too_far_ahead(i) {
                    continue;
                }
                match self.rxs[i].poll_recv(cx) {
                    Poll::Ready(Some(m)) => {
                        // Start after this input next time, so no input starves the others.
                        self.next = (i + 1) % n;
                        if let Some(out) = self.handle(i, m) {
                            return Poll::Ready(Some(out));
                        }
                        progressed = true;
                        break;
                    }
                    Poll::Ready(None) => {
                        self.state[i].closed = true;
                        self.on_closed();
                        progressed = true;
                        break;
                    }
                    Poll::Pending => {}
                }
            }
            if progressed {
                continue;
            }
            if self.open_count() == 0 {
                return Poll::Ready(None);
            }
            return Poll::Pending;
        }
    }

    /// Input `i` is held back: alignment is on, no barrier is being aligned, and its watermark
    /// is more than the drift ahead of the output watermark. Held inputs are not polled, so
    /// they register no waker; whatever moves the output watermark arrives on another input,
    /// or the last other input closes or goes idle, and each of those wakes this task.
    fn too_far_ahead(&self, i: usize) -> bool {
        match self.max_drift {
            Some(drift) if self.aligning.is_none() => {
                self.state[i].watermark.0 > self.out_watermark.0.saturating_add(drift)
            }
            _ => false,
        }
    }

    fn handle(&mut self, i: usize, m: Message<T>) -> Option<Message<T>> {
        match m {
            Message::Data(batch) => {
                self.state[i].idle = false;
                self.out_idle = false;
                Some(Message::Data(batch))
            }
            Message::Watermark(w) => {
                let s = &mut self.state[i];
                s.idle = false;
                s.watermark = s.watermark.max(w);
                self.recompute_watermark();
                self.queued.pop_front()
            }
            Message::Idle => {
                self.state[i].idle = true;
                self.recompute_watermark();
                self.queued.pop_front()
            }
            Message::Barrier(id) => {
                debug_assert!(self.aligning.is_none_or(|a| a == id));
                self.aligning = Some(id);
                self.state[i].blocked = true;
                self.arrived += 1;
                self.release_if_aligned()
            }
        }
    }

    fn release_if_aligned(&mut self) -> Option<Message<T>> {
        let id = self.aligning?;
        if self.arrived < self.open_count() {
            return None;
        }
        for s in &mut self.state {
            s.blocked = false;
        }
        self.arrived = 0;
        self.aligning = None;
        Some(Message::Barrier(id))
    }

    fn on_closed(&mut self) {
        // A closed input may have been the last one the barrier was waiting for.
        self.arrived = self.state.iter().filter(|s| !s.closed && s.blocked).count();
        if let Some(b) = self.release_if_aligned() {
            self.queued.push_back(b);
        }
        self.recompute_watermark();
    }

    fn recompute_watermark(&mut self) {
        let out = self.out_watermark;
        let mut any_active = false;
        let mut aligned_min: Option<EventTime> = None;
        for s in self.state.iter().filter(|s| !s.closed && !s.idle) {
            any_active = true;
            // An input back from idleness behind the output is not counted until it catches
            // up: it must not stall the others, and the output never regresses.
            if s.watermark >= out {
                aligned_min = Some(aligned_min.map_or(s.watermark, |m| m.min(s.watermark)));
            }
        }
        if any_active {
            if let Some(w) = aligned_min.filter(|w| *w > out) {
                self.out_watermark = w;
                self.out_idle = false;
                self.queued.push_back(Message::Watermark(w));
            }
            return;
        }
        let Some(max) = self
            .state
            .iter()
            .filter(|s| !s.closed)
            .map(|s| s.watermark)
            .max()
        else {
            return;
        };
        if max > self.out_watermark {
            self.out_watermark = max;
            self.queued.push_back(Message::Watermark(max));
        }
        if !self.out_idle {
            self.out_idle = true;
            self.queued.push_back(Message::Idle);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Record;
    use tokio::sync::mpsc;

    fn data(v: u32) -> Message<u32> {
        Message::Data(vec![Record::new(v, EventTime(v as i64))])
    }

    fn values(m: &Message<u32>) -> Option<u32> {
        match m {
            Message::Data(b) => Some(b[0].value),
            _ => None,
        }
    }

    #[tokio::test]
    async fn c1_barrier_blocks_an_input_until_it_arrived_on_all_inputs() {
        let (a_tx, a_rx) = mpsc::channel(16);
        let (b_tx, b_rx) = mpsc::channel(16);
        let (c_tx, c_rx) = mpsc::channel(16);
        let mut inputs = Inputs::new(vec![a_rx, b_rx, c_rx]);
        a_tx.send(data(1)).await.unwrap();
        a_tx.send(Message::Barrier(CheckpointId(7))).await.unwrap();
        a_tx.send(data(2)).await.unwrap(); // after the barrier: must wait
        b_tx.send(data(10)).await.unwrap();
        b_tx.send(Message::Barrier(CheckpointId(7))).await.unwrap();
        b_tx.send(data(11)).await.unwrap(); // after the barrier: must wait
        c_tx.send(data(20)).await.unwrap();

        let mut before = Vec::new();
        for _ in 0..3 {
            before.push(values(&inputs.next().await.unwrap()).unwrap());
        }
        before.sort();
        assert_eq!(before, vec![1, 10, 20], "only pre-barrier data flows");
        // Nothing else is ready until c's barrier arrives.
        let pending =
            tokio::time::timeout(std::time::Duration::from_millis(50), inputs.next()).await;
        assert!(pending.is_err(), "post-barrier data overtook the alignment");

        c_tx.send(Message::Barrier(CheckpointId(7))).await.unwrap();
        assert!(matches!(
            inputs.next().await,
            Some(Message::Barrier(CheckpointId(7)))
        ));
        let mut after = vec![
            values(&inputs.next().await.unwrap()).unwrap(),
            values(&inputs.next().await.unwrap()).unwrap(),
        ];
        after.sort();
        assert_eq!(after, vec![2, 11]);
    }

    #[tokio::test]
    async fn c1_a_closed_input_no_longer_holds_the_barrier() {
        let (a_tx, a_rx) = mpsc::channel(16);
        let (b_tx, b_rx) = mpsc::channel::<Message<u32>>(16);
        let mut inputs = Inputs::new(vec![a_rx, b_rx]);
        a_tx.send(Message::Barrier(CheckpointId(1))).await.unwrap();
        drop(b_tx);
        assert!(matches!(
            inputs.next().await,
            Some(Message::Barrier(CheckpointId(1)))
        ));
        drop(a_tx);
        assert!(inputs.next().await.is_none());
    }

    #[tokio::test]
    async fn t3_watermark_is_the_minimum_over_inputs_and_never_regresses() {
        let (a_tx, a_rx) = mpsc::channel(16);
        let (b_tx, b_rx) = mpsc::channel::<Message<u32>>(16);
        let mut inputs = Inputs::new(vec![a_rx, b_rx]);
        a_tx.send(Message::Watermark(EventTime(100))).await.unwrap();
        b_tx.send(Message::Watermark(EventTime(50))).await.unwrap();
        assert!(matches!(
            inputs.next().await,
            Some(Message::Watermark(EventTime(50)))
        ));
        b_tx.send(Message::Watermark(EventTime(200))).await.unwrap();
        assert!(matches!(
            inputs.next().await,
            Some(Message::Watermark(EventTime(100)))
        ));
        // Input a goes idle: b alone decides.
        a_tx.send(Message::Idle).await.unwrap();
        assert!(matches!(
            inputs.next().await,
            Some(Message::Watermark(EventTime(200)))
        ));
        // b goes idle too: every input idle, the output is idle.
        b_tx.send(Message::Idle).await.unwrap();
        assert!(matches!(inputs.next().await, Some(Message::Idle)));
        // a returns behind the output: no regression, and it does not stall b.
        a_tx.send(Message::Watermark(EventTime(120))).await.unwrap();
        a_tx.send(data(1)).await.unwrap();
        assert_eq!(values(&inputs.next().await.unwrap()), Some(1));
        b_tx.send(Message::Watermark(EventTime(400))).await.unwrap();
        assert!(matches!(
            inputs.next().await,
            Some(Message::Watermark(EventTime(400)))
        ));
    }

    fn aligned(n: usize, drift_ms: u64) -> (Vec<mpsc::Sender<Message<u32>>>, Inputs<u32>) {
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..n).map(|_| mpsc::channel(16)).unzip();
        let inputs = Inputs::aligned(rxs, Some(std::time::Duration::from_millis(drift_ms)));
        (txs, inputs)
    }

    async fn nothing_ready(inputs: &mut Inputs<u32>) -> bool {
        tokio::time::timeout(std::time::Duration::from_millis(50), inputs.next())
            .await
            .is_err()
    }

    #[tokio::test]
    async fn alignment_holds_an_input_more_than_the_drift_ahead_until_the_others_catch_up() {
        let (txs, mut inputs) = aligned(2, 100);
        txs[0]
            .send(Message::Watermark(EventTime(1_000)))
            .await
            .unwrap();
        txs[0].send(data(1_001)).await.unwrap();
        // Input 1 has no watermark yet: input 0 is far ahead, its data must wait.
        assert!(
            nothing_ready(&mut inputs).await,
            "data of the fast input overtook"
        );
        txs[1]
            .send(Message::Watermark(EventTime(850)))
            .await
            .unwrap();
        // 1 000 is still 150 ahead of 850: held.
        assert!(matches!(
            inputs.next().await,
            Some(Message::Watermark(EventTime(850)))
        ));
        assert!(
            nothing_ready(&mut inputs).await,
            "held at 150 ahead with a drift of 100"
        );
        txs[1]
            .send(Message::Watermark(EventTime(900)))
            .await
            .unwrap();
        assert!(matches!(
            inputs.next().await,
            Some(Message::Watermark(EventTime(900)))
        ));
        // Now exactly the drift ahead: released.
        assert_eq!(values(&inputs.next().await.unwrap()), Some(1_001));
    }

    #[tokio::test]
    async fn alignment_never_holds_an_input_whose_barrier_is_awaited() {
        let (txs, mut inputs) = aligned(2, 100);
        txs[0]
            .send(Message::Watermark(EventTime(1_000)))
            .await
            .unwrap();
        txs[0].send(data(1)).await.unwrap();
        txs[0]
            .send(Message::Barrier(CheckpointId(3)))
            .await
            .unwrap();
        txs[1]
            .send(Message::Barrier(CheckpointId(3)))
            .await
            .unwrap();
        // Input 0 is held, but once input 1's barrier arrives input 0 must be read up to its
        // own barrier, or the checkpoint would never complete.
        assert_eq!(values(&inputs.next().await.unwrap()), Some(1));
        assert!(matches!(
            inputs.next().await,
            Some(Message::Barrier(CheckpointId(3)))
        ));
    }

    #[tokio::test]
    async fn alignment_releases_a_held_input_when_the_slow_one_goes_idle_or_closes() {
        let (mut txs, mut inputs) = aligned(3, 100);
        txs[0]
            .send(Message::Watermark(EventTime(5_000)))
            .await
            .unwrap();
        txs[0].send(data(7)).await.unwrap();
        txs[1]
            .send(Message::Watermark(EventTime(10)))
            .await
            .unwrap();
        txs[2]
            .send(Message::Watermark(EventTime(20)))
            .await
            .unwrap();
        assert!(matches!(
            inputs.next().await,
            Some(Message::Watermark(EventTime(10)))
        ));
        assert!(nothing_ready(&mut inputs).await);
        txs[1].send(Message::Idle).await.unwrap();
        assert!(matches!(
            inputs.next().await,
            Some(Message::Watermark(EventTime(20)))
        ));
        assert!(
            nothing_ready(&mut inputs).await,
            "input 2 still holds event time"
        );
        drop(txs.pop()); // input 2 closes
        assert!(matches!(
            inputs.next().await,
            Some(Message::Watermark(EventTime(5_000)))
        ));
        assert_eq!(values(&inputs.next().await.unwrap()), Some(7));
    }

    #[tokio::test]
    async fn without_alignment_a_fast_input_is_read_at_once() {
        let (a_tx, a_rx) = mpsc::channel(16);
        let (_b_tx, b_rx) = mpsc::channel::<Message<u32>>(16);
        let mut inputs = Inputs::aligned(vec![a_rx, b_rx], None);
        a_tx.send(Message::Watermark(EventTime(1_000_000)))
            .await
            .unwrap();
        a_tx.send(data(1)).await.unwrap();
        assert_eq!(values(&inputs.next().await.unwrap()), Some(1));
    }
}
