//! A container's stdin and terminal, as its monitor holds them, and the
//! socket through which `kubectl attach` reaches them (conmon's attach
//! socket, in a simpler form).
//!
//! The monitor keeps the container's stdin open between attaches: the
//! write end of a pipe, or the master of the container's terminal. Each
//! connection to `<bundle>/attach.sock` is one attach session sending
//! frames: stdin bytes, terminal sizes, the end of its stdin. Output does
//! not go through the socket: attach follows the container's log.
//!
//! With `stdinOnce`, the container's stdin closes when the first session
//! ends: the pipe's write end is closed and the process reads EOF. On a
//! terminal the session only detaches, as containerd does (it closes stdin
//! only for `stdinOnce && !tty`); a shell usually exits by itself.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The socket's name in the bundle.
pub const SOCKET: &str = "attach.sock";

const STDIN: u8 = 0;
const RESIZE: u8 = 1;
const CLOSE_STDIN: u8 = 2;
/// A frame larger than this is a broken client.
const MAX_FRAME: usize = 1 << 20;

/// What an attach session sends to the monitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Stdin(Vec<u8>),
    Resize { width: u16, height: u16 },
    /// The client's stdin ended.
    CloseStdin,
}

impl Frame {
    /// `[kind][length: u32 big-endian][payload]`.
    pub fn encode(&self) -> Vec<u8> {
        let (kind, payload) = match self {
            Frame::Stdin(data) => (STDIN, data.clone()),
            Frame::Resize { width, height } => {
                let mut size = width.to_be_bytes().to_vec();
                size.extend_from_slice(&height.to_be_bytes());
                (RESIZE, size)
            }
            Frame::CloseStdin => (CLOSE_STDIN, Vec::new()),
        };
        let mut frame = Vec::with_capacity(payload.len() + 5);
        frame.push(kind);
        frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        frame.extend_from_slice(&payload);
        frame
    }

    /// The next frame, `None` at the end of the stream.
    pub fn read(input: &mut impl Read) -> std::io::Result<Option<Frame>> {
        let mut header = [0u8; 5];
        match input.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let length = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        if length > MAX_FRAME {
            return Err(std::io::Error::other(format!("attach frame of {length} bytes")));
        }
        let mut payload = vec![0u8; length];
        input.read_exact(&mut payload)?;
        Ok(Some(match header[0] {
            STDIN => Frame::Stdin(payload),
            RESIZE if length == 4 => Frame::Resize {
                width: u16::from_be_bytes([payload[0], payload[1]]),
                height: u16::from_be_bytes([payload[2], payload[3]]),
            },
            CLOSE_STDIN => Frame::CloseStdin,
            kind => {
                return Err(std::io::Error::other(format!(
                    "unknown attach frame kind {kind} ({length} bytes)"
                )))
            }
        }))
    }
}

/// The container's input side, as the monitor holds it.
pub struct Stdin {
    /// Where stdin bytes go; `None` once closed.
    sink: Mutex<Option<File>>,
    /// The terminal's master, for sizes.
    terminal: Option<OwnedFd>,
    once: bool,
}

impl Stdin {
    /// `sink` is the pipe's write end or a dup of the terminal's master;
    /// `terminal` another dup of the master when there is one.
    pub fn new(sink: Option<File>, terminal: Option<OwnedFd>, once: bool) -> Arc<Self> {
        Arc::new(Self {
            sink: Mutex::new(sink),
            terminal,
            once,
        })
    }

    fn write(&self, data: &[u8]) {
        let Ok(mut sink) = self.sink.lock() else { return };
        if let Some(file) = sink.as_mut() {
            if file.write_all(data).is_err() {
                // The container closed its stdin: nothing reads any more.
                *sink = None;
            }
        }
    }

    fn resize(&self, width: u16, height: u16) {
        if let Some(master) = &self.terminal {
            let size = rustix::termios::Winsize {
                ws_row: height,
                ws_col: width,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            let _ = rustix::termios::tcsetwinsize(master.as_fd(), size);
        }
    }

    /// A session ended: with `stdinOnce` (and no terminal) the
    /// container's stdin goes.
    fn session_ended(&self) {
        if self.once && self.terminal.is_none() {
            if let Ok(mut sink) = self.sink.lock() {
                sink.take();
            }
        }
    }

    /// One session: frames until the client's stdin ends or it goes.
    fn serve_session(&self, mut connection: UnixStream) {
        loop {
            match Frame::read(&mut connection) {
                Ok(Some(Frame::Stdin(data))) => self.write(&data),
                Ok(Some(Frame::Resize { width, height })) => self.resize(width, height),
                Ok(Some(Frame::CloseStdin)) | Ok(None) => break,
                Err(error) => {
                    eprintln!("attach session ended: {error}");
                    break;
                }
            }
        }
        self.session_ended();
    }
}

/// Serves attach sessions on `listener` (one thread each) for as long as
/// the monitor lives.
pub fn serve(listener: UnixListener, stdin: Arc<Stdin>) {
    std::thread::spawn(move || {
        for connection in listener.incoming() {
            match connection {
                Ok(connection) => {
                    let stdin = stdin.clone();
                    std::thread::spawn(move || stdin.serve_session(connection));
                }
                Err(error) => eprintln!("attach socket: {error}"),
            }
        }
    });
}

/// The client side: one attach session with the container in `bundle`.
pub struct AttachSession {
    stream: tokio::net::UnixStream,
}

impl AttachSession {
    /// Connects to the monitor of the container in `bundle`; `None` when it
    /// keeps no stdin (the container has neither `stdin` nor `tty`).
    pub async fn connect(bundle: &Path) -> std::io::Result<Option<Self>> {
        // Through the directory's descriptor: a socket path must fit in 108
        // bytes, and a data dir may be deep.
        use std::os::fd::AsRawFd;
        let dir = match File::open(bundle) {
            Ok(dir) => dir,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let path = format!("/proc/self/fd/{}/{SOCKET}", dir.as_raw_fd());
        let connected = tokio::net::UnixStream::connect(&path).await;
        drop(dir);
        match connected {
            Ok(stream) => Ok(Some(Self { stream })),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    pub async fn send(&mut self, frame: &Frame) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        self.stream.write_all(&frame.encode()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let frames = [
            Frame::Stdin(b"echo hi\n".to_vec()),
            Frame::Stdin(Vec::new()),
            Frame::Resize {
                width: 120,
                height: 40,
            },
            Frame::CloseStdin,
        ];
        let wire: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
        let mut input = wire.as_slice();
        for frame in &frames {
            assert_eq!(Frame::read(&mut input).ok().flatten().as_ref(), Some(frame));
        }
        assert!(matches!(Frame::read(&mut input), Ok(None)));
    }

    #[test]
    fn broken_frames_are_errors() {
        let mut unknown: &[u8] = &[9, 0, 0, 0, 0];
        assert!(Frame::read(&mut unknown).is_err());
        let mut huge: &[u8] = &[0, 0xff, 0xff, 0xff, 0xff];
        assert!(Frame::read(&mut huge).is_err());
        let mut cut: &[u8] = &[0, 0, 0, 0, 4, b'a'];
        assert!(Frame::read(&mut cut).is_err());
    }

    #[test]
    fn stdin_once_closes_the_pipe_after_the_first_session() {
        let (reader, writer) = std::io::pipe().unwrap_or_else(|e| panic!("pipe: {e}"));
        let stdin = Stdin::new(Some(File::from(OwnedFd::from(writer))), None, true);
        let (client, server) = UnixStream::pair().unwrap_or_else(|e| panic!("pair: {e}"));
        let session = {
            let stdin = stdin.clone();
            std::thread::spawn(move || stdin.serve_session(server))
        };
        let mut client = client;
        client
            .write_all(&Frame::Stdin(b"hello\n".to_vec()).encode())
            .unwrap_or_else(|e| panic!("write: {e}"));
        client
            .write_all(&Frame::CloseStdin.encode())
            .unwrap_or_else(|e| panic!("write: {e}"));
        let _ = session.join();
        // Everything written arrives, then EOF: the write end is closed.
        let mut read = String::new();
        let mut reader = reader;
        reader
            .read_to_string(&mut read)
            .unwrap_or_else(|e| panic!("read: {e}"));
        assert_eq!(read, "hello\n");
    }

    #[test]
    fn without_stdin_once_the_pipe_stays_open() {
        let (_reader, writer) = std::io::pipe().unwrap_or_else(|e| panic!("pipe: {e}"));
        let stdin = Stdin::new(Some(File::from(OwnedFd::from(writer))), None, false);
        let (client, server) = UnixStream::pair().unwrap_or_else(|e| panic!("pair: {e}"));
        drop(client);
        stdin.serve_session(server);
        assert!(stdin.sink.lock().map(|s| s.is_some()).unwrap_or(false));
    }
}
