//! Codec micro-benchmarks: decoding client bodies and upstream replies, encoding answers.
//!
//! `cargo bench --bench codec`. These measure the proxy's own JSON work per request, the
//! part that adds to every request's latency; the end-to-end load comparison with nginx
//! lives in the load script.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http::StatusCode;
use manifold::jsonrpc::{decode, encode_batch, encode_response, Incoming, Item, Limits, Payload};
use manifold::upstream::{read_reply, HttpReply};

const LIMITS: Limits = Limits {
    max_batch_len: 1000,
    version_1: false,
};

fn single() -> Bytes {
    Bytes::from_static(
        br#"{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":["0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266","latest"]}"#,
    )
}

fn batch(n: usize) -> Bytes {
    let items: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"jsonrpc":"2.0","id":{i},"method":"eth_getBalance","params":["0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266","latest"]}}"#
            )
        })
        .collect();
    Bytes::from(format!("[{}]", items.join(",")))
}

fn big_reply(bytes: usize) -> HttpReply {
    let result = format!("\"0x{}\"", "ab".repeat(bytes / 2));
    HttpReply {
        status: StatusCode::OK,
        version: http::Version::HTTP_11,
        retry_after: None,
        body: Bytes::from(format!(r#"{{"jsonrpc":"2.0","id":1,"result":{result}}}"#)),
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    let body = single();
    g.throughput(Throughput::Elements(1));
    g.bench_function("single", |b| {
        b.iter(|| decode(black_box(&body), LIMITS).unwrap())
    });
    let body = batch(100);
    g.throughput(Throughput::Elements(100));
    g.bench_function("batch_100", |b| {
        b.iter(|| decode(black_box(&body), LIMITS).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("reply");
    let reply = big_reply(64);
    g.bench_function("read_small", |b| {
        b.iter(|| read_reply(b"1", black_box(&reply), &[]).unwrap())
    });
    let reply = big_reply(1024 * 1024);
    g.throughput(Throughput::Bytes(reply.body.len() as u64));
    g.bench_function("read_1mb", |b| {
        b.iter(|| read_reply(b"1", black_box(&reply), &[]).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("encode");
    let Ok(Incoming::Single(Item::Call(call))) = decode(&single(), LIMITS) else {
        panic!("bench input")
    };
    let id = call.id.unwrap();
    let payload = Payload::Result(Bytes::from_static(b"\"0x21e19e0c9bab2400000\""));
    g.bench_function("single", |b| {
        b.iter(|| encode_response(black_box(&id), &payload))
    });
    let Payload::Result(big) = read_reply(b"1", &big_reply(1024 * 1024), &[]).unwrap() else {
        panic!("bench input")
    };
    let big = Payload::Result(big);
    g.bench_function("result_1mb", |b| {
        b.iter(|| encode_response(black_box(&id), &big))
    });
    g.bench_function("batch_100", |b| {
        b.iter(|| encode_batch((0..100).map(|_| encode_response(&id, &payload)).collect()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
