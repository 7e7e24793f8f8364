package watershed.nexmark.ks;

import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.ObjectReader;
import java.io.IOException;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.streams.processor.TimestampExtractor;

/**
 * The Nexmark events as they are on the topic (docs/nexmark.md): one JSON object per event with exactly
 * one of person/auction/bid non-null. Jackson binds them to these plain classes; unknown fields are
 * ignored so the loader may add fields without breaking the peer.
 */
public final class Events {
  private Events() {}

  /** One topic record. */
  public static final class Event {
    /** 0 person, 1 auction, 2 bid. */
    public int event_type;
    /** Set when event_type == 0. */
    public Person person;
    /** Set when event_type == 1. */
    public Auction auction;
    /** Set when event_type == 2. */
    public Bid bid;

    /** Event time in epoch milliseconds, whichever kind this is. */
    public long dateTime() {
      if (bid != null) return bid.dateTime;
      if (auction != null) return auction.dateTime;
      if (person != null) return person.dateTime;
      throw new IllegalStateException("event with no person, auction or bid");
    }
  }

  /** A new user. */
  public static final class Person {
    public long id;
    public String name;
    public String emailAddress;
    public String creditCard;
    public String city;
    public String state;
    public long dateTime;
    public String extra;
  }

  /** A new auction. */
  public static final class Auction {
    public long id;
    public String itemName;
    public String description;
    public long initialBid;
    public long reserve;
    public long dateTime;
    public long expires;
    public long seller;
    public long category;
    public String extra;
  }

  /** A bid on an auction. */
  public static final class Bid {
    public long auction;
    public long bidder;
    public long price;
    public String channel;
    public String url;
    public long dateTime;
    public String extra;
  }

  /** Parses a record value; a malformed record fails the application (the topic is ours, so it is a bug). */
  public static final class EventDeserializer implements Deserializer<Event> {
    private final ObjectReader reader =
        new ObjectMapper()
            .configure(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES, false)
            .readerFor(Event.class);

    @Override
    public Event deserialize(String topic, byte[] data) {
      try {
        return reader.readValue(data);
      } catch (IOException e) {
        throw new SerializationException("malformed Nexmark event on " + topic, e);
      }
    }
  }

  /**
   * Event time is the event's own dateTime (the loader also sets the record timestamp to it, but the
   * payload is the contract).
   */
  public static final class EventTimeExtractor implements TimestampExtractor {
    @Override
    public long extract(ConsumerRecord<Object, Object> record, long partitionTime) {
      return ((Event) record.value()).dateTime();
    }
  }

  /** JSON string literal for the result rows. */
  public static String quote(String s) {
    StringBuilder b = new StringBuilder(s.length() + 2).append('"');
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      switch (c) {
        case '"' -> b.append("\\\"");
        case '\\' -> b.append("\\\\");
        case '\n' -> b.append("\\n");
        case '\r' -> b.append("\\r");
        case '\t' -> b.append("\\t");
        default -> {
          if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
          else b.append(c);
        }
      }
    }
    return b.append('"').toString();
  }
}
