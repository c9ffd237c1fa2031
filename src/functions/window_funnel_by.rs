//! `window_funnel_by(window, ts, entry, cond1, cond2, ...)`: one funnel level per entry value.
//!
//! For every distinct non-NULL `entry` among the group's events that satisfy `cond1`, the level
//! `window_funnel(window, ts, cond1 AND entry = <that value>, cond2, ...)` would give, returned
//! as a list of `{entry, level}` sorted by entry. An event whose `entry` is NULL is never a first
//! step; the later conditions ignore `entry`.
//!
//! Why: the bundled funnel counts a person once per entry month. Grouped by (person, month), each
//! month needs the person's later events too, which took a range join of every touch with every
//! start and an aggregate over its output, quadratic in a large run's touches. Grouped by person
//! alone, one pass stores each touch once and the months are swept from the same sorted list.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int32Array, Int64Array, ListArray, StructArray, TimestampMicrosecondArray,
    UInt32Array,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{
    DataType, Field, FieldRef, Fields, Int64Type, TimeUnit, TimestampMicrosecondType, UInt32Type,
};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility};

use super::support::TaggedItems;
use super::window_funnel::{coerce_funnel_arguments, funnel_level, list_type, window_micros};

/// No entry: the event is not a first step of any funnel.
const NO_ENTRY: u32 = u32::MAX;

/// One stored event: its time, the conditions it satisfies, and (for a first step) the index of
/// its entry value in the accumulator's entry table, which keeps an event at 16 bytes.
type Event = (i64, u32, u32);

/// The SQL function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct WindowFunnelBy {
    signature: Signature,
}

impl Default for WindowFunnelBy {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

/// `{entry, level}`, the entry in the type of the `entry` argument.
fn item_fields(entry_type: &DataType) -> Fields {
    Fields::from(vec![
        Field::new("entry", entry_type.clone(), false),
        Field::new("level", DataType::Int32, false),
    ])
}

impl AggregateUDFImpl for WindowFunnelBy {
    fn name(&self) -> &str {
        "window_funnel_by"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        coerce_funnel_arguments(
            "window_funnel_by(window, ts, entry, cond1, ...)",
            &["second", "third (entry)"],
            arg_types,
        )
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let entry = arg_types
            .get(2)
            .cloned()
            .unwrap_or(DataType::Timestamp(TimeUnit::Microsecond, None));
        Ok(list_type(DataType::Struct(item_fields(&entry))))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let field =
            |part: &str, t: DataType| Arc::new(Field::new(format!("{}[{part}]", args.name), list_type(t), true));
        Ok(vec![
            field("ts", DataType::Int64),
            field("conds", DataType::UInt32),
            field("entries", DataType::Int64),
        ])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(FunnelByAccumulator(FunnelByGroups::new(&args)?)))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(FunnelByGroups::new(&args)?))
    }
}

/// The entry values seen, each stored once; events refer to them by index.
#[derive(Debug, Default)]
struct Entries {
    values: Vec<i64>,
    index: HashMap<i64, u32>,
}

impl Entries {
    fn index_of(&mut self, value: i64) -> u32 {
        // Entries are few (months): a scan beats hashing until there are many.
        if self.values.len() <= 16
            && let Some(found) = self.values.iter().position(|&v| v == value)
        {
            return found as u32;
        }
        *self.index.entry(value).or_insert_with(|| {
            self.values.push(value);
            (self.values.len() - 1) as u32
        })
    }

    fn size(&self) -> usize {
        self.values.capacity() * size_of::<i64>() + self.index.capacity() * (size_of::<(i64, u32)>() + 1)
    }
}

/// Every group's events, in one buffer.
#[derive(Debug)]
struct FunnelByGroups {
    window: i64,
    steps: usize,
    entry_type: DataType,
    entries: Entries,
    events: TaggedItems<Event>,
}

impl FunnelByGroups {
    fn new(args: &AccumulatorArgs) -> Result<Self> {
        let entry_type = match args.return_field.data_type() {
            DataType::List(item) => match item.data_type() {
                DataType::Struct(fields) => fields[0].data_type().clone(),
                other => return exec_err!("window_funnel_by: unexpected item type {other}"),
            },
            other => return exec_err!("window_funnel_by: unexpected return type {other}"),
        };
        Ok(Self {
            window: window_micros(args)?,
            steps: args.exprs.len() - 3,
            entry_type,
            entries: Entries::default(),
            events: TaggedItems::default(),
        })
    }

    /// Each input row that satisfies some condition, as (row, event); `cond1` only counts with an
    /// entry.
    fn input_events(&mut self, values: &[ArrayRef], filter: Option<&BooleanArray>) -> Result<Vec<(usize, Event)>> {
        let (Some(ts), Some(entry)) = (
            values
                .get(1)
                .and_then(|a| a.as_primitive_opt::<TimestampMicrosecondType>()),
            values
                .get(2)
                .and_then(|a| a.as_primitive_opt::<TimestampMicrosecondType>()),
        ) else {
            return exec_err!("window_funnel_by: timestamps were not coerced to microseconds");
        };
        let conds: Vec<&BooleanArray> = values[3..].iter().filter_map(|a| a.as_boolean_opt()).collect();
        if conds.len() != values.len() - 3 {
            return exec_err!("window_funnel_by: conditions were not coerced to booleans");
        }
        let mut events = Vec::new();
        for row in 0..ts.len() {
            if ts.is_null(row) || filter.is_some_and(|f| !f.is_valid(row) || !f.value(row)) {
                continue;
            }
            let mut mask = 0u32;
            for (bit, cond) in conds.iter().enumerate() {
                if cond.is_valid(row) && cond.value(row) {
                    mask |= 1 << bit;
                }
            }
            let mut entry_index = NO_ENTRY;
            if mask & 1 != 0 {
                if entry.is_valid(row) {
                    entry_index = self.entries.index_of(entry.value(row));
                } else {
                    mask &= !1;
                }
            }
            if mask != 0 {
                events.push((row, (ts.value(row), mask, entry_index)));
            }
        }
        Ok(events)
    }

    /// The state lists of groups (`events[offsets[g]..offsets[g + 1]]` each): times, condition
    /// masks and entry values (0 for no entry).
    fn state_of(&self, offsets: &[usize], events: &[Event]) -> Result<Vec<ArrayRef>> {
        let offsets = OffsetBuffer::new(
            offsets
                .iter()
                .map(|&o| i32::try_from(o))
                .collect::<std::result::Result<Vec<i32>, _>>()
                .map_err(|_| {
                    datafusion::common::DataFusionError::Execution("window_funnel_by: state too large".into())
                })?
                .into(),
        );
        let events = || events.iter();
        let times = Int64Array::from_iter_values(events().map(|e| e.0));
        let masks = UInt32Array::from_iter_values(events().map(|e| e.1));
        let entries = Int64Array::from_iter_values(events().map(|e| self.entry_value(e.2)));
        let list = |t: DataType, values: ArrayRef| -> ArrayRef {
            Arc::new(ListArray::new(
                Arc::new(Field::new_list_field(t, true)),
                offsets.clone(),
                values,
                None,
            ))
        };
        Ok(vec![
            list(DataType::Int64, Arc::new(times)),
            list(DataType::UInt32, Arc::new(masks)),
            list(DataType::Int64, Arc::new(entries)),
        ])
    }

    fn entry_value(&self, index: u32) -> i64 {
        self.entries.values.get(index as usize).copied().unwrap_or(0)
    }

    /// The events of each state row, re-indexed into this accumulator's entry table, added to
    /// the row's group.
    fn merge_states(&mut self, states: &[ArrayRef], group_indices: &[usize]) -> Result<()> {
        let (Some(ts), Some(masks), Some(entries)) = (
            states.first().and_then(|a| a.as_list_opt::<i32>()),
            states.get(1).and_then(|a| a.as_list_opt::<i32>()),
            states.get(2).and_then(|a| a.as_list_opt::<i32>()),
        ) else {
            return exec_err!("window_funnel_by: unexpected state");
        };
        // The lists' flat values, read through the offsets (no array per row).
        let times = ts.values().as_primitive::<Int64Type>().values();
        let conds = masks.values().as_primitive::<UInt32Type>().values();
        let values = entries.values().as_primitive::<Int64Type>().values();
        let offsets = ts.value_offsets();
        for (row, &group) in group_indices.iter().enumerate() {
            if ts.is_null(row) {
                continue;
            }
            for i in offsets[row] as usize..offsets[row + 1] as usize {
                let entry = if conds[i] & 1 != 0 {
                    self.entries.index_of(values[i])
                } else {
                    NO_ENTRY
                };
                self.events.push(group, (times[i], conds[i], entry));
            }
        }
        Ok(())
    }

    /// `{entry, level}` lists of groups (`events[offsets[g]..offsets[g + 1]]` each).
    fn levels_of(&self, offsets: &[usize], events: &mut [Event]) -> Result<ArrayRef> {
        let mut lengths = Vec::with_capacity(offsets.len().saturating_sub(1));
        let (mut entries, mut levels) = (Vec::new(), Vec::new());
        let mut scratch = Vec::new();
        for bounds in offsets.windows(2) {
            let mut found = entry_levels(&mut events[bounds[0]..bounds[1]], self.window, self.steps, &mut scratch);
            found.sort_unstable_by_key(|&(entry, _)| self.entry_value(entry));
            lengths.push(found.len());
            for (entry, level) in found {
                entries.push(self.entry_value(entry));
                levels.push(level as i32);
            }
        }
        let entries = TimestampMicrosecondArray::from(entries).with_data_type(self.entry_type.clone());
        let fields = item_fields(&self.entry_type);
        let items = StructArray::try_new(
            fields.clone(),
            vec![Arc::new(entries), Arc::new(Int32Array::from(levels))],
            None,
        )?;
        Ok(Arc::new(ListArray::try_new(
            Arc::new(Field::new_list_field(DataType::Struct(fields), true)),
            OffsetBuffer::from_lengths(lengths),
            Arc::new(items),
            None,
        )?))
    }
}

/// The level of each entry of `events` (sorted here), as (entry index, level) in the order of
/// the entries' first starts; `scratch` is reused between calls.
fn entry_levels(events: &mut [Event], window: i64, steps: usize, scratch: &mut Vec<(i64, u32)>) -> Vec<(u32, u32)> {
    events.sort_unstable();
    // Each entry's first and last start: only events from the first to the last plus the window
    // can be in one of its chains.
    let mut spans: Vec<(u32, i64, i64)> = Vec::new();
    for &(ts, mask, entry) in events.iter() {
        if mask & 1 == 0 {
            continue;
        }
        match spans.iter_mut().find(|s| s.0 == entry) {
            Some(span) => span.2 = ts,
            None => spans.push((entry, ts, ts)),
        }
    }
    spans
        .into_iter()
        .map(|(entry, first, last)| {
            let from = events.partition_point(|e| e.0 < first);
            let until = events.partition_point(|e| e.0 <= last.saturating_add(window));
            scratch.clear();
            scratch.extend(events[from..until].iter().map(|&(ts, mask, other)| {
                let start = if other == entry { mask } else { mask & !1 };
                (ts, start)
            }));
            (entry, funnel_level(scratch, window, steps))
        })
        .collect()
}

impl GroupsAccumulator for FunnelByGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.events.resize(total_num_groups);
        for (row, event) in self.input_events(values, opt_filter)? {
            self.events.push(group_indices[row], event);
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let (offsets, mut events) = self.events.take(emit_to);
        self.levels_of(&offsets, &mut events)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let (offsets, events) = self.events.take(emit_to);
        self.state_of(&offsets, &events)
    }

    fn merge_batch(&mut self, values: &[ArrayRef], group_indices: &[usize], total_num_groups: usize) -> Result<()> {
        self.events.resize(total_num_groups);
        self.merge_states(values, group_indices)
    }

    fn convert_to_state(&self, values: &[ArrayRef], opt_filter: Option<&BooleanArray>) -> Result<Vec<ArrayRef>> {
        // Entries are written by value in the state, so a scratch table serves.
        let mut scratch = FunnelByGroups {
            window: self.window,
            steps: self.steps,
            entry_type: self.entry_type.clone(),
            entries: Entries::default(),
            events: TaggedItems::default(),
        };
        let rows = values.first().map_or(0, |a| a.len());
        scratch.events.resize(rows);
        for (row, event) in scratch.input_events(values, opt_filter)? {
            scratch.events.push(row, event);
        }
        let (offsets, events) = scratch.events.take(EmitTo::All);
        scratch.state_of(&offsets, &events)
    }

    fn size(&self) -> usize {
        self.events.size() + self.entries.size()
    }
}

/// The ungrouped form: the grouped one with a single group.
#[derive(Debug)]
struct FunnelByAccumulator(FunnelByGroups);

impl Accumulator for FunnelByAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let rows = values.first().map_or(0, |a| a.len());
        GroupsAccumulator::update_batch(&mut self.0, values, &vec![0; rows], None, 1)
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        self.0.events.resize(1);
        let levels = GroupsAccumulator::evaluate(&mut self.0, EmitTo::All)?;
        ScalarValue::try_from_array(&levels, 0)
    }

    fn size(&self) -> usize {
        size_of_val(self) + GroupsAccumulator::size(&self.0)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        self.0.events.resize(1);
        let lists = GroupsAccumulator::state(&mut self.0, EmitTo::All)?;
        lists.iter().map(|a| ScalarValue::try_from_array(a, 0)).collect()
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let rows = states.first().map_or(0, |a| a.len());
        GroupsAccumulator::merge_batch(&mut self.0, states, &vec![0; rows], 1)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::TimestampMicrosecondArray;
    use datafusion::arrow::datatypes::Int32Type;
    use proptest::prelude::*;

    use super::*;

    const DAY: i64 = 86_400_000_000;

    fn groups(window: i64, steps: usize) -> FunnelByGroups {
        FunnelByGroups {
            window,
            steps,
            entry_type: DataType::Timestamp(TimeUnit::Microsecond, None),
            entries: Entries::default(),
            events: TaggedItems::default(),
        }
    }

    /// (group, ts, entry, cond1, cond2, cond3).
    type Row = (usize, i64, Option<i64>, bool, bool, bool);

    /// Rows as the function's arguments and their groups.
    fn arguments(rows: &[Row]) -> (Vec<ArrayRef>, Vec<usize>) {
        let values: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![0; rows.len()])),
            Arc::new(TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(TimestampMicrosecondArray::from(
                rows.iter().map(|r| r.2).collect::<Vec<_>>(),
            )),
            Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.3)))),
            Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.4)))),
            Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.5)))),
        ];
        (values, rows.iter().map(|r| r.0).collect())
    }

    /// Each group's `(entry, level)` pairs.
    fn read(levels: &ArrayRef) -> Vec<Vec<(i64, i32)>> {
        let lists = levels.as_list::<i32>();
        (0..lists.len())
            .map(|row| {
                let items = lists.value(row);
                let items = items.as_struct();
                let entries = items.column(0).as_primitive::<TimestampMicrosecondType>();
                let levels = items.column(1).as_primitive::<Int32Type>();
                (0..items.len()).map(|i| (entries.value(i), levels.value(i))).collect()
            })
            .collect()
    }

    /// Two entry months for one person: the March start converts (consideration and order in
    /// its window), the January start reaches consideration only, and an awareness touch with no
    /// entry (outside the months shown) starts nothing though it lies before both.
    #[test]
    fn one_level_per_entry_from_the_same_touches() -> Result<()> {
        let (jan, mar) = (1000, 3000);
        let rows = [
            (0, 0, None, true, false, false),
            (0, 10 * DAY, Some(jan), true, false, false),
            (0, 12 * DAY, Some(jan), true, false, false),
            (0, 20 * DAY, None, false, true, false),
            (0, 60 * DAY, Some(mar), true, false, false),
            (0, 70 * DAY, None, false, true, false),
            (0, 80 * DAY, None, false, false, true),
            // Another person: an order with no start.
            (1, 5 * DAY, None, false, false, true),
        ];
        let (values, group_indices) = arguments(&rows);
        let mut acc = groups(30 * DAY, 3);
        acc.update_batch(&values, &group_indices, None, 2)?;
        assert_eq!(
            read(&acc.evaluate(EmitTo::All)?),
            vec![vec![(jan, 2), (mar, 3)], vec![]]
        );
        Ok(())
    }

    /// States carry entries by value: merged into an accumulator that numbered its entries in
    /// another order, the levels are those of one pass.
    #[test]
    fn partial_states_merge_across_entry_tables() -> Result<()> {
        let (jan, feb) = (1000, 2000);
        let first = [
            (0, DAY, Some(jan), true, false, false),
            (0, 40 * DAY, Some(feb), true, false, false),
        ];
        let second = [
            (0, 45 * DAY, None, false, true, false),
            (0, 2 * DAY, None, false, true, false),
        ];
        let mut one_pass = groups(10 * DAY, 3);
        let mut partial_a = groups(10 * DAY, 3);
        let mut partial_b = groups(10 * DAY, 3);
        let mut merged = groups(10 * DAY, 3);
        // The final accumulator has seen February first.
        let (values, indices) = arguments(&[(0, 50 * DAY, Some(feb), true, false, false)]);
        merged.update_batch(&values, &indices, None, 1)?;
        one_pass.update_batch(&values, &indices, None, 1)?;
        for (rows, partial) in [(&first[..], &mut partial_a), (&second[..], &mut partial_b)] {
            let (values, indices) = arguments(rows);
            one_pass.update_batch(&values, &indices, None, 1)?;
            partial.update_batch(&values, &indices, None, 1)?;
            merged.merge_batch(&partial.state(EmitTo::All)?, &[0], 1)?;
        }
        // Rows passed on without a partial aggregation (each its own state) change nothing more:
        // the same starts again.
        let (values, _) = arguments(&first);
        merged.merge_batch(&merged.convert_to_state(&values, None)?, &[0, 0], 1)?;
        let expected = vec![vec![(jan, 2), (feb, 2)]];
        assert_eq!(read(&one_pass.evaluate(EmitTo::All)?), expected);
        assert_eq!(read(&merged.evaluate(EmitTo::All)?), expected);
        Ok(())
    }

    /// The arguments are typed as window_funnel's, with the entry a second timestamp.
    #[test]
    fn arguments_coerce_like_window_funnel_with_an_entry_timestamp() {
        let function = WindowFunnelBy::default();
        let ts = DataType::Timestamp(TimeUnit::Nanosecond, None);
        let micros = DataType::Timestamp(TimeUnit::Microsecond, None);
        let types = function
            .coerce_types(&[
                DataType::Int32,
                ts.clone(),
                DataType::Date32,
                DataType::Boolean,
                DataType::Null,
            ])
            .expect("valid arguments");
        assert_eq!(
            types,
            vec![
                DataType::Int64,
                micros.clone(),
                micros,
                DataType::Boolean,
                DataType::Boolean
            ]
        );
        let error = |args: &[DataType]| function.coerce_types(args).expect_err("invalid").to_string();
        assert!(error(&[DataType::Int64, ts.clone(), ts.clone()]).contains("takes 1 to 32 conditions"));
        assert!(
            error(&[DataType::Int64, ts.clone(), DataType::Utf8, DataType::Boolean])
                .contains("window_funnel_by: the third (entry) argument must be a timestamp")
        );
        assert!(error(&[DataType::Int64, ts.clone(), ts, DataType::Int64]).contains("conditions must be boolean"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Each entry's level is window_funnel's with the first condition narrowed to that entry.
        #[test]
        fn each_entry_is_window_funnel_narrowed_to_it(
            steps in 1usize..4,
            window in 0i64..6,
            events in prop::collection::vec((0i64..12, 0u32..8, prop::option::of(0u32..3)), 0..10),
        ) {
            let mut stored: Vec<Event> = events
                .iter()
                .map(|&(ts, mask, entry)| {
                    let mask = mask & ((1 << steps) - 1);
                    match entry {
                        Some(entry) if mask & 1 != 0 => (ts, mask, entry),
                        _ => (ts, mask & !1, NO_ENTRY),
                    }
                })
                .collect();
            let mut found = entry_levels(&mut stored, window, steps, &mut Vec::new());
            found.sort_unstable();
            let mut expected: Vec<(u32, u32)> = Vec::new();
            for entry in 0..3 {
                if stored.iter().any(|e| e.1 & 1 != 0 && e.2 == entry) {
                    let mut narrowed: Vec<(i64, u32)> = stored
                        .iter()
                        .map(|&(ts, mask, other)| (ts, if other == entry { mask } else { mask & !1 }))
                        .collect();
                    expected.push((entry, funnel_level(&mut narrowed, window, steps)));
                }
            }
            prop_assert_eq!(found, expected);
        }
    }
}
