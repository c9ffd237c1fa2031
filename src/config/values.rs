//! Parsers of setting values that are not YAML types: Parquet compression, column types and the
//! engine (`local` or a scheduler URL).

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::parquet::basic::{Compression, GzipLevel, ZstdLevel};

/// `zstd`, `zstd(5)`, `snappy`, `gzip(6)`, `lz4`, `none`.
pub fn parse_compression(text: &str) -> Result<Compression, String> {
    let lower = text.trim().to_ascii_lowercase();
    let (codec, level) = match lower.split_once('(') {
        Some((codec, rest)) => {
            let level = rest.strip_suffix(')').and_then(|l| l.trim().parse::<i32>().ok());
            match level {
                Some(level) => (codec.trim().to_string(), Some(level)),
                None => return Err(format!("`{text}`: expected a level like `zstd(3)`")),
            }
        }
        None => (lower.clone(), None),
    };
    let bad_level = |err: datafusion::parquet::errors::ParquetError| format!("`{text}`: {err}");
    match (codec.as_str(), level) {
        ("zstd", level) => Ok(Compression::ZSTD(
            ZstdLevel::try_new(level.unwrap_or(3)).map_err(bad_level)?,
        )),
        ("gzip", level) => {
            let level = u32::try_from(level.unwrap_or(6)).map_err(|_| format!("`{text}`: a gzip level is 0 to 9"))?;
            Ok(Compression::GZIP(GzipLevel::try_new(level).map_err(bad_level)?))
        }
        ("snappy", None) => Ok(Compression::SNAPPY),
        ("lz4", None) => Ok(Compression::LZ4_RAW),
        ("none" | "uncompressed", None) => Ok(Compression::UNCOMPRESSED),
        _ => Err(format!(
            "`{text}` is not a Parquet compression: use zstd, zstd(level), snappy, gzip(level), lz4 or none"
        )),
    }
}

/// A declared column type.
pub fn parse_type(text: &str) -> Result<DataType, String> {
    let lower = text.trim().to_ascii_lowercase();
    let data_type = match lower.as_str() {
        "string" | "text" | "varchar" => DataType::Utf8,
        "int" | "integer" | "bigint" | "long" => DataType::Int64,
        "float" | "double" => DataType::Float64,
        "bool" | "boolean" => DataType::Boolean,
        "date" => DataType::Date32,
        "timestamp" => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        other => {
            let inner = other.strip_prefix("decimal(").and_then(|rest| rest.strip_suffix(')'));
            let parsed = inner.and_then(|inner| {
                let (precision, scale) = inner.split_once(',')?;
                Some((precision.trim().parse::<u8>().ok()?, scale.trim().parse::<i8>().ok()?))
            });
            match parsed {
                Some((precision, scale))
                    if (1..=38).contains(&precision) && scale >= 0 && (scale as u8) <= precision =>
                {
                    DataType::Decimal128(precision, scale)
                }
                _ => {
                    return Err(format!(
                        "`{text}` is not a column type: use string, int, float, decimal(p,s), bool, date or timestamp"
                    ));
                }
            }
        }
    };
    Ok(data_type)
}

/// `engine.scheduler` / `--engine`: `local` runs SQL in this process (`None`); `df://host[:port]`
/// names a Ballista scheduler (port 50050 unless given).
pub fn parse_engine(text: &str) -> Result<Option<String>, String> {
    let text = text.trim();
    if text == "local" {
        return Ok(None);
    }
    let usage = || format!("`{text}` is neither `local` nor a scheduler URL like `df://scheduler:50050`");
    let url = url::Url::parse(text).map_err(|_| usage())?;
    match (url.scheme(), url.host_str()) {
        ("df", Some(host)) if !host.is_empty() && url.path().trim_matches('/').is_empty() => {
            Ok(Some(format!("df://{host}:{}", url.port().unwrap_or(50050))))
        }
        _ => Err(usage()),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_engine;

    #[test]
    fn engine_is_local_or_a_scheduler_url() {
        assert_eq!(parse_engine("local"), Ok(None));
        assert_eq!(parse_engine("df://sched:50051"), Ok(Some("df://sched:50051".into())));
        assert_eq!(parse_engine("df://10.0.0.5"), Ok(Some("df://10.0.0.5:50050".into())));
        for wrong in ["remote", "http://sched:50050", "df://sched:50050/x", "df://"] {
            let message = parse_engine(wrong).unwrap_err();
            assert!(message.contains("df://scheduler:50050"), "{wrong}: {message}");
        }
    }
}
