//! `lifemap sample-data`: deterministic sample exports in the bundled pipeline's layout.

use std::path::PathBuf;

use chrono::NaiveDate;
use clap::Args;

use crate::config::parse_ds;
use crate::error::Error;
use crate::sample;

#[derive(Debug, Args)]
pub struct SampleArgs {
    /// Known customers to generate (one anonymous prospect comes on top for every two).
    #[arg(long, default_value_t = 2000)]
    pub customers: u64,

    /// Stop at about this many events instead (customers are then unlimited), e.g. 10000000.
    #[arg(long)]
    pub events: Option<u64>,

    /// Seed of the generator: the same seed gives the same files.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Output folder (the exports root).
    #[arg(long, default_value = "data/sample")]
    pub out: PathBuf,

    /// Last day of generated activity.
    #[arg(long, value_parser = parse_ds, default_value = "2026-10-31")]
    pub end: NaiveDate,

    /// Days of history before --end.
    #[arg(long, default_value_t = 365)]
    pub days: u32,

    /// How the event files are written: ndjson-gz (the contract) or parquet (run the bundled
    /// pipeline on them with `--var events_format=parquet`).
    #[arg(long, value_enum, default_value_t)]
    pub events_format: sample::EventsFormat,

    /// Also write every customer's behaviour archetype to this CSV file (customer_id,archetype),
    /// to score personas against (benches/personas.sh).
    #[arg(long)]
    pub archetypes: Option<PathBuf>,
}

pub(super) fn run(args: &SampleArgs) -> Result<(), Error> {
    let settings = sample::SampleSettings {
        customers: if args.events.is_some() {
            u64::MAX
        } else {
            args.customers
        },
        events: args.events,
        seed: args.seed,
        end: args.end,
        days: args.days,
        events_format: args.events_format,
        archetypes: args.archetypes.clone(),
    };
    let stats = sample::generate(&args.out, &settings)?;
    println!("{}", serde_json::to_string(&stats).unwrap_or_default());
    Ok(())
}
