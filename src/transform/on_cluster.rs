//! Materialised steps on a Ballista cluster.
//!
//! A cluster cannot read a client's in-memory table (plans travel as protobuf, and an in-memory
//! table's rows do not), so a step held in memory or on local disk in a local run is written as
//! Parquet into the run's staging folder of the output storage, and later steps read it back from
//! there like any other Parquet table. The staging folder is deleted when the
//! run publishes or fails, and by the next run of the `ds` when a run was killed (see `marts`).

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::error::{DataFusionError, Result};
use datafusion::parquet::arrow::{ArrowWriter, AsyncArrowWriter};
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::prelude::DataFrame;
use futures::StreamExt;
use object_store::buffered::BufWriter;

use crate::storage::Location;

/// Where step `name` is held: a folder of its own below the run's steps folder.
fn folder(steps: &Location, name: &str) -> Location {
    steps.child(name)
}

/// Run `frame` on the cluster and write its rows as Parquet below `steps`; the table reading them
/// back, and the number of rows.
///
/// The rows come through the client, which writes them: Ballista 55 runs a `write_parquet` whose
/// input is shuffled into several partitions as one task that reads only the first of them (half
/// the orders of the sample went missing, silently). A plan's own output is complete.
pub async fn hold(frame: DataFrame, steps: &Location, name: &str) -> Result<(Arc<dyn TableProvider>, u64)> {
    let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
    let folder = folder(steps, name);
    let mut stream = frame.execute_stream().await?;
    let sink = BufWriter::new(Arc::clone(&folder.store), folder.path.clone().join("part-0.parquet"));
    let properties = WriterProperties::builder()
        .set_compression(Compression::LZ4_RAW)
        .build();
    let mut writer = AsyncArrowWriter::try_new(sink, Arc::clone(&schema), Some(properties))?;
    let mut rows = 0u64;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        rows += batch.num_rows() as u64;
        writer.write(&batch).await?;
    }
    writer.close().await?;
    Ok((parquet_table(&folder, schema)?, rows))
}

/// Write `batch` (computed on the client, e.g. a clustering's output) below `steps` as step
/// `name`, for the cluster to read.
pub async fn put(batch: &RecordBatch, steps: &Location, name: &str) -> Result<Arc<dyn TableProvider>> {
    let folder = folder(steps, name);
    let mut body = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut body, batch.schema(), None)?;
    writer.write(batch)?;
    writer.close()?;
    crate::storage::put(&folder, "part-0.parquet", body)
        .await
        .map_err(|err| DataFusionError::External(Box::new(err)))?;
    parquet_table(&folder, batch.schema())
}

fn parquet_table(folder: &Location, schema: SchemaRef) -> Result<Arc<dyn TableProvider>> {
    let url = ListingTableUrl::parse(folder.folder_url())?;
    Ok(Arc::new(super::on_disk::parquet_listing(url, schema)?))
}
