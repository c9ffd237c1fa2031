//! `min_by(value, key, ...)` and `max_by(value, key, ...)`: the value of a group's row with the
//! smallest (largest) keys, compared in order, so later keys break ties (`min_by(customer_id,
//! occurred_at, event_id)` = the customer of the earliest event, ties by event id). Rows where
//! any key is NULL are skipped; the value itself may be NULL. Rows whose keys are all equal are
//! told apart by the value (the smaller one), so the answer never depends on the input's order.
//!
//! The same answer as `first_value(value ORDER BY key, ...)`, which lifemap used before: in
//! DataFusion 55 that accumulator walks every group it has seen on every batch, so its cost grew
//! with the square of the input (identity stitching of a large run sorted every linked event).
//! Here a row's keys and value are encoded once per batch in Arrow's row format, whose bytes
//! compare in the keys' order; a group keeps the bytes of its best row, and a row costs one
//! byte comparison.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BinaryArray, BinaryBuilder, BooleanArray, new_null_array};
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility};

use super::support::GroupLists;

/// `min_by` or `max_by`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ExtremeBy {
    name: &'static str,
    largest: bool,
    signature: Signature,
}

impl ExtremeBy {
    pub fn min_by() -> Self {
        Self {
            name: "min_by",
            largest: false,
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }

    pub fn max_by() -> Self {
        Self {
            name: "max_by",
            largest: true,
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }

    fn rows(&self, args: &AccumulatorArgs) -> Result<BestRows> {
        let types: Vec<DataType> = args.expr_fields.iter().map(|f| f.data_type().clone()).collect();
        BestRows::new(&types, self.largest)
    }
}

impl AggregateUDFImpl for ExtremeBy {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types {
            [value, _, ..] => Ok(value.clone()),
            _ => plan_err!("{}(value, key, ...) takes a value and at least one key", self.name),
        }
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}[row]", args.name),
            DataType::Binary,
            true,
        ))])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(OneGroup::new(self.rows(&args)?)))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(self.rows(&args)?))
    }
}

/// For each group, the encoded (keys..., value) of its best row so far; empty while it has none
/// (an encoded row is never empty).
struct BestRows {
    converter: RowConverter,
    /// Keys and value: how many columns a decoded row has.
    field_count: usize,
    /// The value's type: a dictionary comes back from the row format as its values' type.
    value_type: DataType,
    best: GroupLists<u8>,
    /// An encoded row of NULLs, decoded for groups without a row.
    null_row: Vec<u8>,
}

impl BestRows {
    fn new(arg_types: &[DataType], largest: bool) -> Result<Self> {
        let [value, keys @ ..] = arg_types else {
            return plan_err!("min_by/max_by: no arguments");
        };
        if keys.is_empty() {
            return plan_err!("min_by/max_by(value, key, ...) takes at least one key");
        }
        // Keys first, so the bytes compare by them; `largest` flips them so smaller bytes are
        // always better. The value comes last and only breaks complete ties.
        let key_order = SortOptions {
            descending: largest,
            nulls_first: false,
        };
        let fields = keys
            .iter()
            .map(|t| SortField::new_with_options(t.clone(), key_order))
            .chain([SortField::new(value.clone())])
            .collect();
        let converter = RowConverter::new(fields)?;
        let nulls: Vec<ArrayRef> = keys.iter().chain([value]).map(|t| new_null_array(t, 1)).collect();
        let null_row = converter.convert_columns(&nulls)?.row(0).as_ref().to_vec();
        Ok(Self {
            converter,
            field_count: keys.len() + 1,
            value_type: value.clone(),
            best: GroupLists::default(),
            null_row,
        })
    }

    /// Keep `row` for `group` if it beats the group's best.
    fn offer(&mut self, group: usize, row: &[u8]) {
        let best = &self.best.lists[group];
        if best.is_empty() || row < best.as_slice() {
            self.best.update(group, |best| {
                best.clear();
                best.extend_from_slice(row);
            });
        }
    }

    /// The values of `best` rows (NULL where a group has none).
    fn decode(&self, best: &[Vec<u8>]) -> Result<ArrayRef> {
        let parser = self.converter.parser();
        let rows = best
            .iter()
            .map(|b| parser.parse(if b.is_empty() { &self.null_row } else { b }));
        let mut columns = self.converter.convert_rows(rows)?;
        match columns.pop() {
            Some(value) if columns.len() + 1 == self.field_count => {
                if value.data_type() == &self.value_type {
                    Ok(value)
                } else {
                    Ok(datafusion::arrow::compute::cast(&value, &self.value_type)?)
                }
            }
            _ => exec_err!("min_by/max_by: decoded rows lack the value"),
        }
    }

    fn state_of(best: &[Vec<u8>]) -> ArrayRef {
        let state: BinaryArray = best.iter().map(|b| (!b.is_empty()).then_some(b.as_slice())).collect();
        Arc::new(state)
    }

    /// The input rows encoded, and whether each takes part (not with a NULL key or filtered out).
    fn encode(&self, values: &[ArrayRef], filter: Option<&BooleanArray>) -> Result<(Rows, Vec<bool>)> {
        let [value, keys @ ..] = values else {
            return exec_err!("min_by/max_by: no arguments");
        };
        let columns: Vec<ArrayRef> = keys.iter().chain([value]).cloned().collect();
        let rows = self.converter.convert_columns(&columns)?;
        let taking_part = (0..value.len())
            .map(|i| keys.iter().all(|k| k.is_valid(i)) && super::support::passes_filter(filter, i))
            .collect();
        Ok((rows, taking_part))
    }
}

impl GroupsAccumulator for BestRows {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.best.resize(total_num_groups);
        let (rows, taking_part) = self.encode(values, opt_filter)?;
        for (i, &group) in group_indices.iter().enumerate() {
            if taking_part[i] {
                self.offer(group, rows.row(i).as_ref());
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let taken = self.best.take(emit_to);
        self.decode(&taken)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let taken = self.best.take(emit_to);
        Ok(vec![Self::state_of(&taken)])
    }

    fn merge_batch(&mut self, values: &[ArrayRef], group_indices: &[usize], total_num_groups: usize) -> Result<()> {
        self.best.resize(total_num_groups);
        let Some(state) = values.first().and_then(|a| a.as_binary_opt::<i32>()) else {
            return exec_err!("min_by/max_by: unexpected state");
        };
        for (i, &group) in group_indices.iter().enumerate() {
            if state.is_valid(i) {
                self.offer(group, state.value(i));
            }
        }
        Ok(())
    }

    fn convert_to_state(&self, values: &[ArrayRef], opt_filter: Option<&BooleanArray>) -> Result<Vec<ArrayRef>> {
        let (rows, taking_part) = self.encode(values, opt_filter)?;
        let mut state = BinaryBuilder::with_capacity(rows.num_rows(), rows.size());
        for (i, takes_part) in taking_part.into_iter().enumerate() {
            state.append_option(takes_part.then(|| rows.row(i)));
        }
        Ok(vec![Arc::new(state.finish())])
    }

    fn size(&self) -> usize {
        self.best.size() + self.converter.size()
    }
}

/// The ungrouped form: one group, which stays (a window function evaluates it again and again).
struct OneGroup(BestRows);

impl OneGroup {
    fn new(mut rows: BestRows) -> Self {
        rows.best.resize(1);
        Self(rows)
    }
}

impl std::fmt::Debug for OneGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("min_by/max_by accumulator")
    }
}

impl Accumulator for OneGroup {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let rows = values.first().map_or(0, |a| a.len());
        self.0.update_batch(values, &vec![0; rows], None, 1)
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        ScalarValue::try_from_array(&self.0.decode(&self.0.best.lists)?, 0)
    }

    fn size(&self) -> usize {
        size_of_val(self) + GroupsAccumulator::size(&self.0)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::try_from_array(
            &BestRows::state_of(&self.0.best.lists),
            0,
        )?])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let rows = states.first().map_or(0, |a| a.len());
        self.0.merge_batch(states, &vec![0; rows], 1)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;

    use super::*;
    use crate::functions::testing::{query_lines as rows, small_batch_session};

    fn session() -> SessionContext {
        small_batch_session([
            AggregateUDF::from(ExtremeBy::min_by()),
            AggregateUDF::from(ExtremeBy::max_by()),
        ])
    }

    use datafusion::logical_expr::AggregateUDF;

    const EVENTS: &str = "(VALUES
        ('a', 'c1', 5, 'e2'), ('a', 'c2', 3, 'e9'), ('a', 'c3', 3, 'e1'), ('a', 'c4', NULL, 'e0'),
        ('b', NULL, 1, 'e5'), ('b', 'c6', 2, 'e4'),
        ('c', 'c7', NULL, 'e3'),
        ('d', 'c8', 7, 'e7'), ('d', 'c9', 7, 'e7')
    ) AS t(g, v, ts, id)";

    #[tokio::test]
    async fn value_of_the_smallest_and_largest_keys_per_group() {
        let ctx = session();
        let got = rows(
            &ctx,
            &format!(
                "SELECT g, min_by(v, ts, id), max_by(v, ts, id), min_by(v, id)
                 FROM {EVENTS} GROUP BY g ORDER BY g"
            ),
        )
        .await;
        // a: ts 3 twice, e1 < e9 → c3; the NULL ts row is skipped by the first two, not by the
        //    third (its key is id). b: the earliest row's value is NULL, and stays NULL.
        // c: its only row has a NULL key → NULL. d: keys tie completely → the smaller value,
        // for max_by too.
        assert_eq!(got, ["a|c3|c1|c4", "b||c6|c6", "c|||c7", "d|c8|c8|c8"]);
    }

    #[tokio::test]
    async fn whole_table_window_and_filter_forms() {
        let ctx = session();
        let got = rows(
            &ctx,
            &format!(
                "SELECT min_by(v, ts, id), max_by(ts, id), max_by(arrow_cast(v, 'Dictionary(Int32, Utf8)'), ts, id)
                 FROM {EVENTS}"
            ),
        )
        .await;
        // The earliest row (b, ts 1) has a NULL value; the largest id, e9, has ts 3; the latest
        // row, ts 7, ties on id e7 and the smaller value wins, given back as a dictionary.
        assert_eq!(got, ["|3|c8"]);
        let got = rows(
            &ctx,
            &format!("SELECT min_by(v, ts) FILTER (WHERE g = 'a'), max_by(v, ts) FILTER (WHERE v <> 'c1') FROM {EVENTS} WHERE g = 'a'"),
        )
        .await;
        assert_eq!(got, ["c2|c2"]);
        // A window evaluates one accumulator after every row: the state must survive it.
        let got = rows(
            &ctx,
            &format!(
                "SELECT id, min_by(v, id) OVER (ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
                 FROM {EVENTS} WHERE g = 'a' ORDER BY id"
            ),
        )
        .await;
        assert_eq!(got, ["e0|c4", "e1|c4", "e2|c4", "e9|c4"]);
    }

    /// The same answers as `first_value(… ORDER BY …)` (DataFusion's own implementation) on rows
    /// with many ties, across partial and final aggregation.
    #[tokio::test]
    async fn agrees_with_first_value() {
        let ctx = session();
        let sql = "WITH t AS (
                SELECT value % 97 AS g, (value * 7919) % 13 AS k1, (value * 104729) % 5 AS k2,
                       CAST(value AS VARCHAR) AS v
                FROM generate_series(1, 3000)
            )
            SELECT g,
                   min_by(v, k1, k2) = first_value(v ORDER BY k1, k2, v),
                   max_by(v, k1, k2) = first_value(v ORDER BY k1 DESC, k2 DESC, v)
            FROM t GROUP BY g";
        let got = rows(&ctx, sql).await;
        assert_eq!(got.len(), 97);
        assert!(got.iter().all(|r| r.ends_with("|true|true")), "{got:?}");
    }

    #[test]
    fn a_key_is_required() {
        let udaf = ExtremeBy::min_by();
        assert!(udaf.return_type(&[DataType::Utf8]).is_err());
    }
}
