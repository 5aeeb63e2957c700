//! A materializer with worker loops for one test app, on a unique Redis key
//! prefix that is deleted afterwards; and private Redis servers for tests
//! that stop and restart Redis.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use segments_worker::{JobQueue, Materializer};
use tokio::task::JoinHandle;

/// The materialization of one test app: the API's materializer and job
/// queue, the worker's materializer, and more worker loops beside the
/// application's own, all on the app's unique Redis key prefix.
#[derive(Debug)]
pub struct Materialized {
    /// The workers' materializer (their own pool and Redis connection); the
    /// API's when no worker runs, for tests that drive jobs by hand.
    pub materializer: Arc<Materializer>,
    /// The API's, over the API's store and a Redis connection of its own, as
    /// in `segments serve`: requests never queue behind a worker's pipelines.
    pub api: Arc<Materializer>,
    pub jobs: JobQueue,
    pub prefix: String,
    redis_url: String,
    /// Worker loops beyond the application's one (as more `segments worker`
    /// processes would be).
    more: Vec<JoinHandle<Result<(), segments_worker::WorkerError>>>,
}

/// A unique key prefix for one test app.
pub fn unique_prefix() -> String {
    format!(
        "segtest-{}-{:x}",
        std::process::id(),
        rand::rng().random::<u64>()
    )
}

impl Materialized {
    /// What the application started, with `workers - 1` more worker loops
    /// on its worker's materializer (`settings` are the application's).
    pub fn of(app: &segments::Application, settings: &segments::Settings, workers: usize) -> Self {
        let state = app.materialization().expect("redis is enabled");
        let materializer = app
            .worker_materializer()
            .cloned()
            .unwrap_or_else(|| state.materializer.clone());
        let more = (1..workers)
            .map(|_| {
                tokio::spawn(segments_worker::run(
                    materializer.clone(),
                    settings.worker(),
                    app.stopped(),
                ))
            })
            .collect();
        Self {
            materializer,
            api: state.materializer.clone(),
            jobs: state.jobs.clone(),
            prefix: settings.redis.prefix.clone(),
            redis_url: settings.redis.url.expose().to_owned(),
            more,
        }
    }

    /// Waits for the extra loops (stopped with the application) and deletes
    /// every key of this prefix.
    pub async fn stop(self) {
        for w in self.more {
            let _ = tokio::time::timeout(Duration::from_secs(10), w).await;
        }
        if let Ok(client) = redis::Client::open(self.redis_url.as_str())
            && let Ok(mut conn) = client.get_multiplexed_async_connection().await
        {
            for pattern in [
                format!("{}*", self.prefix),
                format!("{}_jobs*", self.prefix.replace(':', "_")),
            ] {
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(&pattern)
                    .query_async(&mut conn)
                    .await
                    .unwrap_or_default();
                for chunk in keys.chunks(500) {
                    let _: Result<i64, _> =
                        redis::cmd("DEL").arg(chunk).query_async(&mut conn).await;
                }
            }
            // apalis-redis lists every queue it has served in one shared
            // sorted set: without this, each test run would leave its own.
            let _: Result<i64, _> = redis::cmd("ZREM")
                .arg("core:apalis:queues:list")
                .arg(format!("{}_jobs:workers", self.prefix.replace(':', "_")))
                .query_async(&mut conn)
                .await;
        }
    }
}

/// A Redis server of the test's own, on a free port, that the test may stop
/// and start again. Its data survives restarts (append-only file in a
/// temporary directory).
#[derive(Debug)]
pub struct RedisServer {
    pub port: u16,
    dir: std::path::PathBuf,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("port")
            .local_addr()
            .expect("addr")
            .port();
        let dir =
            std::env::temp_dir().join(format!("segments-redis-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let mut server = Self {
            port,
            dir,
            child: None,
        };
        server.resume();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port and data directory.
    pub fn resume(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test.sh installs it)");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server; SHUTDOWN writes the append-only file, so its data
    /// is there when it starts again.
    pub fn halt(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("redis-cli")
                .args(["-p", &self.port.to_string(), "shutdown"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl RedisServer {
    /// Stops the server and throws its data away: the next `resume` starts
    /// it empty, as a Redis without persistence comes back.
    pub fn wipe(&mut self) {
        self.halt();
        let _ = std::fs::remove_dir_all(&self.dir);
        std::fs::create_dir_all(&self.dir).expect("dir");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.halt();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis Cluster of the test's own: `masters` servers on free loopback
/// ports, no replicas, no persistence, joined by `redis-cli --cluster
/// create`. Stopped and removed on drop.
#[derive(Debug)]
pub struct RedisCluster {
    pub ports: Vec<u16>,
    dir: std::path::PathBuf,
    children: Vec<Child>,
}

impl RedisCluster {
    pub fn start(masters: usize) -> Self {
        // Held until every port is chosen, so no two are the same.
        let listeners: Vec<TcpListener> = (0..masters)
            .map(|_| TcpListener::bind("127.0.0.1:0").expect("port"))
            .collect();
        let ports: Vec<u16> = listeners
            .iter()
            .map(|l| l.local_addr().expect("addr").port())
            .collect();
        drop(listeners);
        let dir = std::env::temp_dir().join(format!(
            "segments-redis-cluster-{}-{}",
            ports[0],
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("dir");
        let mut cluster = Self {
            ports: ports.clone(),
            dir,
            children: Vec::new(),
        };
        for port in &ports {
            let child = cluster.node(*port);
            cluster.children.push(child);
        }
        let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli");
        assert!(
            created.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&created.stdout)
        );
        cluster.wait_until_up();
        cluster
    }

    /// Waits until every node says the cluster is up: until then a node
    /// may refuse keys.
    fn wait_until_up(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !self
            .ports
            .iter()
            .all(|p| self.info(*p).contains("cluster_state:ok"))
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the cluster is not up"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts the node on `port` (its data directory keeps only the
    /// cluster's configuration, never data) and waits until it listens.
    fn node(&self, port: u16) -> Child {
        let node_dir = self.dir.join(port.to_string());
        std::fs::create_dir_all(&node_dir).expect("dir");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&node_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test.sh installs it)");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    /// Kills the node on `port` and starts it again empty (as a node
    /// without persistence comes back), serving the same slots; waits
    /// until the cluster is up again.
    pub fn restart_empty(&mut self, port: u16) {
        let i = self.ports.iter().position(|p| *p == port).expect("a node");
        let _ = self.children[i].kill();
        let _ = self.children[i].wait();
        self.children[i] = self.node(port);
        self.wait_until_up();
    }

    /// The nodes' URLs, as a client takes them.
    pub fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }

    fn cli(&self, port: u16, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn info(&self, port: u16) -> String {
        self.cli(port, &["cluster", "info"])
    }

    /// The port of the master serving `key`'s slot.
    pub fn node_of(&self, key: &str) -> u16 {
        let slot: u16 = self
            .cli(self.ports[0], &["cluster", "keyslot", key])
            .trim()
            .parse()
            .expect("a slot");
        // `CLUSTER NODES`: `<id> <ip:port@cport> <flags> … <slot ranges>`.
        for line in self.cli(self.ports[0], &["cluster", "nodes"]).lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") {
                continue;
            }
            let serves = fields[8..].iter().any(|range| {
                let (from, to) = range.split_once('-').unwrap_or((range, range));
                matches!((from.parse::<u16>(), to.parse::<u16>()), (Ok(f), Ok(t)) if (f..=t).contains(&slot))
            });
            if serves {
                let port = fields[1]
                    .split('@')
                    .next()
                    .and_then(|a| a.rsplit(':').next())
                    .and_then(|p| p.parse().ok());
                return port.expect("a port in CLUSTER NODES");
            }
        }
        panic!("no master serves slot {slot}")
    }

    /// How many keys the node at `port` holds.
    pub fn keys_on(&self, port: u16) -> u64 {
        self.cli(port, &["dbsize"]).trim().parse().unwrap_or(0)
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
