//! A real PostgreSQL server for tests: `initdb` into a temporary
//! directory, `pg_ctl start` on a free port of 127.0.0.1, stopped and
//! removed on drop. As root, the server runs as the `postgres` user
//! (PostgreSQL refuses to run as root). Built only with the `mock`
//! feature, beside the mocks of the HTTP services; the database is never
//! mocked.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct TestPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

/// Where `initdb` and `pg_ctl` are: on `PATH`, or in Debian's
/// `/usr/lib/postgresql/<version>/bin` (newest first).
fn bin_dir() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            if d.join("initdb").is_file() && d.join("pg_ctl").is_file() {
                return Some(d);
            }
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|b| b.join("initdb").is_file())
        .collect();
    versions.sort();
    versions.pop()
}

/// A port free now, for a server started later, taken below the kernel's
/// ephemeral range (32768 and up): a port from `bind(":0")` is in that
/// range, where another test's listener or outgoing connection can take it
/// before the server binds it.
pub fn free_port() -> u16 {
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        ^ std::process::id();
    (0..12_000u32)
        .map(|k| 20_000 + (start.wrapping_add(k) % 12_000) as u16)
        .find(|&p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
        .expect("a free port between 20000 and 32000")
}

impl TestPostgres {
    /// Start a fresh server. Panics (failing the test) with the reason
    /// when PostgreSQL is not installed or does not start.
    pub fn start() -> TestPostgres {
        let bin = bin_dir().expect(
            "PostgreSQL's server binaries (initdb, pg_ctl) are needed: apt-get install postgresql",
        );
        let as_postgres = is_root();
        let dir = tempfile::tempdir().expect("a temporary directory");
        if as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(status.success(), "chown the test database to postgres");
        }
        let pg = TestPostgres {
            port: free_port(),
            dir,
            bin,
            as_postgres,
        };
        let data = pg.data();
        pg.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} \
             -c fsync=off -c max_connections=100",
            pg.port,
            pg.dir.path().display()
        );
        let log = pg.dir.path().join("server.log").display().to_string();
        pg.run(
            "pg_ctl",
            &[
                "-D", &data, "-o", &opts, "-l", &log, "-w", "-t", "60", "start",
            ],
        );
        pg
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn command(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out = self
            .command(tool)
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("{tool}: {e}"));
        assert!(
            out.status.success(),
            "{tool} failed: {}{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
        );
    }

    /// Create a login role that must give `password` over TCP (the rest of
    /// the server trusts everyone): for tests of password validation.
    pub fn password_role(&self, role: &str, password: &str) {
        let mut c = postgres::Client::connect(&self.url(), postgres::NoTls).expect("connect");
        c.batch_execute(&format!("CREATE ROLE {role} LOGIN PASSWORD '{password}'"))
            .expect("create role");
        let hba = self.dir.path().join("data/pg_hba.conf");
        let old = std::fs::read_to_string(&hba).expect("pg_hba.conf");
        let line = format!("host all {role} 127.0.0.1/32 scram-sha-256\n");
        std::fs::write(&hba, line + &old).expect("pg_hba.conf");
        self.run("pg_ctl", &["-D", &self.data(), "reload"]);
        // The reload is asynchronous; the postmaster rereads within moments.
        std::thread::sleep(std::time::Duration::from_millis(300));
    }

    /// Turn TLS on (a self-signed certificate made with `openssl`) and make
    /// `role` log in over TLS only, with `password`: plain connections of
    /// the role are rejected by `pg_hba.conf`, as managed databases do.
    pub fn tls_only_role(&self, role: &str, password: &str) {
        let data = self.dir.path().join("data");
        let out = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                "server.key",
                "-out",
                "server.crt",
            ])
            .current_dir(&data)
            .output()
            .expect("openssl is needed to make a test certificate");
        assert!(
            out.status.success(),
            "openssl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if self.as_postgres {
            let status = Command::new("chown")
                .args(["postgres:postgres", "server.key", "server.crt"])
                .current_dir(&data)
                .status()
                .expect("chown");
            assert!(status.success(), "chown the certificate to postgres");
        }
        std::fs::set_permissions(
            data.join("server.key"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .expect("chmod server.key");
        let mut c = postgres::Client::connect(&self.url(), postgres::NoTls).expect("connect");
        c.batch_execute("ALTER SYSTEM SET ssl = on")
            .expect("ssl on");
        c.batch_execute(&format!("CREATE ROLE {role} LOGIN PASSWORD '{password}'"))
            .expect("create role");
        let hba = data.join("pg_hba.conf");
        let old = std::fs::read_to_string(&hba).expect("pg_hba.conf");
        let lines = format!(
            "hostssl all {role} 127.0.0.1/32 scram-sha-256\nhostnossl all {role} 127.0.0.1/32 reject\n"
        );
        std::fs::write(&hba, lines + &old).expect("pg_hba.conf");
        self.run("pg_ctl", &["-D", &self.data(), "reload"]);
        std::thread::sleep(std::time::Duration::from_millis(300));
    }

    /// The server's own log, for a failing test to show.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self
            .command("pg_ctl")
            .args(["-D", &data, "-m", "immediate", "-w", "stop"])
            .output();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A child server process, killed on drop, with the directory it uses.
pub struct TestServer {
    child: std::process::Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl TestServer {
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its log, for a failing test to show.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn spawn(dir: tempfile::TempDir, port: u16, mut cmd: Command) -> TestServer {
        use std::os::unix::process::CommandExt;
        let log = std::fs::File::create(dir.path().join("server.log")).expect("a log file");
        // A group of its own, so that drop stops what a start script forks.
        let child = cmd
            .process_group(0)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let server = TestServer { child, dir, port };
        let start = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(60),
                "the server did not listen on {port}: {}",
                server.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        server
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real Redis server (Debian's `redis-server`) on a free port of
/// 127.0.0.1 whose default user needs `password`.
pub fn start_redis(password: &str) -> TestServer {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let port = free_port();
    let mut cmd = Command::new("redis-server");
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args([
            "--requirepass",
            password,
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(dir.path());
    TestServer::spawn(dir, port, cmd)
}

/// A real MariaDB server (Debian's `mariadb-server`) in a temporary data
/// directory on a free port of 127.0.0.1; `root` has no password over TCP.
pub fn start_mariadb() -> TestServer {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let port = free_port();
    let data = dir.path().join("data");
    let mut install = Command::new("mariadb-install-db");
    install
        .arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .args(["--auth-root-authentication-method=normal", "--skip-test-db"]);
    if is_root() {
        install.arg("--user=root");
    }
    let out = install
        .output()
        .expect("mariadb-install-db (apt-get install mariadb-server)");
    assert!(
        out.status.success(),
        "mariadb-install-db failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut cmd = Command::new(mariadbd());
    cmd.arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--socket={}", dir.path().join("sock").display()))
        .arg(format!("--port={port}"))
        .args(["--bind-address=127.0.0.1", "--skip-log-bin"])
        .arg(format!("--pid-file={}", dir.path().join("pid").display()));
    if is_root() {
        cmd.arg("--user=root");
    }
    TestServer::spawn(dir, port, cmd)
}

/// `mariadbd` on `PATH`, or where Debian puts it.
fn mariadbd() -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("mariadbd"))
                .find(|m| m.is_file())
        })
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/mariadbd"))
}

/// A real RabbitMQ broker (Debian's `rabbitmq-server`) on a free port of
/// 127.0.0.1, with no plugins; its `guest`/`guest` user may connect from
/// the loopback address.
pub fn start_rabbitmq() -> TestServer {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let port = free_port();
    let d = dir.path();
    std::fs::write(d.join("plugins"), "").expect("a plugins file");
    let mut cmd = Command::new("/usr/lib/rabbitmq/bin/rabbitmq-server");
    cmd.current_dir(d)
        .env("HOME", d)
        .env("RABBITMQ_NODE_PORT", port.to_string())
        .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
        .env("RABBITMQ_DIST_PORT", free_port().to_string())
        .env(
            "RABBITMQ_NODENAME",
            format!("keyburn-test-{port}@localhost"),
        )
        .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
        .env("RABBITMQ_LOG_BASE", d.join("log"))
        .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("plugins"))
        .env("RABBITMQ_PID_FILE", d.join("pid"))
        .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq"));
    TestServer::spawn(dir, port, cmd)
}
