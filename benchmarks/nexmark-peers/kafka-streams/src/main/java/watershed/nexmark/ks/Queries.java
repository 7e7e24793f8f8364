package watershed.nexmark.ks;

import static watershed.nexmark.ks.Events.quote;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.CountDownLatch;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import watershed.nexmark.ks.Events.Auction;
import watershed.nexmark.ks.Events.Bid;
import watershed.nexmark.ks.Events.Event;
import watershed.nexmark.ks.Events.Person;

/**
 * Nexmark q0-q8 (contract in docs/nexmark.md) as Kafka Streams topologies.
 *
 * <p>q0-q2 are stateless and written in the DSL (filter / mapValues / foreach). q3-q8 are one Processor
 * API processor each, holding its state in plain Java collections: this is favourable to Kafka Streams
 * (no state-store serialisation, no changelog topics, no repartition topics through the broker), which
 * is the fair direction for a benchmark that Watershed is meant to win.
 *
 * <p>End of input: Kafka Streams has no bounded source, so every topology counts the events it has
 * processed; after the N-th it fires every window still open (as a final watermark would) and releases
 * the latch the main thread waits on. Windows otherwise fire when the watermark, max event time seen
 * minus the 4 s out-of-orderness bound, passes their end; nothing within the bound is late.
 */
final class Queries {
  private Queries() {}

  static final long OUT_OF_ORDERNESS_MS = 4_000;

  /** Builds the topology for query q on src; done is released once all N events have been handled. */
  static void build(String q, KStream<byte[], Event> src, long n, Sink sink, CountDownLatch done) {
    switch (q) {
      case "q0" -> endMarker(src, n, done)
          .filter((k, e) -> e.bid != null)
          .mapValues(e -> new BidRow(e.bid.auction, e.bid.bidder, e.bid.price, e.bid.dateTime))
          .foreach((k, r) -> sink.emit(r::json));
      case "q1" -> endMarker(src, n, done)
          .filter((k, e) -> e.bid != null)
          .mapValues(
              e -> new BidRow(e.bid.auction, e.bid.bidder, e.bid.price * 908 / 1000, e.bid.dateTime))
          .foreach((k, r) -> sink.emit(r::json));
      case "q2" -> endMarker(src, n, done)
          .filter((k, e) -> e.bid != null && e.bid.auction % 123 == 0)
          .mapValues(e -> new long[] {e.bid.auction, e.bid.price})
          .foreach((k, r) -> sink.emit(() -> "{\"auction\":" + r[0] + ",\"price\":" + r[1] + "}"));
      case "q3" -> src.process(() -> new Q3(n, sink, done));
      case "q4" -> src.process(() -> new WinningPrice(n, sink, done, false));
      case "q5" -> src.process(() -> new Q5(n, sink, done));
      case "q6" -> src.process(() -> new WinningPrice(n, sink, done, true));
      case "q7" -> src.process(() -> new Q7(n, sink, done));
      case "q8" -> src.process(() -> new Q8(n, sink, done));
      default -> throw new IllegalArgumentException("unknown query " + q + " (q0..q8)");
    }
  }

  /** The q0/q1 result row. */
  record BidRow(long auction, long bidder, long price, long dateTime) {
    String json() {
      return "{\"auction\":" + auction + ",\"bidder\":" + bidder + ",\"price\":" + price
          + ",\"dateTime\":" + dateTime + "}";
    }
  }

  /** Forwards every event downstream, then counts it: after the N-th has gone through, releases done. */
  private static KStream<byte[], Event> endMarker(KStream<byte[], Event> src, long n, CountDownLatch done) {
    return src.process(
        () ->
            new Processor<byte[], Event, byte[], Event>() {
              private ProcessorContext<byte[], Event> ctx;
              private long seen;

              @Override
              public void init(ProcessorContext<byte[], Event> context) {
                ctx = context;
              }

              @Override
              public void process(Record<byte[], Event> r) {
                ctx.forward(r);
                if (++seen == n) done.countDown();
              }
            });
  }

  /** A stateful query: handles each event, and after the N-th fires whatever is still pending. */
  abstract static class Query implements Processor<byte[], Event, Void, Void> {
    final long n;
    final Sink sink;
    final CountDownLatch done;
    long seen;
    long maxTs = Long.MIN_VALUE;

    Query(long n, Sink sink, CountDownLatch done) {
      this.n = n;
      this.sink = sink;
      this.done = done;
    }

    @Override
    public final void process(Record<byte[], Event> r) {
      Event e = r.value();
      long ts = r.timestamp();
      if (ts > maxTs) maxTs = ts;
      handle(e, ts);
      if (++seen == n) {
        finish();
        done.countDown();
      }
    }

    /** Windows whose end is at most this have fired: max event time minus the out-of-orderness bound. */
    long fireUpTo() {
      return maxTs == Long.MIN_VALUE ? Long.MIN_VALUE : maxTs - OUT_OF_ORDERNESS_MS;
    }

    abstract void handle(Event e, long ts);

    /** End of input: behave as if the watermark had jumped to +infinity. */
    abstract void finish();
  }

  /** q3: auctions in category 10 joined with sellers from OR, ID or CA, whichever arrives first. */
  static final class Q3 extends Query {
    private final Map<Long, Person> persons = new HashMap<>();
    private final Map<Long, List<Long>> waitingAuctions = new HashMap<>();

    Q3(long n, Sink sink, CountDownLatch done) {
      super(n, sink, done);
    }

    @Override
    void handle(Event e, long ts) {
      if (e.person != null) {
        Person p = e.person;
        if (!"OR".equals(p.state) && !"ID".equals(p.state) && !"CA".equals(p.state)) return;
        persons.put(p.id, p);
        List<Long> waiting = waitingAuctions.remove(p.id);
        if (waiting != null) for (long a : waiting) emit(p, a);
      } else if (e.auction != null && e.auction.category == 10) {
        Person p = persons.get(e.auction.seller);
        if (p != null) emit(p, e.auction.id);
        else waitingAuctions.computeIfAbsent(e.auction.seller, k -> new ArrayList<>()).add(e.auction.id);
      }
    }

    private void emit(Person p, long auction) {
      sink.emit(() -> "{\"name\":" + quote(p.name) + ",\"city\":" + quote(p.city) + ",\"state\":"
          + quote(p.state) + ",\"id\":" + auction + "}");
    }

    @Override
    void finish() {}
  }

  /**
   * q4 and q6: an auction's winning price is the max price of its bids within [dateTime, expires].
   * Bids may arrive before their auction (out of order), so they wait for it. Every change of a
   * category's (q4) or seller's (q6) aggregate is emitted as an update; the final one per key counts.
   */
  static final class WinningPrice extends Query {
    private final boolean perSeller;
    private final Map<Long, Auction> auctions = new HashMap<>();
    private final Map<Long, Long> winning = new HashMap<>();
    private final Map<Long, List<Bid>> earlyBids = new HashMap<>();
    /** q4: category -> {count, sum}. */
    private final Map<Long, long[]> categories = new HashMap<>();
    /** q6: seller -> its last 10 auctions with a winning price, ascending by (expires, id). */
    private final Map<Long, List<long[]>> sellers = new HashMap<>();

    WinningPrice(long n, Sink sink, CountDownLatch done, boolean perSeller) {
      super(n, sink, done);
      this.perSeller = perSeller;
    }

    @Override
    void handle(Event e, long ts) {
      if (e.auction != null) {
        Auction a = e.auction;
        auctions.put(a.id, a);
        List<Bid> early = earlyBids.remove(a.id);
        if (early != null) for (Bid b : early) bid(a, b);
      } else if (e.bid != null) {
        Auction a = auctions.get(e.bid.auction);
        if (a != null) bid(a, e.bid);
        else earlyBids.computeIfAbsent(e.bid.auction, k -> new ArrayList<>()).add(e.bid);
      }
    }

    private void bid(Auction a, Bid b) {
      if (b.dateTime < a.dateTime || b.dateTime > a.expires) return;
      Long old = winning.get(a.id);
      if (old != null && old >= b.price) return;
      winning.put(a.id, b.price);
      if (perSeller) sellerUpdate(a, b.price);
      else categoryUpdate(a.category, old, b.price);
    }

    private void categoryUpdate(long category, Long old, long price) {
      long[] agg = categories.computeIfAbsent(category, k -> new long[2]);
      if (old == null) {
        agg[0]++;
        agg[1] += price;
      } else {
        agg[1] += price - old;
      }
      long count = agg[0];
      long sum = agg[1];
      sink.emit(() -> "{\"category\":" + category + ",\"count\":" + count + ",\"sum\":" + sum + "}");
    }

    private void sellerUpdate(Auction a, long price) {
      List<long[]> last = sellers.computeIfAbsent(a.seller, k -> new ArrayList<>(11));
      boolean found = false;
      for (long[] x : last) {
        if (x[1] == a.id) {
          x[2] = price;
          found = true;
          break;
        }
      }
      if (!found) {
        int i = last.size();
        while (i > 0 && before(a.expires, a.id, last.get(i - 1))) i--;
        if (last.size() == 10 && i == 0) return; // older than all ten kept: never among the last 10
        last.add(i, new long[] {a.expires, a.id, price});
        if (last.size() > 10) last.remove(0);
      }
      long count = last.size();
      long sum = 0;
      for (long[] x : last) sum += x[2];
      long s = sum;
      long seller = a.seller;
      sink.emit(() -> "{\"seller\":" + seller + ",\"count\":" + count + ",\"sum\":" + s + "}");
    }

    private static boolean before(long expires, long id, long[] x) {
      return expires < x[0] || (expires == x[0] && id < x[1]);
    }

    @Override
    void finish() {}
  }

  /** q5: sliding 10 s / 2 s windows over bids; per window the auction(s) with the most bids. */
  static final class Q5 extends Query {
    static final long SIZE = 10_000;
    static final long SLIDE = 2_000;
    private final TreeMap<Long, Map<Long, long[]>> windows = new TreeMap<>();
    private long firedBelow = Long.MIN_VALUE;

    Q5(long n, Sink sink, CountDownLatch done) {
      super(n, sink, done);
    }

    @Override
    void handle(Event e, long ts) {
      if (e.bid != null) {
        long last = Math.floorDiv(ts, SLIDE) * SLIDE;
        for (long start = last; start > ts - SIZE; start -= SLIDE) {
          if (start < firedBelow) break; // already fired: late (cannot happen within the bound)
          windows.computeIfAbsent(start, k -> new HashMap<>()).computeIfAbsent(e.bid.auction, k -> new long[1])[0]++;
        }
      }
      fire(fireUpTo());
    }

    private void fire(long upTo) {
      while (!windows.isEmpty() && (upTo == Long.MAX_VALUE || windows.firstKey() + SIZE <= upTo)) {
        Map.Entry<Long, Map<Long, long[]>> w = windows.pollFirstEntry();
        long start = w.getKey();
        firedBelow = start + 1;
        long max = 0;
        for (long[] c : w.getValue().values()) max = Math.max(max, c[0]);
        for (Map.Entry<Long, long[]> c : w.getValue().entrySet()) {
          if (c.getValue()[0] == max) {
            long auction = c.getKey();
            long count = max;
            sink.emit(() -> "{\"window_start\":" + start + ",\"window_end\":" + (start + SIZE)
                + ",\"auction\":" + auction + ",\"count\":" + count + "}");
          }
        }
      }
    }

    @Override
    void finish() {
      fire(Long.MAX_VALUE);
    }
  }

  /** q7: tumbling 10 s windows over bids; every bid whose price equals its window's max price. */
  static final class Q7 extends Query {
    static final long SIZE = 10_000;

    /** The window's max price so far and the bids at that price. */
    static final class Max {
      long price = Long.MIN_VALUE;
      final List<Bid> bids = new ArrayList<>();
    }

    private final TreeMap<Long, Max> windows = new TreeMap<>();
    private long firedBelow = Long.MIN_VALUE;

    Q7(long n, Sink sink, CountDownLatch done) {
      super(n, sink, done);
    }

    @Override
    void handle(Event e, long ts) {
      if (e.bid != null) {
        long start = Math.floorDiv(ts, SIZE) * SIZE;
        if (start >= firedBelow) {
          Max m = windows.computeIfAbsent(start, k -> new Max());
          if (e.bid.price > m.price) {
            m.price = e.bid.price;
            m.bids.clear();
          }
          if (e.bid.price == m.price) m.bids.add(e.bid);
        }
      }
      fire(fireUpTo());
    }

    private void fire(long upTo) {
      while (!windows.isEmpty() && (upTo == Long.MAX_VALUE || windows.firstKey() + SIZE <= upTo)) {
        Map.Entry<Long, Max> w = windows.pollFirstEntry();
        long start = w.getKey();
        firedBelow = start + 1;
        for (Bid b : w.getValue().bids) {
          sink.emit(() -> "{\"window_start\":" + start + ",\"auction\":" + b.auction + ",\"bidder\":"
              + b.bidder + ",\"price\":" + b.price + ",\"dateTime\":" + b.dateTime + "}");
        }
      }
    }

    @Override
    void finish() {
      fire(Long.MAX_VALUE);
    }
  }

  /** q8: tumbling 10 s windows; persons who opened an auction in the window they registered in. */
  static final class Q8 extends Query {
    static final long SIZE = 10_000;

    /** One window's new persons and the sellers of its auctions. */
    static final class Window {
      final Map<Long, String> persons = new HashMap<>();
      final HashSet<Long> sellers = new HashSet<>();
    }

    private final TreeMap<Long, Window> windows = new TreeMap<>();
    private long firedBelow = Long.MIN_VALUE;

    Q8(long n, Sink sink, CountDownLatch done) {
      super(n, sink, done);
    }

    @Override
    void handle(Event e, long ts) {
      if (e.person != null || e.auction != null) {
        long start = Math.floorDiv(ts, SIZE) * SIZE;
        if (start >= firedBelow) {
          Window w = windows.computeIfAbsent(start, k -> new Window());
          if (e.person != null) w.persons.put(e.person.id, e.person.name);
          else w.sellers.add(e.auction.seller);
        }
      }
      fire(fireUpTo());
    }

    private void fire(long upTo) {
      while (!windows.isEmpty() && (upTo == Long.MAX_VALUE || windows.firstKey() + SIZE <= upTo)) {
        Map.Entry<Long, Window> w = windows.pollFirstEntry();
        long start = w.getKey();
        firedBelow = start + 1;
        for (Map.Entry<Long, String> p : w.getValue().persons.entrySet()) {
          if (w.getValue().sellers.contains(p.getKey())) {
            sink.emit(() -> "{\"id\":" + p.getKey() + ",\"name\":" + quote(p.getValue())
                + ",\"window_start\":" + start + "}");
          }
        }
      }
    }

    @Override
    void finish() {
      fire(Long.MAX_VALUE);
    }
  }
}
