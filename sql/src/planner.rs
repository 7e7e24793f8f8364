//! The planner: a `SELECT` becomes a [`Plan`] — a source table and a chain of [`Step`]s, each
//! one Watershed operator — type-checked against the catalog.

use crate::aggregate::{GroupScope, SqlAggregates};
use crate::compile::{at, compile, RowScope, Scope};
use crate::error::{Location, SqlError};
use crate::expr::{BinOp, Expr};
use crate::row::{Column, DataType, Schema, Value};
use crate::window::{window_call, Assigner, WindowCall};
use sqlparser::ast::{self, Spanned};
use std::sync::Arc;

/// What the planner needs to know of a table.
#[derive(Clone, Debug)]
pub struct TableInfo {
    /// Its columns.
    pub schema: Arc<Schema>,
    /// Index of its event-time column (records' timestamps), if any.
    pub rowtime: Option<usize>,
    /// A one-line description for EXPLAIN.
    pub describe: String,
}

/// Resolves table names.
pub trait Catalog {
    /// The table named `name`.
    fn table(&self, name: &str, at: Location) -> Result<TableInfo, SqlError>;
}

/// A windowed aggregation: pre-project `[keys..., arguments...]`, key by the keys, window,
/// aggregate, and emit `[window_start, window_end, keys..., aggregates...]`.
#[derive(Clone, Debug)]
pub struct WindowAggregate {
    /// The window function.
    pub call: WindowCall,
    /// Its assigner.
    pub assigner: Assigner,
    /// The pre-projection.
    pub pre: Vec<Expr>,
    /// How many of `pre` are group keys.
    pub keys: usize,
    /// The aggregates.
    pub aggregates: SqlAggregates,
    /// The output row's columns.
    pub schema: Arc<Schema>,
    /// GROUP BY as written, for EXPLAIN.
    pub text: String,
}

/// One operator of a plan.
#[derive(Clone, Debug)]
pub enum Step {
    /// Keeps rows for which the predicate is `TRUE`.
    Filter {
        /// The predicate.
        predicate: Expr,
        /// As written.
        text: String,
    },
    /// Computes the output columns.
    Project {
        /// One expression per column.
        exprs: Vec<Expr>,
        /// The output columns.
        schema: Arc<Schema>,
        /// As written.
        text: String,
    },
    /// A window table function without aggregation: each row once per window, with
    /// `window_start`, `window_end`, `window_time` appended.
    Windows {
        /// The window function.
        call: WindowCall,
        /// Its assigner.
        assigner: Assigner,
        /// The output columns.
        schema: Arc<Schema>,
    },
    /// A windowed aggregation.
    Aggregate(Box<WindowAggregate>),
}

/// A planned query: read `source`, apply `steps` in order.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The table read.
    pub source: String,
    /// Its description.
    pub source_info: TableInfo,
    /// The operators, first to last.
    pub steps: Vec<Step>,
    /// The result's columns.
    pub schema: Arc<Schema>,
    /// Index of the result's event-time column, if it has one.
    pub rowtime: Option<usize>,
}

/// Plans `query` against `catalog`.
pub fn plan_query(query: &ast::Query, catalog: &dyn Catalog) -> Result<Plan, SqlError> {
    check_query(query)?;
    let ast::SetExpr::Select(select) = query.body.as_ref() else {
        return Err(SqlError::unsupported(
            format!("`{}` (only SELECT)", first_word(&query.body.to_string())),
            at(query.body.as_ref()),
        ));
    };
    check_select(select)?;
    let (mut plan, window) = plan_from(select, catalog)?;
    let grouped = !matches!(&select.group_by, ast::GroupByExpr::Expressions(e, _) if e.is_empty());
    if grouped {
        let Some(call) = window else {
            return Err(SqlError::unsupported(
                "GROUP BY without a TUMBLE or HOP window table function (an updating aggregate)",
                group_at(select),
            ));
        };
        plan_grouped(&mut plan, select, call)?;
        return Ok(plan);
    }
    if let Some(call) = window {
        let assigner = call.kind.assigner(call.offset, call.time_at)?;
        let mut columns = plan.schema.columns.clone();
        for name in ["window_start", "window_end", "window_time"] {
            columns.push(Column {
                name: name.into(),
                data_type: DataType::Timestamp,
            });
        }
        let schema = Arc::new(Schema { columns });
        plan.steps.push(Step::Windows {
            call,
            assigner,
            schema: schema.clone(),
        });
        plan.schema = schema;
    }
    if let Some(w) = &select.selection {
        let (predicate, ty) = compile(w, &mut RowScope(&plan.schema))?;
        check_bool(ty, "WHERE", at(w))?;
        plan.steps.push(Step::Filter {
            predicate,
            text: w.to_string(),
        });
    }
    if select.having.is_some() {
        return Err(SqlError::invalid(
            "HAVING without GROUP BY",
            at(select.as_ref()),
        ));
    }
    let input = plan.schema.clone();
    project(&mut plan, &select.projection, &mut RowScope(&input), None)?;
    Ok(plan)
}

fn first_word(s: &str) -> String {
    s.split_whitespace().next().unwrap_or("").to_string()
}

fn group_at(select: &ast::Select) -> Location {
    match &select.group_by {
        ast::GroupByExpr::Expressions(e, _) if !e.is_empty() => at(&e[0]),
        _ => at(select),
    }
}

fn check_bool(ty: DataType, clause: &str, here: Location) -> Result<(), SqlError> {
    if matches!(ty, DataType::Bool | DataType::Null) {
        Ok(())
    } else {
        Err(SqlError::type_error(
            format!("{clause} needs a BOOLEAN condition, not {ty}"),
            here,
        ))
    }
}

fn check_query(q: &ast::Query) -> Result<(), SqlError> {
    let here = at(q);
    let unsupported = |what: &str| Err(SqlError::unsupported(what.to_string(), here));
    if q.with.is_some() {
        return unsupported("WITH (common table expressions)");
    }
    if let Some(o) = &q.order_by {
        return Err(SqlError::unsupported(
            "ORDER BY on a stream",
            Location::of(o.span()),
        ));
    }
    if q.limit_clause.is_some() || q.fetch.is_some() {
        return unsupported("LIMIT / FETCH on a stream");
    }
    if !q.locks.is_empty()
        || q.for_clause.is_some()
        || q.settings.is_some()
        || q.format_clause.is_some()
        || !q.pipe_operators.is_empty()
    {
        return unsupported("query clause");
    }
    Ok(())
}

fn check_select(s: &ast::Select) -> Result<(), SqlError> {
    let here = at(s);
    let clause = |what: &str| Err(SqlError::unsupported(what.to_string(), here));
    if s.distinct.is_some() {
        return clause("SELECT DISTINCT");
    }
    if s.top.is_some() || s.into.is_some() || s.exclude.is_some() {
        return clause("TOP / INTO / EXCLUDE");
    }
    if !s.lateral_views.is_empty() || s.prewhere.is_some() || !s.connect_by.is_empty() {
        return clause("LATERAL VIEW / PREWHERE / CONNECT BY");
    }
    if !s.cluster_by.is_empty() || !s.distribute_by.is_empty() || !s.sort_by.is_empty() {
        return clause("CLUSTER / DISTRIBUTE / SORT BY");
    }
    if !s.named_window.is_empty() || s.qualify.is_some() {
        return clause("WINDOW / QUALIFY (OVER aggregations)");
    }
    if let ast::GroupByExpr::All(_) = s.group_by {
        return clause("GROUP BY ALL");
    }
    if let ast::GroupByExpr::Expressions(_, m) = &s.group_by {
        if !m.is_empty() {
            return clause("GROUP BY modifiers (ROLLUP, CUBE)");
        }
    }
    if s.from.len() != 1 {
        return clause(if s.from.is_empty() {
            "SELECT without FROM"
        } else {
            "several tables in FROM (joins)"
        });
    }
    if let Some(j) = s.from[0].joins.first() {
        return Err(SqlError::unsupported(
            "JOIN",
            Location::of(j.relation.span()),
        ));
    }
    Ok(())
}

/// The plan of the `FROM` clause, and its window function if it is one.
fn plan_from(
    s: &ast::Select,
    catalog: &dyn Catalog,
) -> Result<(Plan, Option<WindowCall>), SqlError> {
    let relation = &s.from[0].relation;
    let here = Location::of(relation.span());
    match relation {
        ast::TableFactor::Table {
            name,
            args: None,
            with_hints,
            ..
        } if with_hints.is_empty() => Ok((
            scan(
                &crate::parser::object_name(name),
                catalog,
                Location::of(name.span()),
            )?,
            None,
        )),
        ast::TableFactor::Derived {
            lateral: false,
            subquery,
            ..
        } => Ok((plan_query(subquery, catalog)?, None)),
        ast::TableFactor::TableFunction { expr, .. } => {
            let call = window_call(expr)?;
            let plan = match catalog.table(&call.table, call.table_at) {
                Ok(_) => scan(&call.table, catalog, call.table_at)?,
                Err(e) => return Err(e),
            };
            check_descriptor(&plan, &call)?;
            Ok((plan, Some(call)))
        }
        other => Err(SqlError::unsupported(format!("FROM `{other}`"), here)),
    }
}

fn scan(table: &str, catalog: &dyn Catalog, here: Location) -> Result<Plan, SqlError> {
    let info = catalog.table(table, here)?;
    Ok(Plan {
        source: table.to_string(),
        schema: info.schema.clone(),
        rowtime: info.rowtime,
        source_info: info,
        steps: Vec::new(),
    })
}

/// The descriptor column must be the table's event-time column: windows follow records'
/// timestamps and the source's watermarks.
fn check_descriptor(plan: &Plan, call: &WindowCall) -> Result<(), SqlError> {
    let Some(i) = plan.schema.index_of(&call.time_column) else {
        return Err(SqlError::UnknownColumn {
            name: call.time_column.clone(),
            at: call.time_at,
        });
    };
    if plan.rowtime != Some(i) {
        return Err(SqlError::invalid(
            format!(
                "DESCRIPTOR({}) is not an event-time column: declare `WATERMARK FOR {} AS ...` in the table",
                call.time_column, call.time_column
            ),
            call.time_at,
        ));
    }
    Ok(())
}

/// Plans `GROUP BY window_start, window_end, keys...` with aggregates, HAVING and the
/// projection over the group row.
fn plan_grouped(plan: &mut Plan, select: &ast::Select, call: WindowCall) -> Result<(), SqlError> {
    if let Some(w) = &select.selection {
        let (predicate, ty) = compile(w, &mut RowScope(&plan.schema))?;
        check_bool(ty, "WHERE", at(w))?;
        plan.steps.push(Step::Filter {
            predicate,
            text: w.to_string(),
        });
    }
    let ast::GroupByExpr::Expressions(exprs, _) = &select.group_by else {
        return Err(SqlError::unsupported("GROUP BY form", at(select)));
    };
    let input = plan.schema.clone();
    let mut scope = GroupScope {
        input: &input,
        keys: Vec::new(),
        pre: Vec::new(),
        calls: Vec::new(),
    };
    group_keys(exprs, &mut scope, select)?;
    let keys = scope.keys.len();
    let (exprs, names) = compile_items(&select.projection, &mut scope)?;
    let having = match &select.having {
        Some(h) => {
            let (x, ty) = compile(h, &mut scope)?;
            check_bool(ty, "HAVING", at(h))?;
            Some((x, h.to_string()))
        }
        None => None,
    };
    let group_schema = group_schema(&scope);
    let assigner = call.kind.assigner(call.offset, call.time_at)?;
    let text = exprs_text(select);
    plan.steps.push(Step::Aggregate(Box::new(WindowAggregate {
        call,
        assigner,
        pre: scope.pre,
        keys,
        aggregates: SqlAggregates { calls: scope.calls },
        schema: group_schema.clone(),
        text,
    })));
    plan.schema = group_schema;
    if let Some((predicate, text)) = having {
        plan.steps.push(Step::Filter { predicate, text });
    }
    let window_time = Expr::Binary(
        BinOp::Sub,
        Box::new(Expr::Column(1)),
        Box::new(Expr::Literal(Value::Int(1))),
    );
    plan.rowtime = None;
    push_project(plan, exprs, names, &select.projection, Some(window_time));
    Ok(())
}

/// Reads the GROUP BY columns into the scope's keys; both window columns must be there.
fn group_keys(
    exprs: &[ast::Expr],
    scope: &mut GroupScope<'_>,
    select: &ast::Select,
) -> Result<(), SqlError> {
    let (mut start, mut end) = (false, false);
    for e in exprs {
        let ast::Expr::Identifier(id) = e else {
            return Err(SqlError::unsupported(
                format!("GROUP BY expression `{e}` (group by columns)"),
                at(e),
            ));
        };
        match id.value.to_ascii_lowercase().as_str() {
            "window_start" => start = true,
            "window_end" => end = true,
            _ => {
                let (x, ty) = RowScope(scope.input).column(&id.value, at(e))?;
                let name = scope.input.columns[column_index(&x)].name.clone();
                scope.keys.push((name, ty));
                scope.pre.push(x);
            }
        }
    }
    if !(start && end) {
        return Err(SqlError::invalid(
            "a windowed GROUP BY needs both window_start and window_end",
            group_at(select),
        ));
    }
    Ok(())
}

/// `[window_start, window_end, keys..., aggregates...]`.
fn group_schema(scope: &GroupScope<'_>) -> Arc<Schema> {
    let window = |name: &str| Column {
        name: name.into(),
        data_type: DataType::Timestamp,
    };
    let mut columns = vec![window("window_start"), window("window_end")];
    columns.extend(scope.keys.iter().map(|(n, t)| Column {
        name: n.clone(),
        data_type: *t,
    }));
    columns.extend(scope.calls.iter().map(|c| Column {
        name: c.text.clone(),
        data_type: c.result_type(),
    }));
    Arc::new(Schema { columns })
}

fn exprs_text(select: &ast::Select) -> String {
    match &select.group_by {
        ast::GroupByExpr::Expressions(e, _) => e
            .iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        _ => String::new(),
    }
}

fn column_index(e: &Expr) -> usize {
    match e {
        Expr::Column(i) => *i,
        _ => 0,
    }
}

/// Output column names and types.
type Names = Vec<(String, DataType)>;

/// Compiles the select list: expressions and output names.
fn compile_items(
    items: &[ast::SelectItem],
    scope: &mut dyn ScopeWithColumns,
) -> Result<(Vec<Expr>, Names), SqlError> {
    let mut exprs = Vec::new();
    let mut names = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let (e, alias) = match item {
            ast::SelectItem::UnnamedExpr(e) => (e, None),
            ast::SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.value.clone())),
            ast::SelectItem::Wildcard(_) | ast::SelectItem::QualifiedWildcard(..) => {
                let Some(columns) = scope.all_columns() else {
                    return Err(SqlError::unsupported(
                        "`*` in a grouped SELECT",
                        Location::of(item.span()),
                    ));
                };
                for (j, c) in columns.iter().enumerate() {
                    exprs.push(Expr::Column(j));
                    names.push((c.name.clone(), c.data_type));
                }
                continue;
            }
            other => {
                return Err(SqlError::unsupported(
                    format!("select item `{other}`"),
                    Location::of(other.span()),
                ))
            }
        };
        let (x, ty) = compile(e, scope.as_scope())?;
        let name = alias.unwrap_or_else(|| match e {
            ast::Expr::Identifier(id) => id.value.clone(),
            ast::Expr::CompoundIdentifier(p) => {
                p.last().map(|x| x.value.clone()).unwrap_or_default()
            }
            _ => format!("EXPR${i}"),
        });
        exprs.push(x);
        names.push((name, ty));
    }
    Ok((exprs, names))
}

/// A scope that may also expand `*`.
pub(crate) trait ScopeWithColumns {
    /// The columns `*` expands to, if it may.
    fn all_columns(&self) -> Option<Vec<Column>>;
    /// The scope itself.
    fn as_scope(&mut self) -> &mut dyn Scope;
}

impl ScopeWithColumns for RowScope<'_> {
    fn all_columns(&self) -> Option<Vec<Column>> {
        Some(self.0.columns.clone())
    }
    fn as_scope(&mut self) -> &mut dyn Scope {
        self
    }
}

impl ScopeWithColumns for GroupScope<'_> {
    fn all_columns(&self) -> Option<Vec<Column>> {
        None
    }
    fn as_scope(&mut self) -> &mut dyn Scope {
        self
    }
}

fn project(
    plan: &mut Plan,
    items: &[ast::SelectItem],
    scope: &mut dyn ScopeWithColumns,
    time: Option<Expr>,
) -> Result<(), SqlError> {
    let (exprs, names) = compile_items(items, scope)?;
    push_project(plan, exprs, names, items, time);
    Ok(())
}

/// Appends the projection; the event-time column is kept where a select item passes it on.
fn push_project(
    plan: &mut Plan,
    exprs: Vec<Expr>,
    names: Vec<(String, DataType)>,
    items: &[ast::SelectItem],
    time: Option<Expr>,
) {
    let time = time.or_else(|| plan.rowtime.map(Expr::Column));
    plan.rowtime = time.and_then(|t| exprs.iter().position(|e| *e == t));
    let identity = exprs.len() == plan.schema.len()
        && exprs.iter().enumerate().all(|(i, e)| *e == Expr::Column(i))
        && names
            .iter()
            .zip(&plan.schema.columns)
            .all(|((n, _), c)| *n == c.name);
    let schema = Arc::new(Schema::new(names));
    if identity {
        return;
    }
    let text = items
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    plan.steps.push(Step::Project {
        exprs,
        schema: schema.clone(),
        text,
    });
    plan.schema = schema;
}
