//! Transparency: the execution-apis conformance cases (tests/fixtures/execution-apis, CC0,
//! from ethereum/execution-apis) replayed through Manifold. An upstream answers every
//! recorded request with its recorded answer; every answer must reach the client unchanged,
//! byte-for-byte, ids aside.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use serde_json::value::RawValue;
use support::*;

#[derive(Deserialize)]
struct Req<'a> {
    #[serde(borrow)]
    id: &'a RawValue,
    method: String,
    #[serde(borrow)]
    params: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Resp<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    result: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    error: Option<&'a RawValue>,
}

/// `Some` for any present value, `null` included.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

struct Case {
    file: String,
    request: String,
    response: String,
}

fn key(request: &[u8]) -> String {
    let r: Req = serde_json::from_slice(request).expect("request");
    format!("{}\0{}", r.method, r.params.map_or("", |p| p.get()))
}

/// `("result"|"error", raw text)` of a response.
fn answer(response: &str) -> (&'static str, String) {
    let r: Resp = serde_json::from_str(response).unwrap_or_else(|e| panic!("{e}: {response}"));
    match (r.result, r.error) {
        (_, Some(e)) => ("error", e.get().to_string()),
        (Some(r), None) => ("result", r.get().to_string()),
        _ => panic!("neither result nor error: {response}"),
    }
}

fn load_cases() -> Vec<Case> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/execution-apis");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).into_iter().flatten())
        .map(|f| f.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "io"))
        .collect();
    files.sort();
    let mut cases = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let mut pending: Option<String> = None;
        for line in text.lines() {
            if let Some(req) = line.strip_prefix(">> ") {
                pending = Some(req.to_string());
            } else if let Some(resp) = line.strip_prefix("<< ") {
                cases.push(Case {
                    file: f.strip_prefix(&root).unwrap().display().to_string(),
                    request: pending.take().expect("response without request"),
                    response: resp.to_string(),
                });
            }
        }
    }
    cases
}

/// An upstream answering from a table of recorded answers, with the id of the request.
async fn replay_upstream(table: Arc<Mutex<HashMap<String, String>>>) -> FakeUpstream {
    FakeUpstream::start(move |_, body| {
        let id = serde_json::from_slice::<Req>(body)
            .expect("upstream request")
            .id
            .get()
            .to_string();
        let recorded = table.lock().unwrap().get(&key(body)).cloned();
        match recorded {
            Some(resp) => {
                let (field, raw) = answer(&resp);
                Action::Body(format!(r#"{{"jsonrpc":"2.0","id":{id},"{field}":{raw}}}"#))
            }
            None => Action::Status(500, "no recording for this request".into()),
        }
    })
    .await
}

/// The recordings' chain: what their `eth_chainId` answers (Manifold refuses any other id
/// than the configured one), and so what Manifold is configured for and the replaying
/// upstream's probes report.
const RECORDED_CHAIN_ID: u64 = 0x000c_72dd_9d5e_883e;

async fn start_recorded_proxy(up: &FakeUpstream) -> manifold::server::Running {
    up.probes
        .chain_id
        .store(RECORDED_CHAIN_ID, std::sync::atomic::Ordering::SeqCst);
    let toml = chain_config(&[&up.url], "").replace(
        "chain_id = 31337",
        &format!("chain_id = {RECORDED_CHAIN_ID}"),
    );
    start_proxy(&toml).await
}

fn check(case: &Case, got: &str) {
    let r: Resp =
        serde_json::from_str(got).unwrap_or_else(|e| panic!("{}: {e}: {got:.300}", case.file));
    let sent: Req = serde_json::from_str(&case.request).unwrap();
    assert_eq!(
        r.id.map(RawValue::get),
        Some(sent.id.get()),
        "{}: id",
        case.file
    );
    let (field, raw) = answer(got);
    let (want_field, want_raw) = answer(&case.response);
    assert_eq!(field, want_field, "{}: {got:.300}", case.file);
    assert!(
        raw == want_raw,
        "{}: answer differs\n got  {raw:.300}\n want {want_raw:.300}",
        case.file
    );
}

#[tokio::test]
async fn every_recorded_case_passes_through_unchanged() {
    let cases = load_cases();
    assert!(cases.len() >= 230, "only {} cases found", cases.len());
    assert!(
        cases.iter().any(|c| c.request.len() > 270_000),
        "the 275 KB blob transaction is among them"
    );
    let table = Arc::new(Mutex::new(HashMap::new()));
    let up = replay_upstream(table.clone()).await;
    let proxy = start_recorded_proxy(&up).await;
    let url = rpc_url(&proxy, "/eth");
    let client = HttpClient::new();
    // One file at a time: the same request may have different recorded answers in two files
    // (a transaction sent before and after another one, say).
    let mut by_file: Vec<(&str, Vec<&Case>)> = Vec::new();
    for c in &cases {
        match by_file.last_mut() {
            Some((f, list)) if *f == c.file => list.push(c),
            _ => by_file.push((&c.file, vec![c])),
        }
    }
    for (_, file_cases) in by_file {
        {
            let mut t = table.lock().unwrap();
            t.clear();
            for c in &file_cases {
                t.insert(key(c.request.as_bytes()), c.response.clone());
            }
        }
        for c in file_cases {
            let (status, got) = client.post(&url, c.request.clone()).await;
            assert_eq!(status, 200, "{}", c.file);
            check(c, &got);
        }
    }
}

#[tokio::test]
async fn recorded_cases_as_one_batch() {
    let cases = load_cases();
    // Keep requests whose recorded answer is the same wherever they appear.
    let mut answers: HashMap<String, Option<String>> = HashMap::new();
    for c in &cases {
        let k = key(c.request.as_bytes());
        let a = answers.entry(k).or_insert_with(|| Some(c.response.clone()));
        if a.as_deref().map(answer) != Some(answer(&c.response)) {
            *a = None;
        }
    }
    let batch: Vec<&Case> = cases
        .iter()
        .filter(|c| answers[&key(c.request.as_bytes())].is_some())
        .collect();
    assert!(batch.len() > 200, "{}", batch.len());
    let table: HashMap<String, String> = answers
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
    let up = replay_upstream(Arc::new(Mutex::new(table))).await;
    let proxy = start_recorded_proxy(&up).await;
    // Each item gets its own id so that the answers can be matched in order.
    let items: Vec<String> = batch
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let r: Req = serde_json::from_str(&c.request).unwrap();
            let params = r
                .params
                .map_or(String::new(), |p| format!(r#","params":{}"#, p.get()));
            format!(
                r#"{{"jsonrpc":"2.0","id":"item-{i}","method":"{}"{params}}}"#,
                r.method
            )
        })
        .collect();
    let (status, got) = HttpClient::new()
        .post(&rpc_url(&proxy, "/eth"), format!("[{}]", items.join(",")))
        .await;
    assert_eq!(status, 200);
    let got: Vec<&RawValue> = serde_json::from_str(&got).unwrap();
    assert_eq!(got.len(), batch.len());
    for (i, (c, g)) in batch.iter().zip(got).enumerate() {
        let r: Resp = serde_json::from_str(g.get()).unwrap();
        assert_eq!(r.id.unwrap().get(), format!("\"item-{i}\""));
        assert_eq!(answer(g.get()), answer(&c.response), "{}", c.file);
    }
}

#[tokio::test]
async fn a_21_mb_get_logs_answer_passes_unchanged() {
    // The conformance chain is small; its wide eth_getLogs answer is built here from a
    // recorded log entry, repeated to 21 MB, and replayed the same way.
    let cases = load_cases();
    let sample = cases
        .iter()
        .find(|c| c.file.ends_with("eth_getLogs/contract-addr.io"))
        .unwrap();
    let (_, logs) = answer(&sample.response);
    let one = logs
        .trim_start_matches('[')
        .split("},{")
        .next()
        .unwrap()
        .trim_end_matches(']')
        .trim_end_matches('}');
    let entry = format!("{one}}}");
    let count = 21 * 1024 * 1024 / entry.len() + 1;
    let result = format!("[{}]", vec![entry.as_str(); count].join(","));
    assert!(result.len() >= 21 * 1024 * 1024);
    let request = r#"{"jsonrpc":"2.0","id":1,"method":"eth_getLogs","params":[{"fromBlock":"0x0","toBlock":"0x36"}]}"#;
    let case = Case {
        file: "synthetic 21 MB eth_getLogs".into(),
        request: request.into(),
        response: format!(r#"{{"jsonrpc":"2.0","id":1,"result":{result}}}"#),
    };
    let table = Arc::new(Mutex::new(HashMap::from([(
        key(request.as_bytes()),
        case.response.clone(),
    )])));
    let up = replay_upstream(table).await;
    let proxy = start_recorded_proxy(&up).await;
    let (status, got) = HttpClient::new()
        .post(&rpc_url(&proxy, "/eth"), request)
        .await;
    assert_eq!(status, 200);
    check(&case, &got);
}
