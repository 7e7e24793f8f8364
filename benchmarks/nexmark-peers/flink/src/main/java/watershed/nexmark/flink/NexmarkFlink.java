package watershed.nexmark.flink;

import java.lang.management.ManagementFactory;
import java.time.ZoneOffset;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.configuration.CoreOptions;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.table.api.EnvironmentSettings;
import org.apache.flink.table.api.Table;
import org.apache.flink.table.api.bridge.java.StreamTableEnvironment;
import org.apache.flink.types.Row;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.common.TopicPartition;

/**
 * Runs one Nexmark query in Flink SQL on a local mini-cluster (in this JVM) over the JSON topic written
 * by `nexmark load`, and prints the contract's NEXMARK line.
 *
 * <pre>java -jar nexmark-flink.jar --query q5 --brokers 127.0.0.1:9092 --topic nexmark-events
 *     --events 1000000 [--output results.jsonl] [--parallelism 1]</pre>
 *
 * The Kafka table is bounded ('scan.bounded.mode' = 'latest-offset'), so the job ends by itself: at the
 * end of input the source emits the final watermark and every window fires. Queries follow the
 * nexmark-flink repository's SQL, adapted to the contract's result columns (docs/nexmark.md). Results
 * reach a counting sink (CountingSink), which in --output mode also writes the INSERT / UPDATE_AFTER
 * rows as JSON lines. State is Flink's default heap state; no checkpoints are taken.
 *
 * CPU is the whole JVM's user+sys time at the end (getProcessCpuTime): JVM and mini-cluster start-up
 * are included.
 */
public final class NexmarkFlink {
  private NexmarkFlink() {}

  /** Events with a processing-time-free event-time attribute `ts` and a 4 s out-of-orderness bound. */
  private static final String EVENTS_DDL =
      """
      CREATE TABLE events (
        event_type INT,
        person ROW<id BIGINT, name STRING, emailAddress STRING, creditCard STRING, city STRING,
                   state STRING, `dateTime` BIGINT, extra STRING>,
        auction ROW<id BIGINT, itemName STRING, description STRING, initialBid BIGINT, reserve BIGINT,
                    `dateTime` BIGINT, expires BIGINT, seller BIGINT, category BIGINT, extra STRING>,
        bid ROW<auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING,
                `dateTime` BIGINT, extra STRING>,
        ts AS TO_TIMESTAMP_LTZ(
          CASE WHEN event_type = 0 THEN person.`dateTime`
               WHEN event_type = 1 THEN auction.`dateTime`
               ELSE bid.`dateTime` END, 3),
        WATERMARK FOR ts AS ts - INTERVAL '4' SECOND
      ) WITH (
        'connector' = 'kafka',
        'topic' = '%s',
        'properties.bootstrap.servers' = '%s',
        'properties.group.id' = 'nexmark-flink',
        'scan.startup.mode' = 'earliest-offset',
        'scan.bounded.mode' = 'latest-offset',
        'format' = 'json',
        'json.fail-on-missing-field' = 'false',
        'json.ignore-parse-errors' = 'false'
      )
      """;

  /** One view per event kind, as in nexmark-flink; `ts` is the event-time attribute, `dt` its millis. */
  private static final List<String> VIEWS =
      List.of(
          """
          CREATE VIEW person AS
          SELECT person.id AS id, person.name AS name, person.city AS city, person.state AS state,
                 person.`dateTime` AS dt, ts
          FROM events WHERE event_type = 0
          """,
          """
          CREATE VIEW auction AS
          SELECT auction.id AS id, auction.`dateTime` AS dt, auction.expires AS expires,
                 auction.seller AS seller, auction.category AS category, ts
          FROM events WHERE event_type = 1
          """,
          """
          CREATE VIEW bid AS
          SELECT bid.auction AS auction, bid.bidder AS bidder, bid.price AS price, bid.`dateTime` AS dt, ts
          FROM events WHERE event_type = 2
          """);

  /** The queries; q6 is absent because Flink SQL cannot express it (see UNSUPPORTED). */
  static final Map<String, String> QUERIES = new HashMap<>();

  static {
    QUERIES.put("q0", "SELECT auction, bidder, price, dt AS `dateTime` FROM bid");
    QUERIES.put(
        "q1", "SELECT auction, bidder, CAST(price * 908 / 1000 AS BIGINT) AS price, dt AS `dateTime` FROM bid");
    QUERIES.put("q2", "SELECT auction, price FROM bid WHERE MOD(auction, 123) = 0");
    QUERIES.put(
        "q3",
        """
        SELECT P.name, P.city, P.state, A.id
        FROM auction AS A INNER JOIN person AS P ON A.seller = P.id
        WHERE A.category = 10 AND (P.state = 'OR' OR P.state = 'ID' OR P.state = 'CA')
        """);
    QUERIES.put(
        "q4",
        """
        SELECT Q.category, COUNT(*) AS `count`, SUM(Q.final) AS `sum`
        FROM (
          SELECT MAX(B.price) AS final, A.category
          FROM auction A, bid B
          WHERE A.id = B.auction AND B.dt BETWEEN A.dt AND A.expires
          GROUP BY A.id, A.category
        ) Q
        GROUP BY Q.category
        """);
    QUERIES.put(
        "q5",
        """
        SELECT AuctionBids.starttime AS window_start, AuctionBids.endtime AS window_end,
               AuctionBids.auction, AuctionBids.num AS `count`
        FROM (
          SELECT auction, COUNT(*) AS num, window_start AS starttime, window_end AS endtime
          FROM TABLE(HOP(TABLE bid, DESCRIPTOR(ts), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
          GROUP BY auction, window_start, window_end
        ) AS AuctionBids
        JOIN (
          SELECT MAX(CountBids.num) AS maxn, CountBids.starttime, CountBids.endtime
          FROM (
            SELECT COUNT(*) AS num, window_start AS starttime, window_end AS endtime
            FROM TABLE(HOP(TABLE bid, DESCRIPTOR(ts), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
            GROUP BY auction, window_start, window_end
          ) AS CountBids
          GROUP BY CountBids.starttime, CountBids.endtime
        ) AS MaxBids
        ON AuctionBids.starttime = MaxBids.starttime AND AuctionBids.endtime = MaxBids.endtime
           AND AuctionBids.num >= MaxBids.maxn
        """);
    // nexmark-flink's q7 joins bids to the window max with a BETWEEN on window_end, which also matches a
    // bid at exactly window_end (the next window's first instant); a window join on the same tumbling
    // windows states the contract exactly.
    QUERIES.put(
        "q7",
        """
        SELECT B.window_start, B.auction, B.bidder, B.price, B.dt AS `dateTime`
        FROM (
          SELECT * FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(ts), INTERVAL '10' SECOND))
        ) B
        JOIN (
          SELECT MAX(price) AS maxprice, window_start, window_end
          FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(ts), INTERVAL '10' SECOND))
          GROUP BY window_start, window_end
        ) M
        ON B.window_start = M.window_start AND B.window_end = M.window_end AND B.price = M.maxprice
        """);
    QUERIES.put(
        "q8",
        """
        SELECT P.id, P.name, P.starttime AS window_start
        FROM (
          SELECT id, name, window_start AS starttime, window_end AS endtime
          FROM TABLE(TUMBLE(TABLE person, DESCRIPTOR(ts), INTERVAL '10' SECOND))
          GROUP BY id, name, window_start, window_end
        ) P
        JOIN (
          SELECT seller, window_start AS starttime, window_end AS endtime
          FROM TABLE(TUMBLE(TABLE auction, DESCRIPTOR(ts), INTERVAL '10' SECOND))
          GROUP BY seller, window_start, window_end
        ) A
        ON P.id = A.seller AND P.starttime = A.starttime AND P.endtime = A.endtime
        """);
  }

  static final Map<String, String> UNSUPPORTED =
      Map.of(
          "q6",
          "flink-sql-cannot-express-q6(per-seller-last-10-auctions-needs-an-OVER-window-on-an-updating-input)");

  public static void main(String[] argv) throws Exception {
    Map<String, String> args = parse(argv);
    String query = args.get("--query");
    String brokers = args.get("--brokers");
    String topic = args.get("--topic");
    long n = Long.parseLong(args.get("--events"));
    String output = args.get("--output");
    int parallelism = Integer.parseInt(args.getOrDefault("--parallelism", "1"));
    long wallStart = System.nanoTime();

    if (UNSUPPORTED.containsKey(query)) {
      System.out.printf("NEXMARK system=flink query=%s unsupported=%s%n", query, UNSUPPORTED.get(query));
      return;
    }
    String sql = QUERIES.get(query);
    if (sql == null) usage("unknown query " + query + " (q0..q8)");
    checkTopic(brokers, topic, n);

    Configuration conf = new Configuration();
    conf.set(CoreOptions.DEFAULT_PARALLELISM, parallelism);
    // nexmark-flink's settings for updating aggregations (q4): mini-batches of up to 5000 rows / 2 s.
    conf.setString("table.exec.mini-batch.enabled", "true");
    conf.setString("table.exec.mini-batch.allow-latency", "2 s");
    conf.setString("table.exec.mini-batch.size", "5000");
    StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment(conf);
    env.setParallelism(parallelism);
    StreamTableEnvironment tEnv = StreamTableEnvironment.create(env, EnvironmentSettings.inStreamingMode());
    // Window bounds are LocalDateTime in the session zone; UTC keeps them aligned to the epoch.
    tEnv.getConfig().setLocalTimeZone(ZoneOffset.UTC);
    tEnv.executeSql(String.format(EVENTS_DDL, topic, brokers));
    for (String v : VIEWS) tEnv.executeSql(v);

    Table result = tEnv.sqlQuery(sql);
    List<String> columns = result.getResolvedSchema().getColumnNames();
    DataStream<Row> rows = tEnv.toChangelogStream(result);
    rows.sinkTo(new CountingSink(columns, output)).name("nexmark-results");
    env.execute("nexmark " + query);

    double wall = (System.nanoTime() - wallStart) / 1e9;
    var os = (com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean();
    double cpu = os.getProcessCpuTime() / 1e9;
    double perCpu = n / cpu;
    System.out.printf(
        "NEXMARK system=flink query=%s events=%d results=%d cpu_s=%.3f wall_s=%.3f events_per_cpu_s=%.0f%n",
        query, n, CountingSink.RESULTS.get(), cpu, wall, perCpu);
    System.out.printf("BENCH name=nexmark_%s_flink metric=events_per_cpu_s value=%.0f%n", query, perCpu);
    System.exit(0);
  }

  /**
   * The bounded source reads to the latest offsets, so the topic must hold exactly N events for the
   * reported figure to be right.
   */
  private static void checkTopic(String brokers, String topic, long n) throws Exception {
    Properties p = new Properties();
    p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, brokers);
    try (Admin admin = Admin.create(p)) {
      TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic);
      Map<TopicPartition, OffsetSpec> latest = new HashMap<>();
      d.partitions().forEach(pi -> latest.put(new TopicPartition(topic, pi.partition()), OffsetSpec.latest()));
      long total = 0;
      for (var e : admin.listOffsets(latest).all().get().values()) total += e.offset();
      if (total != n) usage("topic " + topic + " holds " + total + " events, not " + n);
    }
  }

  private static Map<String, String> parse(String[] argv) {
    Map<String, String> m = new HashMap<>();
    for (int i = 0; i < argv.length; i++) {
      if (!argv[i].startsWith("--") || i + 1 >= argv.length) usage("bad argument " + argv[i]);
      m.put(argv[i], argv[++i]);
    }
    for (String r : List.of("--query", "--brokers", "--topic", "--events")) {
      if (!m.containsKey(r)) usage("missing " + r);
    }
    return m;
  }

  private static void usage(String why) {
    System.err.println(why);
    System.err.println(
        "usage: --query qN --brokers HOST:PORT --topic T --events N [--output FILE] [--parallelism P]");
    System.exit(2);
  }
}
