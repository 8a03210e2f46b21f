//! Fetching model files: from the catalog's URL or from a local directory (a USB stick).
//!
//! A download goes to `NAME.part` beside its destination and resumes from there with an HTTP
//! range request; the file is checked (SHA-256 when the catalog has one, else the SHA-256 the
//! server states, as Hugging Face does in `X-Linked-ETag`; its size when the catalog has that)
//! and renamed into place only when it is whole. A copy from a directory
//! goes the same way. A destination that is already there and checks out is left alone.
//!
//! Progress is reported through a callback with the bytes done and the total when known, so
//! a console wizard, a progress bar or a log line can show it.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::catalog::{Model, ModelFile};

/// Where a model file comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The URL the catalog gives.
    Catalog,
    /// A directory holding files with the catalog's file names (`*.gguf`).
    Dir(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: {message}")]
    Http { url: String, message: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{file}: not in {dir} (looked for {name})")]
    NotInDir { file: String, dir: PathBuf, name: String },
    #[error("{path}: SHA-256 is {actual}, the catalog says {expected}: the file was removed")]
    Checksum { path: PathBuf, expected: String, actual: String },
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
    /// The SHA-256 was checked (the catalog has one for this file).
    pub verified: bool,
}

/// The file name a catalog URL is stored under.
pub fn file_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

/// The file of `model` to fetch: the first one listed (the catalog lists the preferred
/// quantization first) unless `quant` names another.
pub fn choose_file<'a>(model: &'a Model, quant: Option<&str>) -> Option<&'a ModelFile> {
    match quant {
        Some(q) => model.files.iter().find(|f| f.quant.eq_ignore_ascii_case(q)),
        None => model.files.first(),
    }
}

/// Fetch `file` into `model_dir`, reporting `(done, total)` as it goes.
pub fn fetch(
    file: &ModelFile,
    source: &Source,
    model_dir: &Path,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<Fetched, FetchError> {
    let name = file_name(&file.url);
    let dest = model_dir.join(name);
    std::fs::create_dir_all(model_dir).map_err(|source| FetchError::Io { path: model_dir.to_path_buf(), source })?;
    if dest.is_file() {
        if let Ok(f) = check(&dest, file) {
            progress(f.bytes, Some(f.bytes));
            return Ok(Fetched { present: true, ..f });
        }
    }
    let part = model_dir.join(format!("{name}.part"));
    // The SHA-256 the server gave for the file, kept beside the part so a resumed download
    // is checked against the same one.
    let advertised = model_dir.join(format!("{name}.part.sha256"));
    match source {
        Source::Catalog => download(&file.url, &part, file.bytes, &advertised, progress)?,
        Source::Dir(dir) => copy_from(dir, name, &file.url, &part, progress)?,
    }
    let mut want = file.clone();
    if want.sha256.is_none() {
        want.sha256 = std::fs::read_to_string(&advertised).ok().map(|s| s.trim().to_string()).filter(|s| is_sha256(s));
    }
    let result = check(&part, &want);
    let _ = std::fs::remove_file(&advertised);
    let fetched = match result {
        Ok(f) => f,
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            return Err(e);
        }
    };
    std::fs::rename(&part, &dest).map_err(|source| FetchError::Io { path: dest.clone(), source })?;
    Ok(Fetched { path: dest, ..fetched })
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
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

/// Check a whole file against the catalog: SHA-256 when known, else size when known.
fn check(path: &Path, file: &ModelFile) -> Result<Fetched, FetchError> {
    let io = |source| FetchError::Io { path: path.to_path_buf(), source };
    let bytes = std::fs::metadata(path).map_err(io)?.len();
    if let Some(expected) = file.bytes {
        if bytes != expected {
            return Err(FetchError::Size { path: path.to_path_buf(), expected, actual: bytes });
        }
    }
    let Some(expected) = &file.sha256 else {
        return Ok(Fetched { path: path.to_path_buf(), bytes, present: false, verified: false });
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let actual: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    if !actual.eq_ignore_ascii_case(expected) {
        return Err(FetchError::Checksum { path: path.to_path_buf(), expected: expected.clone(), actual });
    }
    Ok(Fetched { path: path.to_path_buf(), bytes, present: false, verified: true })
}

fn download(
    url: &str,
    part: &Path,
    expected: Option<u64>,
    advertised: &Path,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<(), FetchError> {
    let http = |message: String| FetchError::Http { url: url.to_string(), message };
    let io = |source| FetchError::Io { path: part.to_path_buf(), source };
    let have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    if expected.is_some_and(|e| have >= e) && have > 0 {
        return Ok(());
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
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
        206 if have > 0 => (have, std::fs::OpenOptions::new().append(true).open(part).map_err(io)?),
        200 => (0, std::fs::File::create(part).map_err(io)?),
        // The part is already whole: the server has nothing beyond it.
        416 if have > 0 => return Ok(()),
        s => return Err(http(format!("the server answered {s}"))),
    };
    if let Some(sha) = advertised_sha256(resp.headers()) {
        if !advertised.exists() {
            std::fs::write(advertised, &sha)
                .map_err(|source| FetchError::Io { path: advertised.to_path_buf(), source })?;
        }
    }
    let total = expected.or(length.map(|l| l + done));
    progress(done, total);
    let mut body = resp.into_body().into_reader();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = body.read(&mut buf).map_err(|e| http(format!("transfer stopped after {done} bytes: {e}")))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).map_err(io)?;
        done += n as u64;
        progress(done, total);
    }
    out.sync_all().map_err(io)?;
    if let Some(l) = length {
        let got = done - if status == 206 { have } else { 0 };
        if got < l {
            return Err(http(format!("the transfer ended after {got} of {l} bytes; run again to resume")));
        }
    }
    Ok(())
}

fn copy_from(
    dir: &Path,
    name: &str,
    url: &str,
    part: &Path,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<(), FetchError> {
    let src = [dir.join(name), dir.join("models").join(name)].into_iter().find(|p| p.is_file()).ok_or_else(|| {
        FetchError::NotInDir { file: url.to_string(), dir: dir.to_path_buf(), name: name.to_string() }
    })?;
    let mut from = std::fs::File::open(&src).map_err(|source| FetchError::Io { path: src.clone(), source })?;
    let total = from.metadata().map(|m| m.len()).ok();
    let mut out = std::fs::File::create(part).map_err(|source| FetchError::Io { path: part.to_path_buf(), source })?;
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    progress(0, total);
    loop {
        let n = from.read(&mut buf).map_err(|source| FetchError::Io { path: src.clone(), source })?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).map_err(|source| FetchError::Io { path: part.to_path_buf(), source })?;
        done += n as u64;
        progress(done, total);
    }
    out.sync_all().map_err(|source| FetchError::Io { path: part.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead as _;
    use std::net::TcpListener;

    const BODY: &[u8] = b"GGUF model bytes, a stand-in for a real file's contents.";
    const BODY_SHA: &str = "5d0a1d7b1f1b4b9a5e1d0e0f3a1b0c6f1d0a9d7b1f1b4b9a5e1d0e0f3a1b0c6f";

    fn sha(b: &[u8]) -> String {
        Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
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

    fn file(url: &str, sha256: Option<String>) -> ModelFile {
        ModelFile { quant: "F16".into(), url: url.into(), bytes: None, sha256 }
    }

    #[test]
    fn a_download_is_checked_and_renamed_into_place() {
        let (url, server) = serve(BODY, 1, None);
        let dir = tempfile::tempdir().expect("tempdir");
        let mut seen = Vec::new();
        let f = fetch(&file(&url, Some(sha(BODY))), &Source::Catalog, dir.path(), &mut |d, t| seen.push((d, t)))
            .expect("fetched");
        server.join().expect("server");
        assert!(f.verified && !f.present);
        assert_eq!(std::fs::read(dir.path().join("test.gguf")).expect("read"), BODY);
        assert_eq!(seen.last(), Some(&(BODY.len() as u64, Some(BODY.len() as u64))));
        assert!(!dir.path().join("test.gguf.part").exists());
    }

    #[test]
    fn an_interrupted_download_resumes_with_a_range_request() {
        let (url, server) = serve(BODY, 2, Some(10));
        let dir = tempfile::tempdir().expect("tempdir");
        let f = file(&url, Some(sha(BODY)));
        let first = fetch(&f, &Source::Catalog, dir.path(), &mut |_, _| {});
        assert!(matches!(first, Err(FetchError::Http { .. })), "{first:?}");
        assert_eq!(std::fs::metadata(dir.path().join("test.gguf.part")).expect("part").len(), 10);
        fetch(&f, &Source::Catalog, dir.path(), &mut |_, _| {}).expect("resumed");
        assert_eq!(server.join().expect("server"), ["range: bytes=10-"]);
        assert_eq!(std::fs::read(dir.path().join("test.gguf")).expect("read"), BODY);
    }

    #[test]
    fn without_a_catalog_checksum_the_servers_sha256_is_checked_across_a_resume() {
        let good: &'static str = Box::leak(format!("X-Linked-ETag: \"{}\"\r\n", sha(BODY)).into_boxed_str());
        let (url, server) = serve_with(BODY, 2, Some(10), good);
        let dir = tempfile::tempdir().expect("tempdir");
        let f = file(&url, None);
        assert!(fetch(&f, &Source::Catalog, dir.path(), &mut |_, _| {}).is_err(), "cut short");
        assert!(dir.path().join("test.gguf.part.sha256").exists(), "the advertised checksum is kept for the resume");
        let got = fetch(&f, &Source::Catalog, dir.path(), &mut |_, _| {}).expect("resumed");
        server.join().expect("server");
        assert!(got.verified, "checked against the server's SHA-256");
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 1, "only the model is left");

        let bad: &'static str = Box::leak(format!("X-Linked-ETag: \"{BODY_SHA}\"\r\n").into_boxed_str());
        let (url, server) = serve_with(BODY, 1, None, bad);
        let other = tempfile::tempdir().expect("tempdir");
        let e = fetch(&file(&url, None), &Source::Catalog, other.path(), &mut |_, _| {}).expect_err("mismatch");
        server.join().expect("server");
        assert!(matches!(e, FetchError::Checksum { .. }), "{e}");
    }

    #[test]
    fn a_wrong_checksum_removes_the_file() {
        let (url, server) = serve(BODY, 1, None);
        let dir = tempfile::tempdir().expect("tempdir");
        let e = fetch(&file(&url, Some(BODY_SHA.into())), &Source::Catalog, dir.path(), &mut |_, _| {})
            .expect_err("mismatch");
        server.join().expect("server");
        assert!(matches!(e, FetchError::Checksum { .. }));
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
    }

    #[test]
    fn a_copy_from_a_directory_and_a_present_file_is_left_alone() {
        let usb = tempfile::tempdir().expect("usb");
        std::fs::create_dir(usb.path().join("models")).expect("models");
        std::fs::write(usb.path().join("models/test.gguf"), BODY).expect("file");
        let dir = tempfile::tempdir().expect("tempdir");
        let f = file("https://example.invalid/x/test.gguf", Some(sha(BODY)));
        let got = fetch(&f, &Source::Dir(usb.path().to_path_buf()), dir.path(), &mut |_, _| {}).expect("copied");
        assert!(got.verified && !got.present);
        let again = fetch(&f, &Source::Dir(usb.path().to_path_buf()), dir.path(), &mut |_, _| {}).expect("present");
        assert!(again.present);
        let missing =
            fetch(&file("https://x/y/other.gguf", None), &Source::Dir(usb.path().into()), dir.path(), &mut |_, _| {});
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
        let e = fetch(&file(&url, None), &Source::Catalog, dir.path(), &mut |_, _| {}).expect_err("404");
        h.join().expect("server");
        assert!(e.to_string().contains("404"), "{e}");
    }
}
