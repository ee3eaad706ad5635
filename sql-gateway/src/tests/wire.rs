//! The real pgwire server over the in-memory store, driven by tokio-postgres.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_postgres::{NoTls, SimpleQueryMessage};

use super::memory::{FixedViews, MemoryStore};
use crate::auth::{AuthConfig, AuthMethod};
use crate::executor::Executor;
use crate::startup::Security;
use crate::tls::TlsConfig;

fn command_counts(messages: &[SimpleQueryMessage]) -> Vec<u64> {
    messages
        .iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::CommandComplete(rows) => Some(*rows),
            _ => None,
        })
        .collect()
}

fn text_rows(messages: &[SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    messages
        .iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|index| row.get(index).map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn postgres_clients_run_statements_and_survive_errors() {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let address = listener.local_addr().expect("bound address");
    let store = Arc::new(MemoryStore::default());
    let views = Arc::new(FixedViews(Some(crate::system_tables::tests::sample_view())));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::server::serve(
        listener,
        Executor::new(
            store.clone(),
            views,
            Arc::new(crate::catalog_source::MemoryCatalog::default()),
        ),
        async move {
            let _ = stopped.await;
        },
    ));

    let config = format!(
        "host=127.0.0.1 port={} user=test dbname=arbor",
        address.port()
    );
    let (client, connection) = tokio_postgres::connect(&config, NoTls)
        .await
        .expect("connects");
    let connection = tokio::spawn(connection);

    let inserted = client
        .simple_query("INSERT INTO kv VALUES ('a','1'),('b','2')")
        .await
        .expect("insert");
    assert_eq!(command_counts(&inserted), vec![2]);

    let duplicate = client
        .simple_query("INSERT INTO kv VALUES ('a','x')")
        .await
        .expect_err("duplicate key");
    let database_error = duplicate.as_db_error().expect("a Postgres error");
    assert_eq!(database_error.code().code(), "23505");
    assert_eq!(database_error.detail(), Some("Key (k)=(a) already exists."));

    let selected = client
        .simple_query("SELECT * FROM kv ORDER BY k")
        .await
        .expect("connection still usable after an error");
    assert_eq!(
        text_rows(&selected),
        vec![
            vec![Some("a".to_owned()), Some("1".to_owned())],
            vec![Some("b".to_owned()), Some("2".to_owned())],
        ]
    );
    let updated = client
        .simple_query("BEGIN; UPDATE kv SET v = 'x' WHERE k = 'a'; COMMIT")
        .await
        .expect("transaction wrapper");
    assert_eq!(command_counts(&updated), vec![0, 1, 0]);
    let syntax = client
        .simple_query("SELEC 1")
        .await
        .expect_err("bad syntax");
    assert_eq!(syntax.code().map(|code| code.code()), Some("42601"));

    // Extended protocol: Parse/Bind/Describe/Execute with parameters.
    let row = client
        .query_one("SELECT v FROM kv WHERE k = $1", &[&"a"])
        .await
        .expect("prepared select");
    assert_eq!(row.get::<_, String>("v"), "x");
    let inserted = client
        .execute("INSERT INTO kv VALUES ($1, $2)", &[&"c", &"3"])
        .await
        .expect("prepared insert");
    assert_eq!(inserted, 1);
    let count = client
        .query_one("SELECT count(*) FROM kv", &[])
        .await
        .expect("prepared count");
    assert_eq!(count.get::<_, i64>(0), 3);
    let missing = client
        .query("SELECT * FROM nope", &[])
        .await
        .expect_err("no table");
    assert_eq!(missing.code().map(|code| code.code()), Some("42P01"));
    let regions = client
        .query(
            "SELECT region_id, peers FROM system.regions ORDER BY region_id",
            &[],
        )
        .await
        .expect("system table over the extended protocol");
    assert_eq!(regions.len(), 2);
    assert_eq!(regions[0].get::<_, i64>(0), 1);

    drop(client);
    let _ = connection.await;
    let _ = stop.send(());
    server
        .await
        .expect("server task")
        .expect("server stops cleanly");
}

/// A pgwire server over a fresh in-memory store on a free port.
pub(super) struct TestServer {
    store: Arc<MemoryStore>,
    config: String,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<Result<(), crate::GatewayError>>,
}

impl TestServer {
    pub(super) async fn start() -> TestServer {
        TestServer::start_with(Security::trust()).await
    }

    /// A server with TLS and authentication as `run_gateway` loads them.
    pub(super) async fn start_secured(tls: Option<TlsConfig>, auth: AuthConfig) -> TestServer {
        let security = Security::load(tls.as_ref(), &auth).expect("security settings load");
        TestServer::start_with(security).await
    }

    async fn start_with(security: Security) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let address = listener.local_addr().expect("bound address");
        let store = Arc::new(MemoryStore::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(crate::server::serve_with(
            listener,
            Executor::new(
                store.clone(),
                Arc::new(FixedViews(None)),
                Arc::new(crate::catalog_source::MemoryCatalog::default()),
            ),
            security,
            async move {
                let _ = stopped.await;
            },
        ));
        let config = format!(
            "host=127.0.0.1 port={} user=test dbname=arbor",
            address.port()
        );
        TestServer {
            store,
            config,
            stop,
            server,
        }
    }

    pub(super) async fn connect(&self) -> (tokio_postgres::Client, tokio::task::JoinHandle<()>) {
        let (client, connection) = tokio_postgres::connect(&self.config, NoTls)
            .await
            .expect("connects");
        let connection = tokio::spawn(async move {
            let _ = connection.await;
        });
        (client, connection)
    }

    pub(super) async fn stop(self) {
        let _ = self.stop.send(());
        self.server
            .await
            .expect("server task")
            .expect("server stops cleanly");
    }
}

async fn keys(client: &tokio_postgres::Client) -> Vec<String> {
    client
        .query("SELECT k FROM kv ORDER BY k", &[])
        .await
        .expect("select")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test]
async fn drivers_commit_roll_back_and_recover_with_savepoints() {
    let server = TestServer::start().await;
    let (mut client, connection) = server.connect().await;

    let mut transaction = client.transaction().await.expect("begin");
    transaction
        .execute("INSERT INTO kv VALUES ($1, $2)", &[&"t1", &"1"])
        .await
        .expect("insert t1");
    {
        let savepoint = transaction.savepoint("sp").await.expect("savepoint");
        let error = savepoint
            .execute("INSERT INTO kv VALUES ($1, $2)", &[&"t1", &"dup"])
            .await
            .expect_err("duplicate key");
        assert_eq!(error.code().map(|c| c.code()), Some("23505"));
        savepoint.rollback().await.expect("rollback to savepoint");
    }
    transaction
        .execute("INSERT INTO kv VALUES ($1, $2)", &[&"t2", &"2"])
        .await
        .expect("the block is usable again after ROLLBACK TO");
    transaction.commit().await.expect("commit");
    assert_eq!(keys(&client).await, ["t1", "t2"]);

    {
        let transaction = client.transaction().await.expect("begin");
        transaction
            .execute("INSERT INTO kv VALUES ('t3', '3')", &[])
            .await
            .expect("insert t3");
        // Dropped without commit: tokio-postgres sends ROLLBACK.
    }
    assert_eq!(keys(&client).await, ["t1", "t2"], "t3 was rolled back");

    client.batch_execute("BEGIN").await.expect("begin");
    let error = client
        .simple_query("SELECT * FROM nope")
        .await
        .expect_err("undefined table");
    assert_eq!(error.code().map(|c| c.code()), Some("42P01"));
    let error = client
        .query("SELECT 1", &[])
        .await
        .expect_err("the block has failed");
    assert_eq!(error.code().map(|c| c.code()), Some("25P02"));
    client.batch_execute("ROLLBACK").await.expect("rollback");
    assert_eq!(keys(&client).await, ["t1", "t2"]);
    assert_eq!(server.store.len(), 2);

    drop(client);
    let _ = connection.await;
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_disappears_mid_transaction_leaves_nothing_behind() {
    let server = TestServer::start().await;
    let (client, connection) = server.connect().await;
    client
        .batch_execute("BEGIN; INSERT INTO kv VALUES ('ghost', '1');")
        .await
        .expect("begin and insert");
    drop(client);
    let _ = connection.await;
    let (client, connection) = server.connect().await;
    assert!(keys(&client).await.is_empty());
    assert!(server.store.commits.lock().expect("lock").is_empty());
    drop(client);
    let _ = connection.await;
    server.stop().await;
}

/// Drives `connection` on a task and publishes the value of ParameterStatus
/// `name` as the client last heard it, each time the connection is idle.
fn watch_parameter<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
    name: &'static str,
) -> (
    tokio::sync::watch::Receiver<Option<String>>,
    tokio::task::JoinHandle<()>,
)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use std::task::Poll;
    let (sender, receiver) =
        tokio::sync::watch::channel(connection.parameter(name).map(str::to_owned));
    let driver = tokio::spawn(futures::future::poll_fn(move |context| loop {
        match connection.poll_message(context) {
            Poll::Ready(Some(Ok(_))) => continue,
            Poll::Ready(Some(Err(_)) | None) => return Poll::Ready(()),
            Poll::Pending => {
                sender.send_replace(connection.parameter(name).map(str::to_owned));
                return Poll::Pending;
            }
        }
    }));
    (receiver, driver)
}

async fn heard(receiver: &mut tokio::sync::watch::Receiver<Option<String>>, expected: &str) {
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        receiver.wait_for(|value| value.as_deref() == Some(expected)),
    )
    .await
    .unwrap_or_else(|_| panic!("no ParameterStatus {expected:?}"))
    .expect("the connection is driven");
}

#[tokio::test]
async fn set_application_name_is_reported_as_parameter_status_and_shown() {
    let server = TestServer::start().await;
    let config = format!("{} application_name=startup", server.config);
    let (client, connection) = tokio_postgres::connect(&config, NoTls)
        .await
        .expect("connects");
    let (mut application_name, driver) = watch_parameter(connection, "application_name");
    heard(&mut application_name, "startup").await;

    client
        .batch_execute("SET application_name = 'x'")
        .await
        .expect("set");
    heard(&mut application_name, "x").await;
    let shown = client
        .simple_query("SHOW application_name")
        .await
        .expect("show");
    assert_eq!(text_rows(&shown), vec![vec![Some("x".to_owned())]]);

    // The extended protocol reports too (before ReadyForQuery after Sync).
    client
        .execute("SET application_name = 'extended'", &[])
        .await
        .expect("set over the extended protocol");
    heard(&mut application_name, "extended").await;
    let row = client
        .query_one("SHOW application_name", &[])
        .await
        .expect("show over the extended protocol");
    assert_eq!(row.get::<_, String>(0), "extended");

    // A ROLLBACK that undoes a SET reports the value back.
    client
        .batch_execute("BEGIN; SET application_name = 'undone'")
        .await
        .expect("set in a block");
    heard(&mut application_name, "undone").await;
    client.batch_execute("ROLLBACK").await.expect("rollback");
    heard(&mut application_name, "extended").await;

    drop(client);
    let _ = driver.await;
    server.stop().await;
}

// ---------------------------------------------------------------------------
// Connection security: TLS, SCRAM-SHA-256, ParameterStatus, cancel keys.
// ---------------------------------------------------------------------------

mod security {
    use std::future::Future;
    use std::io;
    use std::path::{Path, PathBuf};
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Poll};

    use pgwire::tokio::tokio_rustls::{self, rustls};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
    use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};
    use tokio_postgres::{NoTls, Socket};

    use super::*;

    /// A CA and a server certificate it signed (for localhost and
    /// 127.0.0.1), made with the `openssl` CLI in a directory removed on
    /// drop.
    struct Certificates {
        dir: PathBuf,
    }

    impl Certificates {
        fn generate() -> Certificates {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "arbor-gateway-tls-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).expect("certificate directory");
            let certificates = Certificates { dir };
            std::fs::write(
                certificates.path("server.ext"),
                "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
                 keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
            )
            .expect("extensions file");
            let ec = [
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
            ];
            certificates.openssl(
                &["req", "-x509", "-days", "2", "-subj", "/CN=arbor-test-ca"],
                &ec,
                &["-keyout", "ca.key", "-out", "ca.crt"],
            );
            certificates.openssl(
                &["req", "-new", "-subj", "/CN=localhost"],
                &ec,
                &["-keyout", "server.key", "-out", "server.csr"],
            );
            certificates.openssl(
                &["x509", "-req", "-in", "server.csr", "-CA", "ca.crt"],
                &["-CAkey", "ca.key", "-CAcreateserial", "-days", "2"],
                &["-extfile", "server.ext", "-out", "server.crt"],
            );
            certificates.openssl(
                &["genpkey", "-algorithm", "EC"],
                &["-pkeyopt", "ec_paramgen_curve:P-256"],
                &["-out", "other.key"],
            );
            certificates
        }

        fn openssl(&self, first: &[&str], second: &[&str], third: &[&str]) {
            let output = std::process::Command::new("openssl")
                .current_dir(&self.dir)
                .args(first)
                .args(second)
                .args(third)
                .output()
                .expect("the openssl CLI runs (Debian package openssl)");
            assert!(
                output.status.success(),
                "openssl {first:?} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.join(name)
        }

        fn tls(&self, required: bool) -> TlsConfig {
            TlsConfig {
                cert: self.path("server.crt"),
                key: self.path("server.key"),
                required,
            }
        }

        /// tokio-postgres over rustls, trusting only the test CA.
        fn connector(&self) -> RustlsConnect {
            let ca = std::fs::read(self.path("ca.crt")).expect("CA certificate");
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from_pem_slice(&ca).expect("CA PEM"))
                .expect("CA accepted as a root");
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("TLS versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
            RustlsConnect(Arc::new(config))
        }
    }

    impl Drop for Certificates {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// tokio-postgres' TLS seam over tokio-rustls.
    #[derive(Clone)]
    struct RustlsConnect(Arc<rustls::ClientConfig>);

    struct RustlsConnectTo {
        config: Arc<rustls::ClientConfig>,
        server_name: ServerName<'static>,
    }

    struct RustlsStream(tokio_rustls::client::TlsStream<Socket>);

    impl MakeTlsConnect<Socket> for RustlsConnect {
        type Stream = RustlsStream;
        type TlsConnect = RustlsConnectTo;
        type Error = rustls::pki_types::InvalidDnsNameError;

        fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnectTo, Self::Error> {
            Ok(RustlsConnectTo {
                config: self.0.clone(),
                server_name: ServerName::try_from(domain.to_owned())?,
            })
        }
    }

    impl TlsConnect<Socket> for RustlsConnectTo {
        type Stream = RustlsStream;
        type Error = io::Error;
        type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream>> + Send>>;

        fn connect(self, stream: Socket) -> Self::Future {
            Box::pin(async move {
                let connector = tokio_rustls::TlsConnector::from(self.config);
                let tls = connector.connect(self.server_name, stream).await?;
                Ok(RustlsStream(tls))
            })
        }
    }

    impl AsyncRead for RustlsStream {
        fn poll_read(
            self: Pin<&mut Self>,
            context: &mut Context<'_>,
            buffer: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().0).poll_read(context, buffer)
        }
    }

    impl AsyncWrite for RustlsStream {
        fn poll_write(
            self: Pin<&mut Self>,
            context: &mut Context<'_>,
            buffer: &[u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.get_mut().0).poll_write(context, buffer)
        }

        fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().0).poll_flush(context)
        }

        fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().0).poll_shutdown(context)
        }
    }

    impl tokio_postgres::tls::TlsStream for RustlsStream {
        fn channel_binding(&self) -> ChannelBinding {
            ChannelBinding::none()
        }
    }

    /// Connects with extra connection-string settings; the client, with its
    /// connection driven by a task.
    async fn connect_with<T>(
        server: &TestServer,
        settings: &str,
        tls: T,
    ) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>
    where
        T: MakeTlsConnect<Socket>,
        T::Stream: Send + 'static,
    {
        let config = format!("{} {settings}", server.config);
        let (client, connection) = tokio_postgres::connect(&config, tls).await?;
        let connection = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok((client, connection))
    }

    async fn select_one(client: &tokio_postgres::Client) -> i32 {
        client
            .query_one("SELECT 1", &[])
            .await
            .expect("a query runs")
            .get(0)
    }

    fn scram_users(file: &Path) -> AuthConfig {
        std::fs::write(file, "# test users\nalice:correct horse\nbob:b:ttery\n")
            .expect("users file");
        AuthConfig {
            method: AuthMethod::ScramSha256,
            users_file: Some(file.to_owned()),
            ..AuthConfig::default()
        }
    }

    #[tokio::test]
    async fn tls_is_served_with_the_configured_certificate_and_plain_stays_allowed() {
        let certificates = Certificates::generate();
        let server =
            TestServer::start_secured(Some(certificates.tls(false)), AuthConfig::default()).await;

        // sslmode=require fails unless the server answered SSLRequest 'S';
        // the handshake verifies the chain against the test CA.
        let (client, connection) =
            connect_with(&server, "sslmode=require", certificates.connector())
                .await
                .expect("a TLS session");
        assert_eq!(select_one(&client).await, 1);
        drop(client);
        let _ = connection.await;

        let (client, connection) = connect_with(&server, "sslmode=disable", NoTls)
            .await
            .expect("plain sessions are allowed without --tls-required");
        assert_eq!(select_one(&client).await, 1);
        drop(client);
        let _ = connection.await;
        server.stop().await;
    }

    #[tokio::test]
    async fn tls_required_refuses_plain_sessions_with_28000() {
        let certificates = Certificates::generate();
        let server =
            TestServer::start_secured(Some(certificates.tls(true)), AuthConfig::default()).await;
        let error = connect_with(&server, "sslmode=disable", NoTls)
            .await
            .err()
            .expect("a plain session is refused");
        let database_error = error.as_db_error().expect("a Postgres error");
        assert_eq!(database_error.code().code(), "28000");
        assert_eq!(database_error.severity(), "FATAL");
        let (client, connection) =
            connect_with(&server, "sslmode=require", certificates.connector())
                .await
                .expect("a TLS session");
        assert_eq!(select_one(&client).await, 1);
        drop(client);
        let _ = connection.await;
        server.stop().await;
    }

    #[tokio::test]
    async fn without_a_certificate_ssl_request_is_answered_no() {
        let certificates = Certificates::generate();
        let server = TestServer::start().await;
        let error = connect_with(&server, "sslmode=require", certificates.connector())
            .await
            .err()
            .expect("the server does not offer TLS");
        assert!(error.as_db_error().is_none(), "{error}");
        // sslmode=prefer falls back to plain after the 'N'.
        let (client, connection) =
            connect_with(&server, "sslmode=prefer", certificates.connector())
                .await
                .expect("plain after 'N'");
        assert_eq!(select_one(&client).await, 1);
        drop(client);
        let _ = connection.await;
        server.stop().await;
    }

    #[test]
    fn unusable_tls_files_fail_startup_naming_the_file() {
        let certificates = Certificates::generate();
        let wrong_key = TlsConfig {
            key: certificates.path("other.key"),
            ..certificates.tls(false)
        };
        let error = Security::load(Some(&wrong_key), &AuthConfig::default())
            .err()
            .expect("the key is not the certificate's");
        let other_key = certificates.path("other.key");
        assert!(
            matches!(&error, crate::GatewayError::TlsFile { what: "private key", path, .. }
                if *path == other_key),
            "{error:?}"
        );
        let key_as_certificate = TlsConfig {
            cert: certificates.path("server.key"),
            ..certificates.tls(false)
        };
        let error = Security::load(Some(&key_as_certificate), &AuthConfig::default())
            .err()
            .expect("a key is not a certificate");
        assert!(error.to_string().contains("server.key"), "{error}");
        assert!(Security::load(Some(&certificates.tls(false)), &AuthConfig::default()).is_ok());
    }

    #[tokio::test]
    async fn scram_admits_the_right_password_and_refuses_wrong_ones_and_unknown_users_alike() {
        let certificates = Certificates::generate();
        let server =
            TestServer::start_secured(None, scram_users(&certificates.path("users"))).await;

        let (client, connection) =
            connect_with(&server, "user=alice password='correct horse'", NoTls)
                .await
                .expect("the right password");
        assert_eq!(select_one(&client).await, 1);
        drop(client);
        let _ = connection.await;
        let (client, connection) = connect_with(&server, "user=bob password=b:ttery", NoTls)
            .await
            .expect("a password with a colon");
        drop(client);
        let _ = connection.await;

        for (user, password) in [("alice", "wrong"), ("mallory", "correct horse")] {
            let settings = format!("user={user} password='{password}'");
            let error = connect_with(&server, &settings, NoTls)
                .await
                .err()
                .expect("refused");
            let database_error = error.as_db_error().expect("a Postgres error");
            assert_eq!(database_error.code().code(), "28P01", "{user}");
            assert_eq!(database_error.severity(), "FATAL");
            assert_eq!(
                database_error.message(),
                format!("password authentication failed for user \"{user}\"")
            );
        }
        let error = connect_with(&server, "user=alice", NoTls)
            .await
            .err()
            .expect("no password given");
        // The server asked for a password (SCRAM), which the client lacks.
        assert!(
            format!("{error:?}").contains("password missing"),
            "{error:?}"
        );
        server.stop().await;
    }

    #[tokio::test]
    async fn scram_over_tls_works_for_tokio_postgres_and_psql_with_channel_binding() {
        let certificates = Certificates::generate();
        let server = TestServer::start_secured(
            Some(certificates.tls(true)),
            scram_users(&certificates.path("users")),
        )
        .await;
        let (client, connection) = connect_with(
            &server,
            "user=alice password='correct horse' sslmode=require",
            certificates.connector(),
        )
        .await
        .expect("SCRAM inside TLS");
        assert_eq!(select_one(&client).await, 1);
        drop(client);
        let _ = connection.await;

        // libpq verifies the certificate and, with channel_binding=require,
        // must use SCRAM-SHA-256-PLUS bound to it.
        let output = tokio::process::Command::new("psql")
            .arg(format!(
                "{} user=alice sslmode=verify-full sslrootcert={} channel_binding=require",
                server.config.replace("host=127.0.0.1", "host=localhost"),
                certificates.path("ca.crt").display()
            ))
            .args([
                "-X",
                "-A",
                "-t",
                "-c",
                "\\conninfo",
                "-c",
                "SHOW server_version",
            ])
            .env("PGPASSWORD", "correct horse")
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
            .await
            .expect("psql runs (Debian package postgresql-client)");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "psql failed: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.contains("SSL connection"), "{stdout}");
        assert!(stdout.contains("16.6"), "{stdout}");

        let output = tokio::process::Command::new("psql")
            .arg(format!("{} user=alice sslmode=require", server.config))
            .args(["-X", "-c", "SELECT 1"])
            .env("PGPASSWORD", "wrong")
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
            .await
            .expect("psql runs");
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("password authentication failed for user \"alice\""),
            "{stderr}"
        );
        server.stop().await;
    }

    #[tokio::test]
    async fn clients_are_told_the_parameters_show_answers() {
        let server = TestServer::start().await;
        let config = format!("{} application_name=arbor-test", server.config);
        let (client, connection) = tokio_postgres::connect(&config, NoTls)
            .await
            .expect("connects");
        for (name, expected) in [
            ("server_version", "16.6"),
            ("server_encoding", "UTF8"),
            ("client_encoding", "UTF8"),
            ("DateStyle", "ISO, MDY"),
            ("integer_datetimes", "on"),
            ("standard_conforming_strings", "on"),
            ("TimeZone", "UTC"),
            ("application_name", "arbor-test"),
            ("session_authorization", "test"),
        ] {
            assert_eq!(connection.parameter(name), Some(expected), "{name}");
        }
        let connection = tokio::spawn(async move {
            let _ = connection.await;
        });
        for (setting, expected) in [
            ("server_version", "16.6"),
            ("DateStyle", "ISO, MDY"),
            ("TimeZone", "UTC"),
        ] {
            let shown = client
                .simple_query(&format!("SHOW {setting}"))
                .await
                .expect("show");
            assert_eq!(text_rows(&shown), vec![vec![Some(expected.to_owned())]]);
        }
        drop(client);
        let _ = connection.await;
        server.stop().await;
    }

    #[tokio::test]
    async fn a_cancel_for_an_idle_session_changes_nothing() {
        let server = TestServer::start().await;
        let (client, connection) = server.connect().await;
        client
            .batch_execute("BEGIN; INSERT INTO kv VALUES ('idle', '1')")
            .await
            .expect("a block with a write");
        client
            .cancel_token()
            .cancel_query(NoTls)
            .await
            .expect("the cancel request is delivered");
        client
            .batch_execute("COMMIT")
            .await
            .expect("the block was not cancelled");
        assert_eq!(keys(&client).await, ["idle"]);
        drop(client);
        let _ = connection.await;
        server.stop().await;
    }
}
