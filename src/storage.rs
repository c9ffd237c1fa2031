//! Reaching object stores: local folders, `file://` URLs and S3-compatible buckets.
//!
//! Every location in a pipeline is a string; this module turns it into a URL, registers one S3
//! client per bucket with the pipeline's settings (retries with backoff and timeouts come from
//! object_store itself), and resolves a location to the store and path to read or write.
//! Relative local paths resolve against the current directory.

use std::sync::Arc;

use datafusion::datasource::listing::ListingTableUrl;
use datafusion::prelude::SessionContext;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, ClientConfigKey, RetryConfig};
use object_store::{ObjectStore, ObjectStoreExt};
use url::Url;

use crate::config::S3Settings;
use crate::error::Error;

/// A location resolved to its store.
#[derive(Clone)]
pub struct Location {
    pub url: Url,
    pub store: Arc<dyn ObjectStore>,
    /// The prefix inside the store (no leading or trailing `/`).
    pub path: ObjectPath,
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Location({})", self.url)
    }
}

impl Location {
    /// A location below this one.
    pub fn child(&self, segment: &str) -> Location {
        let mut url = self.url.clone();
        let joined = format!("{}/{segment}", url.path().trim_end_matches('/'));
        url.set_path(&joined);
        Location {
            url,
            store: Arc::clone(&self.store),
            path: self.path.clone().join(segment),
        }
    }

    /// The URL of this location as a folder (with a trailing `/`), for messages and listings.
    pub fn folder_url(&self) -> String {
        let text = self.url.as_str();
        if text.ends_with('/') {
            text.to_string()
        } else {
            format!("{text}/")
        }
    }
}

/// Turn a pipeline location (path, `file://` or `s3://`) into a URL string DataFusion accepts.
/// A trailing `/` (a folder) is kept.
pub fn location_url(location: &str) -> Result<String, Error> {
    if location.contains("://") {
        let url =
            Url::parse(location).map_err(|err| Error::Usage(format!("`{location}` is not a valid URL: {err}")))?;
        return match url.scheme() {
            "s3" | "file" => Ok(location.to_string()),
            other => Err(Error::Usage(format!(
                "`{location}`: the scheme `{other}` is not supported (use a local path, file:// or s3://)"
            ))),
        };
    }
    let absolute = std::path::absolute(location)
        .map_err(|err| Error::Usage(format!("`{location}` is not a usable path: {err}")))?;
    let mut text = Url::from_file_path(&absolute)
        .map_err(|()| Error::Usage(format!("`{location}` is not a usable path")))?
        .to_string();
    if location.ends_with('/') && !text.ends_with('/') {
        text.push('/');
    }
    // Globs must stay globs: `Url` percent-encodes nothing of `*?[]` in paths, so the text is usable.
    Ok(text)
}

/// The listing URL of a location. DataFusion splits globs off plain paths only, so the glob of
/// a `file://` or `s3://` location is split here: everything before the first path segment with
/// `*`, `?` or `[` is the prefix that is listed, the rest is matched against what lies below it.
pub fn listing_url(location: &str) -> Result<ListingTableUrl, Error> {
    let text = location_url(location)?;
    let invalid = |err: datafusion::error::DataFusionError| Error::Usage(format!("`{location}`: {err}"));
    let path_start = text.find("://").map_or(0, |i| i + 3);
    let path_start = text[path_start..].find('/').map_or(text.len(), |i| path_start + i);
    let Some(glob_start) = text[path_start..].find(['*', '?', '[']).map(|i| path_start + i) else {
        return ListingTableUrl::parse(&text).map_err(invalid);
    };
    let split = text[..glob_start].rfind('/').map_or(glob_start, |slash| slash + 1);
    ListingTableUrl::parse(&text[..split])
        .and_then(|url| url.with_glob(&text[split..]))
        .map_err(invalid)
}

/// Resolve a folder location to the store that holds it.
pub fn resolve(ctx: &SessionContext, location: &str) -> Result<Location, Error> {
    let text = location_url(location)?;
    let url = Url::parse(&text).map_err(|err| Error::Usage(format!("`{location}`: {err}")))?;
    let listing = listing_url(location)?;
    let store = ctx
        .runtime_env()
        .object_store(listing.object_store())
        .map_err(|err| Error::Usage(format!("no object store for `{location}`: {err}")))?;
    let path = ObjectPath::from_url_path(url.path().trim_end_matches('/'))
        .map_err(|err| Error::Usage(format!("`{location}` is not a valid object path: {err}")))?;
    Ok(Location { url, store, path })
}

/// Register an S3 client, built with `settings`, for every bucket `locations` name.
pub fn register_stores<'a>(
    ctx: &SessionContext,
    settings: &S3Settings,
    locations: impl IntoIterator<Item = &'a str>,
) -> Result<(), Error> {
    let mut buckets: Vec<String> = Vec::new();
    for location in locations {
        if let Some(rest) = location.strip_prefix("s3://") {
            let bucket = rest.split('/').next().unwrap_or_default();
            if bucket.is_empty() {
                return Err(Error::Usage(format!("`{location}` names no bucket")));
            }
            if !buckets.iter().any(|b| b == bucket) {
                buckets.push(bucket.to_string());
            }
        }
    }
    for bucket in buckets {
        let store = build_s3(settings, &bucket)?;
        let url =
            Url::parse(&format!("s3://{bucket}")).map_err(|err| Error::Usage(format!("bucket `{bucket}`: {err}")))?;
        ctx.register_object_store(&url, store);
    }
    Ok(())
}

/// An S3 client for one bucket. Unset settings come from the standard AWS environment variables.
pub fn build_s3(settings: &S3Settings, bucket: &str) -> Result<Arc<dyn ObjectStore>, Error> {
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    if let Some(endpoint) = &settings.endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    let endpoint = settings.endpoint.clone().or_else(|| std::env::var("AWS_ENDPOINT").ok());
    let plain_http = endpoint.as_deref().is_some_and(|e| e.starts_with("http://"));
    if let Some(allow) = settings.allow_http.or(plain_http.then_some(true)) {
        builder = builder.with_allow_http(allow);
    }
    if let Some(region) = &settings.region {
        builder = builder.with_region(region);
    }
    builder = builder.with_virtual_hosted_style_request(settings.virtual_hosted_style);
    if let Some(key) = &settings.access_key_id {
        builder = builder.with_access_key_id(key.expose());
    }
    if let Some(secret) = &settings.secret_access_key {
        builder = builder.with_secret_access_key(secret.expose());
    }
    if let Some(token) = &settings.session_token {
        builder = builder.with_token(token.expose());
    }
    let has_static_keys = settings.access_key_id.is_some() || std::env::var_os("AWS_ACCESS_KEY_ID").is_some();
    let has_other_provider = [
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "LIFEMAP_S3_INSTANCE_CREDENTIALS",
    ]
    .iter()
    .any(|name| std::env::var_os(name).is_some());
    // Without keys object_store would fall back to the instance-metadata endpoint, which outside
    // a cloud VM hangs until a timeout: say what is missing instead.
    if !has_static_keys && !has_other_provider {
        return Err(Error::Config(format!(
            "no S3 credentials for bucket `{bucket}`: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, name other variables with \
             storage.s3.access_key_id_env / secret_access_key_env, or set LIFEMAP_S3_INSTANCE_CREDENTIALS=1 to use the cloud's \
             instance credentials"
        )));
    }
    builder = builder
        .with_retry(RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: settings.max_retries,
            retry_timeout: settings.retry_timeout,
        })
        .with_config(
            AmazonS3ConfigKey::Client(ClientConfigKey::Timeout),
            format!("{}ms", settings.request_timeout.as_millis()),
        )
        .with_config(
            AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
            format!("{}ms", settings.connect_timeout.as_millis()),
        );
    let store = builder
        .build()
        .map_err(|err| Error::Config(format!("S3 settings for bucket `{bucket}`: {err}")))?;
    Ok(Arc::new(store))
}

/// Read object `name` below `location`; `None` when it does not exist.
pub async fn get(location: &Location, name: &str) -> Result<Option<bytes::Bytes>, Error> {
    let path = location.path.clone().join(name);
    let context = || format!("reading {}{name}", location.folder_url());
    match location.store.get(&path).await {
        Ok(result) => result.bytes().await.map(Some).map_err(|source| Error::Storage {
            context: context(),
            source,
        }),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(source) => Err(Error::Storage {
            context: context(),
            source,
        }),
    }
}

/// Write one object `name` below `location` in a single PUT.
pub async fn put(location: &Location, name: &str, body: Vec<u8>) -> Result<(), Error> {
    let path = location.path.clone().join(name);
    location
        .store
        .put(&path, object_store::PutPayload::from(body))
        .await
        .map_err(|source| Error::Storage {
            context: format!("writing {}{name}", location.folder_url()),
            source,
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_are_split_off_urls_and_paths_alike() {
        let s3 = listing_url("s3://acme/exports/sales/*/part-*.csv*").expect("s3 glob");
        assert_eq!(s3.as_str(), "s3://acme/exports/sales/");
        assert_eq!(s3.get_glob().as_ref().map(|g| g.as_str()), Some("*/part-*.csv*"));
        let file = listing_url("file:///data/x/[ab]/*.parquet").expect("file glob");
        assert_eq!(file.as_str(), "file:///data/x/");
        assert_eq!(file.get_glob().as_ref().map(|g| g.as_str()), Some("[ab]/*.parquet"));
        let plain = listing_url("s3://acme/exports/").expect("no glob");
        assert!(plain.get_glob().is_none());
    }
}
