//! What every stage of one run receives: the compiled pipeline (with its run date), the run id,
//! the run's DataFusion session (which holds the object stores its locations reach) and the
//! layout of its outputs. Built once per run, so no stage makes a session or a path of its own.

use datafusion::prelude::SessionContext;

use crate::config::Pipeline;
use crate::engine::session;
use crate::error::Error;
use crate::layout::OutputLayout;
use crate::storage;

pub struct RunContext<'p> {
    pub pipeline: &'p Pipeline,
    pub run_id: String,
    /// The run's session: its SQL runs here (or on the pipeline's cluster).
    pub session: SessionContext,
    pub layout: OutputLayout,
    /// Compute incremental steps from all their input, as if nothing were kept.
    pub full_refresh: bool,
}

impl<'p> RunContext<'p> {
    /// A run of `pipeline`, its SQL on the pipeline's engine.
    pub fn new(pipeline: &'p Pipeline, run_id: &str) -> Result<Self, Error> {
        Self::with_session(pipeline, run_id, session::create(pipeline)?)
    }

    /// Work on a run's published outputs in this process, whatever the pipeline's engine (the
    /// report's preview).
    pub fn local(pipeline: &'p Pipeline, run_id: &str) -> Result<Self, Error> {
        Self::with_session(pipeline, run_id, session::create_local(pipeline)?)
    }

    fn with_session(pipeline: &'p Pipeline, run_id: &str, session: SessionContext) -> Result<Self, Error> {
        let root = storage::resolve(&session, &pipeline.output_location)?;
        Ok(Self {
            pipeline,
            run_id: run_id.to_string(),
            layout: OutputLayout::new(root, &pipeline.date.ds_string(), run_id),
            session,
            full_refresh: false,
        })
    }

    pub fn ds(&self) -> &str {
        self.layout.ds()
    }

    /// A session of this process with nothing registered, whatever the pipeline's engine: for
    /// the report's queries over the published marts, whose names the run's steps also hold.
    pub fn scratch_session(&self) -> Result<SessionContext, Error> {
        session::create_local(self.pipeline)
    }
}
