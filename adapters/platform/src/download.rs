//! Reading a downloaded attachment's body without ever holding more than the caller allows:
//! a declared size (`Content-Length`) over the cap is refused before any byte is read, and the
//! body is counted while it streams, so a host that declares nothing, or lies, is cut off at
//! the cap. Generic over the byte stream, so the contract needs no HTTP client: an adapter
//! hands in reqwest's `bytes_stream()` or a hyper body's data stream.

use futures_util::{Stream, StreamExt};

use crate::PlatformError;

/// Reads `body` whole, refusing more than `max_bytes` with [`PlatformError::TooLarge`]:
/// at once when `declared` (the size the host announced) is over it, else as soon as the
/// bytes read pass it. A chunk the stream fails to deliver becomes `on_error(e)`.
pub async fn read_capped<S, B, E>(
    body: S,
    declared: Option<u64>,
    max_bytes: u64,
    on_error: impl Fn(E) -> PlatformError,
) -> Result<Vec<u8>, PlatformError>
where
    S: Stream<Item = Result<B, E>>,
    B: AsRef<[u8]>,
{
    if let Some(size) = declared.filter(|&size| size > max_bytes) {
        return Err(PlatformError::TooLarge {
            size,
            limit: max_bytes,
        });
    }
    let mut body = std::pin::pin!(body);
    let mut bytes = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(&on_error)?;
        let chunk = chunk.as_ref();
        let size = (bytes.len() + chunk.len()) as u64;
        if size > max_bytes {
            return Err(PlatformError::TooLarge {
                size,
                limit: max_bytes,
            });
        }
        bytes.extend_from_slice(chunk);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use futures_util::stream;

    use super::*;

    /// A body delivered in `chunks`.
    fn body(chunks: &[&'static [u8]]) -> impl Stream<Item = Result<&'static [u8], String>> {
        stream::iter(chunks.iter().map(|c| Ok(*c)).collect::<Vec<_>>())
    }

    fn transport(e: String) -> PlatformError {
        PlatformError::Transport(e)
    }

    #[tokio::test]
    async fn a_body_within_the_cap_is_read_whole() {
        let read = read_capped(body(&[b"hello ", b"world"]), Some(11), 11, transport).await;
        assert_eq!(read.unwrap(), b"hello world");
        let undeclared = read_capped(body(&[b"ab", b"", b"c"]), None, 100, transport).await;
        assert_eq!(undeclared.unwrap(), b"abc");
    }

    #[tokio::test]
    async fn a_declared_size_over_the_cap_is_refused_before_reading() {
        let never = stream::iter(Vec::<Result<&'static [u8], String>>::new())
            .chain(stream::once(async { panic!("the body was read") }));
        match read_capped(never, Some(1_001), 1_000, transport).await {
            Err(PlatformError::TooLarge { size, limit }) => {
                assert_eq!((size, limit), (1_001, 1_000))
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_body_longer_than_declared_is_cut_off_at_the_cap() {
        match read_capped(body(&[b"1234", b"5678"]), Some(4), 6, transport).await {
            Err(PlatformError::TooLarge { size, limit }) => assert_eq!((size, limit), (8, 6)),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_failed_chunk_is_the_callers_error() {
        let failing = stream::iter(vec![Ok(&b"ab"[..]), Err("reset".to_string())]);
        match read_capped(failing, None, 100, transport).await {
            Err(PlatformError::Transport(e)) => assert_eq!(e, "reset"),
            other => panic!("{other:?}"),
        }
    }
}
