//! `window_funnel(window, ts, cond1, cond2, ...)`: how far a group's events got through a funnel.
//!
//! The level is the length of the longest chain of **distinct** events `e1, e2, ..., ek` where `ei`
//! satisfies `cond_i`, timestamps never decrease (`ts(e1) <= ts(e2) <= ...`, equal is fine), and
//! every event is within `window` of the first (`ts(ek) <= ts(e1) + window`). 0 when no event
//! satisfies `cond1`. Like ClickHouse's `windowFunnel`, with exact handling of equal timestamps and
//! of events that satisfy several conditions.
//!
//! Algorithm: sort a group's events by time once, then sweep, keeping for each level the latest
//! start of a chain that reached it (a later start always leaves more room). Events sharing a
//! timestamp are handled together, matching them to consecutive levels with a small bipartite
//! matching so that no event counts twice. Only events that satisfy some condition are stored,
//! as 12 bytes each.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int32Array, Int64Array, ListArray, UInt32Array,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{
    DataType, Field, FieldRef, Int64Type, TimeUnit, TimestampMicrosecondType, UInt32Type,
};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility};
use datafusion::physical_expr::expressions::Literal;

use super::support::GroupLists;

/// At most this many conditions (a bit each).
pub const MAX_STEPS: usize = 32;

/// One stored event: its time and which conditions it satisfies.
type Event = (i64, u32);

/// The funnel level reached by `events` (sorted here), with `steps` conditions.
pub fn funnel_level(events: &mut [Event], window: i64, steps: usize) -> u32 {
    if steps == 0 || events.is_empty() {
        return 0;
    }
    events.sort_unstable();
    // starts[l]: latest start of a chain whose (l+1)-th event has been seen.
    let mut starts: Vec<Option<i64>> = vec![None; steps];
    let mut candidates: Vec<Option<i64>> = vec![None; steps];
    let mut best = 0usize;
    let mut index = 0;
    while index < events.len() {
        let time = events[index].0;
        let mut end = index + 1;
        while end < events.len() && events[end].0 == time {
            end += 1;
        }
        let group = &events[index..end];
        candidates.iter_mut().for_each(|c| *c = None);
        if group.len() == 1 {
            let mask = group[0].1;
            if mask & 1 != 0 {
                candidates[0] = Some(time);
            }
            for level in 1..steps {
                if mask & (1 << level) != 0
                    && let Some(start) = starts[level - 1]
                    && time <= start.saturating_add(window)
                {
                    candidates[level] = Some(start);
                }
            }
        } else {
            let masks: Vec<u32> = group.iter().map(|e| e.1).collect();
            for entry in 0..steps {
                let start = if entry == 0 {
                    time
                } else {
                    match starts[entry - 1] {
                        Some(start) if time <= start.saturating_add(window) => start,
                        _ => continue,
                    }
                };
                let reached = consecutive_levels(&masks, entry, steps);
                for candidate in &mut candidates[entry..entry + reached] {
                    *candidate = (*candidate).max(Some(start));
                }
            }
        }
        // Applied after the whole group, so an event never extends a chain it is already in.
        for level in 0..steps {
            if candidates[level].is_some() {
                starts[level] = starts[level].max(candidates[level]);
                best = best.max(level + 1);
            }
        }
        index = end;
    }
    best as u32
}

/// How many consecutive levels from `first` can take distinct events of `masks` (Kuhn's matching).
fn consecutive_levels(masks: &[u32], first: usize, steps: usize) -> usize {
    let mut owner: Vec<Option<usize>> = vec![None; masks.len()];
    let mut reached = 0;
    for level in first..steps {
        let mut seen = vec![false; masks.len()];
        if !augment(level, masks, &mut owner, &mut seen) {
            break;
        }
        reached += 1;
    }
    reached
}

fn augment(level: usize, masks: &[u32], owner: &mut [Option<usize>], seen: &mut [bool]) -> bool {
    for event in 0..masks.len() {
        if masks[event] & (1 << level) == 0 || seen[event] {
            continue;
        }
        seen[event] = true;
        let free = match owner[event] {
            None => true,
            Some(other) => augment(other, masks, owner, seen),
        };
        if free {
            owner[event] = Some(level);
            return true;
        }
    }
    false
}

/// The SQL function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct WindowFunnel {
    signature: Signature,
}

impl Default for WindowFunnel {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

/// The window in microseconds, from the constant first argument.
pub(crate) fn window_micros(args: &AccumulatorArgs) -> Result<i64> {
    let Some(literal) = args.exprs.first().and_then(|e| e.downcast_ref::<Literal>()) else {
        return plan_err!("window_funnel: the window (first argument) must be a constant, e.g. INTERVAL '30 days'");
    };
    let micros = match literal.value() {
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => {
            i64::from(v.days) * 86_400_000_000 + v.nanoseconds / 1000
        }
        ScalarValue::IntervalDayTime(Some(v)) => i64::from(v.days) * 86_400_000_000 + i64::from(v.milliseconds) * 1000,
        ScalarValue::Int64(Some(seconds)) => seconds.saturating_mul(1_000_000),
        other => {
            return plan_err!(
                "window_funnel: the window must be an interval of days or less (e.g. INTERVAL '30 days') or seconds; got {other}"
            );
        }
    };
    if micros < 0 {
        return plan_err!("window_funnel: the window must not be negative");
    }
    Ok(micros)
}

/// The argument types of a funnel function (`window_funnel`, `window_funnel_by`): a window (an
/// interval, or seconds), the timestamps named in `timestamps` (as microseconds), then 1 to
/// `MAX_STEPS` boolean conditions. `call` is the function as written, for messages.
pub(crate) fn coerce_funnel_arguments(
    call: &str,
    timestamps: &[&str],
    arg_types: &[DataType],
) -> Result<Vec<DataType>> {
    let name = call.split('(').next().unwrap_or(call);
    let fixed = 1 + timestamps.len();
    if arg_types.len() <= fixed || arg_types.len() > MAX_STEPS + fixed {
        return plan_err!("{call} takes 1 to {MAX_STEPS} conditions");
    }
    let mut types = vec![match &arg_types[0] {
        DataType::Interval(_) => arg_types[0].clone(),
        t if t.is_integer() => DataType::Int64,
        other => return plan_err!("{name}: the window must be an interval, not {other}"),
    }];
    for (position, t) in timestamps.iter().zip(&arg_types[1..fixed]) {
        types.push(match t {
            DataType::Timestamp(_, tz) => DataType::Timestamp(TimeUnit::Microsecond, tz.clone()),
            DataType::Date32 | DataType::Date64 | DataType::Null => DataType::Timestamp(TimeUnit::Microsecond, None),
            other => return plan_err!("{name}: the {position} argument must be a timestamp, not {other}"),
        });
    }
    for t in &arg_types[fixed..] {
        if !matches!(t, DataType::Boolean | DataType::Null) {
            return plan_err!("{name}: conditions must be boolean, not {t}");
        }
        types.push(DataType::Boolean);
    }
    Ok(types)
}

impl AggregateUDFImpl for WindowFunnel {
    fn name(&self) -> &str {
        "window_funnel"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        coerce_funnel_arguments("window_funnel(window, ts, cond1, ...)", &["second"], arg_types)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int32)
    }

    fn is_nullable(&self) -> bool {
        false
    }

    fn default_value(&self, _data_type: &DataType) -> Result<ScalarValue> {
        Ok(ScalarValue::Int32(Some(0)))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new(
                format!("{}[ts]", args.name),
                list_type(DataType::Int64),
                true,
            )),
            Arc::new(Field::new(
                format!("{}[conds]", args.name),
                list_type(DataType::UInt32),
                true,
            )),
        ])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(FunnelAccumulator {
            window: window_micros(&args)?,
            steps: args.exprs.len() - 2,
            events: Vec::new(),
        }))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(FunnelGroups::new(window_micros(&args)?, args.exprs.len() - 2)))
    }
}

pub(crate) fn list_type(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new_list_field(item, true)))
}

/// Rows of an input batch that satisfy any condition, as (row, event).
fn relevant_rows<'a>(
    values: &'a [ArrayRef],
    filter: Option<&'a BooleanArray>,
) -> Result<impl Iterator<Item = (usize, Event)> + 'a> {
    let Some(ts) = values
        .get(1)
        .and_then(|a| a.as_primitive_opt::<TimestampMicrosecondType>())
    else {
        return exec_err!("window_funnel: timestamps were not coerced to microseconds");
    };
    let conds: Vec<&BooleanArray> = values[2..].iter().filter_map(|a| a.as_boolean_opt()).collect();
    if conds.len() != values.len() - 2 {
        return exec_err!("window_funnel: conditions were not coerced to booleans");
    }
    Ok((0..ts.len()).filter_map(move |row| {
        if ts.is_null(row) || !super::support::passes_filter(filter, row) {
            return None;
        }
        let mut mask = 0u32;
        for (bit, cond) in conds.iter().enumerate() {
            if cond.is_valid(row) && cond.value(row) {
                mask |= 1 << bit;
            }
        }
        (mask != 0).then(|| (row, (ts.value(row), mask)))
    }))
}

/// Rows of a state batch: each a list of times and a list of condition masks.
fn state_rows(values: &[ArrayRef]) -> Result<(&ListArray, &ListArray)> {
    match (
        values.first().and_then(|a| a.as_list_opt::<i32>()),
        values.get(1).and_then(|a| a.as_list_opt::<i32>()),
    ) {
        (Some(ts), Some(masks)) => Ok((ts, masks)),
        _ => exec_err!("window_funnel: unexpected state"),
    }
}

fn state_events(ts: &ListArray, masks: &ListArray, row: usize) -> impl Iterator<Item = Event> {
    let times = ts.value(row);
    let conds = masks.value(row);
    let times = times.as_primitive::<Int64Type>().values().clone();
    let conds = conds.as_primitive::<UInt32Type>().values().clone();
    (0..times.len()).map(move |i| (times[i], conds[i]))
}

fn lists_from(groups: &[Vec<Event>]) -> Vec<ArrayRef> {
    let lengths = groups.iter().map(Vec::len);
    let offsets = OffsetBuffer::from_lengths(lengths);
    let times = Int64Array::from_iter_values(groups.iter().flatten().map(|e| e.0));
    let masks = UInt32Array::from_iter_values(groups.iter().flatten().map(|e| e.1));
    let item = |t: DataType| Arc::new(Field::new_list_field(t, true));
    vec![
        Arc::new(ListArray::new(
            item(DataType::Int64),
            offsets.clone(),
            Arc::new(times),
            None,
        )),
        Arc::new(ListArray::new(item(DataType::UInt32), offsets, Arc::new(masks), None)),
    ]
}

#[derive(Debug)]
struct FunnelAccumulator {
    window: i64,
    steps: usize,
    events: Vec<Event>,
}

impl Accumulator for FunnelAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.events.extend(relevant_rows(values, None)?.map(|(_, e)| e));
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Int32(Some(
            funnel_level(&mut self.events, self.window, self.steps) as i32,
        )))
    }

    fn size(&self) -> usize {
        size_of_val(self) + self.events.capacity() * size_of::<Event>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let lists = lists_from(std::slice::from_ref(&self.events));
        lists.iter().map(|a| ScalarValue::try_from_array(a, 0)).collect()
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let (ts, masks) = state_rows(states)?;
        for row in 0..ts.len() {
            if ts.is_valid(row) {
                self.events.extend(state_events(ts, masks, row));
            }
        }
        Ok(())
    }
}

/// The grouped form: one event list per group.
struct FunnelGroups {
    window: i64,
    steps: usize,
    groups: GroupLists<Event>,
}

impl FunnelGroups {
    fn new(window: i64, steps: usize) -> Self {
        Self {
            window,
            steps,
            groups: GroupLists::default(),
        }
    }
}

impl GroupsAccumulator for FunnelGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.groups.resize(total_num_groups);
        for (row, event) in relevant_rows(values, opt_filter)? {
            self.groups.update(group_indices[row], |events| events.push(event));
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let mut groups = self.groups.take(emit_to);
        let levels: Int32Array = groups
            .iter_mut()
            .map(|events| Some(funnel_level(events, self.window, self.steps) as i32))
            .collect();
        Ok(Arc::new(levels))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let groups = self.groups.take(emit_to);
        Ok(lists_from(&groups))
    }

    fn merge_batch(&mut self, values: &[ArrayRef], group_indices: &[usize], total_num_groups: usize) -> Result<()> {
        self.groups.resize(total_num_groups);
        let (ts, masks) = state_rows(values)?;
        for (row, &group) in group_indices.iter().enumerate() {
            if ts.is_valid(row) {
                self.groups
                    .update(group, |events| events.extend(state_events(ts, masks, row)));
            }
        }
        Ok(())
    }

    fn convert_to_state(&self, values: &[ArrayRef], opt_filter: Option<&BooleanArray>) -> Result<Vec<ArrayRef>> {
        let rows = values.first().map_or(0, |a| a.len());
        let mut groups: Vec<Vec<Event>> = vec![Vec::new(); rows];
        for (row, event) in relevant_rows(values, opt_filter)? {
            groups[row].push(event);
        }
        Ok(lists_from(&groups))
    }

    fn size(&self) -> usize {
        self.groups.size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000_000;

    fn level(events: &[(i64, u32)], window: i64, steps: usize) -> u32 {
        funnel_level(&mut events.to_vec(), window, steps)
    }

    #[test]
    fn ordered_out_of_order_and_outside_the_window() {
        // awareness (bit 0) at day 0, consideration (bit 1) at day 5, order (bit 2) at day 10.
        let events = [(10 * DAY, 0b100), (0, 0b001), (5 * DAY, 0b010)];
        assert_eq!(level(&events, 30 * DAY, 3), 3);
        assert_eq!(level(&events, 7 * DAY, 3), 2, "the order is past the window");
        assert_eq!(level(&events, 4 * DAY, 3), 1);
        // Steps must come in order: an order before the consideration does not count.
        assert_eq!(level(&[(0, 0b001), (DAY, 0b100), (2 * DAY, 0b010)], 30 * DAY, 3), 2);
        assert_eq!(level(&[(DAY, 0b010), (2 * DAY, 0b100)], 30 * DAY, 3), 0, "no start");
    }

    #[test]
    fn a_later_start_can_do_better() {
        // Start at day 0 has its consideration at day 40 (outside); the start at day 35 catches it.
        let events = [(0, 0b001), (35 * DAY, 0b001), (40 * DAY, 0b010), (41 * DAY, 0b100)];
        assert_eq!(level(&events, 30 * DAY, 3), 3);
    }

    #[test]
    fn equal_timestamps_chain_but_no_event_counts_twice() {
        assert_eq!(level(&[(5, 0b010), (5, 0b001), (5, 0b100)], 0, 3), 3);
        assert_eq!(level(&[(5, 0b011)], 10, 2), 1, "one event is one step");
        // Y(cond1) → W(cond2) → X(cond3), all at one time, though X also satisfies cond1.
        assert_eq!(level(&[(7, 0b101), (7, 0b010), (7, 0b001)], 0, 3), 3);
        assert_eq!(level(&[(7, 0b111), (7, 0b111)], 0, 3), 2);
    }
}

#[cfg(test)]
mod grouped {
    use datafusion::arrow::array::TimestampMicrosecondArray;

    use super::*;

    fn recounted(acc: &FunnelGroups) -> usize {
        let lists = &acc.groups.lists;
        lists.capacity() * size_of::<Vec<Event>>()
            + lists.iter().map(|g| g.capacity() * size_of::<Event>()).sum::<usize>()
    }

    /// Partial states merged into a final accumulator give the same levels as one pass, and the
    /// running size always equals the size counted group by group.
    #[test]
    fn partial_and_final_levels_with_running_size() -> Result<()> {
        let window = 10;
        // Rows: (group, ts, awareness, consideration).
        let rows = [
            (0, 1, true, false),
            (1, 5, true, false),
            (0, 4, false, true),
            (2, 3, false, true),
            (1, 20, false, true),
        ];
        let values: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![window; rows.len()])),
            Arc::new(TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.2)))),
            Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.3)))),
        ];
        let groups: Vec<usize> = rows.iter().map(|r| r.0).collect();

        let mut partial = FunnelGroups::new(window, 2);
        partial.update_batch(&values, &groups, None, 3)?;
        assert_eq!(partial.size(), recounted(&partial));
        let first_group = partial.state(EmitTo::First(1))?;
        assert_eq!(partial.size(), recounted(&partial));
        let other_groups = partial.state(EmitTo::All)?;
        assert_eq!(partial.size(), recounted(&partial));

        let mut merged = FunnelGroups::new(window, 2);
        merged.merge_batch(&first_group, &[0], 3)?;
        merged.merge_batch(&other_groups, &[1, 2], 3)?;
        assert_eq!(merged.size(), recounted(&merged));
        let levels = merged.evaluate(EmitTo::All)?;
        // Group 0 converts within the window, group 1 too late, group 2 never started.
        assert_eq!(
            levels
                .as_primitive::<datafusion::arrow::datatypes::Int32Type>()
                .values(),
            &[2, 1, 0]
        );
        assert_eq!(merged.size(), recounted(&merged));
        Ok(())
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// Every chain, tried one by one.
    fn brute_force(events: &[(i64, u32)], window: i64, steps: usize) -> u32 {
        fn extend(
            events: &[(i64, u32)],
            used: &mut Vec<bool>,
            start: i64,
            last: i64,
            level: usize,
            window: i64,
            steps: usize,
        ) -> usize {
            if level == steps {
                return level;
            }
            let mut best = level;
            for i in 0..events.len() {
                let (ts, mask) = events[i];
                if !used[i] && mask & (1 << level) != 0 && ts >= last && ts <= start + window {
                    used[i] = true;
                    best = best.max(extend(events, used, start, ts, level + 1, window, steps));
                    used[i] = false;
                }
            }
            best
        }
        let mut best = 0;
        let mut used = vec![false; events.len()];
        for i in 0..events.len() {
            if events[i].1 & 1 != 0 {
                used[i] = true;
                best = best.max(extend(events, &mut used, events[i].0, events[i].0, 1, window, steps));
                used[i] = false;
            }
        }
        best as u32
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        #[test]
        fn matches_brute_force(
            steps in 1usize..5,
            window in 0i64..6,
            // Few distinct times, so equal timestamps are common.
            events in prop::collection::vec((0i64..8, 0u32..16), 0..8),
        ) {
            let events: Vec<(i64, u32)> = events.into_iter().map(|(t, m)| (t, m & ((1 << steps) - 1))).collect();
            let expected = brute_force(&events, window, steps);
            prop_assert_eq!(funnel_level(&mut events.clone(), window, steps), expected);
        }
    }
}
