//! The watch's bookkeeping: bounds, read-your-writes nonces, views. Its rounds against
//! upstreams are tested end to end in `tests/watch.rs`.

use super::*;
use crate::family::{Broadcast, FamilyCall};

fn policy(max_watched: usize) -> BroadcastPolicy {
    BroadcastPolicy {
        fanout: 3,
        watch: true,
        rebroadcast_after: std::time::Duration::from_secs(30),
        watch_for: std::time::Duration::from_secs(3600),
        finality_depth: 64,
        max_watched,
    }
}

fn tx(hash: &str, sender: &str, nonce: u64) -> Broadcast {
    Broadcast {
        hash: hash.into(),
        hash_json: format!("\"{hash}\""),
        lookup: FamilyCall::new("eth_getTransactionByHash", format!("[\"{hash}\"]")),
        sender: Some(sender.into()),
        nonce: Some(nonce),
    }
}

fn watch(max_watched: usize) -> (TxWatch, Arc<Metrics>) {
    let metrics = Metrics::new();
    let family: Arc<dyn ChainFamily> = Arc::new(crate::family::evm::Evm::new(1));
    let w = TxWatch::new(
        &Arc::from("eth"),
        policy(max_watched),
        family,
        None,
        &metrics,
    )
    .unwrap();
    (w, metrics)
}

#[tokio::test]
async fn pending_nonces_follow_the_highest_watched_one() {
    let (w, _) = watch(10);
    assert_eq!(w.pending_next("0xa"), None);
    w.add(
        &tx("0x01", "0xa", 4),
        "eth_sendRawTransaction",
        b"[]",
        &[],
        1,
    )
    .await;
    w.add(
        &tx("0x02", "0xa", 6),
        "eth_sendRawTransaction",
        b"[]",
        &[],
        1,
    )
    .await;
    w.add(
        &tx("0x03", "0xb", 9),
        "eth_sendRawTransaction",
        b"[]",
        &[],
        1,
    )
    .await;
    assert_eq!(w.pending_next("0xa").map(|p| p.0), Some(7));
    assert_eq!(w.pending_next("0xb").map(|p| p.0), Some(10));
    // Ended transactions no longer count.
    w.lock().get_mut("0x02").unwrap().end(TxState::Replaced, 1);
    assert_eq!(w.pending_next("0xa").map(|p| p.0), Some(5));
}

#[tokio::test]
async fn the_watch_is_bounded_and_says_what_it_dropped() {
    let (w, metrics) = watch(2);
    let second = std::time::Duration::from_secs(1);
    w.add(&tx("0x01", "0xa", 1), "m", b"[]", &[], 1).await;
    w.clock().advance(second);
    w.add(&tx("0x02", "0xa", 2), "m", b"[]", &[], 1).await;
    w.clock().advance(second);
    // Full: an ended entry goes first, whatever its age.
    w.lock().get_mut("0x02").unwrap().end(TxState::Final, 5);
    w.add(&tx("0x03", "0xa", 3), "m", b"[]", &[], 1).await;
    w.clock().advance(second);
    assert!(w.view("0x02").is_none());
    assert!(w.view("0x01").is_some() && w.view("0x03").is_some());
    // None ended: the oldest.
    w.add(&tx("0x04", "0xa", 4), "m", b"[]", &[], 1).await;
    assert!(w.view("0x01").is_none(), "the oldest is dropped");
    assert_eq!(w.lock().len(), 2);
    let text = metrics.render();
    assert!(
        text.contains(r#"manifold_tx_watch_dropped_total{chain="eth"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"manifold_tx_watch{chain="eth",state="pending"} 2"#),
        "{text}"
    );
}

#[tokio::test]
async fn the_same_transaction_sent_again_is_one_entry() {
    let (w, _) = watch(10);
    w.add(&tx("0x01", "0xa", 1), "m", b"[\"0xff\"]", &[], 2)
        .await;
    w.add(&tx("0x01", "0xa", 1), "m", b"[\"0xff\"]", &[], 3)
        .await;
    let v = w.view("0x01").unwrap();
    assert_eq!(v["attempts"], 5);
    assert_eq!(v["state"], "pending");
    assert_eq!(w.counts()["pending"], 1);
}

#[tokio::test]
async fn the_watch_is_bounded_in_bytes_too() {
    let (w, _) = watch(10);
    let big = format!("[\"0x{}\"]", "ab".repeat(MAX_WATCHED_BYTES / 6));
    w.add(&tx("0x01", "0xa", 1), "m", big.as_bytes(), &[], 1)
        .await;
    w.clock().advance(std::time::Duration::from_secs(1));
    w.add(&tx("0x02", "0xa", 2), "m", big.as_bytes(), &[], 1)
        .await;
    // A third would hold about twice MAX_WATCHED_BYTES: the oldest makes room.
    w.add(&tx("0x03", "0xa", 3), "m", big.as_bytes(), &[], 1)
        .await;
    assert!(w.view("0x01").is_none());
    assert!(w.view("0x02").is_some() && w.view("0x03").is_some());
}
