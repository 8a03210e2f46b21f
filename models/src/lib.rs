//! # aither-models: the model store — fetching model files and knowing how far to trust them
//!
//! From the catalog's URL or from a local directory (a USB stick).
//!
//! A download goes to `NAME.part` beside its destination and resumes from there with an HTTP
//! range request; the file is checked and renamed into place only when it is whole. A copy
//! from a directory goes the same way. A destination that is already there and checks out is
//! left alone.
//!
//! - **Checks.** Against the catalog's `sha256` and `bytes` when it has them. Where the
//!   catalog has no SHA-256, the hash of the first download is *recorded* in the model
//!   directory's `checksums.json` and later checks compare against it (trust on first use);
//!   a SHA-256 the server states (Hugging Face's `X-Linked-ETag`) guards the transfer but is
//!   never taken as verification. [`verification`] says for any file whether it is
//!   `verified` (matches the catalog), `recorded` (matches its first download) or
//!   `unverified`.
//! - **Files.** Fetching runs as root in a directory the `aither` user owns, so every file is
//!   opened relative to the directory's descriptor with `O_NOFOLLOW`: a part is created with
//!   `O_EXCL` (after removing whatever had its name), resumed only when it is a regular file
//!   with a single link, and renamed into place with `renameat`. A symlink planted in the
//!   directory is never followed for writing.
//! - **Time.** A connect timeout, a timeout for the response's head, and stall detection on
//!   the body: no bytes for [`FetchOptions::stall`] fails with the part kept for a resume.
//!   A full disk fails the same way, naming the file.
//!
//! Progress is reported through a callback with the bytes done and the total when known, so
//! a console wizard, a progress bar or a log line can show it.
//!
//! ## Limitations
//!
//! - A stalled transfer's reading thread stays blocked until the server closes the
//!   connection (it holds no file; the fetch itself has already failed).

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use aither_api::store::{Checksums, Recorded, Verification};

use aither_plan::catalog::{Model, ModelFile};

/// Where a model file comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The URL the catalog gives.
    Catalog,
    /// A directory holding files with the catalog's file names (`*.gguf`).
    Dir(PathBuf),
}

/// How long a download may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchOptions {
    /// To connect to the server.
    pub connect: Duration,
    /// Without a byte: for the response's head, then between bytes of the body.
    pub stall: Duration,
}

impl Default for FetchOptions {
    fn default() -> FetchOptions {
        FetchOptions { connect: Duration::from_secs(30), stall: Duration::from_secs(60) }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: {message}")]
    Http { url: String, message: String },
    #[error("{url}: no data for {seconds} s after {done} bytes; {part} is kept: run the pull again to resume")]
    Stalled { url: String, seconds: u64, done: u64, part: PathBuf },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}; the part is kept: free some space and run the pull again to resume")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path}: {problem}")]
    Unsafe { path: PathBuf, problem: String },
    #[error("{file}: not in {dir} (looked for {name})")]
    NotInDir { file: String, dir: PathBuf, name: String },
    #[error("{path}: SHA-256 is {actual}, {expected_from} says {expected}: the file was removed")]
    Checksum { path: PathBuf, expected: String, expected_from: &'static str, actual: String },
    #[error("{path}: {actual} bytes, the catalog says {expected}: the file was removed")]
    Size { path: PathBuf, expected: u64, actual: u64 },
}

/// What [`fetch`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub path: PathBuf,
    pub bytes: u64,
    /// Already there and whole: nothing was transferred.
    pub present: bool,
    pub verification: Verification,
}

/// The checksums file in the model directory.
pub const CHECKSUMS: &str = "checksums.json";

pub use aither_api::plan::file_name;

mod dir;
use dir::Dir;

/// A file name safe to create in the model directory: one path component, not hidden.
fn checked_name(url: &str) -> Result<&str, FetchError> {
    let name = file_name(url);
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name != CHECKSUMS
        && !name.bytes().any(|b| b == 0 || b == b'/' || b.is_ascii_control());
    if ok {
        Ok(name)
    } else {
        Err(FetchError::Http { url: url.to_string(), message: format!("{name:?} is not a usable file name") })
    }
}

/// The file of `model` to fetch: the first one listed (the catalog lists the preferred
/// quantization first) unless `quant` names another.
pub fn choose_file<'a>(model: &'a Model, quant: Option<&str>) -> Option<&'a ModelFile> {
    match quant {
        Some(q) => model.files.iter().find(|f| f.quant.eq_ignore_ascii_case(q)),
        None => model.files.first(),
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// How far the file `file` names in `model_dir` can be trusted, from the checksums recorded
/// there (no hashing: sizes are compared, hashes were taken when the file was fetched).
pub fn verification(model_dir: &Path, file: &ModelFile) -> Verification {
    let name = file_name(&file.url);
    let Ok(dir) = Dir::open_existing(model_dir) else { return Verification::Unverified };
    let Some(size) = dir.regular_size(name) else { return Verification::Unverified };
    let all = dir.checksums();
    let Some(r) = all.files.get(name).filter(|r| r.bytes == size) else { return Verification::Unverified };
    match &file.sha256 {
        Some(want) if want.eq_ignore_ascii_case(&r.sha256) => Verification::Verified,
        Some(_) => Verification::Unverified,
        None => Verification::Recorded,
    }
}

/// Remove `file` from `model_dir`: the file (a symbolic link the admin put there is removed,
/// never what it points to), a part left by an unfinished download and its recorded checksum.
/// Returns the bytes the file held, `None` when there was none.
pub fn remove(file: &ModelFile, model_dir: &Path) -> Result<Option<u64>, FetchError> {
    let name = checked_name(&file.url)?;
    let dir = Dir::open_existing(model_dir)?;
    let bytes = dir.regular_size(name).or_else(|| dir.is_symlink(name).then_some(0));
    for n in [name.to_string(), format!("{name}.part"), format!("{name}.part.sha256")] {
        dir.remove(&n)?;
    }
    let mut all = dir.checksums();
    if all.files.remove(name).is_some() {
        dir.write_checksums(all)?;
    }
    Ok(bytes)
}

/// Fetch `file` into `model_dir`, reporting `(done, total)` as it goes.
pub fn fetch(
    file: &ModelFile,
    source: &Source,
    model_dir: &Path,
    opts: &FetchOptions,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<Fetched, FetchError> {
    let name = checked_name(&file.url)?;
    let dir = Dir::open(model_dir)?;
    let dest = dir.at(name);
    if dir.is_symlink(name) {
        // Put there by the admin: theirs to look after; never written through.
        let bytes = std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0);
        progress(bytes, Some(bytes));
        return Ok(Fetched { path: dest, bytes, present: true, verification: Verification::Unverified });
    }
    if let Some(size) = dir.regular_size(name) {
        if let Ok(verification) = check_present(&dir, name, size, file) {
            progress(size, Some(size));
            return Ok(Fetched { path: dest, bytes: size, present: true, verification });
        }
    }
    let part = format!("{name}.part");
    // The SHA-256 the server gave for the file, kept beside the part so a resumed download
    // is checked against the same one.
    let advertised = format!("{name}.part.sha256");
    match source {
        Source::Catalog => download(&file.url, &dir, &part, file.bytes, &advertised, opts, progress)?,
        Source::Dir(src) => copy_from(src, name, &file.url, &dir, &part, progress)?,
    }
    let stated = {
        let mut text = String::new();
        let _ = dir.read(&advertised).map(|mut f| f.read_to_string(&mut text));
        let t = text.trim().to_ascii_lowercase();
        is_sha256(&t).then_some(t)
    };
    let result = check_part(&dir, &part, file, stated.as_deref());
    let _ = dir.remove(&advertised);
    let (bytes, sha256, verification) = match result {
        Ok(v) => v,
        Err(e) => {
            let _ = dir.remove(&part);
            return Err(e);
        }
    };
    dir.rename(&part, name)?;
    let from = if verification == Verification::Verified { "catalog" } else { "first-download" };
    dir.record(name, Recorded { sha256, bytes, from: from.into() })?;
    Ok(Fetched { path: dest, bytes, present: false, verification })
}

/// A destination already there: whole by its record (no hashing), or by the catalog's hash.
fn check_present(dir: &Dir, name: &str, size: u64, file: &ModelFile) -> Result<Verification, ()> {
    if file.bytes.is_some_and(|b| b != size) {
        return Err(());
    }
    let recorded = dir.checksums().files.get(name).cloned().filter(|r| r.bytes == size);
    match (&file.sha256, recorded) {
        (Some(want), Some(r)) if want.eq_ignore_ascii_case(&r.sha256) => Ok(Verification::Verified),
        (None, Some(_)) => Ok(Verification::Recorded),
        (Some(want), _) => {
            let got = dir.sha256(name).map_err(|_| ())?;
            if !want.eq_ignore_ascii_case(&got) {
                return Err(());
            }
            let _ = dir.record(name, Recorded { sha256: got, bytes: size, from: "catalog".into() });
            Ok(Verification::Verified)
        }
        // There before any fetch, and nothing to check it against.
        (None, None) => Ok(Verification::Unverified),
    }
}

/// Check a whole part: size and SHA-256 against the catalog, else the server's stated hash
/// (a transfer check, not a verification). Returns its size, hash and verification.
fn check_part(
    dir: &Dir,
    part: &str,
    file: &ModelFile,
    stated: Option<&str>,
) -> Result<(u64, String, Verification), FetchError> {
    let path = dir.at(part);
    let bytes = dir
        .regular_size(part)
        .ok_or_else(|| FetchError::Unsafe { path: path.clone(), problem: "is not a regular file".into() })?;
    if let Some(expected) = file.bytes {
        if bytes != expected {
            return Err(FetchError::Size { path, expected, actual: bytes });
        }
    }
    let actual = dir.sha256(part)?;
    match (&file.sha256, stated) {
        (Some(expected), _) if !expected.eq_ignore_ascii_case(&actual) => {
            Err(FetchError::Checksum { path, expected: expected.clone(), expected_from: "the catalog", actual })
        }
        (Some(_), _) => Ok((bytes, actual, Verification::Verified)),
        (None, Some(s)) if !s.eq_ignore_ascii_case(&actual) => {
            Err(FetchError::Checksum { path, expected: s.to_string(), expected_from: "the server", actual })
        }
        (None, _) => Ok((bytes, actual, Verification::Recorded)),
    }
}

/// The SHA-256 a server states for the whole file: Hugging Face gives it for LFS files as
/// `X-Linked-ETag` (quoted), some servers as a plain strong `ETag`.
fn advertised_sha256(headers: &ureq::http::HeaderMap) -> Option<String> {
    ["x-linked-etag", "etag"].iter().find_map(|h| {
        let v = headers.get(*h)?.to_str().ok()?;
        let v = v.trim().trim_start_matches("W/").trim_matches('"');
        is_sha256(v).then(|| v.to_ascii_lowercase())
    })
}

fn download(
    url: &str,
    dir: &Dir,
    part: &str,
    expected: Option<u64>,
    advertised: &str,
    opts: &FetchOptions,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<(), FetchError> {
    let http = |message: String| FetchError::Http { url: url.to_string(), message };
    let write = |source| FetchError::Write { path: dir.at(part), source };
    let have = dir.regular_size(part).unwrap_or(0);
    if expected.is_some_and(|e| have >= e) && have > 0 {
        return Ok(());
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(opts.connect))
        .timeout_recv_response(Some(opts.stall))
        .user_agent(concat!("aitheros/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut req = agent.get(url);
    if have > 0 {
        req = req.header("Range", format!("bytes={have}-"));
    }
    let resp = req.call().map_err(|e| http(e.to_string()))?;
    let status = resp.status().as_u16();
    let length = resp.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let (mut done, mut out) = match status {
        206 if have > 0 => (have, dir.append(part)?),
        200 => (0, dir.create_new(part)?),
        // The part is already whole: the server has nothing beyond it.
        416 if have > 0 => return Ok(()),
        s => return Err(http(format!("the server answered {s}"))),
    };
    if let Some(sha) = advertised_sha256(resp.headers()) {
        if dir.regular_size(advertised).is_none() {
            let mut f = dir.create_new(advertised)?;
            f.write_all(sha.as_bytes()).map_err(|source| FetchError::Write { path: dir.at(advertised), source })?;
        }
    }
    let total = expected.or(length.map(|l| l + done));
    progress(done, total);
    // The body is read on its own thread, so a server that stops sending is noticed here.
    let (tx, rx) = std::sync::mpsc::sync_channel::<std::io::Result<Vec<u8>>>(8);
    let mut body = resp.into_body().into_reader();
    std::thread::spawn(move || loop {
        let mut buf = vec![0u8; 1 << 16];
        let chunk = body.read(&mut buf).map(|n| {
            buf.truncate(n);
            buf
        });
        let end = !matches!(&chunk, Ok(b) if !b.is_empty());
        if tx.send(chunk).is_err() || end {
            return;
        }
    });
    loop {
        match rx.recv_timeout(opts.stall) {
            Ok(Ok(chunk)) if chunk.is_empty() => break,
            Ok(Ok(chunk)) => {
                out.write_all(&chunk).map_err(write)?;
                done += chunk.len() as u64;
                progress(done, total);
            }
            Ok(Err(e)) => return Err(http(format!("transfer stopped after {done} bytes: {e}; run again to resume"))),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let _ = out.sync_all();
                return Err(FetchError::Stalled {
                    url: url.to_string(),
                    seconds: opts.stall.as_secs(),
                    done,
                    part: dir.at(part),
                });
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err(http(format!("transfer stopped after {done} bytes; run again to resume")))
            }
        }
    }
    out.sync_all().map_err(write)?;
    if let Some(l) = length {
        let got = done - if status == 206 { have } else { 0 };
        if got < l {
            return Err(http(format!("the transfer ended after {got} of {l} bytes; run again to resume")));
        }
    }
    Ok(())
}

fn copy_from(
    src_dir: &Path,
    name: &str,
    url: &str,
    dir: &Dir,
    part: &str,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<(), FetchError> {
    let src =
        [src_dir.join(name), src_dir.join("models").join(name)].into_iter().find(|p| p.is_file()).ok_or_else(|| {
            FetchError::NotInDir { file: url.to_string(), dir: src_dir.to_path_buf(), name: name.to_string() }
        })?;
    let mut from = File::open(&src).map_err(|source| FetchError::Io { path: src.clone(), source })?;
    let total = from.metadata().map(|m| m.len()).ok();
    let mut out = dir.create_new(part)?;
    let write = |source| FetchError::Write { path: dir.at(part), source };
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    progress(0, total);
    loop {
        let n = from.read(&mut buf).map_err(|source| FetchError::Io { path: src.clone(), source })?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).map_err(write)?;
        done += n as u64;
        progress(done, total);
    }
    out.sync_all().map_err(write)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest as _;
    use std::io::BufRead as _;
    use std::net::TcpListener;

    const BODY: &[u8] = b"GGUF model bytes, a stand-in for a real file's contents.";
    const BODY_SHA: &str = "5d0a1d7b1f1b4b9a5e1d0e0f3a1b0c6f1d0a9d7b1f1b4b9a5e1d0e0f3a1b0c6f";

    fn sha(b: &[u8]) -> String {
        hex(&sha2::Sha256::digest(b))
    }

    /// A one-thread HTTP/1.1 server that honours `Range: bytes=N-`, serving `body` for
    /// `requests` requests; `cut` drops the connection after that many body bytes on the
    /// first request.
    fn serve(
        body: &'static [u8],
        requests: usize,
        cut: Option<usize>,
    ) -> (String, std::thread::JoinHandle<Vec<String>>) {
        serve_with(body, requests, cut, "")
    }

    /// [`serve`] with extra response header lines (`Name: value\r\n`).
    fn serve_with(
        body: &'static [u8],
        requests: usize,
        cut: Option<usize>,
        extra: &'static str,
    ) -> (String, std::thread::JoinHandle<Vec<String>>) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/models/test.gguf", l.local_addr().expect("addr"));
        let h = std::thread::spawn(move || {
            let mut ranges = Vec::new();
            for i in 0..requests {
                let (mut s, _) = l.accept().expect("accept");
                let mut r = std::io::BufReader::new(s.try_clone().expect("clone"));
                let mut from = 0usize;
                loop {
                    let mut line = String::new();
                    r.read_line(&mut line).expect("line");
                    if line == "\r\n" || line.is_empty() {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                        from = v.trim().trim_end_matches('-').parse().expect("range");
                        ranges.push(line.trim().to_ascii_lowercase());
                    }
                }
                let rest = &body[from..];
                let status = if from > 0 { "206 Partial Content" } else { "200 OK" };
                let head =
                    format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n", rest.len());
                s.write_all(head.as_bytes()).expect("head");
                let n = if i == 0 { cut.unwrap_or(rest.len()) } else { rest.len() };
                s.write_all(&rest[..n]).expect("body");
            }
            ranges
        });
        (url, h)
    }

    const OPTS: FetchOptions = FetchOptions { connect: Duration::from_secs(5), stall: Duration::from_secs(5) };

    fn file(url: &str, sha256: Option<String>) -> ModelFile {
        ModelFile { quant: "F16".into(), url: url.into(), bytes: None, sha256 }
    }

    #[test]
    fn a_download_is_checked_and_renamed_into_place() {
        let (url, server) = serve(BODY, 1, None);
        let dir = tempfile::tempdir().expect("tempdir");
        let mut seen = Vec::new();
        let f = fetch(&file(&url, Some(sha(BODY))), &Source::Catalog, dir.path(), &OPTS, &mut |d, t| seen.push((d, t)))
            .expect("fetched");
        server.join().expect("server");
        assert!(f.verification == Verification::Verified && !f.present);
        assert_eq!(std::fs::read(dir.path().join("test.gguf")).expect("read"), BODY);
        assert_eq!(seen.last(), Some(&(BODY.len() as u64, Some(BODY.len() as u64))));
        assert!(!dir.path().join("test.gguf.part").exists());
    }

    #[test]
    fn an_interrupted_download_resumes_with_a_range_request() {
        let (url, server) = serve(BODY, 2, Some(10));
        let dir = tempfile::tempdir().expect("tempdir");
        let f = file(&url, Some(sha(BODY)));
        let first = fetch(&f, &Source::Catalog, dir.path(), &OPTS, &mut |_, _| {});
        assert!(matches!(first, Err(FetchError::Http { .. })), "{first:?}");
        assert_eq!(std::fs::metadata(dir.path().join("test.gguf.part")).expect("part").len(), 10);
        fetch(&f, &Source::Catalog, dir.path(), &OPTS, &mut |_, _| {}).expect("resumed");
        assert_eq!(server.join().expect("server"), ["range: bytes=10-"]);
        assert_eq!(std::fs::read(dir.path().join("test.gguf")).expect("read"), BODY);
    }

    #[test]
    fn without_a_catalog_checksum_the_servers_sha256_is_checked_across_a_resume() {
        let good: &'static str = Box::leak(format!("X-Linked-ETag: \"{}\"\r\n", sha(BODY)).into_boxed_str());
        let (url, server) = serve_with(BODY, 2, Some(10), good);
        let dir = tempfile::tempdir().expect("tempdir");
        let f = file(&url, None);
        assert!(fetch(&f, &Source::Catalog, dir.path(), &OPTS, &mut |_, _| {}).is_err(), "cut short");
        assert!(dir.path().join("test.gguf.part.sha256").exists(), "the advertised checksum is kept for the resume");
        let got = fetch(&f, &Source::Catalog, dir.path(), &OPTS, &mut |_, _| {}).expect("resumed");
        server.join().expect("server");
        assert_eq!(got.verification, Verification::Recorded, "the server's SHA-256 checks the transfer, no more");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "the model and its record: {names:?}");
        assert_eq!(verification(dir.path(), &f), Verification::Recorded);

        let bad: &'static str = Box::leak(format!("X-Linked-ETag: \"{BODY_SHA}\"\r\n").into_boxed_str());
        let (url, server) = serve_with(BODY, 1, None, bad);
        let other = tempfile::tempdir().expect("tempdir");
        let e = fetch(&file(&url, None), &Source::Catalog, other.path(), &OPTS, &mut |_, _| {}).expect_err("mismatch");
        server.join().expect("server");
        assert!(matches!(e, FetchError::Checksum { .. }), "{e}");
    }

    #[test]
    fn a_wrong_checksum_removes_the_file() {
        let (url, server) = serve(BODY, 1, None);
        let dir = tempfile::tempdir().expect("tempdir");
        let e = fetch(&file(&url, Some(BODY_SHA.into())), &Source::Catalog, dir.path(), &OPTS, &mut |_, _| {})
            .expect_err("mismatch");
        server.join().expect("server");
        assert!(matches!(e, FetchError::Checksum { .. }));
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0, "nothing kept, nothing recorded");
    }

    /// A directory holding `models/test.gguf` (a USB stick), an empty model directory, and
    /// the catalog's file for it.
    fn on_a_stick() -> (tempfile::TempDir, tempfile::TempDir, ModelFile) {
        let usb = tempfile::tempdir().expect("usb");
        std::fs::create_dir(usb.path().join("models")).expect("models");
        std::fs::write(usb.path().join("models/test.gguf"), BODY).expect("file");
        let dir = tempfile::tempdir().expect("tempdir");
        let f = file("https://example.invalid/x/test.gguf", Some(sha(BODY)));
        (usb, dir, f)
    }

    #[test]
    fn remove_takes_the_file_its_part_and_its_record_and_never_a_links_target() {
        let (usb, dir, f) = on_a_stick();
        fetch(&f, &Source::Dir(usb.path().to_path_buf()), dir.path(), &OPTS, &mut |_, _| {}).expect("copied");
        std::fs::write(dir.path().join("test.gguf.part"), b"half").expect("part");
        let other = file("https://example.invalid/x/other.gguf", None);
        std::fs::write(dir.path().join("other.gguf"), b"other").expect("other");
        assert_eq!(remove(&f, dir.path()).expect("removed"), Some(BODY.len() as u64));
        let left: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(left, vec![CHECKSUMS.to_string(), "other.gguf".to_string()]);
        assert_eq!(verification(dir.path(), &f), Verification::Unverified);
        let text = std::fs::read_to_string(dir.path().join(CHECKSUMS)).expect("checksums");
        assert!(!text.contains("test.gguf"), "{text}");
        // Nothing there: nothing removed, no error.
        assert_eq!(remove(&f, dir.path()).expect("again"), None);
        // A link the admin put there goes; what it points to stays.
        std::os::unix::fs::symlink(usb.path().join("models/test.gguf"), dir.path().join("test.gguf")).expect("link");
        assert_eq!(remove(&f, dir.path()).expect("link removed"), Some(0));
        assert!(usb.path().join("models/test.gguf").is_file());
        assert_eq!(remove(&other, dir.path()).expect("other"), Some(5));
    }

    #[test]
    fn a_copy_from_a_directory_and_a_present_file_is_left_alone() {
        let (usb, dir, f) = on_a_stick();
        let got = fetch(&f, &Source::Dir(usb.path().to_path_buf()), dir.path(), &OPTS, &mut |_, _| {}).expect("copied");
        assert!(got.verification == Verification::Verified && !got.present);
        let again =
            fetch(&f, &Source::Dir(usb.path().to_path_buf()), dir.path(), &OPTS, &mut |_, _| {}).expect("present");
        assert!(again.present && again.verification == Verification::Verified);
        assert_eq!(verification(dir.path(), &f), Verification::Verified);
        let missing = fetch(
            &file("https://x/y/other.gguf", None),
            &Source::Dir(usb.path().into()),
            dir.path(),
            &OPTS,
            &mut |_, _| {},
        );
        assert!(matches!(missing, Err(FetchError::NotInDir { .. })));
    }

    #[test]
    fn a_server_error_is_named() {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/missing.gguf", l.local_addr().expect("addr"));
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().expect("accept");
            let mut r = std::io::BufReader::new(s.try_clone().expect("clone"));
            let mut line = String::new();
            while r.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").expect("write");
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let e = fetch(&file(&url, None), &Source::Catalog, dir.path(), &OPTS, &mut |_, _| {}).expect_err("404");
        h.join().expect("server");
        assert!(e.to_string().contains("404"), "{e}");
    }

    #[test]
    fn a_server_that_stops_sending_fails_with_the_part_kept_then_resumes() {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/models/test.gguf", l.local_addr().expect("addr"));
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let h = std::thread::spawn(move || {
            // First request: 10 bytes, then silence with the connection open.
            let (mut s, _) = l.accept().expect("accept");
            let mut r = std::io::BufReader::new(s.try_clone().expect("clone"));
            let mut line = String::new();
            while r.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", BODY.len());
            s.write_all(head.as_bytes()).expect("head");
            s.write_all(&BODY[..10]).expect("body");
            let _ = wait.recv();
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let quick = FetchOptions { connect: Duration::from_secs(5), stall: Duration::from_millis(300) };
        let f = file(&url, Some(sha(BODY)));
        let e = fetch(&f, &Source::Catalog, dir.path(), &quick, &mut |_, _| {}).expect_err("stalled");
        assert!(matches!(e, FetchError::Stalled { done: 10, .. }), "{e}");
        assert!(e.to_string().contains("run the pull again to resume"), "{e}");
        assert_eq!(std::fs::metadata(dir.path().join("test.gguf.part")).expect("part kept").len(), 10);
        let _ = release.send(());
        h.join().expect("server");
        let (url2, server) = serve(BODY, 1, None);
        let f2 = file(&url2, Some(sha(BODY)));
        fetch(&f2, &Source::Catalog, dir.path(), &OPTS, &mut |_, _| {}).expect("resumed");
        assert_eq!(server.join().expect("server"), ["range: bytes=10-"]);
        assert_eq!(std::fs::read(dir.path().join("test.gguf")).expect("read"), BODY);
    }

    #[test]
    fn a_link_planted_as_the_part_is_never_written_through() {
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").expect("victim");
        let models = dir.path().join("models");
        std::fs::create_dir(&models).expect("models");
        // A symbolic link as the part and as the server-hash file: replaced, not followed.
        std::os::unix::fs::symlink(&victim, models.join("test.gguf.part")).expect("symlink");
        std::os::unix::fs::symlink(&victim, models.join("test.gguf.part.sha256")).expect("symlink");
        let (url, server) = serve(BODY, 1, None);
        fetch(&file(&url, Some(sha(BODY))), &Source::Catalog, &models, &OPTS, &mut |_, _| {}).expect("fetched");
        server.join().expect("server");
        assert_eq!(std::fs::read(&victim).expect("victim"), b"precious");
        assert_eq!(std::fs::read(models.join("test.gguf")).expect("model"), BODY);
        // A hard link as the part: a resume would append to the victim; refused.
        std::fs::hard_link(&victim, models.join("other.gguf.part")).expect("hard link");
        let (url, server) = serve(BODY, 1, None);
        let other = file(&url.replace("test.gguf", "other.gguf"), None);
        let e = fetch(&other, &Source::Catalog, &models, &OPTS, &mut |_, _| {}).expect_err("refused");
        drop(server);
        assert!(matches!(e, FetchError::Unsafe { .. }), "{e}");
        assert_eq!(std::fs::read(&victim).expect("victim"), b"precious");
    }

    #[test]
    fn a_file_changed_after_it_was_recorded_is_unverified() {
        let (url, server) = serve(BODY, 1, None);
        let dir = tempfile::tempdir().expect("tempdir");
        let f = file(&url, None);
        let got = fetch(&f, &Source::Catalog, dir.path(), &OPTS, &mut |_, _| {}).expect("fetched");
        server.join().expect("server");
        assert_eq!(got.verification, Verification::Recorded);
        std::fs::write(dir.path().join("test.gguf"), b"something else entirely").expect("replace");
        assert_eq!(verification(dir.path(), &f), Verification::Unverified);
        assert_eq!(verification(dir.path(), &file("https://h/never.gguf", None)), Verification::Unverified);
    }

    #[test]
    fn a_url_whose_file_name_is_not_usable_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        for url in ["https://h/", "https://h/.hidden", "https://h/checksums.json"] {
            let e = fetch(&file(url, None), &Source::Catalog, dir.path(), &OPTS, &mut |_, _| {});
            assert!(matches!(e, Err(FetchError::Http { .. })), "{url}: {e:?}");
        }
    }
}
