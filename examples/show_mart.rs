//! Print a published mart partition (or any Parquet folder) as a table.
//!
//! `cargo run --example show_mart -- output/marts/kpi_summary/ds=2026-10-31/ ["SELECT ... FROM t"]`

use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::prelude::{ParquetReadOptions, SessionContext};

#[tokio::main]
async fn main() -> datafusion::error::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(location) = args.next() else {
        eprintln!("usage: show_mart FOLDER [SQL over table t]");
        std::process::exit(2);
    };
    let sql = args.next().unwrap_or_else(|| "SELECT * FROM t".to_string());
    let ctx = SessionContext::new();
    ctx.register_parquet("t", &location, ParquetReadOptions::default())
        .await?;
    let batches = ctx.sql(&sql).await?.collect().await?;
    println!("{}", pretty_format_batches(&batches)?);
    Ok(())
}
