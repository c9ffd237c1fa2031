//! `second_smallest(value)`: the second smallest non-NULL value of a group, counting equal values
//! separately (of 3, 3 and 7 it is 3); NULL when the group has fewer than two. Integers, dates and
//! timestamps.
//!
//! The time of a customer's second order, without numbering every order: `ROW_NUMBER() OVER
//! (PARTITION BY customer_id ORDER BY ordered_at)` sorted every completed order for the sake of
//! `order_number = 2`. Here a group keeps two values.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Int64Type};
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility};

use super::support::passes_filter;

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SecondSmallest {
    signature: Signature,
}

impl Default for SecondSmallest {
    fn default() -> Self {
        Self {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

/// Types whose values cast to and from `Int64` without changing order.
fn supported(data_type: &DataType) -> bool {
    data_type.is_integer()
        || matches!(
            data_type,
            DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _)
        )
}

impl AggregateUDFImpl for SecondSmallest {
    fn name(&self) -> &str {
        "second_smallest"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types {
            [value] if supported(value) => Ok(value.clone()),
            [value] => plan_err!("second_smallest takes an integer, date or timestamp, not {value}"),
            _ => plan_err!("second_smallest(value) takes one argument"),
        }
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new(format!("{}[smallest]", args.name), DataType::Int64, true)),
            Arc::new(Field::new(format!("{}[second]", args.name), DataType::Int64, true)),
        ])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(SingleGroup {
            two: TwoSmallest::new(args.return_field.data_type().clone()),
        }))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(TwoSmallest::new(args.return_field.data_type().clone())))
    }
}

/// `values` (any supported type) as Int64, NULL where the row does not count (a NULL value, or
/// left out by the filter).
fn counted_values(values: &ArrayRef, filter: Option<&BooleanArray>) -> Result<Int64Array> {
    let values = cast(values, &DataType::Int64)?;
    let values = values.as_primitive::<Int64Type>();
    Ok((0..values.len())
        .map(|row| (passes_filter(filter, row) && values.is_valid(row)).then(|| values.value(row)))
        .collect())
}

/// Per group: the two smallest values seen and how many values were seen (up to two).
#[derive(Debug)]
struct TwoSmallest {
    output: DataType,
    smallest: Vec<i64>,
    second: Vec<i64>,
    seen: Vec<u8>,
}

impl TwoSmallest {
    fn new(output: DataType) -> Self {
        Self {
            output,
            smallest: Vec::new(),
            second: Vec::new(),
            seen: Vec::new(),
        }
    }

    fn resize(&mut self, groups: usize) {
        self.smallest.resize(groups, i64::MAX);
        self.second.resize(groups, i64::MAX);
        self.seen.resize(groups, 0);
    }

    fn insert(&mut self, group: usize, value: i64) {
        if value < self.smallest[group] {
            self.second[group] = self.smallest[group];
            self.smallest[group] = value;
        } else if value < self.second[group] {
            self.second[group] = value;
        }
        self.seen[group] = (self.seen[group] + 1).min(2);
    }

    fn insert_all(&mut self, values: &ArrayRef, groups: &[usize], filter: Option<&BooleanArray>) -> Result<()> {
        let values = counted_values(values, filter)?;
        for (value, &group) in values.iter().zip(groups) {
            if let Some(value) = value {
                self.insert(group, value);
            }
        }
        Ok(())
    }

    fn column(values: Vec<i64>, seen: &[u8], at_least: u8) -> Int64Array {
        values
            .into_iter()
            .zip(seen)
            .map(|(value, &count)| (count >= at_least).then_some(value))
            .collect()
    }
}

impl GroupsAccumulator for TwoSmallest {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.resize(total_num_groups);
        self.insert_all(&values[0], group_indices, opt_filter)
    }

    fn merge_batch(&mut self, values: &[ArrayRef], group_indices: &[usize], total_num_groups: usize) -> Result<()> {
        self.resize(total_num_groups);
        // A partial state is up to two values of its group: insert both.
        for state in values {
            self.insert_all(state, group_indices, None)?;
        }
        Ok(())
    }

    /// Each row as the state of a group of one: its value (if it counts) and no second.
    fn convert_to_state(&self, values: &[ArrayRef], opt_filter: Option<&BooleanArray>) -> Result<Vec<ArrayRef>> {
        let smallest = counted_values(&values[0], opt_filter)?;
        let rows = smallest.len();
        Ok(vec![Arc::new(smallest), Arc::new(Int64Array::new_null(rows))])
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let seen = emit_to.take_needed(&mut self.seen);
        let _ = emit_to.take_needed(&mut self.smallest);
        let second = Self::column(emit_to.take_needed(&mut self.second), &seen, 2);
        Ok(cast(&(Arc::new(second) as ArrayRef), &self.output)?)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let seen = emit_to.take_needed(&mut self.seen);
        let smallest = Self::column(emit_to.take_needed(&mut self.smallest), &seen, 1);
        let second = Self::column(emit_to.take_needed(&mut self.second), &seen, 2);
        Ok(vec![Arc::new(smallest), Arc::new(second)])
    }

    fn size(&self) -> usize {
        self.smallest.capacity() * 8 + self.second.capacity() * 8 + self.seen.capacity()
    }
}

/// The same for a query without GROUP BY: one group.
#[derive(Debug)]
struct SingleGroup {
    two: TwoSmallest,
}

impl Accumulator for SingleGroup {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.two.update_batch(values, &vec![0; values[0].len()], None, 1)
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.two.merge_batch(states, &vec![0; states[0].len()], 1)
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        self.two.resize(1);
        let second = (self.two.seen[0] >= 2).then_some(self.two.second[0]);
        ScalarValue::Int64(second).cast_to(&self.two.output)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        self.two.resize(1);
        let seen = self.two.seen[0];
        Ok(vec![
            ScalarValue::Int64((seen >= 1).then_some(self.two.smallest[0])),
            ScalarValue::Int64((seen >= 2).then_some(self.two.second[0])),
        ])
    }

    fn size(&self) -> usize {
        size_of::<Self>() + self.two.size()
    }
}

#[cfg(test)]
mod tests {
    use datafusion::logical_expr::AggregateUDF;
    use datafusion::prelude::SessionContext;

    use super::*;
    use crate::functions::testing::{query_lines, small_batch_session};

    fn session() -> SessionContext {
        small_batch_session([AggregateUDF::from(SecondSmallest::default())])
    }

    /// The result rows, sorted: groups come out of several partitions in any order.
    async fn rows(sql: &str) -> Vec<String> {
        let mut lines = query_lines(&session(), sql).await;
        lines.sort();
        lines
    }

    #[tokio::test]
    async fn the_second_value_in_order_counting_ties() {
        let sql = "SELECT g, second_smallest(v) FROM (VALUES
            ('a', 9), ('a', 3), ('a', 7), ('a', 3),
            ('b', 5), ('b', NULL), ('b', 4), ('b', 8),
            ('c', 6), ('c', NULL),
            ('d', NULL),
            ('e', 2), ('e', 1), ('e', 1)
        ) AS t(g, v) GROUP BY g";
        assert_eq!(rows(sql).await, ["a|3", "b|5", "c|", "d|", "e|1"]);
    }

    #[tokio::test]
    async fn a_filter_leaves_its_rows_out() {
        let sql = "SELECT g, second_smallest(v) FILTER (WHERE v <> 3) FROM (VALUES
            ('a', 9), ('a', 3), ('a', 7), ('a', 3), ('b', 3), ('b', 5)
        ) AS t(g, v) GROUP BY g";
        assert_eq!(rows(sql).await, ["a|9", "b|"]);
    }

    #[tokio::test]
    async fn timestamps_keep_their_type_and_a_single_group_works() {
        let sql = "SELECT second_smallest(ts), arrow_typeof(second_smallest(ts)) FROM (VALUES
            (TIMESTAMP '2026-03-01 10:00:00'), (TIMESTAMP '2026-01-05 08:30:00'),
            (TIMESTAMP '2026-02-01 00:00:00'), (NULL)
        ) AS t(ts)";
        assert_eq!(rows(sql).await, ["2026-02-01T00:00:00|Timestamp(ns)"]);
        let empty = "SELECT second_smallest(v) FROM (VALUES (1)) AS t(v)";
        assert_eq!(rows(empty).await, [""]);
    }

    #[tokio::test]
    async fn text_is_refused_by_name() {
        let err = session()
            .sql("SELECT second_smallest(v) FROM (VALUES ('x')) AS t(v)")
            .await
            .expect_err("text is not ordered as an integer");
        assert!(
            err.to_string()
                .contains("second_smallest takes an integer, date or timestamp"),
            "{err}"
        );
    }

    /// Equal to `ROW_NUMBER() ... = 2`, which it replaces, on a few thousand rows over many groups.
    #[tokio::test]
    async fn matches_the_row_number_it_replaces() {
        let values: Vec<String> = (0..3000u64)
            .map(|i| {
                let hashed = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
                format!("({}, {})", i % 700, hashed % 97)
            })
            .collect();
        let table = format!("(VALUES {}) AS t(g, v)", values.join(", "));
        let ours = rows(&format!("SELECT g, second_smallest(v) FROM {table} GROUP BY g")).await;
        let numbered = rows(&format!(
            "SELECT g, MAX(CASE WHEN n = 2 THEN v END) FROM (
               SELECT g, v, ROW_NUMBER() OVER (PARTITION BY g ORDER BY v) AS n FROM {table}
             ) GROUP BY g"
        ))
        .await;
        assert_eq!(ours.len(), 700);
        assert_eq!(ours, numbered);
    }
}
