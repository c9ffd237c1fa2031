//! Plans between a client, its scheduler and executors: lifemap's `lines` tables and scans and its
//! held-step writes as protobuf, which DataFusion's own codecs do not know.

use std::sync::Arc;

use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use datafusion::catalog::TableProvider;
use datafusion::common::{DataFusionError, Result, TableReference};
use datafusion::datasource::file_format::file_compression_type::FileCompressionType;
use datafusion::datasource::physical_plan::{FileScanConfig, FileScanConfigBuilder};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Extension, LogicalPlan};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::from_proto::{parse_protobuf_file_scan_config, parse_table_schema_from_proto};
use datafusion_proto::physical_plan::to_proto::serialize_file_scan_config;
use datafusion_proto::physical_plan::{
    PhysicalExtensionCodec, PhysicalPlanDecodeContext, PhysicalProtoConverterExtension,
};
use datafusion_proto::protobuf::FileScanExecConf;
use prost::Message;

use crate::sources::lines::{self, LinesListing, LinesTable};
use crate::transform::on_cluster::{HoldWrite, HoldWriterExec};

/// Ballista's logical codec, plus `lines` tables (sent as their [`LinesListing`]).
#[derive(Debug, Default)]
pub struct LifemapLogicalCodec {
    ballista: BallistaLogicalExtensionCodec,
}

impl LogicalExtensionCodec for LifemapLogicalCodec {
    fn try_decode(&self, buf: &[u8], inputs: &[LogicalPlan], ctx: &TaskContext) -> Result<Extension> {
        match buf.strip_prefix(HOLD_TAG) {
            Some(folder) => Ok(Extension {
                node: Arc::new(HoldWrite::new(one_input(inputs)?.clone(), folder_from_bytes(folder)?)),
            }),
            None => self.ballista.try_decode(buf, inputs, ctx),
        }
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        match node.node.as_any().downcast_ref::<HoldWrite>() {
            Some(write) => {
                buf.extend_from_slice(HOLD_TAG);
                buf.extend_from_slice(write.folder().as_bytes());
                Ok(())
            }
            None => self.ballista.try_encode(node, buf),
        }
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: datafusion::arrow::datatypes::SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        match buf.strip_prefix(LINES_TAG) {
            Some(json) => {
                let listing: LinesListing = serde_json::from_slice(json)
                    .map_err(|err| DataFusionError::Internal(format!("a `lines` table's description: {err}")))?;
                Ok(Arc::new(listing.table()?))
            }
            None => self.ballista.try_decode_table_provider(buf, table_ref, schema, ctx),
        }
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        match node.downcast_ref::<LinesTable>() {
            Some(table) => {
                buf.extend_from_slice(LINES_TAG);
                serde_json::to_writer(buf, &table.kept)
                    .map_err(|err| DataFusionError::Internal(format!("a `lines` table's description: {err}")))
            }
            None => self.ballista.try_encode_table_provider(table_ref, node, buf),
        }
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> Result<Arc<dyn datafusion::datasource::file_format::FileFormatFactory>> {
        self.ballista.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn datafusion::datasource::file_format::FileFormatFactory>,
    ) -> Result<()> {
        self.ballista.try_encode_file_format(buf, node)
    }
}

/// Mark lifemap's own messages among Ballista's (which are protobuf and never start with them).
const LINES_TAG: &[u8] = b"lifemap.lines\0";
const HOLD_TAG: &[u8] = b"lifemap.hold\0";

pub(super) fn one_input<T>(inputs: &[T]) -> Result<&T> {
    match inputs {
        [input] => Ok(input),
        _ => Err(DataFusionError::Internal(format!(
            "a held step's write has {} inputs",
            inputs.len()
        ))),
    }
}

fn folder_from_bytes(bytes: &[u8]) -> Result<String> {
    String::from_utf8(bytes.to_vec()).map_err(|err| DataFusionError::Internal(format!("a held step's folder: {err}")))
}

/// Ballista's physical codec, plus scans of `lines` files.
#[derive(Debug, Default)]
pub struct LifemapPhysicalCodec {
    ballista: BallistaPhysicalExtensionCodec,
}

impl PhysicalExtensionCodec for LifemapPhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if let Some(folder) = buf.strip_prefix(HOLD_TAG) {
            let input = Arc::clone(one_input(inputs)?);
            return Ok(Arc::new(HoldWriterExec::new(input, folder_from_bytes(folder)?)));
        }
        let Some(rest) = buf.strip_prefix(LINES_TAG) else {
            return self.ballista.try_decode(buf, inputs, ctx, proto_converter);
        };
        let Some((&compression, scan)) = rest.split_first() else {
            return Err(DataFusionError::Internal("an empty `lines` scan".into()));
        };
        let compression = compression_from_byte(compression)?;
        let proto = FileScanExecConf::decode(scan).map_err(|err| DataFusionError::Internal(err.to_string()))?;
        let table_schema = parse_table_schema_from_proto(&proto)?;
        let decode_ctx = PhysicalPlanDecodeContext::new(ctx, self);
        let config =
            parse_protobuf_file_scan_config(&proto, &decode_ctx, proto_converter, lines::file_source(table_schema))?;
        let config = FileScanConfigBuilder::from(config)
            .with_file_compression_type(compression)
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        if let Some(write) = node.downcast_ref::<HoldWriterExec>() {
            buf.extend_from_slice(HOLD_TAG);
            buf.extend_from_slice(write.folder().as_bytes());
            return Ok(());
        }
        let lines_scan = node
            .downcast_ref::<DataSourceExec>()
            .and_then(|exec| exec.data_source().downcast_ref::<FileScanConfig>())
            .filter(|config| lines::is_lines_source(config.file_source().as_ref()));
        let Some(config) = lines_scan else {
            return self.ballista.try_encode(node, buf, proto_converter);
        };
        let proto = serialize_file_scan_config(config, self, proto_converter)?;
        buf.extend_from_slice(LINES_TAG);
        buf.push(compression_to_byte(config.file_compression_type));
        proto
            .encode(buf)
            .map_err(|err| DataFusionError::Internal(err.to_string()))
    }
}

const COMPRESSIONS: [FileCompressionType; 5] = [
    FileCompressionType::UNCOMPRESSED,
    FileCompressionType::GZIP,
    FileCompressionType::BZIP2,
    FileCompressionType::XZ,
    FileCompressionType::ZSTD,
];

fn compression_to_byte(compression: FileCompressionType) -> u8 {
    COMPRESSIONS
        .iter()
        .position(|known| known.get_variant() == compression.get_variant())
        .unwrap_or(0) as u8
}

fn compression_from_byte(byte: u8) -> Result<FileCompressionType> {
    COMPRESSIONS
        .get(usize::from(byte))
        .copied()
        .ok_or_else(|| DataFusionError::Internal(format!("unknown compression {byte} in a `lines` scan")))
}
