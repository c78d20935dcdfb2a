//! A contract on anvil whose every call logs one event with the caller as its topic
//! (runtime `CALLER PUSH1 0 PUSH1 0 LOG1 STOP`; its init code returns that runtime).

use std::time::Duration;

use serde_json::{json, Value};

use super::HttpClient;

pub const LOGGER_INIT: &str = "0x663360006000a10060005260076019f3";
/// anvil's first dev account (unlocked: `eth_sendTransaction` signs for it).
pub const DEV: &str = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266";

/// Send `tx` from an unlocked account of the node at `url`: its receipt.
pub async fn send_tx(url: &str, tx: Value) -> Value {
    let c = HttpClient::new();
    let hash = c.call(url, "eth_sendTransaction", json!([tx])).await["result"].clone();
    assert!(hash.is_string(), "{hash}");
    // anvil mines it at once, but may answer before the receipt is stored.
    for _ in 0..200 {
        let receipt = c
            .call(url, "eth_getTransactionReceipt", json!([hash]))
            .await;
        if !receipt["result"].is_null() {
            return receipt["result"].clone();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no receipt for {hash}")
}

/// Deploy the logger: its address.
pub async fn deploy(url: &str) -> String {
    let receipt = send_tx(url, json!({"from": DEV, "data": LOGGER_INIT})).await;
    receipt["contractAddress"].as_str().unwrap().to_string()
}

/// Call the logger (anvil mines the call in a block of its own): the receipt.
pub async fn emit(url: &str, logger: &str) -> Value {
    send_tx(url, json!({"from": DEV, "to": logger})).await
}
