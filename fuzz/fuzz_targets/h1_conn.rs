//! Fuzz target for the HTTP/1.1 layer: arbitrary bytes as what a client sends.
//!
//! - The head parser never panics; a head it accepts parses the same from exactly its own
//!   bytes, and its length is within the input.
//! - The chunked decoder never panics and gives the same body fed whole or in two pieces.
//! - A whole connection (`h1::serve` over an in-memory pipe, a handler that answers every
//!   request with the length of its body) never panics, ends once the client has sent
//!   everything, and writes only complete-looking HTTP/1.1 responses.
#![no_main]

use std::time::Duration;

use herald::fuzzing::{RequestBody, ResponseBody};
use herald::fuzzing::ChunkedDecoder;
use herald::fuzzing::parse_head;
use herald::fuzzing::{Handler, Settings, serve};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct BodyLength;

impl Handler for BodyLength {
    async fn handle(&self, request: http::Request<RequestBody>) -> http::Response<ResponseBody> {
        let length = match request.body() {
            RequestBody::Read(bytes) => bytes.len().to_string(),
            RequestBody::Oversized => "oversized".to_owned(),
            RequestBody::Hyper(_) => unreachable!("HTTP/1.1 bodies are read by the layer"),
        };
        http::Response::new(ResponseBody::full(length))
    }
}

fn check_parser(input: &[u8]) {
    if let Ok(Some((head, length))) = parse_head(input) {
        assert!(length <= input.len());
        let (again, again_length) = parse_head(&input[..length])
            .expect("its own bytes parse")
            .expect("its own bytes are complete");
        assert_eq!(again_length, length);
        assert_eq!(again.method, head.method);
        assert_eq!(again.uri, head.uri);
        assert_eq!(again.body, head.body);
    }
}

fn check_chunked(input: &[u8]) {
    let mut whole = ChunkedDecoder::new();
    let mut whole_body = Vec::new();
    let whole_result = whole.decode(input, &mut whole_body);
    let split = input.first().map_or(0, |&byte| usize::from(byte)).min(input.len());
    let mut pieces = ChunkedDecoder::new();
    let mut pieces_body = Vec::new();
    let first = pieces.decode(&input[..split], &mut pieces_body);
    let pieces_result = match first {
        Ok(used) if used == split => pieces
            .decode(&input[split..], &mut pieces_body)
            .map(|more| used + more),
        other => other,
    };
    if let (Ok(whole_used), Ok(pieces_used)) = (&whole_result, &pieces_result) {
        assert_eq!(whole_used, pieces_used);
        assert_eq!(whole_body, pieces_body);
        assert_eq!(whole.is_done(), pieces.is_done());
    } else if whole_result.is_ok() != pieces_result.is_ok() {
        // An error in the first piece can only be one the whole input also has.
        assert!(whole_result.is_err(), "a split made a valid body invalid");
    }
}

fn check_connection(input: &[u8]) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let settings = Settings {
            header_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            body_limit: 1024,
        };
        let served = tokio::spawn(async move {
            serve(server, Vec::new(), &BodyLength, &settings, None).await;
        });
        client.write_all(input).await.expect("the pipe takes it");
        client.shutdown().await.expect("half-close");
        let mut output = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut output))
            .await
            .expect("the connection ends once the client has sent everything")
            .expect("read");
        served.await.expect("serve never panics");
        if !output.is_empty() {
            assert!(output.starts_with(b"HTTP/1.1 "), "{:?}", String::from_utf8_lossy(&output));
            assert!(output.ends_with(b"\r\n\r\n") || output.windows(4).any(|w| w == b"\r\n\r\n"));
        }
    });
}

fuzz_target!(|input: &[u8]| {
    check_parser(input);
    check_chunked(input);
    check_connection(input);
});
