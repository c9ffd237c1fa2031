//! A run's session as a client of a Ballista scheduler, and the settings every process of a
//! cluster shares.

use super::codec::{LifemapLogicalCodec, LifemapPhysicalCodec};
use crate::error::Error;
use ballista_core::extension::{SessionConfigExt, SessionStateExt};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::ViewTable;
use datafusion::execution::session_state::SessionState;
use datafusion::functions_table::generate_series::GenerateSeriesTable;
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, col, lit};
use datafusion::prelude::SessionConfig;
use std::sync::Arc;
/// Turn a local session into a client of the scheduler at `scheduler` (`df://host:port`).
pub fn client_state(state: SessionState, scheduler: &str) -> Result<SessionState, Error> {
    let address = scheduler.replacen("df://", "http://", 1);
    state.upgrade_for_ballista(address).map_err(|source| Error::Engine {
        context: format!("connecting to the scheduler at {scheduler}"),
        source,
    })
}

/// On a cluster's client: `generate_series` and `range` give their rows as a `VALUES` list, which
/// a plan can carry, instead of DataFusion's series table (which plans cannot: "Error serializing
/// custom table"). The rows are made on the client, so a series is capped at [`MAX_SERIES_ROWS`].
pub fn register_series_functions(state: &mut SessionState) {
    for name in ["generate_series", "range"] {
        if let Some(inner) = state.table_functions().get(name).map(|f| Arc::clone(f.function())) {
            state.register_udtf(name, Arc::new(SeriesAsValues { inner }));
        }
    }
}

/// The most rows a series may have on a cluster (calendars of weeks, days or hours are far fewer).
const MAX_SERIES_ROWS: usize = 1_000_000;

#[derive(Debug)]
struct SeriesAsValues {
    inner: Arc<dyn TableFunctionImpl>,
}

impl TableFunctionImpl for SeriesAsValues {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let provider = self.inner.call_with_args(args)?;
        let Some(series) = provider.downcast_ref::<GenerateSeriesTable>() else {
            return Ok(provider);
        };
        let schema = series.schema();
        let generator = series.as_generator(8192)?;
        let mut rows: Vec<Vec<Expr>> = Vec::new();
        loop {
            let batch = generator.write().generate_next_batch()?;
            let Some(batch) = batch else { break };
            for row in 0..batch.num_rows() {
                let values = batch
                    .columns()
                    .iter()
                    .map(|column| ScalarValue::try_from_array(column, row).map(lit))
                    .collect::<Result<Vec<_>>>()?;
                rows.push(values);
            }
            if rows.len() > MAX_SERIES_ROWS {
                return Err(DataFusionError::Plan(format!(
                    "on a cluster a series has at most {MAX_SERIES_ROWS} rows"
                )));
            }
        }
        if rows.is_empty() {
            return Ok(Arc::new(datafusion::datasource::empty::EmptyTable::new(schema)));
        }
        let values = LogicalPlanBuilder::values(rows)?;
        let named: Vec<Expr> = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(index, field)| col(format!("column{}", index + 1)).alias(field.name()))
            .collect();
        let plan = values.project(named)?.build()?;
        Ok(Arc::new(ViewTable::new(plan, None)))
    }
}

/// Whether `ctx` sends its SQL to a scheduler.
pub fn is_client(ctx: &datafusion::prelude::SessionContext) -> bool {
    ctx.state()
        .config()
        .options()
        .extensions
        .get::<ballista_core::config::BallistaConfig>()
        .is_some()
}

/// A cluster's session settings, on the client and on every server: lifemap's codecs, so plans
/// carry `lines` tables, Ballista's static planner (see [`STATIC_PLANNER`]) and no join filters.
pub fn cluster_config(config: SessionConfig) -> SessionConfig {
    let mut config = config
        .with_ballista_logical_extension_codec(Arc::new(LifemapLogicalCodec::default()))
        .with_ballista_physical_extension_codec(Arc::new(LifemapPhysicalCodec::default()))
        .with_ballista_adaptive_query_planner(STATIC_PLANNER);
    // Ballista's distributed planner swaps a hash join's inputs after DataFusion has built the
    // join's dynamic filter, which DataFusion refuses ("Cannot swap HashJoinExec inputs after
    // dynamic filters have been constructed"): the step fails. Without the filter it runs. (The
    // umbrella setting too: applied from the client's settings on the scheduler, it would turn
    // the join's back on.)
    let optimizer = &mut config.options_mut().optimizer;
    optimizer.enable_dynamic_filter_pushdown = false;
    optimizer.enable_join_dynamic_filter_pushdown = false;
    // The scheduler receives a compressed CSV or NDJSON source as uncompressed (see
    // [`LifemapExecutionEngine`]) and would split its files into byte ranges, each of which an
    // executor then decompressed from the middle: half the orders went missing. Files are read
    // whole; a large source still spreads over its many files.
    optimizer.repartition_file_scans = false;
    config
}

/// Ballista 55's adaptive planner re-planned a step of the bundled pipeline without end (anti
/// joins against an empty table: thousands of stages a second, the step never finished); the
/// static distributed planner runs it. `false` = adaptive planning off.
const STATIC_PLANNER: bool = false;
