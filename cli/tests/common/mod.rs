//! Helpers shared by the CLI's integration tests: running the real binary (commands, long-running
//! processes, `entitle serve`), raw HTTP requests, and scratch directories.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Runs the `entitle` binary built for these tests.
pub fn entitle(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_entitle"))
        .args(args)
        .output()
        .expect("run entitle")
}

/// Runs `entitle`, asserts success and returns stdout.
pub fn ok_stdout(args: &[&str]) -> String {
    let out = entitle(args);
    assert!(
        out.status.success(),
        "entitle {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new, empty directory named after `tag`, this process and a counter.
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "entitle-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    /// The path of `name` inside the directory, as a string for command lines.
    pub fn path(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The bundled example catalog.
pub fn example() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/catalog.json")
        .to_string_lossy()
        .into_owned()
}

/// Runs `entitle`, asserts success and parses stdout as JSON.
pub fn ok_json(args: &[&str]) -> Value {
    serde_json::from_str(&ok_stdout(args)).expect("JSON output")
}

/// Runs `entitle`, asserts that it fails and returns its stderr.
pub fn fails(args: &[&str]) -> String {
    let out = entitle(args);
    assert!(!out.status.success(), "entitle {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Writes a catalog where `cus_a` has `projects` = `n` to `name` in `dir`; returns its path.
pub fn limit_catalog(dir: &TempDir, name: &str, n: u64) -> String {
    let path = dir.path(name);
    std::fs::write(
        &path,
        format!(
            r#"{{"features": [{{"key": "projects", "type": "limit", "default": 3}}],
                "customers": [{{"id": "cus_a", "overrides": {{"projects": {n}}}}}]}}"#
        ),
    )
    .unwrap();
    path
}

/// Polls `f` every 20 ms for up to 20 s until it returns `Some`.
pub fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends each line `from` gives on a channel, from a thread of its own.
fn lines_of(from: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// An `entitle` process killed and reaped on drop, with its stdout lines (and, when piped, its
/// stderr lines) on channels.
pub struct Running {
    /// The process.
    pub child: Child,
    /// Its stdout, line by line.
    pub lines: Receiver<String>,
    /// Its stderr, line by line, when the command piped it.
    pub stderr: Option<Receiver<String>>,
}

impl Running {
    /// `entitle ARGS` with stderr discarded.
    pub fn start(args: &[&str]) -> Running {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_entitle"));
        cmd.args(args).stderr(Stdio::null());
        Running::spawn(cmd)
    }

    /// Spawns `cmd` with stdout piped (stderr as `cmd` sets it up).
    pub fn spawn(mut cmd: Command) -> Running {
        let mut child = cmd.stdout(Stdio::piped()).spawn().expect("spawn entitle");
        let lines = lines_of(child.stdout.take().unwrap());
        let stderr = child.stderr.take().map(lines_of);
        Running {
            child,
            lines,
            stderr,
        }
    }

    /// The next stdout line, within 60 s.
    pub fn line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(60))
            .expect("a line of output in time")
    }

    /// Reads JSON lines until one satisfies `pred`.
    pub fn until(&self, mut pred: impl FnMut(&Value) -> bool) -> Value {
        loop {
            let v: Value = serde_json::from_str(&self.line()).expect("JSON line");
            if pred(&v) {
                return v;
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address a server's output line names after its last `http://` (`serving upstream
/// http://ORIGIN at http://ADDR` names its own last).
pub fn address(line: &str) -> String {
    let at = line.rfind("http://").expect("the line names an address") + "http://".len();
    line[at..]
        .split(|c: char| c == '"' || c.is_whitespace())
        .next()
        .unwrap()
        .to_owned()
}

/// `entitle serve [DIR] --addr 127.0.0.1:0 EXTRA...` on a free port, killed and reaped on drop.
pub struct Server {
    /// The process; its stderr lines are on `process.stderr`.
    pub process: Running,
    /// The address it listens on.
    pub addr: String,
}

impl Server {
    /// Starts the server and waits for the line naming its address.
    pub fn start(dir: Option<&str>, extra: &[&str]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_entitle"));
        cmd.args(["serve", "--addr", "127.0.0.1:0"])
            .args(dir)
            .args(extra)
            .stderr(Stdio::piped());
        let process = Running::spawn(cmd);
        let addr = address(&process.line());
        Server { process, addr }
    }

    /// `GET target` on a connection of its own.
    pub fn get(&self, target: &str, headers: &[(&str, &str)]) -> Response {
        http(&self.addr, "GET", target, headers)
    }

    /// The value of an unlabelled metric.
    pub fn metric(&self, name: &str, auth: &[(&str, &str)]) -> f64 {
        let text = String::from_utf8(self.get("/metrics", auth).body).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("{name} in {text}"))
            .parse()
            .unwrap()
    }

    /// The server's stderr lines.
    pub fn stderr(&self) -> &Receiver<String> {
        self.process.stderr.as_ref().expect("stderr is piped")
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.process.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

/// An HTTP response as read off the wire.
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The header fields, in order.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Response {
    /// The first header field called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// One HTTP/1.1 request on its own connection (`Connection: close`), read to the end.
pub fn http(addr: &str, method: &str, target: &str, headers: &[(&str, &str)]) -> Response {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(40))).unwrap();
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    parse_response(&raw)
}

/// Parses a whole HTTP/1.1 response.
pub fn parse_response(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of head");
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect::<Vec<_>>();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v == "chunked")
    {
        body = dechunk(&body);
    }
    Response {
        status: status.parse().unwrap(),
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 4 + n..];
    }
}
