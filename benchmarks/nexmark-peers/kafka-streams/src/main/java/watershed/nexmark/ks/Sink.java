package watershed.nexmark.ks;

import java.io.BufferedWriter;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.function.Supplier;

/**
 * Where result rows go. In throughput mode it only counts (the row is never even formatted), as
 * Watershed's bench does without --output; with --output every row is written as one JSON line.
 * Only the single stream thread calls emit, so no synchronisation is needed until close.
 */
public final class Sink implements AutoCloseable {
  private final BufferedWriter out;
  private long results;

  /** A counting sink, or a JSON-lines file sink when path is non-null. */
  public Sink(Path path) throws IOException {
    this.out = path == null ? null : Files.newBufferedWriter(path, StandardCharsets.UTF_8);
  }

  /** One result row; the supplier is called only when rows are written. */
  public void emit(Supplier<String> row) {
    results++;
    if (out != null) {
      try {
        out.write(row.get());
        out.write('\n');
      } catch (IOException e) {
        throw new UncheckedIOException(e);
      }
    }
  }

  /** Rows emitted so far (updates included). */
  public long results() {
    return results;
  }

  @Override
  public void close() throws IOException {
    if (out != null) out.close();
  }
}
