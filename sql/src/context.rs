//! [`SqlContext`]: the catalog of tables and sinks, the streams bound to them from Rust, and the
//! entry points that run SQL text on a [`Pipeline`].

use crate::catalog::TableDef;
use crate::connectors;
use crate::error::{Location, SqlError};
use crate::exec;
use crate::explain::explain;
use crate::parser::{parse_script, Statement};
use crate::planner::{plan_query, Catalog, Plan, TableInfo};
use crate::row::{Row, Schema};
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use watershed_core::connectors::StdoutSink;
use watershed_core::{Pipeline, Sink, Stream};

type SinkFn = Box<dyn FnOnce(Stream<Row>) + Send>;

/// What one statement of a script did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `CREATE TABLE name`.
    Created(String),
    /// `INSERT INTO name`: the query now feeds that sink.
    Inserted(String),
    /// A bare `SELECT`: its rows print on standard output.
    Printed,
    /// `EXPLAIN`: the operator graph.
    Explained(String),
}

/// Tables, sinks and bound streams; compiles SQL onto a pipeline.
///
/// ```
/// use watershed_core::{connectors::CollectSink, *};
/// use watershed_sql::{Row, SqlContext};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
/// let pipeline = Pipeline::new(PipelineConfig::new("sql-doc").checkpoint_store(CheckpointStore::memory()));
/// let mut sql = SqlContext::new(&pipeline);
/// sql.execute("CREATE TABLE n (x BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
///              WITH ('connector' = 'generator', 'number-of-rows' = '10')")?;
/// let out = CollectSink::<Row>::new();
/// sql.register_sink("out", out.clone());
/// sql.execute("INSERT INTO out SELECT x * 2 AS y FROM n WHERE MOD(x, 3) = 0")?;
/// pipeline.run().await?;
/// let ys: Vec<i64> = out.values().iter().map(|r| r.values[0].as_i64().unwrap()).collect();
/// assert_eq!(ys, [0, 6, 12, 18]);
/// # Ok(()) }
/// ```
pub struct SqlContext<'p> {
    pipeline: Option<&'p Pipeline>,
    tables: BTreeMap<String, TableDef>,
    bound: HashMap<String, Stream<Row>>,
    sinks: HashMap<String, SinkFn>,
    read: HashSet<String>,
}

impl<'p> SqlContext<'p> {
    /// A context whose connector tables become sources of `pipeline`.
    pub fn new(pipeline: &'p Pipeline) -> Self {
        SqlContext {
            pipeline: Some(pipeline),
            ..Self::detached()
        }
    }

    /// A context without a pipeline: every table must be bound from Rust.
    pub fn detached() -> Self {
        SqlContext {
            pipeline: None,
            tables: BTreeMap::new(),
            bound: HashMap::new(),
            sinks: HashMap::new(),
            read: HashSet::new(),
        }
    }

    /// The definition of table `name`.
    pub fn table(&self, name: &str) -> Option<&TableDef> {
        self.tables.get(name).or_else(|| {
            self.tables
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        })
    }

    fn declared(&self, name: &str) -> Result<&TableDef, SqlError> {
        self.table(name).ok_or_else(|| SqlError::UnknownTable {
            name: name.to_string(),
            at: Location::default(),
        })
    }

    /// Binds a stream of rows to the table `name` declared by `CREATE TABLE` (any connector):
    /// rows are brought into the table's column order by name, and their event time is set
    /// from its `WATERMARK` column. Watermarks are those of the stream's source: give it
    /// [`connectors::strategy`] for the table's delay.
    pub fn bind_rows(&mut self, name: &str, rows: Stream<Row>) -> Result<(), SqlError> {
        let table = self.declared(name)?.clone();
        let mut stream = connectors::conform(rows, table.schema.clone());
        if let Some(rt) = table.rowtime {
            stream = exec::stamp(stream, rt.column);
        }
        self.read.remove(&table.name);
        self.bound.insert(table.name, stream);
        Ok(())
    }

    /// Binds a stream of JSON objects (one per payload, as Kafka or Kinesis deliver them) to the
    /// table `name`: columns come from the fields of their names; payloads that do not decode go
    /// to the pipeline's error path. Give the source [`connectors::json_strategy`] so its
    /// watermarks follow the table's `WATERMARK` column.
    pub fn bind_json(&mut self, name: &str, payloads: Stream<Bytes>) -> Result<(), SqlError> {
        let table = self.declared(name)?.clone();
        let mut stream = connectors::decode_json(payloads, table.schema.clone());
        if let Some(rt) = table.rowtime {
            stream = exec::stamp(stream, rt.column);
        }
        self.read.remove(&table.name);
        self.bound.insert(table.name, stream);
        Ok(())
    }

    /// Registers `sink` under `name` for `INSERT INTO name` (a collecting sink, stdout, S3, or
    /// any `Sink<Item = Row>`). The sink node takes the same name in the pipeline.
    pub fn register_sink<S: Sink<Item = Row>>(&mut self, name: &str, sink: S) {
        let node = name.to_string();
        self.sinks.insert(
            name.to_string(),
            Box::new(move |s: Stream<Row>| s.sink(&node, sink)),
        );
    }

    /// Runs a script: `CREATE TABLE`s take effect in order; `INSERT INTO`s and bare `SELECT`s
    /// (printed on stdout) are planned, then built onto the pipeline, a table read by several
    /// of them being fanned out; `EXPLAIN`s return their plans.
    pub fn execute(&mut self, sql: &str) -> Result<Vec<Outcome>, SqlError> {
        self.run_script(sql, false)
    }

    /// Like [`execute`](Self::execute), but explains every `INSERT INTO` and `SELECT` instead
    /// of building it (the `CREATE TABLE`s still take effect).
    pub fn explain_script(&mut self, sql: &str) -> Result<Vec<String>, SqlError> {
        let outcomes = self.run_script(sql, true)?;
        Ok(outcomes
            .into_iter()
            .filter_map(|o| match o {
                Outcome::Explained(plan) => Some(plan),
                _ => None,
            })
            .collect())
    }

    fn run_script(&mut self, sql: &str, explain_only: bool) -> Result<Vec<Outcome>, SqlError> {
        let mut outcomes = Vec::new();
        let mut planned: Vec<(Plan, Option<(String, Location)>)> = Vec::new();
        for statement in parse_script(sql)? {
            match statement {
                Statement::CreateTable(def) => {
                    if self.table(&def.name).is_some() {
                        return Err(SqlError::invalid(
                            format!("table `{}` already exists", def.name),
                            def.at,
                        ));
                    }
                    outcomes.push(Outcome::Created(def.name.clone()));
                    self.tables.insert(def.name.clone(), *def);
                }
                Statement::Explain(inner) => {
                    outcomes.push(Outcome::Explained(self.explain_statement(*inner)?))
                }
                s @ (Statement::Query(_) | Statement::Insert { .. }) if explain_only => {
                    outcomes.push(Outcome::Explained(self.explain_statement(s)?))
                }
                Statement::Query(q) => {
                    planned.push((plan_query(&q, self)?, None));
                    outcomes.push(Outcome::Printed);
                }
                Statement::Insert { table, at, query } => {
                    self.check_sink(&table, at)?;
                    planned.push((plan_query(&query, self)?, Some((table.clone(), at))));
                    outcomes.push(Outcome::Inserted(table));
                }
            }
        }
        self.build_all(planned)?;
        Ok(outcomes)
    }

    /// The operator graph of a `SELECT` or `INSERT INTO` (with or without `EXPLAIN` before it).
    pub fn explain(&self, sql: &str) -> Result<String, SqlError> {
        let mut statements = parse_script(sql)?;
        match (statements.pop(), statements.is_empty()) {
            (Some(Statement::Explain(inner)), true) => self.explain_statement(*inner),
            (Some(s), true) => self.explain_statement(s),
            _ => Err(SqlError::invalid(
                "EXPLAIN takes one statement",
                Location::default(),
            )),
        }
    }

    fn explain_statement(&self, statement: Statement) -> Result<String, SqlError> {
        match statement {
            Statement::Query(q) => Ok(explain(&plan_query(&q, self)?, None)),
            Statement::Insert { table, query, .. } => {
                Ok(explain(&plan_query(&query, self)?, Some(&table)))
            }
            Statement::CreateTable(t) => Err(SqlError::unsupported("EXPLAIN CREATE TABLE", t.at)),
            Statement::Explain(_) => Err(SqlError::unsupported(
                "EXPLAIN EXPLAIN",
                Location::default(),
            )),
        }
    }

    /// Plans one `SELECT` and returns its rows as a stream, to continue in Rust.
    pub fn query(&mut self, sql: &str) -> Result<Stream<Row>, SqlError> {
        let mut statements = parse_script(sql)?;
        let (Some(Statement::Query(q)), true) = (statements.pop(), statements.is_empty()) else {
            return Err(SqlError::invalid(
                "query() takes one SELECT",
                Location::default(),
            ));
        };
        let plan = plan_query(&q, self)?;
        let input = self
            .take_source(&plan.source, 1)?
            .pop()
            .expect("one stream");
        Ok(exec::build(&plan, input))
    }

    fn check_sink(&self, table: &str, at: Location) -> Result<(), SqlError> {
        if self.sinks.contains_key(table) {
            return Ok(());
        }
        match self.table(table).map(|t| t.connector()) {
            Some("print" | "stdout") => Ok(()),
            Some(other) => Err(SqlError::invalid(
                format!("table `{table}` ('connector' = '{other}') is not a sink: register one from Rust with SqlContext::register_sink, or use 'connector' = 'print'"),
                at,
            )),
            None => Err(SqlError::UnknownTable { name: table.to_string(), at }),
        }
    }

    fn build_all(
        &mut self,
        planned: Vec<(Plan, Option<(String, Location)>)>,
    ) -> Result<(), SqlError> {
        let mut uses: BTreeMap<String, usize> = BTreeMap::new();
        for (plan, _) in &planned {
            *uses.entry(plan.source.clone()).or_default() += 1;
        }
        let mut inputs: HashMap<String, Vec<Stream<Row>>> = HashMap::new();
        for (table, n) in uses {
            let streams = self.take_source(&table, n)?;
            inputs.insert(table, streams);
        }
        for (plan, target) in planned {
            let input = inputs
                .get_mut(&plan.source)
                .and_then(Vec::pop)
                .expect("fanned out per use");
            let out = exec::build(&plan, input);
            match target {
                None => {
                    let name = out.auto_name("print");
                    out.sink(&name, StdoutSink::<Row>::new())
                }
                Some((table, at)) => self.insert(&table, at, &plan, out)?,
            }
        }
        Ok(())
    }

    fn insert(
        &mut self,
        table: &str,
        at: Location,
        plan: &Plan,
        mut out: Stream<Row>,
    ) -> Result<(), SqlError> {
        if let Some(def) = self.table(table) {
            let declared = def.schema.clone();
            check_insert_columns(&declared, &plan.schema, at)?;
            out = connectors::retag(out, declared);
        }
        match self.sinks.remove(table) {
            Some(sink) => sink(out),
            None => out.sink(table, StdoutSink::<Row>::new()),
        }
        Ok(())
    }

    /// `n` streams of table `name`: the bound stream or a new connector source, fanned out.
    fn take_source(&mut self, name: &str, n: usize) -> Result<Vec<Stream<Row>>, SqlError> {
        let def = self.declared(name)?.clone();
        if self.read.contains(&def.name) {
            return Err(SqlError::invalid(
                format!("table `{name}` is already read by another query: put the queries in one execute() script (it fans the table out), or bind the table again"),
                def.at,
            ));
        }
        let stream = match (self.bound.remove(&def.name), self.pipeline) {
            (Some(s), _) => s,
            (None, Some(p)) => connectors::open_source(p, &def)?,
            (None, None) => {
                return Err(SqlError::invalid(
                    format!("table `{name}` has no stream: bind one with bind_rows or bind_json"),
                    def.at,
                ))
            }
        };
        self.read.insert(def.name.clone());
        Ok(if n == 1 {
            vec![stream]
        } else {
            stream.fan_out(n)
        })
    }
}

fn check_insert_columns(
    declared: &Schema,
    produced: &Schema,
    at: Location,
) -> Result<(), SqlError> {
    if declared.len() != produced.len() {
        return Err(SqlError::type_error(
            format!(
                "INSERT of {} columns into a table of {} ({declared})",
                produced.len(),
                declared.len()
            ),
            at,
        ));
    }
    for (d, p) in declared.columns.iter().zip(&produced.columns) {
        let fits = d.data_type == p.data_type
            || p.data_type == crate::row::DataType::Null
            || (d.data_type == crate::row::DataType::Float
                && p.data_type == crate::row::DataType::Int);
        if !fits {
            return Err(SqlError::type_error(
                format!(
                    "column `{}` is {}, the query gives {} ({})",
                    d.name, d.data_type, p.data_type, p.name
                ),
                at,
            ));
        }
    }
    Ok(())
}

impl Catalog for SqlContext<'_> {
    fn table(&self, name: &str, at: Location) -> Result<TableInfo, SqlError> {
        let def = SqlContext::table(self, name).ok_or_else(|| SqlError::UnknownTable {
            name: name.to_string(),
            at,
        })?;
        let describe = match def.rowtime {
            Some(rt) => format!(
                "({}) connector={} watermark={} - {}ms",
                def.schema,
                if self.bound.contains_key(&def.name) {
                    "rust"
                } else {
                    def.connector()
                },
                def.schema.columns[rt.column].name,
                rt.delay_ms
            ),
            None => format!("({}) connector={}", def.schema, def.connector()),
        };
        Ok(TableInfo {
            schema: def.schema.clone(),
            rowtime: def.rowtime.map(|r| r.column),
            describe,
        })
    }
}

/// Runs `query` over `rows`, a table whose columns and watermark `ddl` declares
/// (`CREATE TABLE name (...)`): SQL in the middle of Rust code.
pub fn sql_query(rows: Stream<Row>, ddl: &str, query: &str) -> Result<Stream<Row>, SqlError> {
    let mut ctx = SqlContext::detached();
    let created = ctx.execute(ddl)?;
    let [Outcome::Created(name)] = created.as_slice() else {
        return Err(SqlError::invalid(
            "sql_query's ddl must be one CREATE TABLE",
            Location::default(),
        ));
    };
    let name = name.clone();
    ctx.bind_rows(&name, rows)?;
    ctx.query(query)
}

/// The schema of a table a `CREATE TABLE` declares (for building rows in Rust).
pub fn schema_of(ddl: &str) -> Result<Arc<Schema>, SqlError> {
    let mut ctx = SqlContext::detached();
    ctx.execute(ddl)?;
    ctx.tables
        .into_values()
        .next()
        .map(|t| t.schema)
        .ok_or_else(|| SqlError::invalid("no CREATE TABLE", Location::default()))
}
