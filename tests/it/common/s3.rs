//! A real S3-compatible server for tests.
//!
//! By default an in-process `s3s-fs` server (SigV4 checked) on a random loopback port, started
//! once per test binary. When `LIFEMAP_TEST_S3_ENDPOINT` is set (`.ci/run` does so after starting
//! Garage with `tests/garage.sh`), the same tests run against that server instead.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use assert_cmd::Command;
use datafusion::prelude::SessionContext;
use lifemap::config::{S3Settings, Secret};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

const KEY_ID: &str = "lifemap-test-key";
const SECRET: &str = "lifemap-test-secret-do-not-log";
const BUCKET: &str = "lifemap-test";

/// Where one test's objects live: a bucket and a prefix of its own.
#[derive(Debug, Clone)]
pub struct S3Target {
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub key_id: String,
    pub secret: String,
    pub prefix: String,
}

struct Server {
    endpoint: String,
    region: String,
    bucket: String,
    key_id: String,
    secret: String,
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        if let Ok(endpoint) = std::env::var("LIFEMAP_TEST_S3_ENDPOINT") {
            let var = |name: &str| {
                std::env::var(name).unwrap_or_else(|_| panic!("{name} must be set with LIFEMAP_TEST_S3_ENDPOINT"))
            };
            return Server {
                endpoint,
                region: var("LIFEMAP_TEST_S3_REGION"),
                bucket: var("LIFEMAP_TEST_S3_BUCKET"),
                key_id: var("LIFEMAP_TEST_S3_KEY_ID"),
                secret: var("LIFEMAP_TEST_S3_SECRET"),
            };
        }
        Server {
            endpoint: start_s3s(),
            region: "us-east-1".into(),
            bucket: BUCKET.into(),
            key_id: KEY_ID.into(),
            secret: SECRET.into(),
        }
    })
}

/// Start `s3s-fs` on its own thread and runtime (it outlives every test's runtime).
fn start_s3s() -> String {
    let root: PathBuf = std::env::temp_dir().join(format!("lifemap-s3s-{}", std::process::id()));
    std::fs::create_dir_all(root.join(BUCKET)).expect("s3s root");
    let address = super::serve_on_loopback(move |listener| async move {
        use hyper_util::rt::{TokioExecutor, TokioIo};
        use hyper_util::server::conn::auto::Builder as ConnBuilder;
        use s3s::auth::SimpleAuth;
        use s3s::service::S3ServiceBuilder;

        let fs = s3s_fs::FileSystem::new(&root).expect("s3s-fs");
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(KEY_ID, SECRET));
        let service = builder.build();
        let http = ConnBuilder::new(TokioExecutor::new());
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                continue;
            };
            let _ = socket.set_nodelay(true);
            let connection = http
                .serve_connection(TokioIo::new(socket), service.clone())
                .into_owned();
            tokio::spawn(async move {
                let _ = connection.await;
            });
        }
    });
    format!("http://{address}")
}

/// A fresh prefix on the test server for one test.
pub fn target(test: &str) -> S3Target {
    let server = server();
    let unique = format!("{test}-{}-{:08x}", std::process::id(), rand::random::<u32>());
    S3Target {
        endpoint: server.endpoint.clone(),
        region: server.region.clone(),
        bucket: server.bucket.clone(),
        key_id: server.key_id.clone(),
        secret: server.secret.clone(),
        prefix: unique,
    }
}

impl S3Target {
    /// `s3://bucket/<prefix>/<relative>`.
    pub fn uri(&self, relative: &str) -> String {
        format!("s3://{}/{}/{}", self.bucket, self.prefix, relative)
    }

    /// Point a `lifemap` command at this server through the standard AWS variables.
    pub fn configure(&self, command: &mut Command) {
        command
            .env("AWS_ACCESS_KEY_ID", &self.key_id)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret)
            .env("AWS_ENDPOINT", &self.endpoint)
            .env("AWS_REGION", &self.region)
            .env("AWS_ALLOW_HTTP", "true");
    }

    pub fn settings(&self) -> S3Settings {
        S3Settings {
            endpoint: Some(self.endpoint.clone()),
            region: Some(self.region.clone()),
            allow_http: Some(true),
            access_key_id: Some(Secret::new(self.key_id.clone())),
            secret_access_key: Some(Secret::new(self.secret.clone())),
            ..S3Settings::default()
        }
    }

    pub fn store(&self) -> Arc<dyn ObjectStore> {
        lifemap::storage::build_s3(&self.settings(), &self.bucket).expect("s3 client")
    }

    /// Upload `content` to `<prefix>/<relative>`.
    pub fn put(&self, relative: &str, content: impl Into<Vec<u8>>) {
        let path = ObjectPath::from(format!("{}/{}", self.prefix, relative));
        let store = self.store();
        super::block_on(async move { store.put(&path, PutPayload::from(content.into())).await }).expect("put");
    }

    /// Object names under `<prefix>/<relative>`, relative to the prefix, sorted.
    pub fn list(&self, relative: &str) -> Vec<String> {
        use futures::TryStreamExt;
        let store = self.store();
        let prefix = ObjectPath::from(format!("{}/{}", self.prefix, relative));
        let mut names: Vec<String> = super::block_on(async move {
            store
                .list(Some(&prefix))
                .map_ok(|meta| meta.location.to_string())
                .try_collect::<Vec<_>>()
                .await
        })
        .expect("list");
        let strip = format!("{}/", self.prefix);
        names
            .iter_mut()
            .for_each(|name| *name = name.trim_start_matches(&strip).to_string());
        names.sort();
        names
    }

    pub fn get(&self, relative: &str) -> Vec<u8> {
        let store = self.store();
        let path = ObjectPath::from(format!("{}/{}", self.prefix, relative));
        super::block_on(async move { store.get(&path).await?.bytes().await })
            .expect("get")
            .to_vec()
    }

    /// A DataFusion session that reads this bucket.
    pub fn session(&self) -> SessionContext {
        let ctx = SessionContext::new();
        let url = url::Url::parse(&format!("s3://{}", self.bucket)).expect("url");
        ctx.register_object_store(&url, self.store());
        ctx
    }
}
