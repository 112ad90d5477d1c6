//! Request bodies of the chunked transfer coding, decoded by a pure state machine (the fuzzer
//! drives it directly): bytes in, body bytes out, and where the body ended.
//!
//! Strict: a chunk size is hexadecimal digits (at most 16), then optional extensions, then CRLF;
//! every line ends with CRLF; a chunk's data is followed by CRLF; trailer fields are read and
//! dropped, at most [`MAX_TRAILERS`] bytes of them.

/// Bytes of chunk extensions and trailer fields accepted in one body.
pub(crate) const MAX_TRAILERS: usize = 8 * 1024;

/// Why a chunked body is refused (400, then the connection is closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkError(pub &'static str);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the size's hex digits (`digits` so far).
    Size {
        digits: u8,
    },
    /// After the size: extensions until CR.
    Extension,
    /// After the size line's CR.
    SizeLf,
    /// Inside a chunk's data.
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerStart,
    /// Inside a trailer line.
    Trailer,
    TrailerLf {
        last: bool,
    },
    Done,
}

/// Decodes one chunked body.
#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
    /// The size being read, then what is left of the current chunk.
    remaining: u64,
    /// Extension and trailer bytes seen.
    extra: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> ChunkedDecoder {
        ChunkedDecoder::new()
    }
}

impl ChunkedDecoder {
    /// At the start of a body.
    pub fn new() -> ChunkedDecoder {
        ChunkedDecoder {
            state: State::Size { digits: 0 },
            remaining: 0,
            extra: 0,
        }
    }

    /// Whether the last chunk and the trailers have been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from `input`, appending body bytes to `out`; returns how many bytes of `input` it
    /// used (all of them unless the body ended inside `input`: the rest is the next request).
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, ChunkError> {
        let mut at = 0;
        while at < input.len() {
            if self.state == State::Done {
                break;
            }
            if self.state == State::Data {
                let take = usize::try_from(self.remaining)
                    .unwrap_or(usize::MAX)
                    .min(input.len() - at);
                out.extend_from_slice(&input[at..at + take]);
                at += take;
                self.remaining -= take as u64;
                if self.remaining == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            let byte = input[at];
            at += 1;
            self.state = self.step(byte)?;
        }
        Ok(at)
    }

    /// The state after one byte outside a chunk's data.
    fn step(&mut self, byte: u8) -> Result<State, ChunkError> {
        let expect = |wanted: u8, next: State, error: &'static str| {
            if byte == wanted {
                Ok(next)
            } else {
                Err(ChunkError(error))
            }
        };
        match self.state {
            State::Size { digits } => match hex_value(byte) {
                Some(value) if digits < 16 => {
                    self.remaining = (self.remaining << 4) | u64::from(value);
                    Ok(State::Size { digits: digits + 1 })
                }
                Some(_) => Err(ChunkError("a chunk size is too large")),
                None if digits == 0 => Err(ChunkError("a chunk size is not hexadecimal")),
                None => match byte {
                    b'\r' => Ok(State::SizeLf),
                    b';' | b' ' | b'\t' => self.extension_byte(),
                    _ => Err(ChunkError("a chunk size is not hexadecimal")),
                },
            },
            State::Extension => match byte {
                b'\r' => Ok(State::SizeLf),
                b'\n' => Err(ChunkError("a chunk size line does not end with CRLF")),
                _ => self.extension_byte(),
            },
            State::SizeLf => {
                let next = if self.remaining == 0 {
                    State::TrailerStart
                } else {
                    State::Data
                };
                expect(b'\n', next, "a chunk size line does not end with CRLF")
            }
            State::DataCr => expect(b'\r', State::DataLf, "a chunk does not end with CRLF"),
            State::DataLf => expect(
                b'\n',
                State::Size { digits: 0 },
                "a chunk does not end with CRLF",
            ),
            State::TrailerStart => match byte {
                b'\r' => Ok(State::TrailerLf { last: true }),
                b' ' | b'\t' => Err(ChunkError("a trailer field is folded")),
                _ => self.trailer_byte(),
            },
            State::Trailer => match byte {
                b'\r' => Ok(State::TrailerLf { last: false }),
                b'\n' => Err(ChunkError("a trailer line does not end with CRLF")),
                _ => self.trailer_byte(),
            },
            State::TrailerLf { last } => expect(
                b'\n',
                if last {
                    State::Done
                } else {
                    State::TrailerStart
                },
                "a trailer line does not end with CRLF",
            ),
            // Handled by `decode`.
            State::Data | State::Done => Ok(self.state),
        }
    }

    fn extension_byte(&mut self) -> Result<State, ChunkError> {
        self.count_extra()?;
        Ok(State::Extension)
    }

    fn trailer_byte(&mut self) -> Result<State, ChunkError> {
        self.count_extra()?;
        Ok(State::Trailer)
    }

    fn count_extra(&mut self) -> Result<(), ChunkError> {
        self.extra += 1;
        if self.extra > MAX_TRAILERS {
            return Err(ChunkError("chunk extensions or trailers are too large"));
        }
        Ok(())
    }
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn decode_all(input: &[u8]) -> Result<(Vec<u8>, usize, bool), ChunkError> {
        let mut decoder = ChunkedDecoder::new();
        let mut out = Vec::new();
        let used = decoder.decode(input, &mut out)?;
        Ok((out, used, decoder.is_done()))
    }

    #[test]
    fn chunks_are_joined_and_the_rest_is_left() {
        let input = b"3\r\nabc\r\nA;name=value\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nGET";
        let (body, used, done) = decode_all(input).unwrap();
        assert_eq!(body, b"abc0123456789");
        assert!(done);
        assert_eq!(&input[used..], b"GET");
    }

    #[test]
    fn byte_by_byte_gives_the_same_body() {
        let input = b"5\r\nhello\r\n1 ; x\r\n!\r\n0\r\n\r\n";
        let mut decoder = ChunkedDecoder::new();
        let mut out = Vec::new();
        for byte in input {
            assert_eq!(decoder.decode(&[*byte], &mut out).unwrap(), 1);
        }
        assert!(decoder.is_done());
        assert_eq!(out, b"hello!");
    }

    #[test]
    fn malformed_bodies_are_refused() {
        for input in [
            &b"x\r\n"[..],
            b"\r\n",
            b"3\nabc\r\n",
            b"3\r\nabcd\r\n",
            b"3\r\nabc\n0\r\n\r\n",
            b"11111111111111111\r\n",
            b"-1\r\n",
            b"0\r\n folded\r\n\r\n",
            b"0\r\nX: 1\n\r\n",
        ] {
            assert!(decode_all(input).is_err(), "{input:?}");
        }
    }

    #[test]
    fn the_largest_size_is_accepted_but_not_one_digit_more() {
        let (_, _, done) = decode_all(b"ffffffffffffffff\r\n").unwrap();
        assert!(!done);
    }
}
