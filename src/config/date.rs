//! The logical date of a run (`ds`) and `as_of`, the instant that cuts off what has happened by
//! then.

use chrono::{DateTime, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// The logical date of a run and the instants derived from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunDate {
    pub ds: NaiveDate,
    pub timezone: Tz,
    /// The start of the day after `ds` in `timezone`: rows stamped at or after it are ignored.
    pub as_of: DateTime<Utc>,
}

impl RunDate {
    pub fn new(ds: NaiveDate, timezone: Tz) -> Self {
        let next = ds.succ_opt().unwrap_or(ds);
        let midnight = next.and_time(NaiveTime::MIN);
        // A zone whose clocks skip midnight (a DST gap) starts the day at the first valid instant.
        let as_of = timezone
            .from_local_datetime(&midnight)
            .earliest()
            .or_else(|| {
                timezone
                    .from_local_datetime(&(midnight + chrono::Duration::hours(1)))
                    .earliest()
            })
            .map(|local| local.with_timezone(&Utc))
            .unwrap_or_else(|| Utc.from_utc_datetime(&midnight));
        Self { ds, timezone, as_of }
    }

    /// Yesterday in `timezone`: the default `ds`, as schedulers mean it.
    pub fn yesterday(timezone: Tz) -> Self {
        let today = Utc::now().with_timezone(&timezone).date_naive();
        Self::new(today.pred_opt().unwrap_or(today), timezone)
    }

    pub fn as_of_rfc3339(&self) -> String {
        self.as_of.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    }

    pub fn ds_string(&self) -> String {
        self.ds.format("%Y-%m-%d").to_string()
    }
}

/// Parse `YYYY-MM-DD`.
pub fn parse_ds(text: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| format!("`{text}` is not a date of the form YYYY-MM-DD"))
}
