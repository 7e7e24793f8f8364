//! The `watershed-sql` binary: --help, a script over a JSON-lines file printed on stdout,
//! --explain, and an error with its line and column.

use std::io::Write;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_watershed-sql"))
}

fn script(dir: &std::path::Path) -> std::path::PathBuf {
    let data = dir.join("bids.jsonl");
    let mut f = std::fs::File::create(&data).unwrap();
    for i in 0..40 {
        let (auction, t) = (1000 + i % 2, 1_767_225_600_000i64 + i * 500);
        writeln!(
            f,
            r#"{{"auction": {auction}, "price": {}, "dateTime": {t}}}"#,
            50 + i
        )
        .unwrap();
    }
    writeln!(f, "not json").unwrap();
    let sql = dir.join("hot.sql");
    std::fs::write(
        &sql,
        format!(
            "CREATE TABLE bid (auction BIGINT, price BIGINT, `dateTime` TIMESTAMP(3),
               WATERMARK FOR `dateTime` AS `dateTime` - INTERVAL '4' SECOND)
             WITH ('connector' = 'json-lines', 'path' = '{}');
             CREATE TABLE hot (window_start TIMESTAMP(3), auction BIGINT, bids BIGINT, top BIGINT)
             WITH ('connector' = 'print');
             INSERT INTO hot
             SELECT window_start, auction, COUNT(*), MAX(price)
             FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(`dateTime`), INTERVAL '10' SECOND))
             GROUP BY window_start, window_end, auction;",
            data.display()
        ),
    )
    .unwrap();
    sql
}

#[test]
fn help_names_the_script_and_options() {
    let out = bin().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("<SCRIPT>") && text.contains("--explain"),
        "{text}"
    );
}

#[test]
fn a_script_over_a_json_lines_file_prints_its_windows() {
    let dir = tempfile::tempdir().unwrap();
    let sql = script(dir.path());
    let out = bin().arg(&sql).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("1 rejected"), "{stderr}");
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            r#"{"window_start":1767225600000,"auction":1000,"bids":10,"top":68}"#,
            r#"{"window_start":1767225600000,"auction":1001,"bids":10,"top":69}"#,
            r#"{"window_start":1767225610000,"auction":1000,"bids":10,"top":88}"#,
            r#"{"window_start":1767225610000,"auction":1001,"bids":10,"top":89}"#,
        ]
    );
    let out = bin().arg("--explain").arg(&sql).output().unwrap();
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(
        plan.starts_with("Sink [hot]") && plan.contains("WindowAggregate [TUMBLE(size=10000ms"),
        "{plan}"
    );
}

#[test]
fn an_error_names_its_line_and_column_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let sql = dir.path().join("bad.sql");
    std::fs::write(&sql, "-- no such table\nSELECT x FROM nowhere").unwrap();
    let out = bin().arg(&sql).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown table `nowhere` at line 2, column 15"),
        "{stderr}"
    );
}
