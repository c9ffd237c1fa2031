//! What the functions share: argument coercion and text access, and per-group lists for
//! grouped accumulators.

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue};

/// The argument type of a function of one text value: a string type as it is, NULL as `Utf8`.
/// Whether an aggregate's row takes part under its `FILTER (WHERE ...)`: no filter, or true
/// (a NULL filter value leaves the row out, as in SQL).
pub(crate) fn passes_filter(filter: Option<&BooleanArray>, row: usize) -> bool {
    filter.is_none_or(|f| f.is_valid(row) && f.value(row))
}

pub(crate) fn one_text_argument(function: &str, arg_types: &[DataType]) -> Result<Vec<DataType>> {
    match arg_types {
        [t] if t.is_string() => Ok(vec![t.clone()]),
        [t] if t.is_null() => Ok(vec![DataType::Utf8]),
        _ => datafusion::common::plan_err!("{function}(text) takes one text value; got {arg_types:?}"),
    }
}

/// The text of a string scalar; `None` for NULL or a value that is not text.
pub(crate) fn scalar_text(scalar: &ScalarValue) -> Option<&str> {
    match scalar {
        ScalarValue::Utf8(v) | ScalarValue::LargeUtf8(v) | ScalarValue::Utf8View(v) => v.as_deref(),
        _ => None,
    }
}

/// `f` of every value of a text array of any string type (an array of another type is all `None`).
pub(crate) fn map_text<T>(array: &ArrayRef, f: impl FnMut(Option<&str>) -> T) -> Vec<T> {
    match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().iter().map(f).collect(),
        DataType::LargeUtf8 => array.as_string::<i64>().iter().map(f).collect(),
        DataType::Utf8View => array.as_string_view().iter().map(f).collect(),
        _ => std::iter::repeat_n(None, array.len()).map(f).collect(),
    }
}

/// One list per group, for grouped accumulators, with their memory kept as a running sum:
/// DataFusion asks an accumulator for its size after every batch, and summing millions of groups
/// each time makes an aggregate quadratic in its groups.
#[derive(Debug, Default)]
pub(crate) struct GroupLists<T> {
    pub(crate) lists: Vec<Vec<T>>,
    stored_items: usize,
}

impl<T> GroupLists<T> {
    /// Room for `groups` groups (new ones empty).
    pub fn resize(&mut self, groups: usize) {
        self.lists.resize_with(groups, Vec::new);
    }

    /// Change one group's list; the size follows its capacity.
    pub fn update(&mut self, group: usize, change: impl FnOnce(&mut Vec<T>)) {
        let list = &mut self.lists[group];
        let before = list.capacity();
        change(list);
        self.stored_items = self.stored_items - before + list.capacity();
    }

    /// The groups `emit_to` names, removed.
    pub fn take(&mut self, emit_to: datafusion::logical_expr::EmitTo) -> Vec<Vec<T>> {
        let taken = emit_to.take_needed(&mut self.lists);
        self.stored_items -= taken.iter().map(Vec::capacity).sum::<usize>();
        taken
    }

    /// Bytes held: the lists' headers and their items.
    pub fn size(&self) -> usize {
        self.lists.capacity() * size_of::<Vec<T>>() + self.stored_items * size_of::<T>()
    }
}

/// Items of many groups in one buffer, each tagged with its group, for grouped accumulators that
/// keep every input row: adding one is a push, where a list per group costs an allocation per
/// group and a cache miss per row (the funnel keeps every touch of a run). A group's items are
/// gathered only when it is emitted. The buffer is a list of chunks, so that it grows without
/// copying what it holds and never asks for twice its size at once (a memory pool sees its
/// growth batch by batch).
#[derive(Debug, Default)]
pub(crate) struct TaggedItems<T> {
    chunks: Vec<Vec<(usize, T)>>,
    groups: usize,
}

/// Items per chunk: about 1.5 MiB of 24-byte items.
const CHUNK_ITEMS: usize = 1 << 16;

impl<T: Copy + Default> TaggedItems<T> {
    /// The accumulator now has `groups` groups.
    pub fn resize(&mut self, groups: usize) {
        self.groups = self.groups.max(groups);
    }

    pub fn push(&mut self, group: usize, item: T) {
        match self.chunks.last_mut() {
            Some(chunk) if chunk.len() < CHUNK_ITEMS => chunk.push((group, item)),
            // The first chunk grows from small (most accumulators of a batch hold few items).
            None => self.chunks.push(vec![(group, item)]),
            Some(_) => {
                let mut chunk = Vec::with_capacity(CHUNK_ITEMS);
                chunk.push((group, item));
                self.chunks.push(chunk);
            }
        }
    }

    /// The groups `emit_to` names, removed (the others are renumbered from 0), as offsets into
    /// one list of their items: group `g` holds `items[offsets[g]..offsets[g + 1]]`, in the order
    /// they were added.
    pub fn take(&mut self, emit_to: datafusion::logical_expr::EmitTo) -> (Vec<usize>, Vec<T>) {
        use datafusion::logical_expr::EmitTo;
        let taken_groups = match emit_to {
            EmitTo::All => self.groups,
            EmitTo::First(n) => n.min(self.groups),
        };
        let mut taken = std::mem::take(&mut self.chunks);
        if taken_groups < self.groups {
            let mut first = TaggedItems::default();
            for chunk in taken {
                for (group, item) in chunk {
                    if group < taken_groups {
                        first.push(group, item);
                    } else {
                        self.push(group - taken_groups, item);
                    }
                }
            }
            taken = first.chunks;
        }
        self.groups -= taken_groups;
        // A counting sort by group; each chunk is let go once its items are placed.
        let mut offsets = vec![0usize; taken_groups + 1];
        for (group, _) in taken.iter().flatten() {
            offsets[group + 1] += 1;
        }
        for g in 0..taken_groups {
            offsets[g + 1] += offsets[g];
        }
        let mut next = offsets.clone();
        let mut items = vec![T::default(); offsets[taken_groups]];
        for chunk in taken {
            for (group, item) in chunk {
                items[next[group]] = item;
                next[group] += 1;
            }
        }
        (offsets, items)
    }

    /// Bytes held.
    pub fn size(&self) -> usize {
        self.chunks.capacity() * size_of::<Vec<(usize, T)>>()
            + self.chunks.iter().map(Vec::capacity).sum::<usize>() * size_of::<(usize, T)>()
    }
}

#[cfg(test)]
mod tests {
    use datafusion::logical_expr::EmitTo;

    use super::TaggedItems;

    /// Items come out grouped in group order, each group's in the order added; emitting the first
    /// groups renumbers the rest from 0.
    #[test]
    fn tagged_items_gather_by_group_and_renumber_what_stays() {
        let mut items = TaggedItems::default();
        items.resize(3);
        for (group, item) in [(2, 'a'), (0, 'b'), (1, 'c'), (0, 'd'), (2, 'e')] {
            items.push(group, item);
        }
        assert_eq!(items.take(EmitTo::First(1)), (vec![0, 2], vec!['b', 'd']));
        items.push(0, 'f');
        assert_eq!(items.take(EmitTo::All), (vec![0, 2, 4], vec!['c', 'f', 'a', 'e']));
        assert_eq!(items.take(EmitTo::All), (vec![0], vec![]));
    }

    /// Across chunks: every item comes back once, in its group, in the order added.
    #[test]
    fn tagged_items_span_chunks() {
        let total = 2 * super::CHUNK_ITEMS + 10;
        let mut items = TaggedItems::default();
        items.resize(3);
        for i in 0..total {
            items.push(i % 3, i);
        }
        assert!(items.size() >= total * size_of::<(usize, usize)>());
        let (offsets, taken) = items.take(EmitTo::First(2));
        assert_eq!(
            offsets,
            vec![0, total.div_ceil(3), total.div_ceil(3) + (total - 1).div_ceil(3)]
        );
        let group_1: Vec<usize> = (0..total).filter(|i| i % 3 == 1).collect();
        assert_eq!(&taken[offsets[1]..offsets[2]], group_1.as_slice());
        let (offsets, rest) = items.take(EmitTo::All);
        assert_eq!(offsets.len(), 2, "the third group is now the first");
        assert_eq!(rest, (0..total).filter(|i| i % 3 == 2).collect::<Vec<_>>());
        assert_eq!(items.size(), 0);
    }
}
