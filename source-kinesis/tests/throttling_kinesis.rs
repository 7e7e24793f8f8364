//! Throttling (issue 6, test 4): a small fault-injecting HTTP proxy in front of the local
//! Kinesis-API server answers a share of GetRecords and PutRecords calls with
//! `ProvisionedThroughputExceededException`, and turns some PutRecords into partial failures
//! (every other entry rejected, the rest forwarded). kinesis-mock does not emulate per-shard
//! limits, hence the proxy. For enhanced fan-out it answers some SubscribeToShard calls with
//! `LimitExceededException` and ends others after their first event with records (what
//! Kinesis does after 5 minutes), passing the event stream on chunk by chunk.

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use watershed_core::connectors::CollectSink;
use watershed_source_kinesis::{Backoff, KinesisSink, KinesisSource, StartPosition};

/// What the proxy injected.
#[derive(Default)]
struct Injected {
    get_records_calls: AtomicU64,
    get_records_throttled: AtomicU64,
    get_records_expired: AtomicU64,
    put_records_calls: AtomicU64,
    put_records_throttled: AtomicU64,
    put_entries_in_throttled_requests: AtomicU64,
    put_entries_failed: AtomicU64,
    subscribe_calls: AtomicU64,
    subscribe_throttled: AtomicU64,
    subscriptions_cut: AtomicU64,
}

/// One HTTP/1.1 message: head lines and body.
struct Message {
    head: Vec<String>,
    body: Vec<u8>,
}

impl Message {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.iter().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// The message with `body` and a matching Content-Length (chunked encoding removed).
    fn with_body(&self, body: Vec<u8>) -> Message {
        let mut head: Vec<String> = self
            .head
            .iter()
            .filter(|l| {
                let name = l
                    .split(':')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                name != "content-length" && name != "transfer-encoding"
            })
            .cloned()
            .collect();
        head.push(format!("Content-Length: {}", body.len()));
        Message { head, body }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = self.head.join("\r\n").into_bytes();
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

/// Reads one message (Content-Length or chunked body); `None` at end of stream.
async fn read_message<R: AsyncBufReadExt + Unpin>(r: &mut R) -> std::io::Result<Option<Message>> {
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        let line = line.trim_end_matches(['\r', '\n']).to_owned();
        if line.is_empty() {
            break;
        }
        head.push(line);
    }
    let mut message = Message {
        head,
        body: Vec::new(),
    };
    if let Some(len) = message.header("content-length") {
        let mut body = vec![0; len.parse().expect("content-length")];
        r.read_exact(&mut body).await?;
        message.body = body;
    } else if message
        .header("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).await?;
            let size = usize::from_str_radix(size.trim(), 16).expect("chunk size");
            let mut chunk = vec![0; size + 2];
            r.read_exact(&mut chunk).await?;
            if size == 0 {
                break;
            }
            message.body.extend_from_slice(&chunk[..size]);
        }
        let body = std::mem::take(&mut message.body);
        message = message.with_body(body);
    }
    Ok(Some(message))
}

fn error_response(code: &str, message: &str) -> Message {
    let body = json!({ "__type": code, "message": message })
        .to_string()
        .into_bytes();
    Message {
        head: vec![
            "HTTP/1.1 400 Bad Request".into(),
            "Content-Type: application/x-amz-json-1.1".into(),
            format!("x-amzn-ErrorType: {code}"),
        ],
        body: Vec::new(),
    }
    .with_body(body)
}

fn throttle_response() -> Message {
    error_response(
        "ProvisionedThroughputExceededException",
        "Rate exceeded for shard (injected by the test proxy)",
    )
}

/// Serves one client connection, forwarding to `upstream` unless a fault is injected.
async fn serve(
    client: TcpStream,
    upstream: String,
    injected: Arc<Injected>,
) -> std::io::Result<()> {
    let (client_read, mut client_write) = client.into_split();
    let mut client_read = BufReader::new(client_read);
    let server = TcpStream::connect(&upstream).await?;
    let (server_read, mut server_write) = server.into_split();
    let mut server_read = BufReader::new(server_read);
    while let Some(request) = read_message(&mut client_read).await? {
        let target = request.header("x-amz-target").unwrap_or("").to_owned();
        if target.ends_with(".SubscribeToShard") {
            let n = injected.subscribe_calls.fetch_add(1, Ordering::SeqCst);
            if n % 3 == 1 {
                injected.subscribe_throttled.fetch_add(1, Ordering::SeqCst);
                let response = error_response(
                    "LimitExceededException",
                    "Rate exceeded for SubscribeToShard (injected by the test proxy)",
                );
                client_write.write_all(&response.bytes()).await?;
                continue;
            }
            // The response is an event stream that lasts as long as the subscription.
            server_write.write_all(&request.bytes()).await?;
            // Every third one ends cleanly after its first event with records, as Kinesis ends
            // subscriptions after 5 minutes: the reader must subscribe again after its last
            // record.
            let cut = n % 3 == 2;
            if !stream_response(&mut server_read, &mut client_write, cut, &injected).await? {
                return Ok(());
            }
            continue;
        }
        let response = if target.ends_with(".GetRecords") {
            let n = injected.get_records_calls.fetch_add(1, Ordering::SeqCst);
            if n == 6 {
                // Once: the iterator "expired" (as after 5 minutes unused).
                injected.get_records_expired.fetch_add(1, Ordering::SeqCst);
                error_response("ExpiredIteratorException", "Iterator expired (injected)")
            } else if n % 3 == 1 {
                injected
                    .get_records_throttled
                    .fetch_add(1, Ordering::SeqCst);
                throttle_response()
            } else {
                forward(&request, &mut server_write, &mut server_read).await?
            }
        } else if target.ends_with(".PutRecords") {
            let n = injected.put_records_calls.fetch_add(1, Ordering::SeqCst);
            match n % 4 {
                1 => {
                    injected
                        .put_records_throttled
                        .fetch_add(1, Ordering::SeqCst);
                    let body: Value = serde_json::from_slice(&request.body).expect("JSON");
                    let entries = body["Records"].as_array().map_or(0, Vec::len) as u64;
                    injected
                        .put_entries_in_throttled_requests
                        .fetch_add(entries, Ordering::SeqCst);
                    throttle_response()
                }
                2 => partial_put(&request, &injected, &mut server_write, &mut server_read).await?,
                _ => forward(&request, &mut server_write, &mut server_read).await?,
            }
        } else {
            forward(&request, &mut server_write, &mut server_read).await?
        };
        client_write.write_all(&response.bytes()).await?;
    }
    Ok(())
}

/// Passes a streamed (chunked) response on chunk by chunk, as it arrives. With `cut`, the body
/// is ended (a zero-size chunk) after the first chunk that carries records, with
/// `Connection: close` so that the client does not reuse the connection, whose upstream is
/// still streaming. Returns whether the connection can serve further requests.
async fn stream_response<R, W>(
    server: &mut R,
    client: &mut W,
    cut: bool,
    injected: &Injected,
) -> std::io::Result<bool>
where
    R: AsyncBufReadExt + Unpin,
    W: AsyncWriteExt + Unpin,
{
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if server.read_line(&mut line).await? == 0 {
            return Ok(false);
        }
        if line == "\r\n" {
            break;
        }
        head.push(line);
    }
    let header = |name: &str| {
        head.iter()
            .any(|l| l.to_ascii_lowercase().starts_with(&format!("{name}:")))
    };
    if !header("transfer-encoding") {
        // A plain answer (an error before the stream started): pass it on whole.
        let message = read_message_after_head(server, head).await?;
        client.write_all(&message.bytes()).await?;
        return Ok(true);
    }
    for line in &head {
        client.write_all(line.as_bytes()).await?;
    }
    if cut {
        client.write_all(b"Connection: close\r\n").await?;
    }
    client.write_all(b"\r\n").await?;
    loop {
        let mut size = String::new();
        if server.read_line(&mut size).await? == 0 {
            return Ok(false);
        }
        let len = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        let mut chunk = vec![0; len + 2];
        server.read_exact(&mut chunk).await?;
        client.write_all(size.as_bytes()).await?;
        client.write_all(&chunk).await?;
        client.flush().await?;
        if len == 0 {
            return Ok(true);
        }
        let marker = b"\"SequenceNumber\"";
        if cut && chunk.windows(marker.len()).any(|w| w == marker) {
            injected.subscriptions_cut.fetch_add(1, Ordering::SeqCst);
            client.write_all(b"0\r\n\r\n").await?;
            client.flush().await?;
            return Ok(false);
        }
    }
}

/// The rest of a Content-Length message whose head lines were already read.
async fn read_message_after_head<R: AsyncBufReadExt + Unpin>(
    r: &mut R,
    head: Vec<String>,
) -> std::io::Result<Message> {
    let mut message = Message {
        head: head
            .into_iter()
            .map(|l| l.trim_end_matches(['\r', '\n']).to_owned())
            .collect(),
        body: Vec::new(),
    };
    if let Some(len) = message.header("content-length") {
        let mut body = vec![0; len.parse().expect("content-length")];
        r.read_exact(&mut body).await?;
        message.body = body;
    }
    Ok(message)
}

async fn forward<W, R>(request: &Message, w: &mut W, r: &mut R) -> std::io::Result<Message>
where
    W: AsyncWriteExt + Unpin,
    R: AsyncBufReadExt + Unpin,
{
    w.write_all(&request.bytes()).await?;
    Ok(read_message(r).await?.expect("upstream answers"))
}

/// Forwards only the even-indexed entries and reports the odd ones as throttled, as Kinesis
/// does for a partially failed PutRecords (results aligned with the request by index).
async fn partial_put<W, R>(
    request: &Message,
    injected: &Injected,
    w: &mut W,
    r: &mut R,
) -> std::io::Result<Message>
where
    W: AsyncWriteExt + Unpin,
    R: AsyncBufReadExt + Unpin,
{
    let mut body: Value = serde_json::from_slice(&request.body).expect("PutRecords JSON");
    let entries = body["Records"].as_array().expect("Records").clone();
    if entries.len() < 2 {
        return forward(request, w, r).await;
    }
    let kept: Vec<Value> = entries.iter().step_by(2).cloned().collect();
    body["Records"] = Value::Array(kept);
    let response = forward(
        &request.with_body(serde_json::to_vec(&body).expect("json")),
        w,
        r,
    )
    .await?;
    let upstream: Value = serde_json::from_slice(&response.body).expect("PutRecords response");
    let mut accepted = upstream["Records"].as_array().expect("Records").iter();
    let mut failed = upstream["FailedRecordCount"].as_u64().unwrap_or(0);
    let results: Vec<Value> = (0..entries.len())
        .map(|i| {
            if i % 2 == 0 {
                accepted.next().expect("one result per kept entry").clone()
            } else {
                failed += 1;
                injected.put_entries_failed.fetch_add(1, Ordering::SeqCst);
                json!({
                    "ErrorCode": "ProvisionedThroughputExceededException",
                    "ErrorMessage": "Rate exceeded for shard (injected by the test proxy)"
                })
            }
        })
        .collect();
    let mut merged = upstream.clone();
    merged["Records"] = Value::Array(results);
    merged["FailedRecordCount"] = json!(failed);
    Ok(response.with_body(serde_json::to_vec(&merged).expect("json")))
}

/// Starts the proxy; returns its endpoint URL.
async fn start_proxy(injected: Arc<Injected>) -> String {
    let upstream = endpoint()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let address = listener.local_addr().expect("proxy address");
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(serve(client, upstream.clone(), injected.clone()));
        }
    });
    format!("http://{address}")
}

/// N7 + N9 + N2: throttled GetRecords are retried with backoff and counted, and an expired
/// iterator is re-acquired after the last record read, without losing or repeating a record; throttled and partially failed PutRecords resend only what was not
/// accepted, so every record arrives (here exactly once, since the proxy's rejected entries
/// never reached the server).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn n7_n9_throttling_is_backed_off_and_counted_and_loses_or_repeats_nothing() {
    const N: usize = 2_000;
    let injected = Arc::new(Injected::default());
    let proxy = start_proxy(injected.clone()).await;
    let stream = TestStream::create("ws-throttle", 2).await;
    let fast = Backoff::new(Duration::from_millis(20), Duration::from_millis(200), 20);

    let records = keyed_records(N, 50, 0);
    let sink = KinesisSink::builder(&stream.name)
        .aws(aws_at(&proxy))
        .backoff(fast.clone())
        .build();
    let sink_stats = sink.stats();
    assert_eq!(write_with(sink, &records).await, N as u64);
    assert!(injected.put_records_throttled.load(Ordering::SeqCst) > 0);
    assert!(injected.put_entries_failed.load(Ordering::SeqCst) > 0);
    assert_eq!(
        sink_stats.throttled(),
        injected.put_entries_failed.load(Ordering::SeqCst)
            + injected
                .put_entries_in_throttled_requests
                .load(Ordering::SeqCst),
        "every entry rejected for throughput is counted as a throttling event"
    );
    assert!(sink_stats.retries() > 0);

    // What the server holds, read directly: each record once.
    let mut stored = Vec::new();
    for (shard, _, _) in stream.open_shards().await {
        stored.extend(read_shard_raw(&stream.client, &stream.name, &shard).await);
    }
    let stored_payloads: HashSet<&str> = stored.iter().map(|(_, p)| p.as_str()).collect();
    assert_eq!(stored.len(), N, "no record was written twice");
    assert_eq!(stored_payloads.len(), N, "every record was written");

    let source = KinesisSource::builder(&stream.name)
        .aws(aws_at(&proxy))
        .start_position(StartPosition::TrimHorizon)
        .max_records_per_call(100)
        .backoff(fast)
        .build();
    let source_stats = source.stats();
    read_each_once("throttle", source, N).await;
    let throttled_reads = injected.get_records_throttled.load(Ordering::SeqCst);
    assert!(throttled_reads > 0, "the proxy throttled some GetRecords");
    assert_eq!(
        source_stats.throttled(),
        throttled_reads,
        "every throttled GetRecords is counted"
    );
    assert_eq!(injected.get_records_expired.load(Ordering::SeqCst), 1);
    assert_eq!(
        source_stats.iterators_renewed(),
        1,
        "the expired iterator was re-acquired after the last record read"
    );
    stream.delete().await;
}

/// N8 + N7 with enhanced fan-out: SubscribeToShard calls answered with LimitExceededException
/// are backed off and counted as throttling; subscriptions that end (cut by the proxy after
/// their first event with records, as Kinesis ends them after 5 minutes) are renewed
/// AFTER_SEQUENCE_NUMBER of the last record read. Records written before and during all that
/// are read exactly once, in order.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs local brokers: scripts/brokers up"]
async fn n8_subscriptions_throttled_or_ended_are_renewed_after_the_last_record_read() {
    const N: usize = 600;
    let injected = Arc::new(Injected::default());
    let proxy = start_proxy(injected.clone()).await;
    let stream = TestStream::create("ws-efo-throttle", 2).await;
    let records = keyed_records(N, 20, 0);
    assert_eq!(
        write(aws(), &stream.name, &records[..N / 2]).await,
        N as u64 / 2
    );

    // kinesis-mock releases a dropped subscription after 2–3 s (ResourceInUse until then).
    let patient = Backoff::new(Duration::from_millis(50), Duration::from_millis(1_000), 30);
    let source = KinesisSource::builder(&stream.name)
        .aws(aws_at(&proxy))
        .start_position(StartPosition::TrimHorizon)
        .enhanced_fan_out("watershed-efo-throttle")
        .backoff(patient)
        .build();
    let stats = source.stats();
    let collected = CollectSink::new();
    let running = start_reading("efo-throttle", source, &collected, |n| n >= N);
    // The second half arrives while subscriptions are being cut and renewed.
    let deadline = std::time::Instant::now() + TIMEOUT;
    while collected.records().is_empty() {
        assert!(std::time::Instant::now() < deadline, "nothing read");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        write(aws(), &stream.name, &records[N / 2..]).await,
        N as u64 / 2
    );
    running.finish().await;

    assert_once_and_ordered(&collected.values(), N);
    let throttled = injected.subscribe_throttled.load(Ordering::SeqCst);
    let cut = injected.subscriptions_cut.load(Ordering::SeqCst);
    assert!(throttled > 0, "the proxy throttled some subscriptions");
    assert!(cut > 0, "the proxy ended some subscriptions early");
    assert_eq!(
        stats.throttled(),
        throttled,
        "every throttled SubscribeToShard is counted"
    );
    assert_eq!(
        stats.subscriptions(),
        injected.subscribe_calls.load(Ordering::SeqCst),
        "every SubscribeToShard went through the proxy"
    );
    stream.delete().await;
}
