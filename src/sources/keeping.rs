//! A table that keeps something alive as long as it is registered.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::prelude::Expr;

/// A table with what must go with it: for a held step, the folder of its Parquet files (removed
/// when dropped) or its share of the memory pool (returned when dropped); for a `lines` source,
/// the description a cluster rebuilds it from. Reads are the table's.
#[derive(Debug)]
pub struct Keeping<T, K> {
    pub table: T,
    pub kept: K,
}

#[async_trait::async_trait]
impl<T: TableProvider, K: std::fmt::Debug + Send + Sync + 'static> TableProvider for Keeping<T, K> {
    fn schema(&self) -> SchemaRef {
        self.table.schema()
    }

    fn table_type(&self) -> datafusion::datasource::TableType {
        self.table.table_type()
    }

    async fn scan(
        &self,
        state: &dyn datafusion::catalog::Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        self.table.scan(state, projection, filters, limit).await
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<datafusion::logical_expr::TableProviderFilterPushDown>> {
        self.table.supports_filters_pushdown(filters)
    }
}
