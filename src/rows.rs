//! Arrow batches as JSON objects, one per row: the failing rows a check shows in the run's results
//! and the tables a report's templates read.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::json::WriterBuilder;
use datafusion::arrow::json::writer::JsonArray;

/// Each row of `batches` as a JSON object. With `explicit_nulls` a NULL is a `null` value; without,
/// its key is left out.
pub fn to_json(batches: &[RecordBatch], explicit_nulls: bool) -> Result<Vec<serde_json::Value>, ArrowError> {
    let mut writer = WriterBuilder::new()
        .with_explicit_nulls(explicit_nulls)
        .build::<_, JsonArray>(Vec::new());
    for batch in batches {
        writer.write(batch)?;
    }
    writer.finish()?;
    let bytes = writer.into_inner();
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&bytes).map_err(|err| ArrowError::JsonError(err.to_string()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn rows_become_objects_with_or_without_their_nulls() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec![Some("a"), None])),
            ],
        )
        .expect("batch");
        let explicit = to_json(std::slice::from_ref(&batch), true).expect("json");
        assert_eq!(
            serde_json::Value::Array(explicit),
            serde_json::json!([{"id": 1, "name": "a"}, {"id": 2, "name": null}])
        );
        let omitted = to_json(&[batch], false).expect("json");
        assert_eq!(
            serde_json::Value::Array(omitted),
            serde_json::json!([{"id": 1, "name": "a"}, {"id": 2}])
        );
        assert!(to_json(&[], true).expect("json").is_empty());
    }
}
