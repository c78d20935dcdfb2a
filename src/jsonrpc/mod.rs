//! JSON-RPC 2.0 wire format: decoding what clients send and encoding what they get back.
//!
//! The proxy never needs to understand `params` or `result`, only to forward them, so both
//! stay raw JSON text (`Bytes` slices of the body they arrived in). Ids are kept as the exact
//! bytes the client sent, so ids such as `18446744073709551617` or `"0x01"` come back
//! byte-for-byte, whatever an upstream would have done with them.

mod error;
mod method;
pub(crate) mod raw;
mod request;
mod response;

pub use error::{codes, ErrorObject};
pub use method::Method;
pub use request::{decode, encode_request, Call, DecodeError, Id, Incoming, Item, Limits};
pub use response::{batch_element, batch_end, encode_batch, encode_response, Payload};
