//! `json_fields(line, 'a', 'b', 'c.d', ...)`: several string fields of a JSON object, one parse.
//!
//! `json_get_str` parses the line again for every field it is asked for; staging events needs
//! seven fields of every line, so that was most of the time of the stage. This reads the line
//! once and returns a struct with one text field per path (`parsed['c.d']`). A path is keys
//! joined by dots. A field is NULL when the key is missing or its value is not a JSON string
//! (as with `json_get_str`); the first of repeated keys wins. The whole struct is NULL when the
//! line is not a valid JSON object, which is how a caller tells a malformed line.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder, StructArray};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use lifemap_syntax::json::{FieldReader, MAX_PATHS};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct JsonFields {
    signature: Signature,
}

impl Default for JsonFields {
    fn default() -> Self {
        Self {
            // Deterministic, but declared volatile on purpose: the optimizer then keeps it in the
            // one projection that names it. As immutable, projection merging and filter pushdown
            // copied the call into every `f['field']` and into the filter: 9 parses per line.
            signature: Signature::variadic_any(Volatility::Volatile),
        }
    }
}

/// The paths asked for, from the literal arguments after the line.
fn paths_of(scalars: &[Option<&ScalarValue>]) -> Result<Vec<String>> {
    if scalars.len() < 2 || scalars.len() > MAX_PATHS + 1 {
        return plan_err!("json_fields(line, 'path', ...) takes a line and 1 to {MAX_PATHS} paths");
    }
    scalars[1..]
        .iter()
        .map(|scalar| match scalar {
            Some(
                ScalarValue::Utf8(Some(path)) | ScalarValue::LargeUtf8(Some(path)) | ScalarValue::Utf8View(Some(path)),
            ) if !path.is_empty() => Ok(path.clone()),
            _ => plan_err!(
                "json_fields: every path must be a non-empty text literal, such as 'event_id' or 'properties.category'"
            ),
        })
        .collect()
}

fn fields_of(paths: &[String]) -> Fields {
    paths
        .iter()
        .map(|path| Field::new(path, DataType::Utf8, true))
        .collect()
}

impl ScalarUDFImpl for JsonFields {
    fn name(&self) -> &str {
        "json_fields"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        plan_err!("json_fields: the return type depends on the paths; use return_field_from_args")
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        if let Some(line) = args.arg_fields.first()
            && !line.data_type().is_string()
            && !line.data_type().is_null()
        {
            return plan_err!("json_fields: the line must be text; got {}", line.data_type());
        }
        let paths = paths_of(args.scalar_arguments)?;
        Ok(Arc::new(Field::new(
            self.name(),
            DataType::Struct(fields_of(&paths)),
            true,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let DataType::Struct(fields) = args.return_field.data_type() else {
            return exec_err!("json_fields: unexpected return type {}", args.return_field.data_type());
        };
        let paths: Vec<String> = fields.iter().map(|f| f.name().clone()).collect();
        let lines = args.args[0].to_array(args.number_rows)?;
        let lines: ArrayRef = if matches!(lines.data_type(), DataType::Utf8) {
            lines
        } else {
            datafusion::arrow::compute::cast(&lines, &DataType::Utf8)?
        };
        let lines = lines.as_string::<i32>();
        Ok(ColumnarValue::Array(Arc::new(extract(
            lines.iter(),
            fields.clone(),
            &paths,
        ))))
    }
}

fn extract<'a>(lines: impl Iterator<Item = Option<&'a str>>, fields: Fields, paths: &[String]) -> StructArray {
    let (rows, _) = lines.size_hint();
    let mut builders: Vec<StringBuilder> = paths
        .iter()
        .map(|_| StringBuilder::with_capacity(rows, rows * 12))
        .collect();
    let mut valid = Vec::with_capacity(rows);
    let mut reader = FieldReader::new(paths);
    for line in lines {
        let parsed = line.is_some_and(|line| reader.read(line));
        valid.push(parsed);
        for (index, builder) in builders.iter_mut().enumerate() {
            match reader.get(index) {
                Some(value) if parsed => builder.append_value(value),
                _ => builder.append_null(),
            }
        }
    }
    let columns: Vec<ArrayRef> = builders
        .into_iter()
        .map(|mut builder| Arc::new(builder.finish()) as ArrayRef)
        .collect();
    StructArray::new(fields, columns, Some(NullBuffer::from(valid)))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::StringArray;

    use super::*;

    fn run(lines: &[Option<&str>], paths: &[&str]) -> Vec<Option<Vec<Option<String>>>> {
        let owned: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
        let array = StringArray::from(lines.to_vec());
        let result = extract(array.iter(), fields_of(&owned), &owned);
        (0..result.len())
            .map(|row| {
                result.is_valid(row).then(|| {
                    (0..paths.len())
                        .map(|col| {
                            let column = result.column(col).as_string::<i32>();
                            column.is_valid(row).then(|| column.value(row).to_string())
                        })
                        .collect()
                })
            })
            .collect()
    }

    fn s(text: &str) -> Option<String> {
        Some(text.to_string())
    }

    // What a value is (nested paths, non-strings, repeated keys) is tested with the reader in
    // lifemap-syntax; here, how rows become a struct array.
    #[test]
    fn each_row_is_a_struct_and_null_or_malformed_lines_are_null_structs() {
        let got = run(
            &[
                Some(r#"{"a":"x","p":{"c":"cat"}}"#),
                None,
                Some(r#"{"a":"x""#),
                Some(r#"{"p":{"c":1}}"#),
            ],
            &["a", "p.c"],
        );
        assert_eq!(
            got,
            vec![Some(vec![s("x"), s("cat")]), None, None, Some(vec![None, None])]
        );
    }
}
