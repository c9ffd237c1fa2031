//! Personas: k-means clustering of entities (customers) on standardised behavioural features.
//!
//! A `kmeans` step reads one row per entity, standardises every feature (z-score over the
//! population), and clusters with linfa's k-means (k-means++ seeding, fixed seed). k is given, or
//! chosen as the best silhouette over `k_min..=k_max` on a deterministic sample. The fit (on that
//! sample when there are more entities than it holds) is then refined with Lloyd iterations over
//! every entity until none changes cluster, so every entity ends nearest its own centroid and
//! every centroid is the mean of its members. Input is sorted by id first, so the
//! same data gives the same clusters whatever order the engine produced it in.
//!
//! Clusters are numbered by a documented rule (descending centroid of `order_by`, the monetary
//! feature for the bundled personas) and named from their standout features in plain words.

use linfa::prelude::*;
use linfa_clustering::{KMeans, KMeansInit};
use ndarray::{Array2, ArrayView1, Axis};
use rand_xoshiro::Xoshiro256Plus;
use rand_xoshiro::rand_core::SeedableRng;
use serde::Serialize;

pub use lifemap_syntax::pipeline::Naming;

/// The features `Naming::Customers` reads, as the bundled `persona_features` step names them.
pub const CUSTOMER_FEATURES: [&str; 5] = [
    "recency_days",
    "log_frequency",
    "log_monetary",
    "avg_order_value",
    "log_events_90d",
];

/// What to cluster and how.
#[derive(Debug, Clone, PartialEq)]
pub struct KMeansSpec {
    pub input: String,
    pub id: String,
    pub features: Vec<String>,
    /// `None`: choose by silhouette.
    pub k: Option<usize>,
    pub k_min: usize,
    pub k_max: usize,
    pub sample_size: usize,
    pub seed: u64,
    /// k-means++ starts per fit; the fit of least inertia is kept. One start can settle in a poor
    /// local optimum, and the silhouette search then compares poor fits.
    pub starts: usize,
    pub max_iterations: u64,
    pub order_by: String,
    pub naming: Naming,
}

/// The outcome of a clustering, for run results and the personas mart.
#[derive(Debug, Clone, Serialize)]
pub struct Clustering {
    pub k: usize,
    pub chosen_by: &'static str,
    /// Silhouette of the chosen k on the sample (when k was chosen).
    pub silhouette: Option<f64>,
    /// Silhouette of every k tried, in order.
    pub silhouettes: Vec<(usize, f64)>,
    /// Sum of squared distances to the own centroid, in standardised units, over all entities.
    pub inertia: f64,
    pub iterations: usize,
    pub entities: usize,
    pub names: Vec<String>,
    pub sizes: Vec<usize>,
    /// Standardised centroids, by persona (row) and feature (column).
    #[serde(skip)]
    pub centroids: Array2<f64>,
}

/// Errors of clustering: too little data or a bad setting.
#[derive(Debug, thiserror::Error)]
pub enum PersonaError {
    #[error("{0}")]
    Invalid(String),
    #[error("k-means failed: {0}")]
    Fit(String),
}

/// FNV-1a: a hash that is the same on every machine and run, for the silhouette sample.
fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Standardise each column (population z-score); a constant column becomes 0.
pub fn standardise(raw: &Array2<f64>) -> Array2<f64> {
    let mut data = raw.clone();
    for mut column in data.axis_iter_mut(Axis(1)) {
        let n = column.len().max(1) as f64;
        let mean = column.sum() / n;
        let variance = column.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        let std = variance.sqrt();
        column.mapv_inplace(|v| if std > 0.0 { (v - mean) / std } else { 0.0 });
    }
    data
}

fn squared_distance<'a>(a: impl IntoIterator<Item = &'a f64>, b: impl IntoIterator<Item = &'a f64>) -> f64 {
    a.into_iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// The centroid nearest `point`, the first of equals; `centroids` holds `point.len()` values each.
fn nearest_in(point: &[f64], centroids: &[f64]) -> usize {
    let mut best = (0, f64::INFINITY);
    for (index, centroid) in centroids.chunks_exact(point.len().max(1)).enumerate() {
        let distance = squared_distance(point, centroid);
        if distance < best.1 {
            best = (index, distance);
        }
    }
    best.0
}

fn nearest(point: ArrayView1<f64>, centroids: &Array2<f64>) -> usize {
    let centroids = centroids.as_standard_layout();
    nearest_in(&point.to_vec(), centroids.as_slice().unwrap_or_default())
}

/// The centroids of the best of `spec.starts` k-means++ starts (least inertia), every start drawn
/// from one generator seeded with `spec.seed`, so the same data gives the same fit.
fn fit(data: &Array2<f64>, k: usize, spec: &KMeansSpec) -> Result<Array2<f64>, PersonaError> {
    let dataset = DatasetBase::from(data.view());
    let model = KMeans::params_with_rng(k, Xoshiro256Plus::seed_from_u64(spec.seed))
        .init_method(KMeansInit::KMeansPlusPlus)
        .n_runs(spec.starts.max(1))
        .max_n_iterations(spec.max_iterations)
        .tolerance(1e-9)
        .fit(&dataset)
        .map_err(|err| PersonaError::Fit(err.to_string()))?;
    Ok(model.centroids().clone())
}

/// Mean silhouette (Euclidean; a point alone in its cluster scores 0, as in scikit-learn).
///
/// Written here rather than taken from linfa: linfa's `silhouette_score` allocates an array per
/// pair of points, which made the 10,000-point search over k = 2..8 take most of a minute.
pub fn silhouette_score(data: &Array2<f64>, labels: &[usize], k: usize) -> f64 {
    silhouette_scores(data, &[(k, labels)])
        .ok()
        .and_then(|scores| scores.first().copied())
        .unwrap_or(0.0)
}

/// The mean silhouette of each labelling `(k, labels)` of the same points. Each pair of points is
/// visited once for all labellings, since the distance is the costly part and the search over k
/// scores seven labellings of one sample. The rows are cut into a fixed number of chunks of about
/// equal pair counts, one thread each, and the chunks' sums are added in chunk order, so the
/// result is the same on any number of cores.
pub fn silhouette_scores(data: &Array2<f64>, labellings: &[(usize, &[usize])]) -> Result<Vec<f64>, PersonaError> {
    const CHUNKS: usize = 8;
    let n = data.nrows();
    let data = data.as_standard_layout();
    let Some(values) = data.as_slice() else {
        return Ok(vec![0.0; labellings.len()]);
    };
    let width = data.ncols();
    // Where labelling l's sums start: sums[offsets[l] + i * k + c] is the sum of distances from
    // point i to the points of cluster c.
    let mut offsets = Vec::with_capacity(labellings.len());
    let mut length = 0;
    for (k, _) in labellings {
        offsets.push(length);
        length += n * k;
    }
    // Row i has n - 1 - i pairs after it: cut where the running pair count reaches each share.
    let total_pairs = n * n.saturating_sub(1) / 2;
    let mut bounds = vec![0];
    let mut pairs = 0;
    for i in 0..n {
        pairs += n - 1 - i;
        if pairs * CHUNKS >= total_pairs * bounds.len() && bounds.len() < CHUNKS {
            bounds.push(i + 1);
        }
    }
    bounds.push(n);
    bounds.dedup();
    let chunk_sums: Vec<Vec<f64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = bounds
            .windows(2)
            .map(|rows| {
                let (start, end) = (rows[0], rows[1]);
                let offsets = &offsets;
                scope.spawn(move || {
                    let row = |i: usize| &values[i * width..(i + 1) * width];
                    let mut sums = vec![0.0; length];
                    for i in start..end {
                        let a = row(i);
                        for j in i + 1..n {
                            let distance = a.iter().zip(row(j)).map(|(x, y)| (x - y) * (x - y)).sum::<f64>().sqrt();
                            for ((k, labels), &offset) in labellings.iter().zip(offsets) {
                                sums[offset + i * k + labels[j]] += distance;
                                sums[offset + j * k + labels[i]] += distance;
                            }
                        }
                    }
                    sums
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| PersonaError::Fit("a silhouette thread panicked".into()))
            })
            .collect::<Result<_, _>>()
    })?;
    let mut distance_sums = vec![0.0; length];
    for sums in &chunk_sums {
        for (total, value) in distance_sums.iter_mut().zip(sums) {
            *total += value;
        }
    }
    Ok(labellings
        .iter()
        .zip(&offsets)
        .map(|((k, labels), &offset)| mean_silhouette(&distance_sums[offset..offset + n * k], labels, *k))
        .collect())
}

/// The mean silhouette from each point's summed distances to every cluster.
fn mean_silhouette(distance_sums: &[f64], labels: &[usize], k: usize) -> f64 {
    let n = labels.len();
    let mut sizes = vec![0usize; k];
    for &label in labels {
        sizes[label] += 1;
    }
    let total: f64 = (0..n)
        .map(|i| {
            let own = labels[i];
            if sizes[own] <= 1 {
                return 0.0;
            }
            let sums = &distance_sums[i * k..(i + 1) * k];
            let within = sums[own] / (sizes[own] - 1) as f64;
            let nearest_other = (0..k)
                .filter(|&c| c != own && sizes[c] > 0)
                .map(|c| sums[c] / sizes[c] as f64)
                .fold(f64::INFINITY, f64::min);
            let scale = within.max(nearest_other);
            if nearest_other.is_finite() && scale > 0.0 {
                (nearest_other - within) / scale
            } else {
                0.0
            }
        })
        .sum();
    total / n.max(1) as f64
}

/// Rows per unit of Lloyd work. The units are fixed by the data, not by the number of threads, and
/// their partial sums are added in unit order, so the centroids are the same bits on any machine.
const LLOYD_ROWS: usize = 1 << 16;

/// One Lloyd pass over rows `start..start + labels.len()`: each row's nearest centroid, written to
/// `labels`, and the per-cluster coordinate sums and counts of those rows. Returns how many labels
/// changed.
fn assign_rows(
    values: &[f64],
    width: usize,
    centroids: &[f64],
    labels: &mut [usize],
    sums: &mut [f64],
    counts: &mut [usize],
) -> usize {
    let mut changed = 0;
    for (row, label) in values.chunks_exact(width).zip(labels.iter_mut()) {
        let best = nearest_in(row, centroids);
        if *label != best {
            changed += 1;
            *label = best;
        }
        counts[best] += 1;
        for (sum, x) in sums[best * width..(best + 1) * width].iter_mut().zip(row) {
            *sum += x;
        }
    }
    changed
}

/// Lloyd iterations from `centroids` until no assignment changes (or `max_iterations`): every
/// row ends nearest its centroid and every centroid is the mean of its rows. The rows are cut
/// into `LLOYD_ROWS` units shared out over the cores.
fn refine(data: &Array2<f64>, centroids: Array2<f64>, max_iterations: u64) -> (Array2<f64>, Vec<usize>, usize) {
    let data = data.as_standard_layout();
    let (n, width) = data.dim();
    let k = centroids.nrows();
    let values = data.as_slice().unwrap_or_default();
    let mut centroids: Vec<f64> = centroids.as_standard_layout().iter().copied().collect();
    let units = n.div_ceil(LLOYD_ROWS).max(1);
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get()).min(units);
    // usize::MAX: no label yet, so the first pass counts every row as changed.
    let mut labels = vec![usize::MAX; n];
    let mut unit_sums = vec![0.0; units * k * width];
    let mut unit_counts = vec![0usize; units * k];
    let mut iterations = 0;
    loop {
        unit_sums.fill(0.0);
        unit_counts.fill(0);
        let changed: usize = {
            let centroids = &centroids;
            let mut work: Vec<_> = labels
                .chunks_mut(LLOYD_ROWS)
                .zip(unit_sums.chunks_mut(k * width))
                .zip(unit_counts.chunks_mut(k))
                .enumerate()
                .collect();
            let per_thread = work.len().div_ceil(threads);
            std::thread::scope(|scope| {
                let handles: Vec<_> = work
                    .chunks_mut(per_thread)
                    .map(|share| {
                        scope.spawn(move || {
                            share
                                .iter_mut()
                                .map(|(unit, ((labels, sums), counts))| {
                                    let start = *unit * LLOYD_ROWS * width;
                                    let rows = &values[start..start + labels.len() * width];
                                    assign_rows(rows, width, centroids, labels, sums, counts)
                                })
                                .sum::<usize>()
                        })
                    })
                    .collect();
                // A worker cannot panic short of a bug in the loop above; count it as no change.
                handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
            })
        };
        if (iterations > 0 && changed == 0) || iterations as u64 >= max_iterations {
            let centroids = Array2::from_shape_vec((k, width), centroids).unwrap_or_else(|_| Array2::zeros((k, width)));
            return (centroids, labels, iterations);
        }
        // New centroids: the unit sums added in unit order; an empty cluster keeps its centroid.
        for cluster in 0..k {
            let count: usize = unit_counts.iter().skip(cluster).step_by(k).sum();
            if count == 0 {
                continue;
            }
            for feature in 0..width {
                let sum: f64 = (0..units).map(|u| unit_sums[(u * k + cluster) * width + feature]).sum();
                centroids[cluster * width + feature] = sum / count as f64;
            }
        }
        iterations += 1;
    }
}

/// Cluster `raw` (rows = entities in the order of `ids`); returns each row's persona (0-based,
/// already in persona order) and the clustering.
pub fn cluster<S: AsRef<str>>(
    ids: &[S],
    raw: &Array2<f64>,
    spec: &KMeansSpec,
) -> Result<(Vec<usize>, Clustering), PersonaError> {
    let n = raw.nrows();
    if n < 2 {
        return Err(PersonaError::Invalid(format!("{n} entities: too few to cluster")));
    }
    let id = |row: usize| ids[row].as_ref();
    // Rows in id order: the result must not depend on the order the engine produced.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_unstable_by(|&a, &b| id(a).cmp(id(b)).then(a.cmp(&b)));
    let data = standardise(&raw.select(Axis(0), &order));

    let sample = sample_rows(&order, |row| id(row), spec.sample_size);
    let sample_data = data.select(Axis(0), &sample);
    let choice = match spec.k {
        Some(k) => KChoice {
            k: k.min(n),
            chosen_by: "configured",
            silhouette: None,
            silhouettes: Vec::new(),
            seeds: None,
        },
        None => choose_k(&sample_data, spec)?,
    };
    let KChoice {
        k,
        chosen_by,
        silhouette,
        silhouettes,
        seeds,
    } = choice;

    // Beyond the sample, the fit on the sample seeds Lloyd's iterations over every row, which move
    // the centroids only as far as the full data differs from the sample: a fit from scratch on
    // millions of rows took most of the clustering time. Up to the sample size, the fit runs on
    // all rows in id order.
    let seeds = match seeds {
        Some(seeds) if sample.len() < n => seeds,
        _ if sample.len() < n => fit(&sample_data, k, spec)?,
        _ => fit(&data, k, spec)?,
    };
    let (centroids, labels, iterations) = refine(&data, seeds, spec.max_iterations.max(1000));

    // Persona order: descending centroid of `order_by`, then the centroid itself, for stable ids.
    let order_column = spec.features.iter().position(|f| *f == spec.order_by).unwrap_or(0);
    let ranking = persona_order(&centroids, order_column);
    let mut rank_of = vec![0; k];
    for (rank, &cluster) in ranking.iter().enumerate() {
        rank_of[cluster] = rank;
    }
    let ordered_centroids = centroids.select(Axis(0), &ranking);
    let mut sizes = vec![0; k];
    let mut by_row = vec![0; n];
    let mut inertia = 0.0;
    for (position, &label) in labels.iter().enumerate() {
        let persona = rank_of[label];
        sizes[persona] += 1;
        by_row[order[position]] = persona;
        inertia += squared_distance(data.row(position), centroids.row(label));
    }
    let names = name_all(&ordered_centroids, &spec.features, spec.naming);
    Ok((
        by_row,
        Clustering {
            k,
            chosen_by,
            silhouette,
            silhouettes,
            inertia,
            iterations,
            entities: n,
            names,
            sizes,
            centroids: ordered_centroids,
        },
    ))
}

/// The sample: the rows (positions in `order`) with the smallest hashes of their ids, in hash
/// order. Keys are hashed once, and only the sample is sorted.
fn sample_rows<'a>(order: &[usize], id: impl Fn(usize) -> &'a str, sample_size: usize) -> Vec<usize> {
    let n = order.len();
    let mut keyed: Vec<(u64, usize)> = (0..n).map(|i| (stable_hash(id(order[i])), i)).collect();
    let sample_size = sample_size.clamp(2, n);
    if sample_size < n {
        keyed.select_nth_unstable(sample_size - 1);
        keyed.truncate(sample_size);
    }
    keyed.sort_unstable();
    keyed.into_iter().map(|(_, row)| row).collect()
}

/// The number of personas, and how it was chosen.
struct KChoice {
    k: usize,
    chosen_by: &'static str,
    silhouette: Option<f64>,
    silhouettes: Vec<(usize, f64)>,
    /// The centroids of the chosen fit on the sample, when there was one.
    seeds: Option<Array2<f64>>,
}

/// Fit every k from `k_min` to `k_max` on the sample and keep the best silhouette.
fn choose_k(sample_data: &Array2<f64>, spec: &KMeansSpec) -> Result<KChoice, PersonaError> {
    let mut candidates = Vec::new();
    for k in spec.k_min..=spec.k_max.min(sample_data.nrows() - 1) {
        let centroids = fit(sample_data, k, spec)?;
        let labels: Vec<usize> = sample_data
            .axis_iter(Axis(0))
            .map(|row| nearest(row, &centroids))
            .collect();
        candidates.push((k, labels, centroids));
    }
    let labellings: Vec<(usize, &[usize])> = candidates
        .iter()
        .map(|(k, labels, _)| (*k, labels.as_slice()))
        .collect();
    let scores = silhouette_scores(sample_data, &labellings)?;
    let mut silhouettes = Vec::new();
    let mut best: Option<(usize, f64)> = None;
    for (index, ((k, _, _), score)) in candidates.iter().zip(scores).enumerate() {
        silhouettes.push((*k, score));
        if best.is_none_or(|(_, top)| score > top) {
            best = Some((index, score));
        }
    }
    let (index, score) = best.ok_or_else(|| PersonaError::Invalid("no k to try: check k_min and k_max".into()))?;
    let (k, _, centroids) = candidates.swap_remove(index);
    Ok(KChoice {
        k,
        chosen_by: "silhouette",
        silhouette: Some(score),
        silhouettes,
        seeds: Some(centroids),
    })
}

/// Clusters in persona order: descending centroid of the ordering column, then the centroid
/// itself, so that persona ids are stable.
fn persona_order(centroids: &Array2<f64>, order_column: usize) -> Vec<usize> {
    let mut ranking: Vec<usize> = (0..centroids.nrows()).collect();
    ranking.sort_by(|&a, &b| {
        centroids[[b, order_column]]
            .total_cmp(&centroids[[a, order_column]])
            .then_with(|| {
                centroids
                    .row(a)
                    .iter()
                    .zip(centroids.row(b).iter())
                    .fold(std::cmp::Ordering::Equal, |o, (x, y)| o.then(x.total_cmp(y)))
            })
    });
    ranking
}

/// Names for every centroid, distinct within the run.
fn name_all(centroids: &Array2<f64>, features: &[String], naming: Naming) -> Vec<String> {
    let mut names: Vec<String> = centroids
        .axis_iter(Axis(0))
        .map(|c| name_one(c, features, naming))
        .collect();
    // Same name twice: qualify each by its most distinctive feature, then by number.
    for index in 0..names.len() {
        let clashes: Vec<usize> = (0..names.len()).filter(|&j| names[j] == names[index]).collect();
        if clashes.len() > 1 {
            for &j in &clashes {
                names[j] = format!("{} ({})", names[j], describe_standout(centroids.row(j), features));
            }
        }
    }
    let mut seen = std::collections::HashMap::new();
    for name in &mut names {
        let count = seen.entry(name.clone()).or_insert(0);
        *count += 1;
        if *count > 1 {
            *name = format!("{name} {}", *count);
        }
    }
    names
}

fn describe_standout(centroid: ArrayView1<f64>, features: &[String]) -> String {
    let (index, value) = centroid
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
        .map(|(i, v)| (i, *v))
        .unwrap_or((0, 0.0));
    let feature = features.get(index).map(String::as_str).unwrap_or("feature");
    format!(
        "{} {}",
        if value >= 0.0 { "high" } else { "low" },
        feature.trim_start_matches("log_").replace('_', " ")
    )
}

fn name_one(centroid: ArrayView1<f64>, features: &[String], naming: Naming) -> String {
    let value = |name: &str| features.iter().position(|f| f == name).map(|i| centroid[i]);
    if naming == Naming::Customers
        && let (Some(recency), Some(frequency), Some(monetary), Some(aov), Some(engagement)) = (
            value("recency_days"),
            value("log_frequency"),
            value("log_monetary"),
            value("avg_order_value"),
            value("log_events_90d"),
        )
    {
        // Standardised units: 0.5 is half a standard deviation from the average customer.
        let high = |v: f64| v > 0.5;
        let low = |v: f64| v < -0.5;
        return match () {
            _ if low(recency) && high(frequency) && high(monetary) => "High-value loyalists",
            _ if high(frequency) && low(aov) => "Frequent bargain hunters",
            _ if high(monetary) && high(frequency) => "Big spenders",
            _ if high(recency) && high(frequency) => "Fading regulars",
            _ if high(recency) && !high(frequency) => "Lapsed one-time buyers",
            _ if high(aov) && !high(frequency) => "Big-ticket occasional buyers",
            _ if high(engagement) && !high(monetary) => "Engaged browsers",
            _ if low(recency) && !high(frequency) => "Promising newcomers",
            _ if low(engagement) => "Quiet occasional buyers",
            _ => "Steady regulars",
        }
        .to_string();
    }
    // Generic: the two features furthest from the average, in words.
    let mut ranked: Vec<(usize, f64)> = centroid.iter().copied().enumerate().collect();
    ranked.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()).then(a.0.cmp(&b.0)));
    let words: Vec<String> = ranked
        .iter()
        .take(2)
        .filter(|(_, v)| v.abs() > 0.25)
        .map(|(i, v)| {
            format!(
                "{} {}",
                if *v >= 0.0 { "high" } else { "low" },
                features.get(*i).map(String::as_str).unwrap_or("feature")
            )
        })
        .collect();
    if words.is_empty() {
        "Average".to_string()
    } else {
        let mut text = words.join(", ");
        if let Some(first) = text.get_mut(0..1) {
            first.make_ascii_uppercase();
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(k: Option<usize>) -> KMeansSpec {
        KMeansSpec {
            input: "features".into(),
            id: "id".into(),
            features: vec!["x".into(), "y".into()],
            k,
            k_min: 2,
            k_max: 6,
            sample_size: 10_000,
            seed: 42,
            starts: 10,
            max_iterations: 300,
            order_by: "x".into(),
            naming: Naming::Generic,
        }
    }

    /// Three planted blobs around (0,0), (10,0) and (0,10), with a little deterministic jitter.
    fn blobs(per_blob: usize) -> (Vec<String>, Array2<f64>, Vec<usize>) {
        blobs_around(&[(0.0, 0.0), (10.0, 0.0), (0.0, 10.0)], per_blob)
    }

    /// A blob of `per_blob` points around each centre (jitter of ±0.5 per axis).
    fn blobs_around(centres: &[(f64, f64)], per_blob: usize) -> (Vec<String>, Array2<f64>, Vec<usize>) {
        let mut ids = Vec::new();
        let mut rows = Vec::new();
        let mut truth = Vec::new();
        let mut state: u64 = 7;
        let mut jitter = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as f64 / (1u64 << 31) as f64) - 0.5
        };
        for i in 0..per_blob {
            for (blob, (cx, cy)) in centres.iter().enumerate() {
                ids.push(format!("e{blob}-{i:05}"));
                rows.extend([cx + jitter(), cy + jitter()]);
                truth.push(blob);
            }
        }
        (
            ids,
            Array2::from_shape_vec((rows.len() / 2, 2), rows).expect("shape"),
            truth,
        )
    }

    /// The personas the members of planted `blob` were put in.
    fn personas_of(truth: &[usize], labels: &[usize], blob: usize) -> std::collections::HashSet<usize> {
        truth
            .iter()
            .zip(labels)
            .filter(|(t, _)| **t == blob)
            .map(|(_, l)| *l)
            .collect()
    }

    #[test]
    fn recovers_planted_clusters_and_chooses_k_by_silhouette() {
        let (ids, data, truth) = blobs(200);
        let (labels, clustering) = cluster(&ids, &data, &spec(None)).expect("cluster");
        assert_eq!(clustering.k, 3, "silhouettes: {:?}", clustering.silhouettes);
        assert_eq!(clustering.sizes, vec![200, 200, 200]);
        // Each planted blob maps to exactly one persona; ordered by descending x: blob 1 first.
        for blob in 0..3 {
            assert_eq!(personas_of(&truth, &labels, blob).len(), 1, "blob {blob}");
        }
        assert_eq!(labels[1], 0, "the blob at x = 10 has the largest x centroid");
    }

    /// Nine blobs on a 3 × 3 grid, k = 9: the best clustering has one persona per blob, but a
    /// single k-means++ start settles with two centroids in one blob and one between two others.
    /// With several starts the least-inertia fit is the planted one.
    #[test]
    fn several_starts_find_the_planted_clusters_one_start_misses() {
        let centres: Vec<(f64, f64)> = (0..9)
            .map(|i| (f64::from(i % 3) * 4.0, f64::from(i / 3) * 4.0))
            .collect();
        let (ids, data, truth) = blobs_around(&centres, 60);
        let blobs_split = |starts: usize| {
            let spec = KMeansSpec {
                starts,
                k_max: 9,
                ..spec(Some(9))
            };
            let (labels, _) = cluster(&ids, &data, &spec).expect("cluster");
            (0..centres.len())
                .filter(|&blob| personas_of(&truth, &labels, blob).len() > 1)
                .count()
        };
        assert!(blobs_split(1) > 0, "this data should trip a single start");
        assert_eq!(blobs_split(10), 0);
    }

    #[test]
    fn converged_each_entity_nearest_its_centroid_and_centroids_are_means() {
        assert_converged(150);
    }

    #[test]
    fn converged_beyond_the_sample_and_across_lloyd_units() {
        // 75,000 rows: the fit seeds from a 10,000-row sample, Lloyd runs over two units.
        const { assert!(75_000 > LLOYD_ROWS) };
        assert_converged(25_000);
    }

    fn assert_converged(per_blob: usize) {
        let (ids, data, _) = blobs(per_blob);
        // Fewer clusters than blobs makes the assignment non-trivial.
        let (labels, clustering) = cluster(&ids, &data, &spec(Some(2))).expect("cluster");
        assert_eq!(clustering.sizes.iter().sum::<usize>(), 3 * per_blob);
        let standard = standardise(&data);
        for (row, &label) in standard.axis_iter(Axis(0)).zip(&labels) {
            assert_eq!(nearest(row, &clustering.centroids), label);
        }
        for persona in 0..2 {
            let members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == persona).collect();
            let mean = standard.select(Axis(0), &members).mean_axis(Axis(0)).expect("members");
            for (a, b) in mean.iter().zip(clustering.centroids.row(persona).iter()) {
                assert!((a - b).abs() < 1e-9, "{mean} vs {}", clustering.centroids.row(persona));
            }
        }
    }

    #[test]
    fn deterministic_whatever_the_row_order() {
        let (ids, data, _) = blobs(100);
        let (labels, first) = cluster(&ids, &data, &spec(None)).expect("cluster");
        let reversed: Vec<usize> = (0..ids.len()).rev().collect();
        let ids_rev: Vec<String> = reversed.iter().map(|&i| ids[i].clone()).collect();
        let (labels_rev, second) = cluster(&ids_rev, &data.select(Axis(0), &reversed), &spec(None)).expect("cluster");
        assert_eq!(first.names, second.names);
        assert_eq!(first.k, second.k);
        for (position, &i) in reversed.iter().enumerate() {
            assert_eq!(labels[i], labels_rev[position]);
        }
    }

    #[test]
    fn silhouette_matches_a_hand_computed_example() {
        // A = {0, 1}, B = {4, 5} on a line. Point 0: a = 1, b = (4 + 5) / 2 = 4.5, s = 3.5 / 4.5;
        // point 1: a = 1, b = (3 + 4) / 2 = 3.5, s = 2.5 / 3.5; B mirrors A.
        let data = ndarray::arr2(&[[0.0], [1.0], [4.0], [5.0]]);
        let expected = (3.5 / 4.5 + 2.5 / 3.5) / 2.0;
        assert!((silhouette_score(&data, &[0, 0, 1, 1], 2) - expected).abs() < 1e-12);
        // A singleton scores 0: {0}, {1, 4, 5} -> point 0 adds nothing.
        let with_singleton = silhouette_score(&data, &[0, 1, 1, 1], 2);
        let point = |within: f64, other: f64| (other - within) / within.max(other);
        let expected =
            (0.0 + point((3.0 + 4.0) / 2.0, 1.0) + point((3.0 + 1.0) / 2.0, 4.0) + point((4.0 + 1.0) / 2.0, 5.0)) / 4.0;
        assert!(
            (with_singleton - expected).abs() < 1e-12,
            "{with_singleton} vs {expected}"
        );
    }

    #[test]
    fn customer_names_read_like_words_and_are_distinct() {
        let features: Vec<String> = CUSTOMER_FEATURES.map(String::from).to_vec();
        let centroids = ndarray::arr2(&[
            [-1.0, 1.5, 1.6, 0.3, 0.8],
            [1.4, -0.8, -0.6, 0.0, -0.9],
            [0.1, 1.2, 0.2, -1.0, 0.5],
            [1.5, -0.9, -0.7, 0.1, -1.0],
        ]);
        let names = name_all(&centroids, &features, Naming::Customers);
        assert_eq!(names[0], "High-value loyalists");
        assert_eq!(names[2], "Frequent bargain hunters");
        assert!(names[1].starts_with("Lapsed one-time buyers") && names[3].starts_with("Lapsed one-time buyers"));
        assert_ne!(names[1], names[3]);
    }
}
