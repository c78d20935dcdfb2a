//! A call's method name: a zero-copy slice of the request body when the client's JSON string
//! has no escapes (every real client), so decoding and cloning a call allocate nothing for
//! it.

use bytes::Bytes;

/// A method name, decoded (escapes resolved). Always valid UTF-8: built only from a `&str`'s
/// bytes.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Method(Bytes);

impl Method {
    /// `decoded` as it lies in `body` (between the quotes of `"eth_call"`), else a copy.
    pub(super) fn from_body(body: &Bytes, decoded: &str) -> Self {
        Self(super::raw::slice_of(body, decoded))
    }

    pub fn new(name: &str) -> Self {
        Self(Bytes::copy_from_slice(name.as_bytes()))
    }

    pub fn as_str(&self) -> &str {
        // Never fails: the bytes came from a `&str`.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::ops::Deref for Method {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_name_is_a_slice_of_the_body_and_an_escaped_one_a_copy() {
        let body = Bytes::from_static(br#"{"method":"eth_call"}"#);
        let inside = std::str::from_utf8(&body[11..19]).unwrap();
        let m = Method::from_body(&body, inside);
        assert_eq!(&*m, "eth_call");
        assert_eq!(m.0.as_ptr(), body[11..].as_ptr());
        let unescaped = String::from("eth_get");
        let m = Method::from_body(&body, &unescaped);
        assert_eq!(m.as_str(), "eth_get");
        assert_eq!(format!("{m:?} {m}"), "\"eth_get\" eth_get");
    }
}
