//! `csv_record(field, ...)`: text fields written back as one CSV record, for the quarantine's
//! `raw` column.
//!
//! A CSV row is read into typed columns, so the line as it arrived is gone by the time a row is
//! found to be bad; this writes it back as faithfully as the fields allow. An empty field (read as
//! NULL) stays an empty field, so later fields keep their positions (`concat_ws` skips NULLs and
//! shifted them), and a field holding a comma, a quote or a line break is quoted as RFC 4180 says.
//! For a file written that way, the record is the line of the file.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};
use lifemap_syntax::csv::quote_field;

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CsvRecord {
    signature: Signature,
}

impl Default for CsvRecord {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for CsvRecord {
    fn name(&self) -> &str {
        "csv_record"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    // Every field is written as text; numbers and dates take their SQL text form.
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.is_empty() {
            return plan_err!("csv_record(field, ...) takes at least one field");
        }
        Ok(arg_types
            .iter()
            .map(|t| if t.is_string() { t.clone() } else { DataType::Utf8 })
            .collect())
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(args.args.len());
        for arg in &args.args {
            let array = arg.to_array(rows)?;
            columns.push(cast(&array, &DataType::Utf8)?);
        }
        let texts: Vec<_> = columns.iter().map(|c| c.as_string_opt::<i32>()).collect();
        let mut out = StringBuilder::with_capacity(rows, rows * 16 * columns.len());
        let mut record = String::new();
        for row in 0..rows {
            record.clear();
            for (i, column) in texts.iter().enumerate() {
                let Some(column) = column else {
                    return exec_err!("csv_record: field {} is not text", i + 1);
                };
                if i > 0 {
                    record.push(',');
                }
                if column.is_valid(row) {
                    record.push_str(&quote_field(column.value(row)));
                }
            }
            out.append_value(&record);
        }
        let array: ArrayRef = Arc::new(out.finish());
        if args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_))) {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&array, 0)?));
        }
        Ok(ColumnarValue::Array(array))
    }
}

#[cfg(test)]
mod tests {
    use datafusion::logical_expr::ScalarUDF;
    use datafusion::prelude::SessionContext;

    use super::CsvRecord;
    use crate::functions::testing::query_lines;

    /// Empty fields keep their place, and a field that needs quotes gets them: the records are
    /// the lines of a CSV file whose rows are read back.
    #[tokio::test]
    async fn records_are_the_lines_they_were_read_from() {
        let lines = [
            "o8,,2026-10-22T10:00:00Z,15.00,USD,beauty,web,completed",
            ",c3,,5.00,,home,web,",
            "o9,c3,2026-10-22T10:00:00Z,-5.00,USD,\"home, garden\",web,\"said \"\"hi\"\"\"",
        ];
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("orders.csv");
        let header = "order_id,customer_id,ordered_at,amount,currency,category,channel,status";
        std::fs::write(&file, format!("{header}\n{}\n", lines.join("\n"))).expect("write");
        let ctx = SessionContext::new();
        ctx.register_udf(ScalarUDF::from(CsvRecord::default()));
        let schema = datafusion::arrow::datatypes::Schema::new(
            header
                .split(',')
                .map(|name| {
                    datafusion::arrow::datatypes::Field::new(name, datafusion::arrow::datatypes::DataType::Utf8, true)
                })
                .collect::<Vec<_>>(),
        );
        let options = datafusion::prelude::CsvReadOptions::new().schema(&schema);
        ctx.register_csv("orders", file.to_str().expect("path"), options)
            .await
            .expect("register");
        let records = query_lines(
            &ctx,
            "SELECT csv_record(order_id, customer_id, ordered_at, amount, currency, category, channel, status) FROM orders",
        )
        .await;
        assert_eq!(records, lines);
        // A number is written as its text; a line break is quoted.
        let other = query_lines(&ctx, "SELECT csv_record(1, CAST(NULL AS VARCHAR), 'a\nb')").await;
        assert_eq!(other, vec!["1,,\"a\nb\"".to_string()]);
    }
}
