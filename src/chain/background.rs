//! Background questions about one block (the canonical window's blocks, a new block's
//! logs): asked directly of the upstreams whose head reached the block, in-sync ones and
//! better tiers first (`UpstreamSet::ask_in_order`), never through the clients' path, so
//! that they spend neither the clients' retry budget nor their breakers' verdicts.

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::core::ChainCore;
use crate::family::{self, BlockNeed, Cost, FamilyCall};
use crate::jsonrpc::Payload;
use crate::upstream::Question;

/// One question's time, all tries included.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

impl ChainCore {
    /// Ask `call` about block `number` of upstreams that have it, one after the other (at
    /// most `tries`), until one's `result` is one `accept` takes.
    pub(super) async fn ask_about_block<T>(
        &self,
        number: u64,
        call: &FamilyCall,
        tries: usize,
        accept: impl Fn(&Bytes) -> Option<T>,
    ) -> Option<T> {
        // A string id, never a client call's (numbers), so that it stands out in an
        // upstream's logs as the health probes' "health" does.
        let id = format!("\"canonical-{}\"", self.next_id());
        let route = self.route(family::MethodClass {
            need: BlockNeed::AtLeast(number),
            block_lookup: true,
            cost: Cost::Normal,
        });
        let mut order = self.upstreams.askable(call.method, &route);
        order.retain(|u| u.active().head().is_some_and(|h| h >= number));
        order.sort_by_key(|u| (!route.in_sync(u), u.config.tier));
        let question = Question {
            method: call.method,
            request_id: id.as_bytes(),
            body: call.encode(id.as_bytes()),
            deadline: Instant::now() + ASK_TIMEOUT,
        };
        for u in order.iter().take(tries) {
            let answer = self
                .upstreams
                .ask_in_order(&question, std::slice::from_ref(u), 1)
                .await;
            if let Some((_, Payload::Result(r))) = answer {
                if let Some(t) = accept(&r) {
                    return Some(t);
                }
            }
        }
        None
    }
}
