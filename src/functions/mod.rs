//! lifemap's own SQL functions, registered in every session lifemap creates.
//!
//! - `window_funnel(window, ts, cond1, ...)`: the funnel level a group's events reached;
//! - `local_time(ts, zone)`: the wall-clock time in a zone of a UTC timestamp;
//! - `mann_kendall(x, y)` and `sens_slope(x, y)`: trend statistics of a series.

pub mod local_time;
pub mod trend;
pub mod window_funnel;

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{AggregateUDF, ScalarUDF};

/// Register every lifemap function (and the JSON functions lifemap relies on).
pub fn register_all(registry: &mut dyn FunctionRegistry) -> Result<()> {
    datafusion_functions_json::register_all(registry)?;
    registry.register_udf(Arc::new(ScalarUDF::from(local_time::LocalTime::default())))?;
    registry.register_udaf(Arc::new(AggregateUDF::from(window_funnel::WindowFunnel::default())))?;
    registry.register_udaf(Arc::new(AggregateUDF::from(trend::TrendAggregate::mann_kendall())))?;
    registry.register_udaf(Arc::new(AggregateUDF::from(trend::TrendAggregate::sens_slope())))?;
    Ok(())
}
