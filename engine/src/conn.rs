//! One client connection: reads and frames requests under the head/body limits and timeouts,
//! hands each to the pipeline in order, and writes responses. Pipelined requests are answered
//! in order; responses are batched in one output buffer and flushed whenever the connection
//! would otherwise wait for more input, so a burst of pipelined requests costs one write.

use std::rc::Rc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use monoio::net::TcpStream;
use tollgate_protocol::http::{
    write_chunk, write_last_chunk, write_response_head, BodyChunk, BodyDecoder, BodyFraming,
    HttpError, RequestHead, Version,
};

use crate::error::GatewayError;
use crate::io::{read_some, write_all_buf};
use crate::pipeline::{self, ClientFormat};
use crate::worker::{Core, CoreState};

/// Initial read buffer per connection; grows only for large requests.
const READ_BUF: usize = 4096;

/// Response bodies up to this size are copied into the output buffer (one write for head and
/// body, batched with pipelined responses); larger ones are written from their own buffer.
const INLINE_BODY_MAX: usize = 16 * 1024;

/// The client side of a connection.
#[derive(Debug)]
pub struct Downstream {
    stream: TcpStream,
    rbuf: BytesMut,
    out: BytesMut,
    /// The request being answered: every response head carries its `x-request-id`.
    request_id: Option<crate::trace::RequestId>,
    /// Status of the last response head written (0 before any).
    last_status: u16,
    /// The request being answered already has its access-log line (a model request's).
    logged: bool,
}

/// How a response body is framed to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamFraming {
    /// `transfer-encoding: chunked` (HTTP/1.1 clients).
    Chunked,
    /// Body ends when the connection closes (HTTP/1.0 clients).
    UntilClose,
}

enum HeadRead {
    Head(RequestHead),
    Closed,
    Error(GatewayError),
}

/// Serve one accepted connection until it closes.
pub async fn serve_connection(state: Rc<CoreState>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut conn = Downstream {
        stream,
        rbuf: BytesMut::with_capacity(READ_BUF),
        out: BytesMut::new(),
        request_id: None,
        last_status: 0,
        logged: false,
    };
    loop {
        let head = match conn.read_head(&state).await {
            HeadRead::Head(head) => head,
            HeadRead::Closed => break,
            HeadRead::Error(e) => {
                conn.write_error(&e, false, Version::Http11, ClientFormat::OpenAi);
                let _ = conn.flush().await;
                break;
            }
        };
        let in_flight = state.begin_request();
        // The request runs under the config generation in force now, whatever reloads happen
        // before it ends.
        let core = state.pin();
        // Boxed: the pipeline's state machine (upstream connect, TLS handshake, stream relay)
        // is several KiB, and only a connection with a request in flight should carry it; an
        // idle keep-alive connection holds just its buffers and this loop.
        let keep_alive = Box::pin(pipeline::handle(&core, &mut conn, head)).await;
        drop(core);
        drop(in_flight);
        // A malformed next head is answered without this request's id.
        conn.set_request_id(None);
        conn.last_status = 0;
        if !keep_alive {
            let _ = conn.flush().await;
            break;
        }
    }
}

// === impl Downstream ===

impl Downstream {
    /// Names the request now being answered (`None` before one is read).
    pub fn set_request_id(&mut self, id: Option<crate::trace::RequestId>) {
        self.request_id = id;
    }

    /// Records that the request being answered has had its access-log line written.
    pub fn mark_logged(&mut self) {
        self.logged = true;
    }

    /// Whether the request being answered had its access-log line written; resets it for the
    /// next request.
    pub fn take_logged(&mut self) -> bool {
        std::mem::take(&mut self.logged)
    }

    /// Status of the last response head queued on this connection (0 when none was).
    pub fn last_status(&self) -> u16 {
        self.last_status
    }

    /// The request now being answered, if one is.
    pub fn request_id(&self) -> Option<&crate::trace::RequestId> {
        self.request_id.as_ref()
    }

    async fn read_head(&mut self, core: &CoreState) -> HeadRead {
        let generation = core.current();
        let server = &generation.shared.config.server;
        let limits = &generation.shared.client_limits;
        // The head deadline runs from the first byte of this head, so a client trickling one
        // byte at a time cannot hold the connection past `header_read_timeout`.
        let mut deadline: Option<Instant> = None;
        loop {
            if !self.rbuf.is_empty() {
                match RequestHead::parse(&mut self.rbuf, limits) {
                    Ok(Some(head)) => return HeadRead::Head(head),
                    Ok(None) => {}
                    Err(e) => return HeadRead::Error(e.into()),
                }
                deadline.get_or_insert_with(|| Instant::now() + server.header_read_timeout);
            }
            // Everything answered so far goes out before we wait for more input.
            if self.flush().await.is_err() {
                return HeadRead::Closed;
            }
            if core.draining.get() && deadline.is_none() {
                return HeadRead::Closed;
            }
            let wait = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => server.keepalive_timeout,
            };
            match monoio::time::timeout(wait, read_some(&mut self.stream, &mut self.rbuf)).await {
                Err(_) if deadline.is_some() => {
                    return HeadRead::Error(GatewayError::ClientTimeout(server.header_read_timeout))
                }
                Err(_) | Ok(Ok(0)) | Ok(Err(_)) => return HeadRead::Closed,
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Read the whole request body (bounded by the body limit and timeout). Sends
    /// `100 Continue` first when the client asked for it and the body is not here yet.
    pub async fn read_body(
        &mut self,
        head: &RequestHead,
        core: &Core<'_>,
    ) -> Result<Bytes, GatewayError> {
        if head.framing == BodyFraming::Empty {
            return Ok(Bytes::new());
        }
        let limits = &core.shared().client_limits;
        let timeout = core.shared().config.server.body_read_timeout;
        let mut decoder = BodyDecoder::new(head.framing, limits.max_body_bytes)?;
        let deadline = Instant::now() + timeout;
        let mut continue_sent = !head.expect_continue;
        let mut first: Option<Bytes> = None;
        let mut rest: Option<BytesMut> = None;
        loop {
            match decoder.decode(&mut self.rbuf)? {
                BodyChunk::Data(data) => match (&first, &mut rest) {
                    (None, _) => first = Some(data),
                    (Some(f), None) => {
                        let mut all = BytesMut::with_capacity((f.len() + data.len()) * 2);
                        all.extend_from_slice(f);
                        all.extend_from_slice(&data);
                        rest = Some(all);
                    }
                    (Some(_), Some(all)) => all.extend_from_slice(&data),
                },
                BodyChunk::Done => break,
                BodyChunk::NeedMore => {
                    if !continue_sent {
                        self.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                        continue_sent = true;
                    }
                    self.flush()
                        .await
                        .map_err(|_| GatewayError::Http(HttpError::UnexpectedEof))?;
                    let wait = deadline.saturating_duration_since(Instant::now());
                    match monoio::time::timeout(wait, read_some(&mut self.stream, &mut self.rbuf))
                        .await
                    {
                        Err(_) => return Err(GatewayError::ClientTimeout(timeout)),
                        Ok(Ok(0)) | Ok(Err(_)) => {
                            return Err(GatewayError::Http(HttpError::UnexpectedEof))
                        }
                        Ok(Ok(_)) => {}
                    }
                }
            }
        }
        Ok(match (first, rest) {
            (_, Some(all)) => all.freeze(),
            (Some(one), None) => one,
            (None, None) => Bytes::new(),
        })
    }

    /// Queue a complete response. Small bodies are batched into the output buffer; large ones
    /// are written straight from their own buffer (after what is queued).
    pub async fn respond(
        &mut self,
        status: u16,
        content_type: &[u8],
        extra: &[(&str, &[u8])],
        body: Bytes,
        keep_alive: bool,
        version: Version,
    ) -> std::io::Result<()> {
        self.write_head(
            status,
            content_type,
            extra,
            Some(body.len()),
            keep_alive,
            version,
        );
        if body.len() <= INLINE_BODY_MAX {
            self.out.extend_from_slice(&body);
            return Ok(());
        }
        self.flush().await?;
        use monoio::io::AsyncWriteRentExt;
        self.stream.write_all(body).await.0.map(|_| ())
    }

    /// Queue an error response with its body in the client's format (OpenAI or Anthropic).
    pub fn write_error(
        &mut self,
        e: &GatewayError,
        keep_alive: bool,
        version: Version,
        format: ClientFormat,
    ) {
        let mut body = BytesMut::with_capacity(256);
        match format {
            ClientFormat::OpenAi => e.write_json(&mut body),
            ClientFormat::Anthropic => tollgate_protocol::anthropic_api::encode_error(
                tollgate_protocol::anthropic_api::error_type_for(e.error_type(), e.status()),
                &e.to_string(),
                &mut body,
            ),
        }
        let headers = e.headers();
        let extra: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (*n, &v[..])).collect();
        let extra = &extra[..];
        self.write_head(
            e.status(),
            b"application/json",
            extra,
            Some(body.len()),
            keep_alive,
            version,
        );
        self.out.extend_from_slice(&body);
    }

    /// Queue the head of a streamed response. Returns how its body will be framed.
    pub fn start_stream(
        &mut self,
        status: u16,
        content_type: &[u8],
        extra: &[(&str, &[u8])],
        keep_alive: bool,
        version: Version,
    ) -> StreamFraming {
        if version == Version::Http10 {
            self.write_head(status, content_type, extra, None, false, version);
            StreamFraming::UntilClose
        } else {
            self.write_head(status, content_type, extra, None, keep_alive, version);
            StreamFraming::Chunked
        }
    }

    /// Queue one piece of a streamed body.
    pub fn stream_data(&mut self, framing: StreamFraming, data: &[u8]) {
        match framing {
            StreamFraming::Chunked => write_chunk(&mut self.out, data),
            StreamFraming::UntilClose => self.out.extend_from_slice(data),
        }
    }

    /// Queue the end of a streamed body.
    pub fn end_stream(&mut self, framing: StreamFraming) {
        if framing == StreamFraming::Chunked {
            write_last_chunk(&mut self.out);
        }
    }

    fn write_head(
        &mut self,
        status: u16,
        content_type: &[u8],
        extra: &[(&str, &[u8])],
        content_length: Option<usize>,
        keep_alive: bool,
        version: Version,
    ) {
        self.last_status = status;
        let mut len_buf = itoa::Buffer::new();
        let mut headers: [(&str, &[u8]); 12] = [("", b""); 12];
        let mut n = 0;
        headers[n] = ("content-type", content_type);
        n += 1;
        if let Some(id) = &self.request_id {
            headers[n] = ("x-request-id", id.as_bytes());
            n += 1;
        }
        match content_length {
            Some(len) => headers[n] = ("content-length", len_buf.format(len).as_bytes()),
            None if version == Version::Http11 => headers[n] = ("transfer-encoding", b"chunked"),
            None => headers[n] = ("cache-control", b"no-cache"),
        }
        n += 1;
        if content_length.is_none() && version == Version::Http11 {
            headers[n] = ("cache-control", b"no-cache");
            n += 1;
        }
        if !keep_alive {
            headers[n] = ("connection", b"close");
            n += 1;
        } else if version == Version::Http10 {
            headers[n] = ("connection", b"keep-alive");
            n += 1;
        }
        for h in extra.iter().take(headers.len() - n) {
            headers[n] = *h;
            n += 1;
        }
        write_response_head(&mut self.out, status, &headers[..n]);
    }

    /// Write everything queued.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        write_all_buf(&mut self.stream, &mut self.out).await
    }
}
