//! Trend statistics as SQL aggregates over (x, y) points, e.g. (week index, weekly value):
//!
//! - `mann_kendall(x, y)`: the Mann–Kendall trend test on `y` ordered by `x`, as a struct
//!   `{n, s, var_s, z, p}`: S, its variance with the tie correction, the normal-approximation Z
//!   (with continuity correction) and the two-sided p-value.
//! - `sens_slope(x, y)`: Sen's slope, the median of the pairwise slopes `(yj - yi) / (xj - xi)`.
//!
//! Both are order-independent aggregates: points are sorted by `x` when evaluated.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int64Array, ListArray, StructArray};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, Float64Type};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};

/// The Mann–Kendall test of a series (already in order).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannKendall {
    pub n: usize,
    pub s: i64,
    pub var_s: f64,
    pub z: f64,
    pub p: f64,
}

pub fn mann_kendall(values: &[f64]) -> MannKendall {
    let n = values.len();
    let mut s: i64 = 0;
    for i in 0..n {
        for j in i + 1..n {
            s += match values[j].partial_cmp(&values[i]) {
                Some(std::cmp::Ordering::Greater) => 1,
                Some(std::cmp::Ordering::Less) => -1,
                _ => 0,
            };
        }
    }
    // Tie correction: each group of t equal values removes t(t-1)(2t+5) from n(n-1)(2n+5).
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut ties = 0.0;
    let mut start = 0;
    while start < sorted.len() {
        let mut end = start + 1;
        while end < sorted.len() && sorted[end] == sorted[start] {
            end += 1;
        }
        let t = (end - start) as f64;
        ties += t * (t - 1.0) * (2.0 * t + 5.0);
        start = end;
    }
    let nf = n as f64;
    let var_s = (nf * (nf - 1.0) * (2.0 * nf + 5.0) - ties) / 18.0;
    let z = if var_s <= 0.0 || s == 0 {
        0.0
    } else if s > 0 {
        (s as f64 - 1.0) / var_s.sqrt()
    } else {
        (s as f64 + 1.0) / var_s.sqrt()
    };
    // Two-sided p = 2 (1 - Φ(|z|)) = erfc(|z| / √2).
    let p = libm::erfc(z.abs() / std::f64::consts::SQRT_2);
    MannKendall { n, s, var_s, z, p }
}

/// Sen's slope of points (any order); `None` with fewer than two distinct `x`.
pub fn sens_slope(points: &[(f64, f64)]) -> Option<f64> {
    let mut slopes = Vec::with_capacity(points.len() * points.len().saturating_sub(1) / 2);
    for i in 0..points.len() {
        for j in i + 1..points.len() {
            let dx = points[j].0 - points[i].0;
            if dx != 0.0 {
                slopes.push((points[j].1 - points[i].1) / dx);
            }
        }
    }
    if slopes.is_empty() {
        return None;
    }
    slopes.sort_by(f64::total_cmp);
    let middle = slopes.len() / 2;
    Some(if slopes.len() % 2 == 1 {
        slopes[middle]
    } else {
        (slopes[middle - 1] + slopes[middle]) / 2.0
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Statistic {
    MannKendall,
    SensSlope,
}

/// `mann_kendall(x, y)` or `sens_slope(x, y)`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TrendAggregate {
    statistic: Statistic,
    signature: Signature,
}

impl TrendAggregate {
    pub fn mann_kendall() -> Self {
        Self {
            statistic: Statistic::MannKendall,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }

    pub fn sens_slope() -> Self {
        Self {
            statistic: Statistic::SensSlope,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

fn mann_kendall_fields() -> Fields {
    Fields::from(vec![
        Field::new("n", DataType::Int64, false),
        Field::new("s", DataType::Int64, false),
        Field::new("var_s", DataType::Float64, false),
        Field::new("z", DataType::Float64, false),
        Field::new("p", DataType::Float64, false),
    ])
}

fn list_of_floats() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Float64, true)))
}

impl AggregateUDFImpl for TrendAggregate {
    fn name(&self) -> &str {
        match self.statistic {
            Statistic::MannKendall => "mann_kendall",
            Statistic::SensSlope => "sens_slope",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() != 2 || !arg_types.iter().all(|t| t.is_numeric() || t.is_null()) {
            return plan_err!(
                "{}(x, y) takes two numbers, e.g. a week index and a value; got {arg_types:?}",
                self.name()
            );
        }
        Ok(vec![DataType::Float64, DataType::Float64])
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(match self.statistic {
            Statistic::MannKendall => DataType::Struct(mann_kendall_fields()),
            Statistic::SensSlope => DataType::Float64,
        })
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new(format!("{}[x]", args.name), list_of_floats(), true)),
            Arc::new(Field::new(format!("{}[y]", args.name), list_of_floats(), true)),
        ])
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(PointsAccumulator {
            statistic: self.statistic,
            points: Vec::new(),
        }))
    }
}

#[derive(Debug)]
struct PointsAccumulator {
    statistic: Statistic,
    points: Vec<(f64, f64)>,
}

fn floats(array: &ArrayRef) -> Result<&Float64Array> {
    match array.as_primitive_opt::<Float64Type>() {
        Some(values) => Ok(values),
        None => exec_err!("trend aggregate: arguments were not coerced to Float64"),
    }
}

impl Accumulator for PointsAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let (xs, ys) = (floats(&values[0])?, floats(&values[1])?);
        for i in 0..xs.len() {
            if xs.is_valid(i) && ys.is_valid(i) {
                self.points.push((xs.value(i), ys.value(i)));
            }
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        self.points.sort_by(|a, b| a.0.total_cmp(&b.0));
        match self.statistic {
            Statistic::SensSlope => Ok(ScalarValue::Float64(sens_slope(&self.points))),
            Statistic::MannKendall => {
                let values: Vec<f64> = self.points.iter().map(|p| p.1).collect();
                let test = mann_kendall(&values);
                let columns: Vec<ArrayRef> = vec![
                    Arc::new(Int64Array::from(vec![test.n as i64])),
                    Arc::new(Int64Array::from(vec![test.s])),
                    Arc::new(Float64Array::from(vec![test.var_s])),
                    Arc::new(Float64Array::from(vec![test.z])),
                    Arc::new(Float64Array::from(vec![test.p])),
                ];
                Ok(ScalarValue::Struct(Arc::new(StructArray::try_new(
                    mann_kendall_fields(),
                    columns,
                    None,
                )?)))
            }
        }
    }

    fn size(&self) -> usize {
        size_of_val(self) + self.points.capacity() * size_of::<(f64, f64)>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let item = Arc::new(Field::new_list_field(DataType::Float64, true));
        let offsets = OffsetBuffer::from_lengths([self.points.len()]);
        let xs = Float64Array::from_iter_values(self.points.iter().map(|p| p.0));
        let ys = Float64Array::from_iter_values(self.points.iter().map(|p| p.1));
        Ok(vec![
            ScalarValue::List(Arc::new(ListArray::new(
                item.clone(),
                offsets.clone(),
                Arc::new(xs),
                None,
            ))),
            ScalarValue::List(Arc::new(ListArray::new(item, offsets, Arc::new(ys), None))),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let (Some(xs), Some(ys)) = (states[0].as_list_opt::<i32>(), states[1].as_list_opt::<i32>()) else {
            return exec_err!("trend aggregate: unexpected state");
        };
        for row in 0..xs.len() {
            if xs.is_null(row) {
                continue;
            }
            let (x_values, y_values) = (xs.value(row), ys.value(row));
            let (x_values, y_values) = (
                x_values.as_primitive::<Float64Type>(),
                y_values.as_primitive::<Float64Type>(),
            );
            self.points
                .extend(x_values.values().iter().copied().zip(y_values.values().iter().copied()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values from pymannkendall 1.4 (`original_test`), a reference implementation, pinned here.
    #[test]
    fn mann_kendall_and_sens_slope_match_pymannkendall() {
        // (series, S, Var(S), Z, p, Sen's slope)
        type Case<'a> = (&'a [f64], i64, f64, f64, f64, f64);
        let cases: [Case; 5] = [
            (
                &[1.0, 2.0, 2.0, 3.0, 5.0, 4.0, 6.0, 6.0, 7.0, 9.0],
                41,
                123.0,
                3.606678538670,
                0.000310141489,
                0.8,
            ),
            (
                &[10.5, 9.0, 9.5, 7.0, 6.0, 6.5, 4.0, 3.0],
                -24,
                65.3333333333,
                -2.845512041006,
                0.004434008303,
                -1.0,
            ),
            (
                &[5.0, 3.0, 6.0, 4.0, 5.0, 3.0, 6.0, 4.0, 5.0, 4.0, 6.0, 3.0],
                -2,
                198.0,
                -0.071066905452,
                0.943344507174,
                0.0,
            ),
            (&[1.0, 3.0, 2.0], 1, 3.6666666667, 0.0, 1.0, 0.5),
            (&[4.0, 4.0, 4.0, 4.0], 0, 0.0, 0.0, 1.0, 0.0),
        ];
        for (values, s, var_s, z, p, slope) in cases {
            let test = mann_kendall(values);
            assert_eq!(test.s, s, "{values:?}");
            assert!((test.var_s - var_s).abs() < 1e-9, "{values:?}: var_s {}", test.var_s);
            assert!((test.z - z).abs() < 1e-9, "{values:?}: z {}", test.z);
            assert!((test.p - p).abs() < 1e-9, "{values:?}: p {}", test.p);
            let points: Vec<(f64, f64)> = values.iter().enumerate().map(|(i, v)| (i as f64, *v)).collect();
            assert_eq!(sens_slope(&points), Some(slope), "{values:?}");
        }
        assert_eq!(sens_slope(&[(1.0, 5.0)]), None);
        assert_eq!(mann_kendall(&[]).p, 1.0);
    }
}
