//! lifemap's own SQL functions, registered in every session lifemap creates.
//!
//! - `window_funnel(window, ts, cond1, ...)`: the funnel level a group's events reached;
//! - `window_funnel_by(window, ts, entry, cond1, ...)`: that level once per entry value (e.g. month);
//! - `min_by(value, key, ...)` / `max_by(...)`: the value of the row with the smallest (largest) keys;
//! - `second_smallest(value)`: a group's second smallest value (a customer's second order);
//! - `repeated_values(value)`: the integers seen more than once, as a sorted list (duplicate ids);
//! - `json_fields(line, 'a', 'b.c', ...)`: several text fields of a JSON line, parsed once;
//! - `csv_record(field, ...)`: fields written back as one CSV record (empty for NULL, quoted when needed);
//! - `fingerprint(text)`: a 64-bit hash of a text value, for cheap grouping and joining;
//! - `local_time(ts, zone)`: the wall-clock time in a zone of a UTC timestamp;
//! - `mann_kendall(x, y)` and `sens_slope(x, y)`: trend statistics of a series.

pub mod csv_record;
pub mod fingerprint;
pub mod json_fields;
pub mod local_time;
pub mod min_by;
pub mod pseudonymize;
pub mod repeated_values;
pub mod rfc3339;
pub mod second_smallest;
pub mod trend;
pub mod window_funnel;
pub mod window_funnel_by;

pub(crate) mod support;
#[cfg(test)]
pub(crate) mod testing;

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{AggregateUDF, ScalarUDF};

/// Register every lifemap function (and the JSON functions lifemap relies on).
pub fn register_all(registry: &mut dyn FunctionRegistry) -> Result<()> {
    datafusion_functions_json::register_all(registry)?;
    registry.register_udf(Arc::new(ScalarUDF::from(json_fields::JsonFields::default())))?;
    registry.register_udf(Arc::new(ScalarUDF::from(local_time::LocalTime::default())))?;
    registry.register_udf(Arc::new(ScalarUDF::from(fingerprint::Fingerprint::default())))?;
    registry.register_udf(Arc::new(ScalarUDF::from(rfc3339::ParseRfc3339::default())))?;
    registry.register_udf(Arc::new(ScalarUDF::from(csv_record::CsvRecord::default())))?;
    registry.register_udaf(Arc::new(AggregateUDF::from(window_funnel::WindowFunnel::default())))?;
    registry.register_udaf(Arc::new(
        AggregateUDF::from(window_funnel_by::WindowFunnelBy::default()),
    ))?;
    registry.register_udaf(Arc::new(AggregateUDF::from(min_by::ExtremeBy::min_by())))?;
    registry.register_udaf(Arc::new(AggregateUDF::from(min_by::ExtremeBy::max_by())))?;
    registry.register_udaf(Arc::new(AggregateUDF::from(second_smallest::SecondSmallest::default())))?;
    registry.register_udaf(Arc::new(AggregateUDF::from(repeated_values::RepeatedValues::default())))?;
    registry.register_udaf(Arc::new(AggregateUDF::from(trend::TrendAggregate::mann_kendall())))?;
    registry.register_udaf(Arc::new(AggregateUDF::from(trend::TrendAggregate::sens_slope())))?;
    Ok(())
}
