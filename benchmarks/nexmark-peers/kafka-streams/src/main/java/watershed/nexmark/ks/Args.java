package watershed.nexmark.ks;

import java.util.HashMap;
import java.util.List;
import java.util.Map;

/** `--name value` command-line pairs, the same in both peers. */
final class Args {
  private Args() {}

  static Map<String, String> parse(String[] argv, List<String> required) {
    Map<String, String> m = new HashMap<>();
    for (int i = 0; i < argv.length; i++) {
      if (!argv[i].startsWith("--") || i + 1 >= argv.length) usage("bad argument " + argv[i]);
      m.put(argv[i], argv[++i]);
    }
    for (String r : required) if (!m.containsKey(r)) usage("missing " + r);
    return m;
  }

  private static void usage(String why) {
    System.err.println(why);
    System.err.println("usage: --query qN --brokers HOST:PORT --topic T --events N [--output FILE]");
    System.exit(2);
  }
}
