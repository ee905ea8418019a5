//! The server side of SPDY/3.1 as Kubernetes streaming uses it (moby's
//! spdystream is the reference): SYN_STREAM answered by SYN_REPLY, DATA
//! with FIN half-closes, RST_STREAM, PING echoed, GOAWAY. SETTINGS and
//! WINDOW_UPDATE are ignored (spdystream never relies on flow control).
//! Header blocks are zlib streams primed with the SPDY/3 dictionary, one
//! compression context per direction for the whole connection.

use std::collections::HashMap;

use bytes::{BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// Frames queued per stream before the connection's reader waits.
const STREAM_BUFFER: usize = 64;
/// The largest frame accepted (spdystream sends at most 16 KiB of data).
const MAX_FRAME: usize = 1 << 24;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const FLAG_FIN: u8 = 0x01;
/// RST_STREAM status CANCEL.
pub const CANCEL: u32 = 5;

/// A stream the client opened: its headers, what it sends, and a writer
/// for our side.
pub struct Stream {
    pub headers: HashMap<String, String>,
    /// Data from the client; ends at its FIN or a reset.
    pub incoming: mpsc::Receiver<Bytes>,
    pub writer: StreamWriter,
}

impl Stream {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }
}

enum Frame {
    Reply(u32),
    Data { id: u32, data: Bytes, fin: bool },
    Reset { id: u32, status: u32 },
    Ping(u32),
    GoAway,
}

/// Our half of one stream.
#[derive(Clone)]
pub struct StreamWriter {
    id: u32,
    frames: mpsc::Sender<Frame>,
}

impl StreamWriter {
    /// Sends data; false once the connection is gone.
    pub async fn send(&self, data: Bytes) -> bool {
        // Frames of at most 32 KiB, as spdystream writes them.
        let mut rest = data;
        while !rest.is_empty() {
            let chunk = rest.split_to(rest.len().min(32 * 1024));
            let frame = Frame::Data {
                id: self.id,
                data: chunk,
                fin: false,
            };
            if self.frames.send(frame).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Half-closes our side (DATA with FIN).
    pub async fn finish(&self) {
        let _ = self
            .frames
            .send(Frame::Data {
                id: self.id,
                data: Bytes::new(),
                fin: true,
            })
            .await;
    }

    /// Resets the stream.
    pub async fn reset(&self, status: u32) {
        let _ = self
            .frames
            .send(Frame::Reset {
                id: self.id,
                status,
            })
            .await;
    }
}

/// The connection's handle: streams as the client opens them, and a way
/// to end the connection.
pub struct Connection {
    pub streams: mpsc::Receiver<Stream>,
    frames: mpsc::Sender<Frame>,
}

impl Connection {
    /// Sends GOAWAY; the connection closes once every writer is done.
    pub async fn go_away(&self) {
        let _ = self.frames.send(Frame::GoAway).await;
    }
}

/// Starts serving SPDY on `io`: a reader and a writer task.
pub fn serve<IO>(io: IO) -> Connection
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read, write) = tokio::io::split(io);
    let (frames, frame_queue) = mpsc::channel(STREAM_BUFFER);
    let (stream_sender, streams) = mpsc::channel(16);
    tokio::spawn(write_frames(write, frame_queue));
    tokio::spawn(read_frames(read, frames.clone(), stream_sender));
    Connection { streams, frames }
}

async fn read_frames<R: AsyncRead + Unpin>(
    mut read: R,
    frames: mpsc::Sender<Frame>,
    streams: mpsc::Sender<Stream>,
) {
    let mut headers = HeaderReader::new();
    let mut open: HashMap<u32, mpsc::Sender<Bytes>> = HashMap::new();
    loop {
        let mut head = [0u8; 8];
        if read.read_exact(&mut head).await.is_err() {
            break;
        }
        let flags = head[4];
        let length = usize::from(head[5]) << 16 | usize::from(head[6]) << 8 | usize::from(head[7]);
        if length > MAX_FRAME {
            tracing::debug!(length, "spdy frame too large");
            break;
        }
        let mut payload = vec![0u8; length];
        if read.read_exact(&mut payload).await.is_err() {
            break;
        }
        let word = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        if word & 0x8000_0000 == 0 {
            // DATA
            let id = word & 0x7fff_ffff;
            if let Some(sender) = open.get(&id) {
                if !payload.is_empty() && sender.send(Bytes::from(payload)).await.is_err() {
                    open.remove(&id);
                }
            }
            if flags & FLAG_FIN != 0 {
                open.remove(&id);
            }
            continue;
        }
        let kind = u16::from_be_bytes([head[2], head[3]]);
        let id_at = |offset: usize| {
            payload
                .get(offset..offset + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0x7fff_ffff)
        };
        match kind {
            SYN_STREAM => {
                let Some(id) = id_at(0) else { break };
                let block = payload.get(10..).unwrap_or_default();
                let Some(parsed) = headers.read(block) else {
                    tracing::debug!("bad spdy header block");
                    break;
                };
                let (sender, incoming) = mpsc::channel(STREAM_BUFFER);
                if flags & FLAG_FIN == 0 {
                    open.insert(id, sender);
                }
                if frames.send(Frame::Reply(id)).await.is_err() {
                    break;
                }
                let stream = Stream {
                    headers: parsed,
                    incoming,
                    writer: StreamWriter {
                        id,
                        frames: frames.clone(),
                    },
                };
                if streams.send(stream).await.is_err() {
                    break;
                }
            }
            RST_STREAM => {
                if let Some(id) = id_at(0) {
                    open.remove(&id);
                }
            }
            PING => {
                let Some(b) = payload.get(0..4) else { break };
                let id = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                if frames.send(Frame::Ping(id)).await.is_err() {
                    break;
                }
            }
            GOAWAY => break,
            _ => {} // SETTINGS, WINDOW_UPDATE, HEADERS: nothing to do.
        }
    }
}

async fn write_frames<W: AsyncWrite + Unpin>(mut write: W, mut queue: mpsc::Receiver<Frame>) {
    let mut compressor = HeaderWriter::new();
    while let Some(frame) = queue.recv().await {
        let mut out = BytesMut::new();
        let mut control = |kind: u16, flags: u8, payload: &[u8]| {
            out.put_u16(0x8003);
            out.put_u16(kind);
            out.put_u8(flags);
            out.put_uint(payload.len() as u64, 3);
            out.put_slice(payload);
        };
        let mut go_away = false;
        match frame {
            Frame::Reply(id) => {
                let mut payload = id.to_be_bytes().to_vec();
                payload.extend(compressor.write(&[]));
                control(SYN_REPLY, 0, &payload);
            }
            Frame::Data { id, data, fin } => {
                out.put_u32(id & 0x7fff_ffff);
                out.put_u8(if fin { FLAG_FIN } else { 0 });
                out.put_uint(data.len() as u64, 3);
                out.put_slice(&data);
            }
            Frame::Reset { id, status } => {
                let mut payload = id.to_be_bytes().to_vec();
                payload.extend(status.to_be_bytes());
                control(RST_STREAM, 0, &payload);
            }
            Frame::Ping(id) => control(PING, 0, &id.to_be_bytes()),
            Frame::GoAway => {
                control(GOAWAY, 0, &[0; 8]);
                go_away = true;
            }
        }
        if write.write_all(&out).await.is_err() || write.flush().await.is_err() {
            return;
        }
        if go_away {
            let _ = write.shutdown().await;
            return;
        }
    }
    let _ = write.shutdown().await;
}

/// Inflates header blocks (one zlib context for the connection).
struct HeaderReader {
    inflate: Decompress,
}

impl HeaderReader {
    fn new() -> Self {
        Self {
            inflate: Decompress::new(true),
        }
    }

    fn inflate(&mut self, input: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(input.len() * 4 + 256);
        let mut consumed = 0;
        loop {
            let before = self.inflate.total_in();
            let result =
                self.inflate
                    .decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync);
            consumed += usize::try_from(self.inflate.total_in() - before).ok()?;
            match result {
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate.set_dictionary(&dictionary()).ok()?;
                    continue;
                }
                Err(_) => return None,
                Ok(_) => {}
            }
            if out.len() < out.capacity() && consumed >= input.len() {
                return Some(out);
            }
            if out.len() == out.capacity() {
                out.reserve(4096);
            } else if self.inflate.total_in() == before {
                return Some(out);
            }
        }
    }

    /// `[u32 n]` then n × (`[u32 len][name]`, `[u32 len][value]`).
    fn read(&mut self, block: &[u8]) -> Option<HashMap<String, String>> {
        let plain = self.inflate(block)?;
        let mut at = 0usize;
        let mut next = |len: usize| {
            let slice = plain.get(at..at + len)?;
            at += len;
            Some(slice)
        };
        let count = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let n = count(next(4)?);
        let mut headers = HashMap::new();
        for _ in 0..n {
            let len = count(next(4)?);
            let name = String::from_utf8_lossy(next(len)?).to_lowercase();
            let len = count(next(4)?);
            let value = String::from_utf8_lossy(next(len)?).into_owned();
            // Several values are NUL-joined; the first is what we use.
            let first = value.split('\0').next().unwrap_or("").to_string();
            headers.insert(name, first);
        }
        Some(headers)
    }
}

/// Deflates header blocks (one zlib context for the connection).
struct HeaderWriter {
    deflate: Compress,
}

impl HeaderWriter {
    fn new() -> Self {
        let mut deflate = Compress::new(Compression::default(), true);
        let _ = deflate.set_dictionary(&dictionary());
        Self { deflate }
    }

    fn write(&mut self, headers: &[(&str, &str)]) -> Vec<u8> {
        let mut plain = Vec::new();
        plain.extend((headers.len() as u32).to_be_bytes());
        for (name, value) in headers {
            plain.extend((name.len() as u32).to_be_bytes());
            plain.extend(name.as_bytes());
            plain.extend((value.len() as u32).to_be_bytes());
            plain.extend(value.as_bytes());
        }
        let mut out = Vec::with_capacity(plain.len() + 64);
        let mut consumed = 0;
        loop {
            let before = self.deflate.total_in();
            if self
                .deflate
                .compress_vec(&plain[consumed..], &mut out, FlushCompress::Sync)
                .is_err()
            {
                break;
            }
            consumed += usize::try_from(self.deflate.total_in() - before).unwrap_or(0);
            if consumed >= plain.len() && out.len() < out.capacity() {
                break;
            }
            out.reserve(256);
        }
        out
    }
}

/// The SPDY/3 header compression dictionary (draft-mbelshe-httpbis-spdy,
/// section 2.6.10.1): length-prefixed common header names and values,
/// then a run of common strings.
fn dictionary() -> Vec<u8> {
    const WORDS: &[&str] = &[
        "options",
        "head",
        "post",
        "put",
        "delete",
        "trace",
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "accept-ranges",
        "age",
        "allow",
        "authorization",
        "cache-control",
        "connection",
        "content-base",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-md5",
        "content-range",
        "content-type",
        "date",
        "etag",
        "expect",
        "expires",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "last-modified",
        "location",
        "max-forwards",
        "pragma",
        "proxy-authenticate",
        "proxy-authorization",
        "range",
        "referer",
        "retry-after",
        "server",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "vary",
        "via",
        "warning",
        "www-authenticate",
        "method",
        "get",
        "status",
        "200 OK",
        "version",
        "HTTP/1.1",
        "url",
        "public",
        "set-cookie",
        "keep-alive",
        "origin",
    ];
    const TAIL: &str = "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.";
    let mut out = Vec::with_capacity(1424);
    for word in WORDS {
        out.extend((word.len() as u32).to_be_bytes());
        out.extend(word.as_bytes());
    }
    out.extend(TAIL.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionary_has_the_spec_length() {
        // The SPDY/3 dictionary is 1423 bytes.
        assert_eq!(dictionary().len(), 1423);
    }

    #[test]
    fn header_blocks_round_trip_across_one_context_per_direction() {
        let mut writer = HeaderWriter::new();
        let mut reader = HeaderReader::new();
        for i in 0..3 {
            let port = format!("80{i}");
            let block = writer.write(&[("streamtype", "data"), ("port", &port)]);
            let headers = reader.read(&block).unwrap_or_default();
            assert_eq!(headers.get("streamtype").map(String::as_str), Some("data"));
            assert_eq!(headers.get("port"), Some(&port));
        }
    }

    #[tokio::test]
    async fn a_stream_is_replied_to_and_carries_data_both_ways() {
        let (client, server) = tokio::io::duplex(1 << 16);
        let mut connection = serve(server);
        let (mut read, mut write) = tokio::io::split(client);
        let mut writer = HeaderWriter::new();
        let block = writer.write(&[("streamtype", "data")]);
        let mut frame = BytesMut::new();
        frame.put_u16(0x8003);
        frame.put_u16(SYN_STREAM);
        frame.put_u8(0);
        frame.put_uint((10 + block.len()) as u64, 3);
        frame.put_u32(1);
        frame.put_u32(0);
        frame.put_u16(0);
        frame.put_slice(&block);
        frame.put_u32(1);
        frame.put_u8(FLAG_FIN);
        frame.put_uint(5, 3);
        frame.put_slice(b"hello");
        write.write_all(&frame).await.unwrap_or_default();
        let Some(mut stream) = connection.streams.recv().await else {
            panic!("no stream was accepted");
        };
        assert_eq!(stream.header("streamtype"), "data");
        assert_eq!(stream.incoming.recv().await.as_deref(), Some(&b"hello"[..]));
        assert!(stream.incoming.recv().await.is_none(), "FIN ends the input");
        stream.writer.send(Bytes::from_static(b"back")).await;
        let mut reader = HeaderReader::new();
        // SYN_REPLY first.
        let mut head = [0u8; 8];
        read.read_exact(&mut head).await.unwrap_or_default();
        assert_eq!(u16::from_be_bytes([head[2], head[3]]), SYN_REPLY);
        let mut payload = vec![0u8; usize::from(head[7])];
        read.read_exact(&mut payload).await.unwrap_or_default();
        assert!(reader.read(&payload[4..]).is_some());
        read.read_exact(&mut head).await.unwrap_or_default();
        assert_eq!(u32::from_be_bytes([head[0], head[1], head[2], head[3]]), 1);
        let mut data = [0u8; 4];
        read.read_exact(&mut data).await.unwrap_or_default();
        assert_eq!(&data, b"back");
    }
}
