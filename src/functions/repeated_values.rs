//! `repeated_values(value)`: the 64-bit integers that occur more than once among an aggregate's
//! non-NULL values, each once, ascending, as a list. `unnest` turns the list into rows.
//!
//! Why not `GROUP BY value HAVING COUNT(*) > 1`: finding the event ids seen twice grouped every
//! event's fingerprint, a hash table of as many groups as events (the slowest step
//! per event as the table outgrew the caches). Here each partition sorts its values and the final
//! stage merges the sorted runs, reading each value once; a value takes 8 bytes, twice during the
//! merge. The price: an aggregate without groups cannot spill, so the values must fit in memory.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array, ListArray};
use datafusion::arrow::buffer::{OffsetBuffer, ScalarBuffer};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Int64Type};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};

use super::window_funnel::list_type;

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct RepeatedValues {
    signature: Signature,
}

impl Default for RepeatedValues {
    fn default() -> Self {
        Self {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for RepeatedValues {
    fn name(&self) -> &str {
        "repeated_values"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types {
            [value] if value.is_integer() || value.is_null() => Ok(list_type(DataType::Int64)),
            [value] => plan_err!("repeated_values takes an integer (e.g. a fingerprint), not {value}"),
            _ => plan_err!("repeated_values(value) takes one argument"),
        }
    }

    fn is_nullable(&self) -> bool {
        false
    }

    fn default_value(&self, _data_type: &DataType) -> Result<ScalarValue> {
        Ok(ScalarValue::List(Arc::new(sorted_list(ScalarBuffer::from(Vec::new())))))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}[sorted]", args.name),
            list_type(DataType::Int64),
            true,
        ))])
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(SortedRuns::default()))
    }
}

/// One list row holding `values`, without copying them.
fn sorted_list(values: ScalarBuffer<i64>) -> ListArray {
    let length = values.len();
    ListArray::new(
        Arc::new(Field::new_list_field(DataType::Int64, true)),
        OffsetBuffer::from_lengths([length]),
        Arc::new(Int64Array::new(values, None)),
        None,
    )
}

/// Values added here and not yet sorted, and sorted runs received from other partitions.
#[derive(Debug, Default)]
struct SortedRuns {
    unsorted: Vec<i64>,
    runs: Vec<ScalarBuffer<i64>>,
}

impl SortedRuns {
    /// Every value as one sorted run per source (the values added here sorted first).
    fn all_runs(&mut self) -> Vec<ScalarBuffer<i64>> {
        let mut runs = std::mem::take(&mut self.runs);
        if !self.unsorted.is_empty() {
            let own = std::mem::take(&mut self.unsorted);
            runs.push(ScalarBuffer::from(radix_sorted(own)));
        }
        runs
    }
}

impl Accumulator for SortedRuns {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let Some(values) = values.first() else {
            return exec_err!("repeated_values: no argument");
        };
        let values = cast(values, &DataType::Int64)?;
        let values = values.as_primitive::<Int64Type>();
        if values.null_count() == 0 {
            self.unsorted.extend_from_slice(values.values());
        } else {
            self.unsorted.extend(values.iter().flatten());
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let merged = merge_runs(self.all_runs());
        Ok(vec![ScalarValue::List(Arc::new(sorted_list(merged)))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let Some(lists) = states.first().and_then(|a| a.as_list_opt::<i32>()) else {
            return exec_err!("repeated_values: unexpected state");
        };
        for row in 0..lists.len() {
            if lists.is_valid(row) {
                let run = lists.value(row);
                let run = run.as_primitive::<Int64Type>();
                if run.null_count() > 0 {
                    return exec_err!("repeated_values: a NULL in a sorted run");
                }
                if !run.is_empty() {
                    self.runs.push(run.values().clone());
                }
            }
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        // The last two runs are walked, not merged into one more copy of every value.
        let mut runs = self.all_runs();
        while runs.len() > 2 {
            runs = merge_pairs(runs);
        }
        let empty = ScalarBuffer::from(Vec::new());
        let (first, second) = match runs.as_slice() {
            [first, second] => (first, second),
            [only] => (only, &empty),
            _ => (&empty, &empty),
        };
        let mut repeated = Vec::new();
        let mut previous = None;
        merge_with(first, second, |value| {
            if previous == Some(value) && repeated.last() != Some(&value) {
                repeated.push(value);
            }
            previous = Some(value);
        });
        Ok(ScalarValue::List(Arc::new(sorted_list(ScalarBuffer::from(repeated)))))
    }

    fn size(&self) -> usize {
        size_of_val(self)
            + self.unsorted.capacity() * size_of::<i64>()
            + self.runs.iter().map(|run| run.inner().capacity()).sum::<usize>()
    }
}

/// `values` sorted, by an LSD radix sort on 11-bit digits: six linear passes, where a comparison
/// sort of a partition's fingerprints on a large run took several times as long.
fn radix_sorted(mut values: Vec<i64>) -> Vec<i64> {
    const BITS: u32 = 11;
    const BUCKETS: usize = 1 << BITS;
    if values.len() < 4096 {
        values.sort_unstable();
        return values;
    }
    // Flipping the sign bit orders the two's-complement values as unsigned keys.
    let key = |v: i64| (v as u64) ^ (1 << 63);
    let mut scratch = vec![0i64; values.len()];
    let mut shift = 0;
    while shift < 64 {
        let mut counts = [0usize; BUCKETS];
        for &v in &values {
            counts[((key(v) >> shift) as usize) & (BUCKETS - 1)] += 1;
        }
        // A digit every value shares sorts nothing.
        if !counts.contains(&values.len()) {
            let mut next = [0usize; BUCKETS];
            let mut sum = 0;
            for (slot, count) in next.iter_mut().zip(counts) {
                *slot = sum;
                sum += count;
            }
            for &v in &values {
                let digit = ((key(v) >> shift) as usize) & (BUCKETS - 1);
                scratch[next[digit]] = v;
                next[digit] += 1;
            }
            std::mem::swap(&mut values, &mut scratch);
        }
        shift += BITS;
    }
    values
}

/// Sorted runs merged into one, two at a time.
fn merge_runs(mut runs: Vec<ScalarBuffer<i64>>) -> ScalarBuffer<i64> {
    while runs.len() > 1 {
        runs = merge_pairs(runs);
    }
    runs.pop().unwrap_or_else(|| ScalarBuffer::from(Vec::new()))
}

/// One round of merging: runs two by two (an odd last one as it is).
fn merge_pairs(runs: Vec<ScalarBuffer<i64>>) -> Vec<ScalarBuffer<i64>> {
    let mut merged = Vec::with_capacity(runs.len().div_ceil(2));
    let mut pairs = runs.into_iter();
    while let Some(first) = pairs.next() {
        merged.push(match pairs.next() {
            Some(second) => {
                let mut both = Vec::with_capacity(first.len() + second.len());
                merge_with(&first, &second, |value| both.push(value));
                ScalarBuffer::from(both)
            }
            None => first,
        });
    }
    merged
}

/// Every value of the sorted `a` and `b` to `sink`, in order.
fn merge_with(a: &[i64], b: &[i64], mut sink: impl FnMut(i64)) {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i] <= b[j] {
            sink(a[i]);
            i += 1;
        } else {
            sink(b[j]);
            j += 1;
        }
    }
    a[i..].iter().chain(&b[j..]).for_each(|&value| sink(value));
}

#[cfg(test)]
mod tests {
    use datafusion::logical_expr::AggregateUDF;

    use super::*;
    use crate::functions::testing::{query_lines, small_batch_session};

    /// Values across several partitions and batches: those seen twice or more come out once,
    /// ascending; NULLs and values seen once do not.
    #[tokio::test]
    async fn values_seen_more_than_once_across_partitions() {
        let ctx = small_batch_session([AggregateUDF::from(RepeatedValues::default())]);
        let rows = "(5), (NULL), (-3), (9), (5), (7), (-3), (NULL), (5), (1), (9), (42)";
        let sql = format!("SELECT unnest(repeated_values(v)) AS v FROM (VALUES {rows}) AS t(v)");
        assert_eq!(query_lines(&ctx, &sql).await, ["-3", "5", "9"]);
        // A FILTER leaves rows out before they are counted.
        let sql = format!("SELECT repeated_values(v) FILTER (WHERE v <> 9) FROM (VALUES {rows}) AS t(v)");
        assert_eq!(query_lines(&ctx, &sql).await, ["[-3, 5]"]);
        // No rows, or none repeated: an empty list.
        let sql = "SELECT repeated_values(v) FROM (VALUES (1), (2)) AS t(v) WHERE v > 5";
        assert_eq!(query_lines(&ctx, sql).await, ["[]"]);
        let sql = "SELECT repeated_values(CAST(v AS INT)) FROM (VALUES (1), (2), (3)) AS t(v)";
        assert_eq!(query_lines(&ctx, sql).await, ["[]"]);
    }

    /// The radix sort against the standard library's, on small and wide values of both signs.
    #[test]
    fn radix_sort_orders_like_sort_unstable() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        for length in [0, 5, 4096, 10_000] {
            for spread in [i64::MAX, 1 << 20, 3] {
                let values: Vec<i64> = (0..length).map(|_| rng.random_range(-spread..spread)).collect();
                let mut expected = values.clone();
                expected.sort_unstable();
                assert_eq!(radix_sorted(values), expected, "{length} values below {spread}");
            }
        }
    }

    /// The merge against a count of every value, on many random runs.
    #[test]
    fn merged_runs_match_counting() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for _ in 0..200 {
            let runs: Vec<Vec<i64>> = (0..rng.random_range(0..6))
                .map(|_| {
                    (0..rng.random_range(0..40))
                        .map(|_| rng.random_range(-20..20))
                        .collect()
                })
                .collect();
            let mut expected: Vec<i64> = runs.iter().flatten().copied().collect();
            expected.sort_unstable();
            let mut accumulator = SortedRuns::default();
            for run in &runs {
                let mut run = run.clone();
                run.sort_unstable();
                accumulator.runs.push(ScalarBuffer::from(run));
            }
            assert_eq!(merge_runs(accumulator.all_runs()).to_vec(), expected);
        }
    }
}
