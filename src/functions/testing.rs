//! What the functions' tests share.

use datafusion::arrow::util::display::array_value_to_string;
use datafusion::logical_expr::AggregateUDF;
use datafusion::prelude::{SessionConfig, SessionContext};

/// Batches of two rows over three partitions, so partial states are made, merged and
/// spilled between stages as in a large run.
pub fn small_batch_session(functions: impl IntoIterator<Item = AggregateUDF>) -> SessionContext {
    let config = SessionConfig::new().with_target_partitions(3).with_batch_size(2);
    let ctx = SessionContext::new_with_config(config);
    for function in functions {
        ctx.register_udaf(function);
    }
    ctx
}

/// Each result row as its cells joined by `|`, in the order the query gives them.
pub async fn query_lines(ctx: &SessionContext, sql: &str) -> Vec<String> {
    let batches = ctx.sql(sql).await.expect("plan").collect().await.expect("run");
    let mut lines = Vec::new();
    for batch in &batches {
        for row in 0..batch.num_rows() {
            let cells: Vec<String> = batch
                .columns()
                .iter()
                .map(|c| array_value_to_string(c, row).expect("cell"))
                .collect();
            lines.push(cells.join("|"));
        }
    }
    lines
}
