//! Clustering time of `lifemap::personas::cluster` on synthetic customers.
//!
//! `cargo bench --bench personas` (1,000,000 customers; `-- 200000` for another size).
//! Features are drawn around five planted behaviours, like the bundled persona features.

use std::time::Instant;

use lifemap::personas::{CUSTOMER_FEATURES, KMeansSpec, Naming, cluster};
use ndarray::Array2;

fn main() {
    let customers: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let centres = [
        [40.0, 1.6, 6.3, 125.0, 2.5],
        [140.0, 1.1, 5.2, 90.0, 0.1],
        [75.0, 1.7, 5.1, 35.0, 2.6],
        [240.0, 0.7, 4.2, 63.0, 0.5],
        [50.0, 0.7, 4.2, 60.0, 2.3],
    ];
    let mut state: u64 = 42;
    let mut noise = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) as f64 / (1u64 << 31) as f64) - 0.5
    };
    let mut values = Vec::with_capacity(customers * 5);
    let mut ids = Vec::with_capacity(customers);
    for i in 0..customers {
        let centre = centres[i % centres.len()];
        for (j, c) in centre.iter().enumerate() {
            values.push(c * (1.0 + 0.4 * noise()) + if j == 0 { 30.0 * noise() } else { 0.0 });
        }
        ids.push(format!("C{i:08}"));
    }
    let data = Array2::from_shape_vec((customers, 5), values).expect("shape");
    let spec = KMeansSpec {
        input: "persona_features".into(),
        id: "person_id".into(),
        features: CUSTOMER_FEATURES.map(String::from).to_vec(),
        k: None,
        k_min: 2,
        k_max: 8,
        sample_size: 10_000,
        seed: 42,
        starts: 10,
        max_iterations: 300,
        order_by: "log_monetary".into(),
        naming: Naming::Customers,
    };
    let started = Instant::now();
    let (_, clustering) = cluster(&ids, &data, &spec).expect("cluster");
    let elapsed = started.elapsed();
    println!(
        "personas: {customers} customers, k = {} (silhouette {:.3}), {} refinement iterations: {:.2} s",
        clustering.k,
        clustering.silhouette.unwrap_or(f64::NAN),
        clustering.iterations,
        elapsed.as_secs_f64()
    );
    println!("names: {:?}", clustering.names);
    println!("sizes: {:?}", clustering.sizes);
}
