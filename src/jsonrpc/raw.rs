//! Helpers for borrowed raw JSON: the pieces shared by request and reply decoding.

use bytes::Bytes;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

/// For a field deserialized as `Option<&RawValue>` with `#[serde(default)]`: `Some` for any
/// present value, `null` included, so that an absent field differs from `"field": null`.
pub fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// `part` as a zero-copy slice of `body` when it lies inside it (values borrowed by
/// serde_json from `body` always do), else a copy: never a panic.
pub fn slice_of(body: &Bytes, part: &str) -> Bytes {
    let start = (part.as_ptr() as usize).wrapping_sub(body.as_ptr() as usize);
    match start.checked_add(part.len()) {
        Some(end) if start <= body.len() && end <= body.len() => body.slice(start..end),
        _ => Bytes::copy_from_slice(part.as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_inside_and_copies_outside() {
        let body = Bytes::from_static(b"hello world");
        let inside = std::str::from_utf8(&body[6..]).unwrap();
        let s = slice_of(&body, inside);
        assert_eq!(&s[..], b"world");
        assert_eq!(s.as_ptr(), body[6..].as_ptr());
        let outside = String::from("other");
        assert_eq!(&slice_of(&body, &outside)[..], b"other");
    }
}
