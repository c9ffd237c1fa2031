//! `lifemap sample-data`: deterministic, realistic customer exports in the layout of the bundled
//! pipeline (events NDJSON.gz by `dt=` day, orders CSV.gz, customers and feedback CSV).
//!
//! What is in it, so the marts have something to find: behaviour archetypes (loyalists, bargain
//! hunters, one-time buyers, browsers, lapsed buyers, store-only buyers with no events), anonymous
//! prospects who never convert, anonymous devices that later log in (identity stitching), weekly
//! and yearly seasonality, a category (`eco_friendly`) whose share grows over the year, NPS
//! responses, timestamps in several UTC offsets, late events (filed under a later `dt`) and a
//! sprinkle of bad rows of every kind the contract quarantines.
//!
//! It streams: each customer is generated and written before the next, so memory stays flat as
//! `--customers` grows. The same settings always give byte-identical files.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, TimeZone, Utc};
use flate2::Compression;
use flate2::write::GzEncoder;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::error::Error;

#[derive(Debug, Clone)]
pub struct SampleSettings {
    pub customers: u64,
    /// Stop once this many events are written (the benchmark sizes data by events).
    pub events: Option<u64>,
    pub seed: u64,
    /// Last day of activity.
    pub end: NaiveDate,
    /// Days of history up to and including `end`.
    pub days: u32,
    pub events_format: EventsFormat,
    /// Also write each known customer's behaviour archetype here (`customer_id,archetype`): the
    /// truth that the personas of a run on this sample can be scored against.
    pub archetypes: Option<PathBuf>,
}

/// How the event files are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum EventsFormat {
    /// `dt=<day>/part-00000.ndjson.gz`, as the contract says.
    #[default]
    NdjsonGz,
    /// `dt=<day>/part-00000.parquet`: the same events as typed columns, as a warehouse would
    /// export them (`properties` stays JSON text). A truncated line cannot be a Parquet row, so
    /// that one kind of bad row is left out.
    Parquet,
}

/// What was written.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SampleStats {
    pub customers: u64,
    pub prospects: u64,
    pub events: u64,
    pub orders: u64,
    pub feedback: u64,
    pub bad_rows: u64,
    pub late_events: u64,
    pub files: u64,
}

const CATEGORIES: [&str; 6] = ["electronics", "home", "fashion", "beauty", "sports", "eco_friendly"];
const COUNTRIES: [(&str, i32); 6] = [
    ("US", -5 * 3600),
    ("DE", 3600),
    ("GB", 0),
    ("IN", 19800),
    ("BR", -3 * 3600),
    ("JP", 9 * 3600),
];
const ACQUISITION: [&str; 6] = ["search", "social", "email", "display", "referral", "direct"];
const COMMENTS: [&str; 6] = [
    "Fast delivery, great quality",
    "Good value",
    "Checkout was confusing",
    "Love the eco range",
    "Support took too long",
    "",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Archetype {
    Loyal,
    BargainHunter,
    OneTime,
    Browser,
    Lapsed,
    StoreOnly,
}

impl Archetype {
    fn name(self) -> &'static str {
        match self {
            Archetype::Loyal => "loyal",
            Archetype::BargainHunter => "bargain_hunter",
            Archetype::OneTime => "one_time",
            Archetype::Browser => "browser",
            Archetype::Lapsed => "lapsed",
            Archetype::StoreOnly => "store_only",
        }
    }

    fn pick(rng: &mut ChaCha8Rng) -> Self {
        match rng.random_range(0..100) {
            0..12 => Archetype::Loyal,
            12..30 => Archetype::BargainHunter,
            30..58 => Archetype::OneTime,
            58..80 => Archetype::Browser,
            80..92 => Archetype::Lapsed,
            _ => Archetype::StoreOnly,
        }
    }

    /// (orders range, average order value, days between orders)
    fn buying(self) -> (u32, u32, f64, i64) {
        match self {
            Archetype::Loyal => (4, 11, 120.0, 30),
            Archetype::BargainHunter => (3, 9, 32.0, 20),
            Archetype::OneTime => (1, 2, 60.0, 0),
            Archetype::Browser => (0, 1, 45.0, 0),
            Archetype::Lapsed => (1, 4, 70.0, 15),
            Archetype::StoreOnly => (1, 5, 85.0, 40),
        }
    }

    fn nps(self, rng: &mut ChaCha8Rng) -> i64 {
        match self {
            Archetype::Loyal => rng.random_range(8..=10),
            Archetype::BargainHunter => rng.random_range(6..=10),
            Archetype::OneTime | Archetype::StoreOnly => rng.random_range(5..=10),
            Archetype::Browser => rng.random_range(4..=10),
            Archetype::Lapsed => rng.random_range(1..=8),
        }
    }
}

/// Writers for every file of the export. Event lines collect per `dt` and go to the compressors
/// in chunks.
struct Exports {
    root: PathBuf,
    events: BTreeMap<NaiveDate, Vec<u8>>,
    compressors: Compressors,
    orders: csv_like::Writer<GzEncoder<BufWriter<File>>>,
    customers: csv_like::Writer<BufWriter<File>>,
    feedback: csv_like::Writer<BufWriter<File>>,
    archetypes: Option<(PathBuf, csv_like::Writer<BufWriter<File>>)>,
    stats: SampleStats,
}

/// Minimal RFC 4180 CSV writing (quotes fields holding separators, quotes or newlines).
mod csv_like {
    use std::io::Write;

    pub struct Writer<W: Write> {
        pub inner: W,
    }

    impl<W: Write> Writer<W> {
        pub fn row(&mut self, fields: &[&str]) -> std::io::Result<()> {
            for (i, field) in fields.iter().enumerate() {
                if i > 0 {
                    self.inner.write_all(b",")?;
                }
                self.inner
                    .write_all(lifemap_syntax::csv::quote_field(field).as_bytes())?;
            }
            self.inner.write_all(b"\n")
        }
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn create(path: &Path) -> Result<BufWriter<File>, Error> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_error(parent))?;
    }
    Ok(BufWriter::with_capacity(
        64 * 1024,
        File::create(path).map_err(io_error(path))?,
    ))
}

impl Exports {
    fn open(root: &Path, archetypes: Option<&Path>) -> Result<Self, Error> {
        for folder in ["events", "orders", "customers", "feedback"] {
            let path = root.join(folder);
            if path.exists() {
                std::fs::remove_dir_all(&path).map_err(io_error(&path))?;
            }
        }
        let orders_path = root.join("orders/orders.csv.gz");
        let mut orders = csv_like::Writer {
            inner: GzEncoder::new(create(&orders_path)?, Compression::default()),
        };
        let mut customers = csv_like::Writer {
            inner: create(&root.join("customers/customers.csv"))?,
        };
        let mut feedback = csv_like::Writer {
            inner: create(&root.join("feedback/feedback.csv"))?,
        };
        orders
            .row(&[
                "order_id",
                "customer_id",
                "ordered_at",
                "amount",
                "currency",
                "category",
                "channel",
                "status",
            ])
            .map_err(io_error(&orders_path))?;
        customers
            .row(&["customer_id", "email", "signup_at", "country", "acquisition_channel"])
            .map_err(io_error(root))?;
        feedback
            .row(&["response_id", "customer_id", "responded_at", "nps_score", "comment"])
            .map_err(io_error(root))?;
        let archetypes = match archetypes {
            Some(path) => {
                let mut writer = csv_like::Writer { inner: create(path)? };
                writer.row(&["customer_id", "archetype"]).map_err(io_error(path))?;
                Some((path.to_path_buf(), writer))
            }
            None => None,
        };
        Ok(Self {
            root: root.to_path_buf(),
            events: BTreeMap::new(),
            compressors: Compressors::start(&root.join("events")),
            orders,
            customers,
            feedback,
            archetypes,
            stats: SampleStats {
                files: 3,
                ..Default::default()
            },
        })
    }

    fn event_line(&mut self, dt: NaiveDate, line: &str) -> Result<(), Error> {
        let buffer = match self.events.entry(dt) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                self.stats.files += 1;
                entry.insert(Vec::with_capacity(EVENT_CHUNK_BYTES))
            }
        };
        buffer.extend_from_slice(line.as_bytes());
        buffer.push(b'\n');
        if buffer.len() >= EVENT_CHUNK_BYTES {
            let chunk = std::mem::replace(buffer, Vec::with_capacity(EVENT_CHUNK_BYTES));
            self.compressors.send(dt, chunk)?;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<SampleStats, Error> {
        let root = self.root.clone();
        for (dt, chunk) in std::mem::take(&mut self.events) {
            self.compressors.send(dt, chunk)?;
        }
        self.compressors.join()?;
        self.orders
            .inner
            .finish()
            .map_err(io_error(&root))?
            .flush()
            .map_err(io_error(&root))?;
        self.customers
            .inner
            .into_inner()
            .map_err(|e| io_error(&root)(e.into_error()))?;
        self.feedback
            .inner
            .into_inner()
            .map_err(|e| io_error(&root)(e.into_error()))?;
        if let Some((path, writer)) = self.archetypes {
            writer.inner.into_inner().map_err(|e| io_error(&path)(e.into_error()))?;
        }
        Ok(self.stats)
    }
}

/// Event lines of one `dt` are handed to the compressors in chunks of about this size.
const EVENT_CHUNK_BYTES: usize = 256 * 1024;

/// Threads that gzip the event files: deflate took three quarters of the generator's time
/// (`perf record`, 300K events), so it runs beside the generator on the other cores. Each `dt`
/// belongs to one thread and its chunks arrive in order, so the files stay byte-identical.
struct Compressors {
    root: PathBuf,
    senders: Vec<SyncSender<(NaiveDate, Vec<u8>)>>,
    threads: Vec<JoinHandle<Result<(), Error>>>,
}

impl Compressors {
    fn start(events_root: &Path) -> Self {
        let count = std::thread::available_parallelism().map_or(1, usize::from).clamp(1, 4);
        let (senders, threads) = (0..count)
            .map(|_| {
                let (sender, receiver) = sync_channel::<(NaiveDate, Vec<u8>)>(16);
                let root = events_root.to_path_buf();
                let thread = std::thread::spawn(move || {
                    let mut files: BTreeMap<NaiveDate, (PathBuf, GzEncoder<BufWriter<File>>)> = BTreeMap::new();
                    for (dt, chunk) in receiver {
                        let (path, file) = match files.entry(dt) {
                            Entry::Occupied(entry) => entry.into_mut(),
                            Entry::Vacant(entry) => {
                                let path = root.join(format!("dt={dt}/part-00000.ndjson.gz"));
                                let file = GzEncoder::new(create(&path)?, Compression::default());
                                entry.insert((path, file))
                            }
                        };
                        file.write_all(&chunk).map_err(io_error(path))?;
                    }
                    for (path, file) in files.into_values() {
                        file.finish()
                            .map_err(io_error(&path))?
                            .flush()
                            .map_err(io_error(&path))?;
                    }
                    Ok(())
                });
                (sender, thread)
            })
            .unzip();
        Self {
            root: events_root.to_path_buf(),
            senders,
            threads,
        }
    }

    fn send(&mut self, dt: NaiveDate, chunk: Vec<u8>) -> Result<(), Error> {
        let owner = usize::try_from(dt.num_days_from_ce()).unwrap_or(0) % self.senders.len().max(1);
        match self.senders.get(owner).map(|sender| sender.send((dt, chunk))) {
            Some(Ok(())) => Ok(()),
            // The thread stopped on an error: join() returns it.
            _ => self.join().and_then(|()| {
                Err(Error::Io {
                    path: self.root.clone(),
                    source: std::io::Error::other("the compression threads stopped early"),
                })
            }),
        }
    }

    /// Waits for every file to be written; the first error of any thread.
    fn join(&mut self) -> Result<(), Error> {
        self.senders.clear();
        let mut outcome = Ok(());
        for thread in std::mem::take(&mut self.threads) {
            let result = thread.join().unwrap_or_else(|_| {
                Err(Error::Io {
                    path: self.root.clone(),
                    source: std::io::Error::other("a compression thread panicked"),
                })
            });
            if outcome.is_ok() {
                outcome = result;
            }
        }
        outcome
    }
}

/// The state of generation shared across customers.
struct Generator {
    rng: ChaCha8Rng,
    start: NaiveDate,
    end: NaiveDate,
    days: i64,
    next_event: u64,
    next_order: u64,
    next_response: u64,
}

struct Event<'a> {
    at: DateTime<Utc>,
    offset: i32,
    customer_id: Option<&'a str>,
    anonymous_id: Option<&'a str>,
    event_type: &'a str,
    channel: &'a str,
    category: Option<&'a str>,
}

impl<'a> Event<'a> {
    /// An event of a visitor not (yet) known as a customer.
    fn anonymous(
        at: DateTime<Utc>,
        offset: i32,
        anonymous_id: &'a str,
        event_type: &'a str,
        channel: &'a str,
        category: Option<&'a str>,
    ) -> Self {
        Event {
            at,
            offset,
            customer_id: None,
            anonymous_id: Some(anonymous_id),
            event_type,
            channel,
            category,
        }
    }
}

#[derive(Clone, Copy)]
struct Order<'a> {
    customer_id: &'a str,
    at: DateTime<Utc>,
    offset: i32,
    category: &'a str,
    channel: &'a str,
}

impl Generator {
    /// A day in the range, denser later (growth), in November–December and on weekdays.
    fn day(&mut self, from: i64, to: i64) -> i64 {
        let to = to.max(from);
        for _ in 0..32 {
            let u: f64 = self.rng.random();
            let day = if self.rng.random_bool(0.4) {
                from + ((to - from) as f64 * u.sqrt()) as i64
            } else {
                self.rng.random_range(from..=to)
            };
            let date = self.start + Duration::days(day);
            let mut weight = if matches!(date.month(), 11 | 12) { 1.0 } else { 0.75 };
            if date.weekday().number_from_monday() >= 6 {
                weight *= 0.8;
            }
            if self.rng.random_bool(weight) {
                return day;
            }
        }
        from
    }

    /// A time of day peaking around lunch and evening, in UTC for a customer `offset` seconds east.
    fn instant(&mut self, day: i64, offset: i32) -> DateTime<Utc> {
        let hour = match self.rng.random_range(0..10) {
            0..3 => self.rng.random_range(11..14),
            3..7 => self.rng.random_range(18..23),
            _ => self.rng.random_range(7..24),
        };
        let local_seconds = hour * 3600 + self.rng.random_range(0..3600);
        let date = self.start + Duration::days(day);
        let midnight = Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0).unwrap_or_default());
        midnight + Duration::seconds(i64::from(local_seconds) - i64::from(offset))
    }

    fn category(&mut self, day: i64) -> &'static str {
        // eco_friendly grows from 4% to 20% of purchases over the range.
        let eco_share = 0.04 + 0.16 * (day as f64 / self.days.max(1) as f64);
        if self.rng.random_bool(eco_share.clamp(0.0, 1.0)) {
            "eco_friendly"
        } else {
            CATEGORIES[self.rng.random_range(0..5)]
        }
    }

    fn timestamp(at: DateTime<Utc>, offset: i32) -> String {
        if offset == 0 {
            return at.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        }
        let zone = FixedOffset::east_opt(offset).unwrap_or(FixedOffset::east_opt(0).expect("zero offset is valid"));
        at.with_timezone(&zone).format("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }

    fn emit(&mut self, out: &mut Exports, event: &Event<'_>) -> Result<(), Error> {
        let local_day = event.at.date_naive();
        if local_day > self.end || local_day < self.start {
            return Ok(());
        }
        self.next_event += 1;
        let event_id = format!("e{:010}", self.next_event);
        let mut properties = serde_json::Map::new();
        if let Some(category) = event.category {
            properties.insert("category".into(), category.into());
            properties.insert(
                "product_id".into(),
                format!("P{:04}", self.rng.random_range(0..400)).into(),
            );
        }
        if matches!(event.event_type, "ad_click" | "ad_impression" | "email_open") {
            properties.insert(
                "campaign".into(),
                format!("cmp-{}-{:02}", event.channel, local_day.month()).into(),
            );
        }
        let mut occurred_at = Self::timestamp(event.at, event.offset);
        let mut customer_id = event.customer_id.map(str::to_string);
        let mut anonymous_id = event.anonymous_id.map(str::to_string);
        // About 3 in 1000 events are broken in one of the ways the contract quarantines.
        let broken = self.rng.random_range(0..1000);
        match broken {
            0 => occurred_at = "not-a-timestamp".into(),
            1 => {
                customer_id = None;
                anonymous_id = None;
            }
            _ => {}
        }
        let line = serde_json::json!({
            "event_id": event_id,
            "occurred_at": occurred_at,
            "customer_id": customer_id,
            "anonymous_id": anonymous_id,
            "event_type": event.event_type,
            "channel": event.channel,
            "properties": properties,
        })
        .to_string();
        // Late arrivals: filed one or two days after they happened, past `end` too (a run for
        // `end` reads them there).
        let mut dt = local_day;
        if self.rng.random_range(0..100) < 2 {
            dt += Duration::days(self.rng.random_range(1..=2));
            out.stats.late_events += 1;
        }
        out.event_line(dt, &line)?;
        out.stats.events += 1;
        if broken <= 1 {
            out.stats.bad_rows += 1;
        }
        if broken == 2 {
            // The exporter retried: the same event twice.
            out.event_line(dt, &line)?;
            out.stats.events += 1;
            out.stats.bad_rows += 1;
        } else if broken == 3 {
            out.event_line(dt, &line[..line.len() / 2])?;
            out.stats.bad_rows += 1;
        }
        Ok(())
    }

    /// Write an order; true when it is a valid completed one.
    fn order(&mut self, out: &mut Exports, order: &Order<'_>, aov: f64) -> Result<bool, Error> {
        let Order {
            customer_id,
            at,
            offset,
            category,
            channel,
        } = *order;
        if at.date_naive() > self.end {
            return Ok(false);
        }
        self.next_order += 1;
        let order_id = format!("O{:09}", self.next_order);
        let noise: f64 = (0..3).map(|_| self.rng.random_range(-0.5..0.5)).sum::<f64>();
        let mut amount = format!("{:.2}", (aov * (noise * 0.6).exp()).max(1.0));
        let mut status = match self.rng.random_range(0..100) {
            0..90 => "completed",
            90..96 => "refunded",
            _ => "cancelled",
        };
        let mut customer = customer_id.to_string();
        let broken = self.rng.random_range(0..1000);
        match broken {
            0 => amount = format!("-{amount}"),
            1 => status = "pending_review",
            2 => customer.clear(),
            _ => {}
        }
        if broken <= 2 {
            out.stats.bad_rows += 1;
        }
        let ordered_at = Self::timestamp(at, offset);
        let path = self.start.to_string();
        out.orders
            .row(&[
                &order_id,
                &customer,
                &ordered_at,
                &amount,
                "USD",
                category,
                channel,
                status,
            ])
            .map_err(|source| Error::Io {
                path: PathBuf::from(path),
                source,
            })?;
        out.stats.orders += 1;
        Ok(status == "completed" && broken > 2)
    }
}

/// Write the sample under `root`; existing `events/`, `orders/`, `customers/`, `feedback/` there
/// are replaced.
pub fn generate(root: &Path, settings: &SampleSettings) -> Result<SampleStats, Error> {
    if settings.days == 0 {
        return Err(Error::Usage("--days must be at least 1".into()));
    }
    let start = settings.end - Duration::days(i64::from(settings.days) - 1);
    let mut generator = Generator {
        rng: ChaCha8Rng::seed_from_u64(settings.seed),
        start,
        end: settings.end,
        days: i64::from(settings.days),
        next_event: 0,
        next_order: 0,
        next_response: 0,
    };
    let mut out = Exports::open(root, settings.archetypes.as_deref())?;
    let last_day = generator.days - 1;
    // One anonymous prospect for every two customers, interleaved so that stopping at an event
    // count keeps the mix.
    let mut index = 0;
    while index < settings.customers && settings.events.is_none_or(|target| out.stats.events < target) {
        customer(&mut generator, &mut out, index, last_day)?;
        out.stats.customers += 1;
        if index % 2 == 1 {
            prospect(&mut generator, &mut out, index / 2, last_day)?;
            out.stats.prospects += 1;
        }
        index += 1;
    }
    let mut stats = out.finish()?;
    if settings.events_format == EventsFormat::Parquet {
        let truncated = parquet_events::convert(&root.join("events"))?;
        stats.bad_rows = stats.bad_rows.saturating_sub(truncated);
    }
    Ok(stats)
}

/// Rewrites the NDJSON.gz event files as Parquet, a `dt` at a time on every core.
mod parquet_events {
    use std::fs::File;
    use std::io::{BufRead, BufReader};
    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    use datafusion::arrow::array::{ArrayRef, RecordBatch, StringBuilder};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::parquet::arrow::ArrowWriter;
    use datafusion::parquet::basic::Compression;
    use datafusion::parquet::file::properties::WriterProperties;
    use flate2::read::GzDecoder;

    use super::io_error;
    use crate::error::Error;

    const COLUMNS: [&str; 7] = [
        "event_id",
        "occurred_at",
        "customer_id",
        "anonymous_id",
        "event_type",
        "channel",
        "properties",
    ];

    /// Converts every `dt=*/part-00000.ndjson.gz` below `events`; returns the lines left out
    /// because they are not JSON objects (the truncated ones).
    pub fn convert(events: &Path) -> Result<u64, Error> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(events)
            .map_err(io_error(events))?
            .filter_map(|entry| entry.ok().map(|entry| entry.path().join("part-00000.ndjson.gz")))
            .filter(|path| path.exists())
            .collect();
        files.sort();
        let next = AtomicUsize::new(0);
        let truncated = AtomicU64::new(0);
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| -> Result<(), Error> {
                        while let Some(file) = files.get(next.fetch_add(1, Ordering::Relaxed)) {
                            truncated.fetch_add(convert_file(file)?, Ordering::Relaxed);
                        }
                        Ok(())
                    })
                })
                .collect();
            workers.into_iter().try_for_each(|worker| {
                worker.join().unwrap_or_else(|_| {
                    Err(Error::Io {
                        path: events.to_path_buf(),
                        source: std::io::Error::other("a conversion thread panicked"),
                    })
                })
            })
        })?;
        Ok(truncated.into_inner())
    }

    fn convert_file(path: &Path) -> Result<u64, Error> {
        let reader = BufReader::new(GzDecoder::new(File::open(path).map_err(io_error(path))?));
        let mut builders: Vec<StringBuilder> = COLUMNS.iter().map(|_| StringBuilder::new()).collect();
        let mut truncated = 0;
        for line in reader.lines() {
            let line = line.map_err(io_error(path))?;
            let Ok(serde_json::Value::Object(event)) = serde_json::from_str(&line) else {
                truncated += 1;
                continue;
            };
            for (builder, column) in builders.iter_mut().zip(COLUMNS) {
                match event.get(column) {
                    Some(serde_json::Value::String(text)) => builder.append_value(text),
                    Some(serde_json::Value::Null) | None => builder.append_null(),
                    Some(other) => builder.append_value(other.to_string()),
                }
            }
        }
        let schema = Arc::new(Schema::new(
            COLUMNS
                .iter()
                .map(|name| Field::new(*name, DataType::Utf8, true))
                .collect::<Vec<_>>(),
        ));
        let columns: Vec<ArrayRef> = builders
            .iter_mut()
            .map(|builder| Arc::new(builder.finish()) as ArrayRef)
            .collect();
        let parquet_error = |error: &dyn std::fmt::Display| Error::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(error.to_string()),
        };
        let batch = RecordBatch::try_new(Arc::clone(&schema), columns).map_err(|e| parquet_error(&e))?;
        let target = path.with_file_name("part-00000.parquet");
        let file = File::create(&target).map_err(io_error(&target))?;
        // Snappy, as Spark and most warehouse exports write by default.
        let properties = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
        let mut writer = ArrowWriter::try_new(file, schema, Some(properties)).map_err(|e| parquet_error(&e))?;
        writer.write(&batch).map_err(|e| parquet_error(&e))?;
        writer.close().map_err(|e| parquet_error(&e))?;
        std::fs::remove_file(path).map_err(io_error(path))?;
        Ok(truncated)
    }
}

fn awareness_event(g: &mut Generator) -> (&'static str, &'static str) {
    match g.rng.random_range(0..5) {
        0 => (
            "ad_impression",
            ["display", "social", "search"][g.rng.random_range(0..3)],
        ),
        1 => ("ad_click", ["display", "social", "search"][g.rng.random_range(0..3)]),
        2 => ("email_open", "email"),
        3 => ("social_engagement", "social"),
        _ => ("landing_page_view", ["web", "search"][g.rng.random_range(0..2)]),
    }
}

fn consideration_event(g: &mut Generator) -> &'static str {
    [
        "product_view",
        "product_view",
        "product_view",
        "add_to_cart",
        "review_read",
        "webinar_join",
        "demo_request",
    ][g.rng.random_range(0..7)]
}

/// Who a generated customer is, fixed before their events are drawn.
struct Persona<'a> {
    customer_id: &'a str,
    anonymous_id: &'a str,
    archetype: Archetype,
    offset: i32,
    /// The channel of their own visits: "app" or "web".
    channel: &'static str,
}

impl<'a> Persona<'a> {
    /// An event of this customer, signed in.
    fn event(&self, at: DateTime<Utc>, event_type: &'a str, channel: &'a str, category: Option<&'a str>) -> Event<'a> {
        Event {
            at,
            offset: self.offset,
            customer_id: Some(self.customer_id),
            anonymous_id: None,
            event_type,
            channel,
            category,
        }
    }
}

fn customer(g: &mut Generator, out: &mut Exports, index: u64, last_day: i64) -> Result<(), Error> {
    let customer_id = format!("C{index:07}");
    let anonymous_id = format!("a{:012x}", g.rng.random::<u64>() >> 16);
    let archetype = Archetype::pick(&mut g.rng);
    if let Some((path, writer)) = &mut out.archetypes {
        writer
            .row(&[customer_id.as_str(), archetype.name()])
            .map_err(io_error(path))?;
    }
    let (country, offset) = COUNTRIES[g.rng.random_range(0..COUNTRIES.len())];
    let acquisition = ACQUISITION[g.rng.random_range(0..ACQUISITION.len())];
    let first_day = g.day(0, last_day - 3);
    let first_touch = g.instant(first_day, offset);
    let app_user = g.rng.random_bool(0.4);
    let persona = Persona {
        customer_id: &customer_id,
        anonymous_id: &anonymous_id,
        archetype,
        offset,
        channel: if app_user { "app" } else { "web" },
    };

    let signup = sign_up(g, out, &persona, first_touch, first_day, country, acquisition)?;
    let (completed, t) = buy(g, out, &persona, signup, last_day)?;
    engage(g, out, &persona, signup, last_day)?;
    if completed > 0 && matches!(archetype, Archetype::Loyal | Archetype::BargainHunter) && g.rng.random_bool(0.35) {
        let event_type = ["review_posted", "referral_sent", "social_mention"][g.rng.random_range(0..3)];
        let channel = if event_type == "social_mention" {
            "social"
        } else {
            persona.channel
        };
        let at = t - Duration::days(g.rng.random_range(0..20));
        g.emit(out, &persona.event(at, event_type, channel, None))?;
    }
    if completed > 0 && g.rng.random_bool(0.35) {
        answer_surveys(g, out, &persona, signup, last_day)?;
    }
    Ok(())
}

/// Anonymous touches, perhaps some anonymous browsing, then the signup (a customers row and, for
/// those who use the site or app, the login that links the device). Returns the signup instant.
fn sign_up(
    g: &mut Generator,
    out: &mut Exports,
    persona: &Persona,
    first_touch: DateTime<Utc>,
    first_day: i64,
    country: &str,
    acquisition: &str,
) -> Result<DateTime<Utc>, Error> {
    let online = persona.archetype != Archetype::StoreOnly;
    let mut t = first_touch;
    if online {
        t = awareness_touches(g, out, persona.anonymous_id, persona.offset, t, 600)?;
        // Browsing before logging in stays anonymous; the login links the device to the customer.
        if g.rng.random_bool(0.5) {
            let category = g.category(first_day);
            g.emit(
                out,
                &Event::anonymous(
                    t,
                    persona.offset,
                    persona.anonymous_id,
                    "product_view",
                    persona.channel,
                    Some(category),
                ),
            )?;
            t += Duration::minutes(g.rng.random_range(1..120));
        }
    }
    t += Duration::minutes(g.rng.random_range(1..(3 * 24 * 60)));
    let signup = t;
    let signup_text = Generator::timestamp(signup, persona.offset);
    out.customers
        .row(&[
            persona.customer_id,
            &format!("{}@example.com", persona.customer_id.to_lowercase()),
            &signup_text,
            country,
            acquisition,
        ])
        .map_err(io_error(&out.root.clone()))?;
    if online {
        let login = Event {
            anonymous_id: Some(persona.anonymous_id),
            ..persona.event(signup, "login", persona.channel, None)
        };
        g.emit(out, &login)?;
    }
    Ok(signup)
}

/// The buying journey after signup: consideration events before each order, then a gap that
/// depends on the archetype. Returns the completed orders and the instant the journey ended.
fn buy(
    g: &mut Generator,
    out: &mut Exports,
    persona: &Persona,
    signup: DateTime<Utc>,
    last_day: i64,
) -> Result<(u32, DateTime<Utc>), Error> {
    let archetype = persona.archetype;
    let (min_orders, max_orders, aov, gap_days) = archetype.buying();
    let orders = g.rng.random_range(min_orders..max_orders);
    let mut completed = 0;
    let mut t = signup;
    for n in 0..orders.max(u32::from(archetype == Archetype::Browser)) {
        let day = (t.date_naive() - g.start).num_days();
        let category = g.category(day.clamp(0, last_day));
        if archetype != Archetype::StoreOnly {
            for _ in 0..g.rng.random_range(1..=4) {
                t += Duration::minutes(g.rng.random_range(1..90));
                let event_type = consideration_event(g);
                let event = Event {
                    // The first visit still carries the device that signed up.
                    anonymous_id: Some(persona.anonymous_id).filter(|_| n == 0),
                    ..persona.event(t, event_type, persona.channel, Some(category))
                };
                g.emit(out, &event)?;
            }
        }
        if n < orders {
            // Some buy within the hour, some come back days later (outside a short window).
            t += if g.rng.random_bool(0.8) {
                Duration::minutes(g.rng.random_range(2..240))
            } else {
                Duration::days(g.rng.random_range(2..45))
            };
            let order = Order {
                customer_id: persona.customer_id,
                at: t,
                offset: persona.offset,
                category,
                channel: if archetype == Archetype::StoreOnly {
                    "store"
                } else {
                    persona.channel
                },
            };
            if g.order(out, &order, aov)? {
                completed += 1;
            }
        }
        let gap = if archetype == Archetype::Lapsed {
            g.rng.random_range(3..=gap_days)
        } else {
            (gap_days as f64 * g.rng.random_range(0.5..1.6)) as i64
        };
        t += Duration::days(gap.max(1)) + Duration::minutes(g.rng.random_range(0..600));
    }
    Ok((completed, t))
}

/// Sessions after the journey, spread between signup and the last day.
fn engage(
    g: &mut Generator,
    out: &mut Exports,
    persona: &Persona,
    signup: DateTime<Utc>,
    last_day: i64,
) -> Result<(), Error> {
    let sessions = match persona.archetype {
        Archetype::StoreOnly | Archetype::Lapsed => return Ok(()),
        Archetype::Loyal => 20,
        Archetype::BargainHunter => 24,
        Archetype::Browser => 14,
        _ => 5,
    };
    let from = (signup.date_naive() - g.start).num_days();
    for _ in 0..g.rng.random_range(0..=sessions) {
        let day = g.day(from.min(last_day), last_day);
        let at = g.instant(day, persona.offset);
        let category = g.category(day);
        g.emit(out, &persona.event(at, "page_view", persona.channel, Some(category)))?;
    }
    Ok(())
}

/// One or two NPS answers after signup; one in 200 carries an out-of-range score.
fn answer_surveys(
    g: &mut Generator,
    out: &mut Exports,
    persona: &Persona,
    signup: DateTime<Utc>,
    last_day: i64,
) -> Result<(), Error> {
    for _ in 0..g.rng.random_range(1..=2) {
        let from = (signup.date_naive() - g.start).num_days() + 1;
        let day = g.day(from.min(last_day), last_day);
        let at = g.instant(day, persona.offset);
        g.next_response += 1;
        let mut score = persona.archetype.nps(&mut g.rng).to_string();
        if g.rng.random_range(0..200) == 0 {
            score = "11".into();
            out.stats.bad_rows += 1;
        }
        let comment = COMMENTS[g.rng.random_range(0..COMMENTS.len())];
        let response_id = format!("R{:08}", g.next_response);
        out.feedback
            .row(&[
                &response_id,
                persona.customer_id,
                &Generator::timestamp(at, persona.offset),
                &score,
                comment,
            ])
            .map_err(io_error(&out.root.clone()))?;
        out.stats.feedback += 1;
    }
    Ok(())
}

/// An anonymous visitor who looks around and never signs up.
fn prospect(g: &mut Generator, out: &mut Exports, index: u64, last_day: i64) -> Result<(), Error> {
    let anonymous_id = format!("p{index:011x}");
    let (_, offset) = COUNTRIES[g.rng.random_range(0..COUNTRIES.len())];
    let day = g.day(0, last_day);
    let first_touch = g.instant(day, offset);
    let t = awareness_touches(g, out, &anonymous_id, offset, first_touch, 3000)?;
    if g.rng.random_bool(0.4) {
        let category = g.category(day);
        g.emit(
            out,
            &Event::anonymous(t, offset, &anonymous_id, "product_view", "web", Some(category)),
        )?;
    }
    Ok(())
}

/// One to three anonymous awareness touches from `t` on, each up to `max_gap_minutes` after the
/// one before; returns when the last ended.
fn awareness_touches(
    g: &mut Generator,
    out: &mut Exports,
    anonymous_id: &str,
    offset: i32,
    mut t: DateTime<Utc>,
    max_gap_minutes: i64,
) -> Result<DateTime<Utc>, Error> {
    for _ in 0..g.rng.random_range(1..=3) {
        let (event_type, channel) = awareness_event(g);
        g.emit(
            out,
            &Event::anonymous(t, offset, anonymous_id, event_type, channel, None),
        )?;
        t += Duration::minutes(g.rng.random_range(1..max_gap_minutes));
    }
    Ok(t)
}
