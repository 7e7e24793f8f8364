//! Every example binary explains itself with `--help` and refuses an unknown flag with a
//! message and exit status 2, before it touches a broker.

use std::process::Command;

fn run(bin: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new(bin).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Rule: `--help` exits 0 and names the options a user needs.
#[test]
fn help_lists_the_options_of_every_example() {
    let cases: [(&str, &[&str]); 5] = [
        (
            env!("CARGO_BIN_EXE_hybrid"),
            &["--brokers", "--checkpoints", "--metrics", "--id"],
        ),
        (
            env!("CARGO_BIN_EXE_primary"),
            &["--stream", "--endpoint", "--checkpoints"],
        ),
        (
            env!("CARGO_BIN_EXE_loadgen"),
            &["kafka", "kinesis", "--events", "--rate"],
        ),
        (
            env!("CARGO_BIN_EXE_quickstart"),
            &["--out", "--events", "--fresh"],
        ),
        (
            env!("CARGO_BIN_EXE_enrichment"),
            &["--refresh-ms", "--events"],
        ),
    ];
    for (bin, options) in cases {
        let (code, text) = run(bin, &["--help"]);
        assert_eq!(code, 0, "{bin} --help:\n{text}");
        for option in options {
            assert!(
                text.contains(option),
                "{bin} --help names {option}:\n{text}"
            );
        }
    }
}

/// Rule: an unknown flag or a malformed value exits 2 with a message naming it.
#[test]
fn a_wrong_argument_exits_2_naming_it() {
    let (code, text) = run(env!("CARGO_BIN_EXE_hybrid"), &["--no-such-flag"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("--no-such-flag"), "{text}");
    let (code, text) = run(env!("CARGO_BIN_EXE_hybrid"), &["--metrics", "9464"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("`9464`"), "{text}");
    let (code, text) = run(env!("CARGO_BIN_EXE_loadgen"), &["pulsar"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("pulsar"), "{text}");
}
