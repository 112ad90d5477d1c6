//! Micro benchmarks: encoding one event, and parser throughput.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use herald_sse::{EventFields, Parser, encode_event, encoded_len};

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_event");
    for size in [100, 1024] {
        let data: String = "lorem ipsum dolor sit amet\n"
            .chars()
            .cycle()
            .take(size)
            .collect();
        let fields = EventFields {
            id: Some("urn:uuid:0190a2c4-8f0e-7c3a-9b1d-3f2e4d5c6b7a"),
            event_type: Some("update"),
            data: &data,
            retry: None,
        };
        let mut out = Vec::with_capacity(encoded_len(&fields));
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(format!("{size}B"), |b| {
            b.iter(|| {
                out.clear();
                encode_event(&mut out, black_box(&fields));
                black_box(out.len())
            });
        });
    }
    group.finish();
}

fn parse(c: &mut Criterion) {
    let mut wire = Vec::new();
    let mut n = 0u64;
    while wire.len() < 1_000_000 {
        let id = n.to_string();
        encode_event(
            &mut wire,
            &EventFields {
                id: Some(&id),
                event_type: Some("update"),
                data: "{\"type\":\"update\",\"body\":\"some payload of a realistic size\"}\nsecond line",
                retry: None,
            },
        );
        n += 1;
    }
    let mut group = c.benchmark_group("parser");
    group.throughput(Throughput::Bytes(wire.len() as u64));
    group.bench_function("1MB in 16KiB chunks", |b| {
        b.iter(|| {
            let mut parser = Parser::new();
            let mut events = 0usize;
            for chunk in wire.chunks(16 * 1024) {
                parser.feed(chunk);
                while let Some(event) = parser.next_event() {
                    events += black_box(event).data.len();
                }
            }
            events
        });
    });
    group.finish();
}

criterion_group!(benches, encode, parse);
criterion_main!(benches);
