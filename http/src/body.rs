//! A body that reports its end.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};

/// A body that runs `on_end` once, when it is finished, fails or is dropped (the client
/// went away): counts of requests in flight stay true whatever happens to the stream.
pub struct Tracked<B> {
    inner: B,
    on_end: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl<B> std::fmt::Debug for Tracked<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracked").field("ended", &self.on_end.is_none()).finish_non_exhaustive()
    }
}

impl<B> Tracked<B> {
    pub fn new(inner: B, on_end: impl FnOnce() + Send + Sync + 'static) -> Tracked<B> {
        Tracked { inner, on_end: Some(Box::new(on_end)) }
    }

    fn end(&mut self) {
        if let Some(f) = self.on_end.take() {
            f();
        }
    }
}

impl<B> Drop for Tracked<B> {
    fn drop(&mut self) {
        self.end();
    }
}

impl<B: hyper::body::Body<Data = Bytes> + Unpin> hyper::body::Body for Tracked<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.end();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn the_end_runs_once_whether_read_to_the_end_or_dropped() {
        let ends = Arc::new(AtomicUsize::new(0));
        let e = ends.clone();
        let body = Tracked::new(http_body_util::Full::new(Bytes::from_static(b"abc")), move || {
            e.fetch_add(1, Ordering::SeqCst);
        });
        let bytes = body.collect().await.expect("collect").to_bytes();
        assert_eq!(&bytes[..], b"abc");
        assert_eq!(ends.load(Ordering::SeqCst), 1);
        let e = ends.clone();
        drop(Tracked::new(http_body_util::Empty::<Bytes>::new(), move || {
            e.fetch_add(1, Ordering::SeqCst);
        }));
        assert_eq!(ends.load(Ordering::SeqCst), 2);
    }
}
