//! Marts: writing a run's tables as Parquet and publishing them without losing data.
//!
//! Writing and publishing are separate, as in delta-rs:
//!
//! ```text
//!   write (per mart)                      publish (only after every mart is written)
//!   <out>/_staging/ds=<ds>/<run_id>/<mart>/...  →  <out>/<mart>/ds=<ds>/part-<run_id>-NNNNN.parquet
//!                                          <out>/<mart>/ds=<ds>/_SUCCESS   (manifest, written last)
//!                                          then files of earlier runs in that partition are deleted
//! ```
//!
//! A run that fails before publishing deletes its staging folder and leaves every published
//! partition as it was; what a killed run left (its staging folder, files a partition's manifest
//! does not list) is removed by the next run of its `ds` first thing ([`clear_leftovers`]).
//! Object stores have no atomic rename of a folder, so the commit point of a partition is its
//! `_SUCCESS` manifest: one object written in one PUT, listing exactly the files of the run that
//! wrote it. A reader that reads the files `_SUCCESS` lists always sees one whole
//! run; a reader that lists the folder can, for the moment between the new files landing and the
//! old ones being deleted, see both (their names differ by run id).

use std::time::Instant;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::parquet::arrow::AsyncArrowWriter;
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::prelude::DataFrame;
use futures::{StreamExt, TryStreamExt};
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::config::{Mart, ParquetSettings, TableFormat};
use crate::delta::PartitionFile;
use crate::error::Error;
use crate::layout::OutputLayout;
use crate::storage::Location;

pub use crate::layout::SUCCESS_MARKER;

/// One Parquet file written by a run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DataFile {
    pub name: String,
    pub rows: u64,
    pub bytes: u64,
}

/// A mart written to staging, not yet visible to readers.
#[derive(Debug, Clone)]
pub struct StagedMart {
    pub name: String,
    pub format: TableFormat,
    /// Delete the files a rerun replaces at once, even those of a Delta mart (whose earlier
    /// versions would otherwise keep them for time travel until vacuumed): set for marts with a
    /// `forget` condition, whose earlier files may hold persons who asked to be forgotten.
    pub purge_replaced: bool,
    pub files: Vec<DataFile>,
    pub schema: SchemaRef,
    pub duration_ms: u64,
}

impl StagedMart {
    pub fn rows(&self) -> u64 {
        self.files.iter().map(|f| f.rows).sum()
    }
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }
}

/// The content of a partition's `_SUCCESS` marker.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub pipeline: String,
    pub mart: String,
    pub ds: String,
    pub run_id: String,
    pub rows: u64,
    pub bytes: u64,
    pub files: Vec<DataFile>,
    pub lifemap_version: String,
    /// The version of the Delta table that committed this partition (Delta marts only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_version: Option<u64>,
}

/// Writes and publishes the marts of one run.
pub struct MartWriter {
    layout: OutputLayout,
    pipeline: String,
}

fn storage_error(context: String) -> impl FnOnce(object_store::Error) -> Error {
    move |source| Error::Storage { context, source }
}

fn mart_error_arrow(mart: &str) -> impl Fn(datafusion::arrow::error::ArrowError) -> Error + '_ {
    move |source| Error::Mart {
        mart: mart.to_string(),
        source: Box::new(source),
    }
}

fn mart_error(mart: &str) -> impl Fn(datafusion::parquet::errors::ParquetError) -> Error + '_ {
    move |source| Error::Mart {
        mart: mart.to_string(),
        source: Box::new(source),
    }
}

impl MartWriter {
    pub fn new(layout: OutputLayout, pipeline: &str) -> Self {
        Self {
            layout,
            pipeline: pipeline.to_string(),
        }
    }

    fn staging(&self) -> Location {
        self.layout.staging()
    }

    /// The published partition of `mart` for this run's `ds`.
    pub fn partition(&self, mart: &str) -> Location {
        self.layout.partition(mart)
    }

    fn file_name(&self, index: usize) -> String {
        format!("part-{}-{index:05}.parquet", self.layout.run_id())
    }

    /// Execute `frame` and write it to staging as one or more Parquet files.
    pub async fn write(&self, mart: &Mart, frame: DataFrame) -> Result<StagedMart, Error> {
        let started = Instant::now();
        let frame = match mart.format {
            TableFormat::Parquet => frame,
            TableFormat::Delta => crate::delta::compatible_frame(frame).map_err(|source| Error::Engine {
                context: format!("mart `{}`: casting to Delta types", mart.name),
                source,
            })?,
        };
        let computed: SchemaRef = std::sync::Arc::new(frame.schema().as_arrow().clone());
        // A Delta mart's own `ds` column is its partition column, which its files do not hold.
        let own_ds = match mart.format {
            TableFormat::Delta => computed.index_of(crate::delta::PARTITION_COLUMN).ok(),
            TableFormat::Parquet => None,
        };
        let schema: SchemaRef = match own_ds {
            Some(index) => {
                let others: Vec<usize> = (0..computed.fields().len()).filter(|&i| i != index).collect();
                std::sync::Arc::new(computed.project(&others).map_err(mart_error_arrow(&mart.name))?)
            }
            None => computed,
        };
        let mut stream = frame.execute_stream().await.map_err(|source| Error::Engine {
            context: format!("computing mart `{}`", mart.name),
            source,
        })?;
        let staging = self.staging().child(&mart.name);
        let mut files = Vec::new();
        let mut current: Option<(AsyncArrowWriter<BufWriter>, ObjectPath, String, u64)> = None;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(|source| Error::Engine {
                context: format!("computing mart `{}`", mart.name),
                source,
            })?;
            if batch.num_rows() == 0 {
                continue;
            }
            let batch = match own_ds {
                Some(index) => {
                    crate::delta::without_partition_column(&batch, index, self.layout.ds()).map_err(|message| {
                        Error::Mart {
                            mart: mart.name.clone(),
                            source: message.into(),
                        }
                    })?
                }
                None => batch,
            };
            if current
                .as_ref()
                .is_some_and(|(_, _, _, rows)| *rows >= mart.parquet.max_rows_per_file as u64)
                && let Some(open) = current.take()
            {
                files.push(self.finish(&mart.name, open).await?);
            }
            let (writer, _, _, rows) = match &mut current {
                Some(open) => open,
                None => current.insert(self.open(&staging, &schema, &mart.parquet, files.len(), &mart.name)?),
            };
            writer.write(&batch).await.map_err(mart_error(&mart.name))?;
            *rows += batch.num_rows() as u64;
        }
        // An empty result is still a partition with a schema.
        let last = match current {
            Some(open) => Some(open),
            None if files.is_empty() => Some(self.open(&staging, &schema, &mart.parquet, 0, &mart.name)?),
            None => None,
        };
        if let Some(open) = last {
            files.push(self.finish(&mart.name, open).await?);
        }
        Ok(StagedMart {
            name: mart.name.clone(),
            format: mart.format,
            purge_replaced: mart.forget.is_some(),
            files,
            schema,
            duration_ms: started.elapsed().as_millis() as u64,
        })
    }

    fn open(
        &self,
        staging: &Location,
        schema: &SchemaRef,
        settings: &ParquetSettings,
        index: usize,
        mart: &str,
    ) -> Result<(AsyncArrowWriter<BufWriter>, ObjectPath, String, u64), Error> {
        let name = self.file_name(index);
        let path = staging.path.clone().join(name.as_str());
        let properties = WriterProperties::builder()
            .set_compression(settings.compression)
            .set_max_row_group_row_count(Some(settings.row_group_size))
            .set_created_by(format!("lifemap {}", env!("CARGO_PKG_VERSION")))
            .build();
        let sink = BufWriter::new(staging.store.clone(), path.clone());
        let writer = AsyncArrowWriter::try_new(sink, schema.clone(), Some(properties)).map_err(mart_error(mart))?;
        Ok((writer, path, name, 0))
    }

    async fn finish(
        &self,
        mart: &str,
        (writer, path, name, rows): (AsyncArrowWriter<BufWriter>, ObjectPath, String, u64),
    ) -> Result<DataFile, Error> {
        writer.close().await.map_err(mart_error(mart))?;
        let meta = self
            .layout
            .root()
            .store
            .head(&path)
            .await
            .map_err(storage_error(format!("mart `{mart}`: checking staged file {path}")))?;
        Ok(DataFile {
            name,
            rows,
            bytes: meta.size,
        })
    }

    /// Make every staged mart visible, one partition at a time (see the module docs).
    pub async fn publish(&self, staged: &[StagedMart]) -> Result<Vec<Manifest>, Error> {
        let mut manifests = Vec::with_capacity(staged.len());
        for mart in staged {
            let partition = self.partition(&mart.name);
            let context = |what: &str| format!("publishing mart `{}` to {}: {what}", mart.name, partition.folder_url());
            let earlier: Vec<ObjectPath> = self
                .layout
                .root()
                .store
                .list(Some(&partition.path))
                .map_ok(|meta| meta.location)
                .try_collect()
                .await
                .map_err(storage_error(context("listing the partition")))?;
            let staging = self.staging().child(&mart.name);
            for file in &mart.files {
                let from = staging.path.clone().join(file.name.as_str());
                let to = partition.path.clone().join(file.name.as_str());
                self.layout
                    .root()
                    .store
                    .rename(&from, &to)
                    .await
                    .map_err(storage_error(context("moving a file into place")))?;
            }
            // A Delta mart's commit point for Delta readers is its log; `_SUCCESS` follows it.
            let delta_version = match mart.format {
                TableFormat::Parquet => None,
                TableFormat::Delta => Some(
                    crate::delta::commit_partition(
                        &self.layout.mart(&mart.name),
                        self.layout.ds(),
                        &mart.schema,
                        &partition_files(&mart.files),
                        self.layout.run_id(),
                    )
                    .await?,
                ),
            };
            let manifest = Manifest {
                delta_version,
                pipeline: self.pipeline.clone(),
                mart: mart.name.clone(),
                ds: self.layout.ds().to_string(),
                run_id: self.layout.run_id().to_string(),
                rows: mart.rows(),
                bytes: mart.bytes(),
                files: mart.files.clone(),
                lifemap_version: env!("CARGO_PKG_VERSION").to_string(),
            };
            let body = serde_json::to_vec_pretty(&manifest).map_err(|err| Error::Mart {
                mart: mart.name.clone(),
                source: Box::new(err),
            })?;
            self.layout
                .root()
                .store
                .put(&partition.path.clone().join(SUCCESS_MARKER), PutPayload::from(body))
                .await
                .map_err(storage_error(context("writing _SUCCESS")))?;
            let marker = partition.path.clone().join(SUCCESS_MARKER);
            let current: Vec<ObjectPath> = mart
                .files
                .iter()
                .map(|f| partition.path.clone().join(f.name.as_str()))
                .collect();
            // Delta keeps replaced files for readers of earlier versions; `lifemap cleanup`
            // vacuums them once the table's retention has passed.
            let keep_replaced = mart.format == TableFormat::Delta && !mart.purge_replaced;
            for old in earlier
                .iter()
                .filter(|p| !keep_replaced && **p != marker && !current.contains(p))
            {
                self.layout
                    .root()
                    .store
                    .delete(old)
                    .await
                    .map_err(storage_error(context("deleting an earlier run's file")))?;
            }
            tracing::info!(mart = %mart.name, rows = mart.rows(), bytes = mart.bytes(), "published");
            manifests.push(manifest);
        }
        self.discard().await;
        Ok(manifests)
    }

    /// Delete this run's staging folder (best effort: leftovers never become visible).
    pub async fn discard(&self) {
        delete_staged(&self.layout, &self.staging()).await;
    }
}

fn partition_files(files: &[DataFile]) -> Vec<PartitionFile> {
    files
        .iter()
        .map(|file| PartitionFile {
            name: file.name.clone(),
            rows: file.rows,
            bytes: file.bytes,
        })
        .collect()
}

/// Delete every object under `folder`, a staging folder of the layout's `ds`; returns how many.
/// Best effort: staged files are never visible to readers.
async fn delete_staged(layout: &OutputLayout, folder: &Location) -> usize {
    let store = &layout.root().store;
    let listed: Result<Vec<ObjectPath>, _> = store
        .list(Some(&folder.path))
        .map_ok(|meta| meta.location)
        .try_collect()
        .await;
    let mut deleted = 0;
    match listed {
        Ok(paths) => {
            for path in paths {
                match store.delete(&path).await {
                    Ok(()) => deleted += 1,
                    Err(err) => tracing::warn!(%path, error = %err, "could not delete a staged file"),
                }
            }
        }
        Err(err) => tracing::warn!(error = %err, "could not list the staging folder"),
    }
    // A local filesystem keeps empty folders behind; object stores have none. The `ds` folder
    // goes too once empty: the caller holds the `ds`'s lock.
    let ds_folder = layout.staging_of_ds();
    if ds_folder.url.scheme() == "file"
        && let Ok(local) = ds_folder.url.to_file_path()
    {
        remove_empty_dirs(&local);
    }
    deleted
}

/// What killed runs of one `ds` had left, now removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Leftovers {
    /// Objects in staging folders.
    pub staged: usize,
    /// Files in a published partition that its `_SUCCESS` manifest does not list.
    pub uncommitted: usize,
}

impl Leftovers {
    pub fn any(&self) -> bool {
        self.staged + self.uncommitted > 0
    }
}

/// Remove what killed runs of the layout's `ds` left behind: their staging folders, and the files
/// in a partition of `marts` that its `_SUCCESS` manifest does not list (moved in by a run killed
/// while publishing, or an earlier run's files that a run killed after its commit had not deleted
/// yet; without a manifest nothing in the folder was committed). Call it holding the `ds`'s lock,
/// so that no live run of this `ds` is writing.
pub async fn clear_leftovers<'a>(
    layout: &OutputLayout,
    marts: impl IntoIterator<Item = &'a Mart>,
) -> Result<Leftovers, Error> {
    let mut leftovers = Leftovers {
        staged: delete_staged(layout, &layout.staging_of_ds()).await,
        uncommitted: 0,
    };
    let store = &layout.root().store;
    for mart in marts {
        let partition = layout.partition(&mart.name);
        let context = || format!("clearing what killed runs left in {}", partition.folder_url());
        let listed: Vec<ObjectPath> = store
            .list(Some(&partition.path))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(storage_error(context()))?;
        if listed.is_empty() {
            continue;
        }
        let marker = partition.path.clone().join(SUCCESS_MARKER);
        let committed: Vec<ObjectPath> = read_manifest(&partition)
            .await?
            .map(|manifest| {
                manifest
                    .files
                    .iter()
                    .map(|file| partition.path.clone().join(file.name.as_str()))
                    .collect()
            })
            .unwrap_or_default();
        // A Delta mart's partition also holds the files of earlier versions, which readers of
        // those versions need: only files its log never added are a killed run's.
        let in_log: Vec<ObjectPath> = match mart.format {
            TableFormat::Parquet => Vec::new(),
            TableFormat::Delta => crate::delta::referenced_files(&layout.mart(&mart.name))
                .await?
                .iter()
                .map(|relative| {
                    relative
                        .split('/')
                        .fold(layout.mart(&mart.name).path.clone(), |path, part| path.join(part))
                })
                .collect(),
        };
        let committed: Vec<ObjectPath> = committed.into_iter().chain(in_log).collect();
        for path in listed
            .iter()
            .filter(|path| **path != marker && !committed.contains(path))
        {
            store.delete(path).await.map_err(storage_error(context()))?;
            leftovers.uncommitted += 1;
        }
        // A partition never committed leaves an empty folder on a local filesystem.
        if partition.url.scheme() == "file"
            && let Ok(local) = partition.url.to_file_path()
        {
            remove_empty_dirs(&local);
        }
    }
    if leftovers.any() {
        tracing::warn!(
            ds = layout.ds(),
            staged = leftovers.staged,
            uncommitted = leftovers.uncommitted,
            "removed what a killed run had left"
        );
    }
    Ok(leftovers)
}

/// Remove `dir` and every folder below it that holds no file.
fn remove_empty_dirs(dir: &std::path::Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                remove_empty_dirs(&entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// The latest published partition of `mart` before the layout's `ds`: its `ds` and row count.
///
/// Only partitions with a `_SUCCESS` manifest count; a folder a failed run left behind does not.
pub async fn previous_partition(layout: &OutputLayout, mart: &str) -> Result<Option<(String, u64)>, Error> {
    let mut earlier: Vec<String> = partition_dates(&layout.mart(mart))
        .await?
        .into_iter()
        .filter(|partition_ds| partition_ds.as_str() < layout.ds())
        .collect();
    earlier.sort_unstable();
    while let Some(partition_ds) = earlier.pop() {
        if let Some(manifest) = read_manifest(&layout.partition_of(mart, &partition_ds)).await? {
            return Ok(Some((partition_ds, manifest.rows)));
        }
    }
    Ok(None)
}

/// Every `ds` with a staging folder or a partition of one of `marts`, in order.
pub async fn dates_with_outputs<'a>(
    layout: &OutputLayout,
    marts: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<String>, Error> {
    let mut dates = std::collections::BTreeSet::new();
    let folders = std::iter::once(layout.staging_root()).chain(marts.into_iter().map(|mart| layout.mart(mart)));
    for folder in folders {
        dates.extend(partition_dates(&folder).await?);
    }
    Ok(dates.into_iter().collect())
}

/// The dates of the `ds=<date>/` folders directly below `folder`.
async fn partition_dates(folder: &Location) -> Result<Vec<String>, Error> {
    let listing = folder
        .store
        .list_with_delimiter(Some(&folder.path))
        .await
        .map_err(storage_error(format!("listing {}", folder.folder_url())))?;
    Ok(listing
        .common_prefixes
        .iter()
        .filter_map(|prefix| prefix.filename()?.strip_prefix("ds=").map(str::to_string))
        .collect())
}

/// Read the manifest of a published partition, if it has one.
pub async fn read_manifest(partition: &Location) -> Result<Option<Manifest>, Error> {
    let Some(bytes) = crate::storage::get(partition, SUCCESS_MARKER).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|err| Error::Mart {
        mart: partition.url.to_string(),
        source: Box::new(err),
    })
}
