package watershed.nexmark.ks;

import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.KStream;
import watershed.nexmark.ks.Events.Event;
import watershed.nexmark.ks.Events.EventDeserializer;
import watershed.nexmark.ks.Events.EventTimeExtractor;

/**
 * Runs one Nexmark query in Kafka Streams over the JSON topic written by `nexmark load`, stops by itself
 * once all N events are processed and all results emitted, and prints the contract's NEXMARK line.
 *
 * <pre>java -jar nexmark-kafka-streams.jar --query q5 --brokers 127.0.0.1:9092 --topic nexmark-events
 *     --events 1000000 [--output results.jsonl]</pre>
 *
 * CPU is the whole JVM's user+sys time at the end (getProcessCpuTime), JVM start-up included, one
 * stream thread, one partition.
 */
public final class NexmarkKafkaStreams {
  private NexmarkKafkaStreams() {}

  public static void main(String[] argv) throws Exception {
    Map<String, String> args = Args.parse(argv, List.of("--query", "--brokers", "--topic", "--events"));
    String query = args.get("--query");
    String brokers = args.get("--brokers");
    String topic = args.get("--topic");
    long n = Long.parseLong(args.get("--events"));
    Path output = args.containsKey("--output") ? Path.of(args.get("--output")) : null;
    long wallStart = System.nanoTime();

    checkTopic(brokers, topic, n);

    String appId = "nexmark-ks-" + query + "-" + System.currentTimeMillis();
    Properties props = new Properties();
    props.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
    props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, brokers);
    props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
    props.put(StreamsConfig.STATE_DIR_CONFIG, Files.createTempDirectory("nexmark-ks").toString());
    props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");

    StreamsBuilder builder = new StreamsBuilder();
    KStream<byte[], Event> src =
        builder.stream(
            topic,
            Consumed.with(Serdes.ByteArray(), Serdes.serdeFrom(
                    (t, e) -> {
                      throw new UnsupportedOperationException("events are only read");
                    },
                    new EventDeserializer()))
                .withTimestampExtractor(new EventTimeExtractor()));
    CountDownLatch done = new CountDownLatch(1);
    AtomicReference<Throwable> failure = new AtomicReference<>();
    try (Sink sink = new Sink(output)) {
      Queries.build(query, src, n, sink, done);
      try (KafkaStreams streams = new KafkaStreams(builder.build(), props)) {
        streams.setUncaughtExceptionHandler(
            e -> {
              failure.set(e);
              done.countDown();
              return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
            });
        streams.start();
        if (!done.await(2, TimeUnit.HOURS)) throw new IllegalStateException("timed out waiting for " + n + " events");
        // The per-run consumer group stays on the broker (it never commits much and expires as any
        // empty group does; scripts/brokers up starts Kafka empty).
        streams.close(Duration.ofSeconds(30));
        streams.cleanUp();
      }
      if (failure.get() != null) throw new IllegalStateException("Kafka Streams failed", failure.get());
      sink.close();
      double wall = (System.nanoTime() - wallStart) / 1e9;
      double cpu = processCpuSeconds();
      double perCpu = n / cpu;
      System.out.printf(
          "NEXMARK system=kafka-streams query=%s events=%d results=%d cpu_s=%.3f wall_s=%.3f events_per_cpu_s=%.0f%n",
          query, n, sink.results(), cpu, wall, perCpu);
      System.out.printf("BENCH name=nexmark_%s_kafka_streams metric=events_per_cpu_s value=%.0f%n", query, perCpu);
    }
    System.exit(0);
  }

  /** User+sys CPU of this whole JVM so far. */
  static double processCpuSeconds() {
    var os = (com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean();
    return os.getProcessCpuTime() / 1e9;
  }

  /**
   * The end-of-input rule counts events in one processor instance, so the topic must have exactly one
   * partition and at least N records; fail fast instead of waiting forever.
   */
  private static void checkTopic(String brokers, String topic, long n) throws Exception {
    Properties p = new Properties();
    p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, brokers);
    try (Admin admin = Admin.create(p)) {
      TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic);
      if (d.partitions().size() != 1) {
        throw new IllegalArgumentException(
            "topic " + topic + " has " + d.partitions().size() + " partitions; the Kafka Streams peer needs 1");
      }
      TopicPartition tp = new TopicPartition(topic, 0);
      long end = admin.listOffsets(Map.of(tp, OffsetSpec.latest())).all().get().get(tp).offset();
      if (end < n) throw new IllegalArgumentException("topic " + topic + " has " + end + " events, fewer than " + n);
    }
  }
}
