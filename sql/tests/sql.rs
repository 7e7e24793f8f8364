//! SQL end to end on in-process tables: expressions, windows, errors with line and column,
//! EXPLAIN, the JSON-lines connector, SQL mixed with Rust, and random input that must never panic.

use proptest::prelude::*;
use std::io::Write;
use watershed_core::connectors::CollectSink;
use watershed_core::*;
use watershed_operators::prelude::*;
use watershed_sql::{sql_query, Row, SqlContext, SqlError, Value};

const NUMBERS: &str = "CREATE TABLE n (x BIGINT, f DOUBLE, s STRING, b BOOLEAN, ts TIMESTAMP(3),
    WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
    WITH ('connector' = 'generator', 'number-of-rows' = '25', 'interval-ms' = '1000')";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn pipeline() -> Pipeline {
    Pipeline::new(
        PipelineConfig::new("sql-test")
            .checkpoint_store(CheckpointStore::memory())
            .error_policy(ErrorPolicy::Skip)
            .handle_signals(false),
    )
}

/// Runs `query` over the 25-row generator table `n` and returns its rows' values.
fn rows(query: &str) -> Vec<Vec<Value>> {
    runtime().block_on(async {
        let p = pipeline();
        let mut ctx = SqlContext::new(&p);
        ctx.execute(NUMBERS).unwrap();
        let out = CollectSink::<Row>::new();
        ctx.register_sink("out", out.clone());
        ctx.execute(&format!("INSERT INTO out {query}")).unwrap();
        p.run().await.unwrap();
        out.values().into_iter().map(|r| r.values).collect()
    })
}

fn error(sql: &str) -> SqlError {
    let p = pipeline();
    let mut ctx = SqlContext::new(&p);
    ctx.execute(NUMBERS).unwrap();
    ctx.register_sink("out", CollectSink::<Row>::new());
    match ctx.execute(sql) {
        Err(e) => e,
        Ok(o) => panic!("accepted: {sql} -> {o:?}"),
    }
}

fn ints(v: &[i64]) -> Vec<Value> {
    v.iter().map(|i| Value::Int(*i)).collect()
}

#[test]
fn projections_filters_and_functions() {
    let got = rows(
        "SELECT x * 2 + 1, MOD(x, 7), x / 4, -x, x % 5 FROM n WHERE x BETWEEN 10 AND 12 OR x IN (20, 21)",
    );
    assert_eq!(
        got,
        vec![
            ints(&[21, 3, 2, -10, 0]),
            ints(&[23, 4, 2, -11, 1]),
            ints(&[25, 5, 3, -12, 2]),
            ints(&[41, 6, 5, -20, 0]),
            ints(&[43, 0, 5, -21, 1]),
        ]
    );
    let got = rows(
        "SELECT UPPER(s) || '!', LOWER('AbC'), CONCAT(s, '/', x), SUBSTRING(s FROM 3 FOR 2), CHAR_LENGTH(s), \
         CASE WHEN x < 2 THEN 'small' WHEN x < 4 THEN 'mid' ELSE 'big' END, CASE x WHEN 0 THEN 1.5 ELSE 2 END \
         FROM n WHERE x < 5 AND NOT b",
    );
    let s = |v: &str| Value::Str(v.into());
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0],
        vec![
            s("S-1!"),
            s("abc"),
            s("s-1/1"),
            s("1"),
            Value::Int(3),
            s("small"),
            Value::Float(2.0)
        ]
    );
    assert_eq!(got[1][5], s("mid"));
}

#[test]
fn like_matches_patterns() {
    let got = rows("SELECT x FROM n WHERE s LIKE 's-1_' AND s NOT LIKE '%3'");
    assert_eq!(
        got,
        [10, 11, 12, 14, 15, 16, 17, 18, 19].map(|x| ints(&[x]))
    );
}

#[test]
fn casts_comparisons_and_nulls() {
    let got = rows(
        "SELECT CAST(x AS STRING), CAST(f * 1.5 AS BIGINT), CAST('7' AS INT) + x, x > f, s = 's-3', \
         CAST(NULL AS BIGINT) IS NULL, NULL + x, ts, CAST(ts AS BIGINT) FROM n WHERE x = 3",
    );
    assert_eq!(
        got,
        vec![vec![
            Value::Str("3".into()),
            Value::Int(4),
            Value::Int(10),
            Value::Bool(false),
            Value::Bool(true),
            Value::Bool(true),
            Value::Null,
            Value::Timestamp(3000),
            Value::Int(3000),
        ]]
    );
}

#[test]
fn rows_whose_expressions_fail_go_to_the_error_path() {
    runtime().block_on(async {
        let p = pipeline();
        let mut ctx = SqlContext::new(&p);
        ctx.execute(NUMBERS).unwrap();
        let out = CollectSink::<Row>::new();
        ctx.register_sink("out", out.clone());
        ctx.execute("INSERT INTO out SELECT 100 / (x - 3) AS q FROM n")
            .unwrap();
        let summary = p.run().await.unwrap();
        assert_eq!(summary.rejected, 1, "the row with x = 3 divides by zero");
        assert_eq!(out.values().len(), 24);
    });
}

#[test]
fn tumble_and_hop_windows_aggregate_per_key() {
    // ts = x seconds: windows of 10 s hold x in [0, 10), [10, 20), [20, 25).
    let got = rows(
        "SELECT window_start, window_end, b, COUNT(*), SUM(x), AVG(x), MIN(s), MAX(f), COUNT(DISTINCT MOD(x, 4)) \
         FROM TABLE(TUMBLE(TABLE n, DESCRIPTOR(ts), INTERVAL '10' SECOND)) \
         GROUP BY window_start, window_end, b HAVING COUNT(*) > 2",
    );
    let mut got = got;
    got.sort_by_key(|r| (r[0].as_i64(), r[2].to_string()));
    let t = Value::Timestamp;
    assert_eq!(got.len(), 5);
    assert_eq!(
        got[0],
        vec![
            t(0),
            t(10_000),
            Value::Bool(false),
            Value::Int(5),
            Value::Int(25),
            Value::Int(5),
            Value::Str("s-1".into()),
            Value::Float(9.0),
            Value::Int(2)
        ]
    );
    assert_eq!(got[4][3], Value::Int(3), "x in 20, 22, 24");
    let hop = rows(
        "SELECT window_start, COUNT(*) AS c FROM TABLE(HOP(TABLE n, DESCRIPTOR(ts), INTERVAL '5' SECOND, INTERVAL '10' SECOND)) \
         GROUP BY window_start, window_end",
    );
    let mut hop: Vec<(i64, i64)> = hop
        .iter()
        .map(|r| (r[0].as_i64().unwrap(), r[1].as_i64().unwrap()))
        .collect();
    hop.sort();
    assert_eq!(
        hop,
        vec![
            (-5000, 5),
            (0, 10),
            (5000, 10),
            (10_000, 10),
            (15_000, 10),
            (20_000, 5)
        ]
    );
}

#[test]
fn a_window_table_function_without_grouping_adds_the_window_columns() {
    let got = rows(
        "SELECT x, window_start, window_end FROM TABLE(HOP(TABLE n, DESCRIPTOR(ts), INTERVAL '5' SECOND, INTERVAL '10' SECOND)) WHERE x = 7",
    );
    let t = Value::Timestamp;
    let mut got = got;
    got.sort_by_key(|r| r[1].as_i64());
    assert_eq!(
        got,
        vec![
            vec![Value::Int(7), t(0), t(10_000)],
            vec![Value::Int(7), t(5000), t(15_000)]
        ]
    );
}

#[test]
fn a_subquery_in_from_chains_its_steps() {
    let got =
        rows("SELECT y + 1 AS z FROM (SELECT x * 10 AS y, ts FROM n WHERE x < 3) WHERE y > 0");
    assert_eq!(got, vec![ints(&[11]), ints(&[21])]);
}

#[test]
fn errors_name_the_construct_line_and_column() {
    let e = error("INSERT INTO out\nSELECT x FROM n\nORDER BY x");
    assert!(matches!(e, SqlError::Unsupported { .. }), "{e}");
    assert_eq!(e.location().map(|l| l.line), Some(3), "{e}");
    let e = error("INSERT INTO out SELECT x, nope FROM n");
    assert_eq!(e.to_string(), "unknown column `nope` at line 1, column 27");
    let e = error("INSERT INTO out SELECT x FROM\n  missing");
    assert_eq!(e.to_string(), "unknown table `missing` at line 2, column 3");
    let e = error("INSERT INTO out SELECT x + s FROM n");
    assert!(matches!(e, SqlError::Type { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        "type error at line 1, column 24: cannot apply `+` to BIGINT and STRING"
    );
    let e = error("INSERT INTO out SELECT x FROM n WHERE x");
    assert!(e.to_string().contains("WHERE needs a BOOLEAN"), "{e}");
    let e = error("INSERT INTO out SELECT COUNT(*) FROM n GROUP BY x");
    assert!(
        e.to_string().contains("GROUP BY without a TUMBLE or HOP"),
        "{e}"
    );
    let e = error("INSERT INTO out SELECT a.x FROM n a JOIN n b ON a.x = b.x");
    assert!(
        e.to_string()
            .starts_with("unsupported at line 1, column 42: JOIN"),
        "{e}"
    );
    let e = error(
        "INSERT INTO out SELECT x FROM TABLE(TUMBLE(TABLE n, DESCRIPTOR(x), INTERVAL '1' SECOND))",
    );
    assert!(
        e.to_string()
            .contains("DESCRIPTOR(x) is not an event-time column"),
        "{e}"
    );
    let e = error("INSERT INTO out SELECT s, COUNT(*) FROM TABLE(TUMBLE(TABLE n, DESCRIPTOR(ts), INTERVAL '1' SECOND)) GROUP BY window_start, window_end");
    assert!(e.to_string().contains("`s` must be in GROUP BY"), "{e}");
    let e = error("INSERT INTO out SELECT SUM(s) FROM TABLE(TUMBLE(TABLE n, DESCRIPTOR(ts), INTERVAL '1' SECOND)) GROUP BY window_start, window_end");
    assert!(matches!(e, SqlError::Type { .. }), "{e}");
    let e = error("INSERT INTO out SELECT SOUNDEX(s) FROM n");
    assert!(e.to_string().contains("function SOUNDEX"), "{e}");
    let e = error("SELECT x FROM n;\nSELEC x");
    assert!(
        matches!(e, SqlError::Syntax { at, .. } if at.line == 2),
        "{e}"
    );
    let e = error("INSERT INTO n SELECT x FROM n");
    assert!(e.to_string().contains("is not a sink"), "{e}");
}

#[test]
fn explain_prints_the_operator_graph() {
    let p = pipeline();
    let mut ctx = SqlContext::new(&p);
    ctx.execute(NUMBERS).unwrap();
    let plan = ctx
        .explain(
            "EXPLAIN INSERT INTO out SELECT b, COUNT(*) AS c FROM TABLE(TUMBLE(TABLE n, DESCRIPTOR(ts), INTERVAL '10' SECOND)) \
             WHERE x > 1 GROUP BY window_start, window_end, b",
        )
        .unwrap();
    let lines: Vec<&str> = plan.lines().map(str::trim).collect();
    assert!(lines[0].starts_with("Sink [out]"), "{plan}");
    assert!(lines[1].starts_with("Project [b, COUNT(*) AS c]"), "{plan}");
    assert!(lines[2].starts_with("WindowAggregate [TUMBLE(size=10000ms, time=ts)] groupBy=[window_start, window_end, b] aggregates=[COUNT(*)]"), "{plan}");
    assert!(lines[4].starts_with("Filter [x > 1]"), "{plan}");
    assert!(
        lines[5].starts_with("Scan [n]") && lines[5].contains("watermark=ts - 1000ms"),
        "{plan}"
    );
}

#[test]
fn sql_mixes_with_rust_streams() {
    runtime().block_on(async {
        let p = pipeline();
        let schema = watershed_sql::schema_of("CREATE TABLE t (k STRING, v BIGINT)").unwrap();
        let rows = p.source(
            "rows",
            watershed_core::connectors::GeneratorSource::new(1, 6, move |_, i| {
                let row = Row::new(
                    schema.clone(),
                    vec![Value::Str(format!("k{}", i % 2)), Value::Int(i as i64)],
                );
                Record::new(row, EventTime(i as i64))
            }),
            WatermarkStrategy::monotonous(),
        );
        let doubled = sql_query(
            rows,
            "CREATE TABLE t (k STRING, v BIGINT)",
            "SELECT k, v * 2 AS w FROM t WHERE k = 'k1'",
        )
        .unwrap();
        let out = CollectSink::new();
        doubled
            .map(|r: Row| r.values[1].as_i64().unwrap())
            .sink("out", out.clone());
        p.run().await.unwrap();
        assert_eq!(out.values(), vec![2, 6, 10]);
    });
}

#[test]
fn a_json_lines_table_feeds_a_print_table_and_a_collecting_sink() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let mut f = std::fs::File::create(&path).unwrap();
    for i in 0..30 {
        writeln!(
            f,
            r#"{{"user": "u{}", "amount": {i}, "ts": {}}}"#,
            i % 3,
            i * 500
        )
        .unwrap();
    }
    writeln!(f, "not json").unwrap();
    drop(f);
    runtime().block_on(async {
        let p = pipeline();
        let mut ctx = SqlContext::new(&p);
        let out = CollectSink::<Row>::new();
        ctx.register_sink("totals", out.clone());
        ctx.execute(&format!(
            "CREATE TABLE events (`user` STRING, amount BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
               WITH ('connector' = 'json-lines', 'path' = '{}');
             CREATE TABLE totals (window_start TIMESTAMP(3), `user` STRING, total BIGINT) WITH ('connector' = 'rust');
             INSERT INTO totals SELECT window_start, `user`, SUM(amount) FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '5' SECOND))
               GROUP BY window_start, window_end, `user`;
             CREATE TABLE shown (amount BIGINT) WITH ('connector' = 'print');
             INSERT INTO shown SELECT amount FROM events WHERE amount > 27",
            path.display()
        ))
        .unwrap();
        let summary = p.run().await.unwrap();
        assert_eq!(summary.rejected, 1, "the bad line, decoded once for both queries");
        let rows = out.values();
        assert_eq!(rows.len(), 9);
        let total: i64 = rows.iter().map(|r| r.get("total").unwrap().as_i64().unwrap()).sum();
        assert_eq!(total, (0..30).sum::<i64>());
        assert_eq!(rows[0].schema.columns[2].name, "total");
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn random_text_never_panics(text in "\\PC{0,80}") {
        let _ = error_or_ok(&text);
    }

    #[test]
    fn random_sql_shaped_text_never_panics(
        words in proptest::collection::vec(prop_oneof![
            Just("SELECT"), Just("FROM"), Just("WHERE"), Just("n"), Just("x"), Just("s"), Just("ts"),
            Just("("), Just(")"), Just(","), Just("*"), Just("+"), Just("/"), Just("0"), Just("'a'"),
            Just("TABLE"), Just("TUMBLE"), Just("HOP"), Just("DESCRIPTOR"), Just("INTERVAL '1' SECOND"),
            Just("GROUP BY"), Just("window_start"), Just("window_end"), Just("COUNT"), Just("CAST"), Just("AS"),
            Just("BIGINT"), Just("CASE"), Just("WHEN"), Just("THEN"), Just("END"), Just("NULL"), Just("AND"),
            Just("INSERT INTO out"), Just("SUBSTRING"), Just("MOD"), Just("-"), Just("EXPLAIN"), Just(";")
        ], 0..30)
    ) {
        let _ = error_or_ok(&words.join(" "));
    }
}

fn error_or_ok(sql: &str) -> Result<(), SqlError> {
    let p = pipeline();
    let mut ctx = SqlContext::new(&p);
    ctx.execute(NUMBERS).unwrap();
    ctx.register_sink("out", CollectSink::<Row>::new());
    ctx.execute(sql).map(|_| ())
}

#[test]
fn a_sql_window_aggregation_resumes_from_its_checkpoint_exactly_once() {
    // 3 000 rows 10 ms apart: 30 windows of 1 s with 100 rows each; the first run stops early.
    let ddl = "CREATE TABLE n (x BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
        WITH ('connector' = 'generator', 'number-of-rows' = '3000', 'interval-ms' = '10',
              'rows-per-second' = '2000')";
    let query = "INSERT INTO out SELECT window_start, COUNT(*) AS c, SUM(x) AS s
        FROM TABLE(TUMBLE(TABLE n, DESCRIPTOR(ts), INTERVAL '1' SECOND))
        GROUP BY window_start, window_end";
    let store = CheckpointStore::memory();
    let out = CollectSink::<Row>::new();
    let run = |stop_after: Option<std::time::Duration>| {
        runtime().block_on(async {
            let p = Pipeline::new(
                PipelineConfig::new("sql-restore")
                    .checkpoint_store(store.clone())
                    .checkpoint_interval(std::time::Duration::from_millis(100))
                    .handle_signals(false),
            );
            let mut ctx = SqlContext::new(&p);
            ctx.execute(ddl).unwrap();
            ctx.register_sink("out", out.clone());
            ctx.execute(query).unwrap();
            if let Some(after) = stop_after {
                let stop = p.shutdown_handle();
                tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    stop.shutdown();
                });
            }
            p.run().await.unwrap()
        })
    };
    let first = run(Some(std::time::Duration::from_millis(500)));
    let early = out.values().len();
    assert!(first.records_in < 3000 && early < 30, "{first:?} {early}");
    run(None);
    let mut windows: Vec<(i64, i64, i64)> = out
        .values()
        .iter()
        .map(|r| {
            let v = &r.values;
            (
                v[0].as_i64().unwrap(),
                v[1].as_i64().unwrap(),
                v[2].as_i64().unwrap(),
            )
        })
        .collect();
    windows.sort();
    let expected: Vec<(i64, i64, i64)> = (0..30)
        .map(|w| (w * 1000, 100, (w * 100..w * 100 + 100).sum()))
        .collect();
    assert_eq!(windows, expected);
}
