package watershed.nexmark.flink;

import java.io.BufferedWriter;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Instant;
import java.time.LocalDateTime;
import java.time.ZoneOffset;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.flink.api.connector.sink2.Sink;
import org.apache.flink.api.connector.sink2.SinkWriter;
import org.apache.flink.api.connector.sink2.WriterInitContext;
import org.apache.flink.types.Row;
import org.apache.flink.types.RowKind;

/**
 * The results sink: counts result rows, and with an output path writes each INSERT / UPDATE_AFTER row
 * as one JSON object with the query's column names. Retractions (UPDATE_BEFORE / DELETE) are neither
 * counted nor written: the comparison takes the final row per key, which is the last UPDATE_AFTER.
 *
 * <p>The mini-cluster runs in this JVM, so the count is a static the main thread reads after the job.
 * Writers append to one file, which is only right at parallelism 1 (the default) for the sink.
 */
final class CountingSink implements Sink<Row> {
  private static final long serialVersionUID = 1L;

  /** Result rows counted by all writers of this JVM. */
  static final AtomicLong RESULTS = new AtomicLong();

  private final List<String> columns;
  private final String output;

  CountingSink(List<String> columns, String output) {
    this.columns = List.copyOf(columns);
    this.output = output;
  }

  @Override
  public SinkWriter<Row> createWriter(WriterInitContext context) throws IOException {
    BufferedWriter out =
        output == null
            ? null
            : Files.newBufferedWriter(
                Path.of(output),
                StandardCharsets.UTF_8,
                StandardOpenOption.CREATE,
                StandardOpenOption.TRUNCATE_EXISTING,
                StandardOpenOption.WRITE);
    return new SinkWriter<>() {
      private long count;

      @Override
      public void write(Row row, Context context) throws IOException {
        RowKind kind = row.getKind();
        if (kind != RowKind.INSERT && kind != RowKind.UPDATE_AFTER) return;
        count++;
        if (out != null) {
          out.write(json(row));
          out.write('\n');
        }
      }

      @Override
      public void flush(boolean endOfInput) throws IOException {
        if (out != null) out.flush();
      }

      @Override
      public void close() throws IOException {
        RESULTS.addAndGet(count);
        if (out != null) out.close();
      }
    };
  }

  private String json(Row row) {
    StringBuilder b = new StringBuilder(96).append('{');
    for (int i = 0; i < columns.size(); i++) {
      if (i > 0) b.append(',');
      b.append('"').append(columns.get(i)).append("\":");
      Object v = row.getField(i);
      if (v == null) b.append("null");
      else if (v instanceof Number) b.append(v);
      else if (v instanceof LocalDateTime t) b.append(t.toInstant(ZoneOffset.UTC).toEpochMilli());
      else if (v instanceof Instant t) b.append(t.toEpochMilli());
      else quote(b, v.toString());
    }
    return b.append('}').toString();
  }

  private static void quote(StringBuilder b, String s) {
    b.append('"');
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
    b.append('"');
  }
}
